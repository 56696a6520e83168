/*
 * tna.p4: sparse in-network aggregation (OmniReduce) for Tofino (TNA), the v1model program's protocol
 * (docs/protocol.md) in two passes through the pipe (docs/protocol.md section 8, docs/tofino.md).
 *
 *   1st pass, ingress:  validation and identity as in v1model, the slot's tensor (Admission); REPAIRs and REQUESTs
 *                       for an older tensor are forwarded from here; the rest goes to the job's recirculation port.
 *   1st pass, egress:   the workers' announcements and their minimum (Announcements), on the recirculation port.
 *   2nd pass, ingress:  the round, its exponent, next block and lanes (Rounds); results are multicast from here.
 *   2nd pass, egress:   every copy of a result addressed to its worker (ResultDelivery), as in v1model.
 *
 * Wire format, constants and sizes shared with the v1model program come from p4src/include/; the per-lane and
 * per-worker code from p4src/generate.py (include/generated/). Build: `make tofino` (p4c-barefoot, bfas).
 */
#include <core.p4>
// One source for both targets: the driver defines __TARGET_TOFINO__ (1 for `--target tofino`, 2 for
// `--target tofino2`); Tofino 2 builds use its own architecture, T2NA (`make tofino2`).
#if __TARGET_TOFINO__ == 2
#include <t2na.p4>
#else
#include <tna.p4>
#endif

#include "include/headers.p4"
#include "include/parser.p4"
#include "include/control/identity.p4"
#include "include/control/admission.p4"
#include "include/control/rounds.p4"
#include "include/control/forwarding.p4"
#include "include/control/announcements.p4"
#include "include/control/delivery.p4"

#include "include/generated/lane_containers.p4"
control Ingress(inout tna_headers_t hdr,
                inout ingress_metadata_t meta,
                in ingress_intrinsic_metadata_t ig_intr_md,
                in ingress_intrinsic_metadata_from_parser_t ig_prsr_md,
                inout ingress_intrinsic_metadata_for_deparser_t ig_dprsr_md,
                inout ingress_intrinsic_metadata_for_tm_t ig_tm_md) {

    Counter<bit<64>, port_t>(PORT_COUNT, CounterType_t.PACKETS_AND_BYTES)        port_rx;
    Counter<bit<64>, drop_reason_t>(DROP_REASON_COUNT, CounterType_t.PACKETS_AND_BYTES) drops;
    Counter<bit<64>, job_id_t>(MAX_JOBS, CounterType_t.PACKETS_AND_BYTES)        job_contributions;
    Counter<bit<64>, job_id_t>(MAX_JOBS, CounterType_t.PACKETS_AND_BYTES)        job_results;
    Counter<bit<64>, job_id_t>(MAX_JOBS, CounterType_t.PACKETS_AND_BYTES)        job_replays;
    Counter<bit<64>, job_id_t>(MAX_JOBS, CounterType_t.PACKETS_AND_BYTES)        job_forwards;

    // The packet's tensor as slot_tensor and round_tensor cells hold it. NOTE: a table's action rather than a
    // statement: the mid end substitutes a computed field's expression into its later uses, and a shift or
    // concatenation inside the subtraction and comparisons that use the cell would take more than one stage.
    action make_tensor_cell() {
        meta.tensor_cell = hdr.omni.tensor_id ++ TNA_TENSOR_MARK[15:0];
    }

    table tensor_cell {
        actions = { make_tensor_cell; }
        const default_action = make_tensor_cell();
        size = 1;
    }

    WorkerIdentity() identity;
    Admission() admission;
    Rounds() rounds;
    Ipv4Forwarding() forwarding;

    apply {
        // meta.drop_reason, outcome, to_announce, new_tensor and lane_op start at 0 (IngressParser).
        if (hdr.omni.isValid()) {
            tensor_cell.apply();
        }
        if (hdr.bridge.isValid()) {
            // Second pass: back from the announcement pass with its findings in hdr.bridge.
            meta.job_id = hdr.bridge.job_id;
            rounds.apply(hdr, meta);
        } else {
            port_rx.count(ig_intr_md.ingress_port);
            if (ig_prsr_md.parser_err != 0) {
                meta.drop_reason = DROP_PARSER_ERROR;
            } else if (!hdr.ipv4.isValid()) {
                meta.drop_reason = DROP_NOT_IPV4;
            } else if (meta.checksum_error) {
                meta.drop_reason = DROP_BAD_CHECKSUM;
            } else if (hdr.omni.isValid()) {
                // Shape of the packet: type, then lane count for that type, then lengths for that lane count.
                // NOTE: once the lane count is checked it is LANES with the lanes and 0 without, so each length is
                // one of two constants (lane_count << 2 plus a constant would be two instructions in one action; the
                // IPv4 length, checked once the UDP length is, is IPV4_HEADER_BYTES more; as a sum with the UDP
                // length the mid end would put the addition into the gateway).
                if (hdr.lanes.isValid()) {
                    meta.expected_udp_length = UDP_HEADER_BYTES + OMNI_HEADER_BYTES + ((bit<16>)LANES << 2);
                    meta.expected_ipv4_length =
                        IPV4_HEADER_BYTES + UDP_HEADER_BYTES + OMNI_HEADER_BYTES + ((bit<16>)LANES << 2);
                } else {
                    meta.expected_udp_length = UDP_HEADER_BYTES + OMNI_HEADER_BYTES;
                    meta.expected_ipv4_length = IPV4_HEADER_BYTES + UDP_HEADER_BYTES + OMNI_HEADER_BYTES;
                }
                if (hdr.omni.msg_type != MSG_CONTRIB && hdr.omni.msg_type != MSG_REQUEST
                        && hdr.omni.msg_type != MSG_REPAIR) {
                    meta.drop_reason = DROP_BAD_MSG_TYPE;
                } else if ((hdr.omni.msg_type == MSG_REQUEST && hdr.lanes.isValid())
                        || (hdr.omni.msg_type != MSG_REQUEST && !hdr.lanes.isValid())
                        || (!hdr.lanes.isValid() && hdr.omni.lane_count != 0)) {
                    meta.drop_reason = DROP_BAD_LANE_COUNT;
                } else if (hdr.udp.length != meta.expected_udp_length) {
                    // NOTE: one length a branch: a gateway reads 4 bytes, two 16-bit comparisons each.
                    meta.drop_reason = DROP_BAD_LENGTH;
                } else if (hdr.ipv4.total_len != meta.expected_ipv4_length) {
                    meta.drop_reason = DROP_BAD_LENGTH;
                } else {
                    identity.apply(hdr, meta, ig_intr_md.ingress_port);
                    if (meta.drop_reason == 0) {
                        admission.apply(hdr, meta);
                    }
                }
            } else {
                forwarding.apply(hdr, meta, ig_tm_md);
            }
        }

        if (meta.outcome == OUTCOME_RESULT || meta.outcome == OUTCOME_REPLAY || meta.outcome == OUTCOME_FORWARD) {
            // Results and forwarded messages leave from the aggregator's address (the one the worker sent to)
            // with no UDP checksum; results always carry the lanes, forwarded messages keep their length.
            hdr.udp.checksum = 0;
            if (meta.outcome != OUTCOME_FORWARD) {
                hdr.udp.length = UDP_HEADER_BYTES + OMNI_HEADER_BYTES + ((bit<16>)LANES << 2);
                hdr.ipv4.total_len = IPV4_HEADER_BYTES + UDP_HEADER_BYTES + OMNI_HEADER_BYTES + ((bit<16>)LANES << 2);
            }
            hdr.ipv4.ttl = 64;
        }

        // Where the packet goes next. hdr.bridge travels with it to egress (emitted first by the deparser).
        if (meta.drop_reason != 0) {
            drops.count(meta.drop_reason);
            ig_dprsr_md.drop_ctl = 1;
        } else if (meta.outcome == OUTCOME_ABSORBED) {
            job_contributions.count(meta.job_id);
            ig_dprsr_md.drop_ctl = 1;
        } else if (meta.to_announce == 1) {
            // First pass done: on to the announcement pass, in the egress of the job's recirculation port.
            ig_tm_md.ucast_egress_port = meta.recirculation_port;
            hdr.bridge.setValid();
            hdr.bridge.phase = PHASE_ANNOUNCE;
            hdr.bridge.outcome = OUTCOME_NONE;
            hdr.bridge.job_id = meta.job_id;
            hdr.bridge.worker_id = meta.worker_id;
            hdr.bridge.worker_count = meta.worker_count;
            hdr.bridge.global_slot = meta.global_slot;
            hdr.bridge.mcast_grp = meta.mcast_grp;
            hdr.bridge.ingress_port = ig_intr_md.ingress_port;
            hdr.bridge.forward_to = 0;
            hdr.bridge.deliver_by_multicast = 0;
            // NOTE: new_tensor as a constant in either branch, so that its byte is written from constants only
            // (copied from meta.new_tensor, both fields would have to sit at the same bit of their containers,
            // next to fields written otherwise).
            if (meta.new_tensor == 1) {
                hdr.bridge.new_tensor = 1;
            } else {
                hdr.bridge.new_tensor = 0;
            }
            hdr.bridge.accepted = 0;
            hdr.bridge.announced = 0;
            hdr.bridge.min_next = 0;
        } else {
            if (meta.outcome == OUTCOME_RESULT) {
                job_contributions.count(meta.job_id);
                job_results.count(meta.job_id);
            } else if (meta.outcome == OUTCOME_FORWARD) {
                job_forwards.count(meta.job_id);
            } else if (meta.outcome == OUTCOME_REPLAY) {
                job_replays.count(meta.job_id);
            }
            // To egress for delivery: a result, forward or replay, or routed traffic (ucast port set by its route).
            if (!hdr.bridge.isValid()) {
                // First pass: the worker's job is in meta.
                hdr.bridge.setValid();
                hdr.bridge.mcast_grp = meta.mcast_grp;
                hdr.bridge.ingress_port = ig_intr_md.ingress_port;
            }
            hdr.bridge.phase = PHASE_DELIVER;
            hdr.bridge.outcome = meta.outcome;
            hdr.bridge.job_id = meta.job_id;
            hdr.bridge.forward_to = meta.forward_to;
            if (meta.outcome == OUTCOME_RESULT || meta.outcome == OUTCOME_FORWARD) {
                // To the job's workers (a forward: to one of them, egress keeps only its copy).
                ig_tm_md.mcast_grp_a = hdr.bridge.mcast_grp;
                hdr.bridge.deliver_by_multicast = 1;
            } else {
                hdr.bridge.deliver_by_multicast = 0;
            }
            if (meta.outcome == OUTCOME_REPLAY) {
                // Back to the sender, out of the port it came in on, with source and destination swapped.
                ig_tm_md.ucast_egress_port = hdr.bridge.ingress_port;
                mac_addr_t aggregator_mac = hdr.ethernet.dst_addr;
                ipv4_addr_t aggregator_addr = hdr.ipv4.dst_addr;
                hdr.ethernet.dst_addr = hdr.ethernet.src_addr;
                hdr.ethernet.src_addr = aggregator_mac;
                hdr.ipv4.dst_addr = hdr.ipv4.src_addr;
                hdr.ipv4.src_addr = aggregator_addr;
                hdr.udp.dst_port = hdr.udp.src_port;
                hdr.udp.src_port = OMNI_UDP_PORT;
            }
        }
    }
}

control Egress(inout tna_headers_t hdr,
               inout egress_metadata_t meta,
               in egress_intrinsic_metadata_t eg_intr_md,
               in egress_intrinsic_metadata_from_parser_t eg_prsr_md,
               inout egress_intrinsic_metadata_for_deparser_t eg_dprsr_md,
               inout egress_intrinsic_metadata_for_output_port_t eg_oport_md) {

    Counter<bit<64>, port_t>(PORT_COUNT, CounterType_t.PACKETS_AND_BYTES)        port_tx;
    Counter<bit<64>, drop_reason_t>(DROP_REASON_COUNT, CounterType_t.PACKETS_AND_BYTES) drops;

    Announcements() announcements;
    ResultDelivery() delivery;

    apply {
        meta.drop_reason = 0;
        if (hdr.bridge.phase == PHASE_ANNOUNCE) {
            // Out of the recirculation port and back into ingress with hdr.bridge in front: counted nowhere, it is
            // the same packet.
            announcements.apply(hdr, meta);
        } else {
            if (hdr.bridge.outcome == OUTCOME_FORWARD && eg_intr_md.egress_rid != (bit<16>)hdr.bridge.forward_to) {
                // NOTE: a forwarded message is multicast to the job's group and only its addressee's copy survives;
                // the others are replicas, not packets anyone sent, so nothing counts them.
                eg_dprsr_md.drop_ctl = 1;
            } else {
                if (hdr.bridge.deliver_by_multicast == 1) {
                    delivery.apply(hdr, meta, eg_intr_md.egress_rid);
                }
                if (meta.drop_reason != 0) {
                    drops.count(meta.drop_reason);
                    eg_dprsr_md.drop_ctl = 1;
                } else {
                    port_tx.count(eg_intr_md.egress_port);
                }
            }
            hdr.bridge.setInvalid();
        }
    }
}

Pipeline(IngressParser(),
         Ingress(),
         IngressDeparser(),
         EgressParser(),
         Egress(),
         EgressDeparser()) pipe;

Switch(pipe) main;
