/*
 * omnireduce.p4: sparse in-network aggregation (OmniReduce) for v1model (BMv2 simple_switch_grpc, softswitch).
 *
 * docs/protocol.md specifies the wire format and the state machine. This file only wires the controls together:
 * validation and counting here, identity in WorkerIdentity, the slot state machine in Aggregation, plain routing in
 * Ipv4Forwarding, and per-worker addressing of multicast results in ResultDelivery (egress).
 *
 * Build: `make p4` (p4c-bm2-ss; regenerates p4src/include/generated/ and p4src/build/).
 */
#include <core.p4>
#include <v1model.p4>

#include "include/defines.p4"
#include "include/headers.p4"
#include "include/parser.p4"
#include "include/control/checksums.p4"
#include "include/control/identity.p4"
#include "include/control/aggregation.p4"
#include "include/control/forwarding.p4"
#include "include/control/delivery.p4"

control IngressPipe(inout headers_t hdr,
                    inout local_metadata_t meta,
                    inout standard_metadata_t standard_metadata) {

    counter(PORT_COUNT, CounterType.packets_and_bytes)        port_rx;
    counter(DROP_REASON_COUNT, CounterType.packets_and_bytes) drops;
    counter(MAX_JOBS, CounterType.packets_and_bytes)          job_contributions;
    counter(MAX_JOBS, CounterType.packets_and_bytes)          job_results;
    counter(MAX_JOBS, CounterType.packets_and_bytes)          job_replays;
    counter(MAX_JOBS, CounterType.packets_and_bytes)          job_forwards;

    WorkerIdentity() identity;
    Aggregation() aggregation;
    Ipv4Forwarding() forwarding;

    apply {
        port_rx.count((bit<32>)standard_metadata.ingress_port);
        meta.drop_reason = 0;
        meta.outcome = OUTCOME_NONE;
        meta.deliver_by_multicast = 0;

        if (standard_metadata.parser_error != error.NoError) {
            meta.drop_reason = DROP_PARSER_ERROR;
        } else if (!hdr.ipv4.isValid()) {
            meta.drop_reason = DROP_NOT_IPV4;
        } else if (standard_metadata.checksum_error == 1) {
            meta.drop_reason = DROP_BAD_CHECKSUM;
        } else if (hdr.omni.isValid()) {
            // Shape of the packet: type, then lane count for that type, then lengths for that lane count.
            if (hdr.omni.msg_type != MSG_CONTRIB && hdr.omni.msg_type != MSG_REQUEST
                    && hdr.omni.msg_type != MSG_REPAIR) {
                meta.drop_reason = DROP_BAD_MSG_TYPE;
            } else if ((hdr.omni.msg_type != MSG_REQUEST) != hdr.lanes.isValid()
                    || (!hdr.lanes.isValid() && hdr.omni.lane_count != 0)) {
                meta.drop_reason = DROP_BAD_LANE_COUNT;
            } else if (hdr.udp.length != UDP_HEADER_BYTES + OMNI_HEADER_BYTES
                        + (((bit<16>)hdr.omni.lane_count) << 2)
                    || hdr.ipv4.total_len != IPV4_HEADER_BYTES + hdr.udp.length) {
                meta.drop_reason = DROP_BAD_LENGTH;
            } else {
                identity.apply(hdr, meta, standard_metadata);
                if (meta.drop_reason == 0) {
                    aggregation.apply(hdr, meta, standard_metadata);
                }
            }

            if (meta.outcome == OUTCOME_RESULT || meta.outcome == OUTCOME_REPLAY || meta.outcome == OUTCOME_FORWARD) {
                // Results and forwarded messages leave from the aggregator's address (the one the worker sent to)
                // with no UDP checksum; results always carry the lanes, forwarded messages keep their length.
                hdr.udp.checksum = 0;
                if (meta.outcome != OUTCOME_FORWARD) {
                    hdr.udp.length = UDP_HEADER_BYTES + OMNI_HEADER_BYTES + ((bit<16>)LANES << 2);
                    hdr.ipv4.total_len = IPV4_HEADER_BYTES + hdr.udp.length;
                }
                hdr.ipv4.ttl = 64;
                meta.result_src_mac = hdr.ethernet.dst_addr;
                meta.result_src_addr = hdr.ipv4.dst_addr;
            }
            if (meta.outcome == OUTCOME_RESULT) {
                job_contributions.count((bit<32>)meta.job_id);
                job_results.count((bit<32>)meta.job_id);
                standard_metadata.mcast_grp = meta.mcast_grp;
                meta.deliver_by_multicast = 1;
            } else if (meta.outcome == OUTCOME_FORWARD) {
                // To one worker of the job: egress keeps only the copy of replica meta.forward_to.
                job_forwards.count((bit<32>)meta.job_id);
                standard_metadata.mcast_grp = meta.mcast_grp;
                meta.deliver_by_multicast = 1;
            } else if (meta.outcome == OUTCOME_REPLAY) {
                // Back to the sender, out of the port it came in on.
                job_replays.count((bit<32>)meta.job_id);
                standard_metadata.egress_spec = standard_metadata.ingress_port;
                hdr.ethernet.dst_addr = hdr.ethernet.src_addr;
                hdr.ethernet.src_addr = meta.result_src_mac;
                hdr.ipv4.dst_addr = hdr.ipv4.src_addr;
                hdr.ipv4.src_addr = meta.result_src_addr;
                hdr.udp.dst_port = hdr.udp.src_port;
                hdr.udp.src_port = OMNI_UDP_PORT;
            } else if (meta.outcome == OUTCOME_ABSORBED) {
                job_contributions.count((bit<32>)meta.job_id);
                mark_to_drop(standard_metadata);
            }
        } else {
            forwarding.apply(hdr, meta, standard_metadata);
        }

        if (meta.drop_reason != 0) {
            drops.count((bit<32>)meta.drop_reason);
            mark_to_drop(standard_metadata);
        }
    }
}

control EgressPipe(inout headers_t hdr,
                   inout local_metadata_t meta,
                   inout standard_metadata_t standard_metadata) {

    counter(PORT_COUNT, CounterType.packets_and_bytes)        port_tx;
    counter(DROP_REASON_COUNT, CounterType.packets_and_bytes) drops;

    ResultDelivery() delivery;

    apply {
        if (meta.outcome == OUTCOME_FORWARD && standard_metadata.egress_rid != (bit<16>)meta.forward_to) {
            // NOTE: a forwarded message is multicast to the job's group (which knows every worker's port) and only
            // its addressee's copy survives; the others are replicas, not packets anyone sent, so nothing counts.
            mark_to_drop(standard_metadata);
        } else {
            if (meta.deliver_by_multicast == 1) {
                meta.drop_reason = 0;
                delivery.apply(hdr, meta, standard_metadata);
            }
            if (meta.deliver_by_multicast == 1 && meta.drop_reason != 0) {
                drops.count((bit<32>)meta.drop_reason);
                mark_to_drop(standard_metadata);
            } else {
                port_tx.count((bit<32>)standard_metadata.egress_port);
            }
        }
    }
}

V1Switch(OmniParser(),
         VerifyIpv4Checksum(),
         IngressPipe(),
         EgressPipe(),
         ComputeIpv4Checksum(),
         OmniDeparser()) main;
