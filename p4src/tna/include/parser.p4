/*
 * parser.p4 (Tofino): Ethernet / IPv4 / UDP / omni / lanes, behind the pass-carrying omni_bridge_t where there is
 * one; the deparsers. The headers and their order on the wire are p4src/include/headers.p4's, as in v1model.
 *
 * NOTE: the parsers never reject. A frame too short for a header it needs reaches ingress with parser_err set and
 * is dropped there with DROP_PARSER_ERROR, as in the v1model program, so that every malformed frame is counted.
 */
#ifndef OMNIREDUCE_TNA_PARSER_P4
#define OMNIREDUCE_TNA_PARSER_P4

#include "headers.p4"

parser IngressParser(packet_in pkt,
                     out tna_headers_t hdr,
                     out ingress_metadata_t meta,
                     out ingress_intrinsic_metadata_t ig_intr_md) {
    Checksum() ipv4_checksum;
    // Ports whose packets come back from egress (the job's recirculation ports): they carry omni_bridge_t in
    // front of Ethernet. Programmed by the controller (bf-rt: the parser value set's entries).
    value_set<port_t>(TNA_RECIRCULATION_PORTS) recirculation_ports;

    state start {
        pkt.extract(ig_intr_md);
        // Per-port metadata (phase 0) is not used.
        pkt.advance(PORT_METADATA_SIZE);
        // NOTE: set here rather than in ingress, so that the controls' branches are the only writers of these
        // fields (two writes of a field in one path need two stages).
        meta.checksum_error = false;
        meta.drop_reason = 0;
        meta.outcome = OUTCOME_NONE;
        meta.to_announce = 0;
        meta.new_tensor = 0;
        meta.lane_op = LANE_NONE;
        transition select(ig_intr_md.ingress_port) {
            recirculation_ports: parse_bridge;
            default: parse_ethernet;
        }
    }

    state parse_bridge {
        pkt.extract(hdr.bridge);
        transition parse_ethernet;
    }

    state parse_ethernet {
        pkt.extract(hdr.ethernet);
        transition select(hdr.ethernet.ether_type) {
            ETHERTYPE_IPV4: parse_ipv4;
            default: accept;
        }
    }

    state parse_ipv4 {
        pkt.extract(hdr.ipv4);
        ipv4_checksum.add(hdr.ipv4);
        // NOTE: verify() is the checksum unit's error flag (true when the sum does not check), as bf-p4c's PSA
        // translation and switch.p4 use it, and it must be assigned directly.
        meta.checksum_error = ipv4_checksum.verify();
        // Only option-less IPv4 carries aggregation traffic; other IPv4 is just routed.
        transition select(hdr.ipv4.ihl, hdr.ipv4.protocol) {
            (5, IP_PROTO_UDP): parse_udp;
            default: accept;
        }
    }

    state parse_udp {
        pkt.extract(hdr.udp);
        transition select(hdr.udp.dst_port) {
            OMNI_UDP_PORT: parse_omni;
            default: accept;
        }
    }

    state parse_omni {
        pkt.extract(hdr.omni);
        // Lanes only when lane_count says they are there; ingress drops any other count with DROP_BAD_LANE_COUNT.
        transition select(hdr.omni.lane_count) {
            LANES: parse_lanes;
            default: accept;
        }
    }

    state parse_lanes {
        pkt.extract(hdr.lanes);
        transition accept;
    }
}

control IngressDeparser(packet_out pkt,
                        inout tna_headers_t hdr,
                        in ingress_metadata_t meta,
                        in ingress_intrinsic_metadata_for_deparser_t ig_dprsr_md) {
    apply {
        pkt.emit(hdr.bridge);
        pkt.emit(hdr.ethernet);
        pkt.emit(hdr.ipv4);
        pkt.emit(hdr.udp);
        pkt.emit(hdr.omni);
        pkt.emit(hdr.lanes);
    }
}

// Every packet reaching egress starts with the omni_bridge_t that ingress put there. The lanes are not parsed in
// egress: nothing there reads or writes them, and they follow the headers as payload.
parser EgressParser(packet_in pkt,
                    out tna_headers_t hdr,
                    out egress_metadata_t meta,
                    out egress_intrinsic_metadata_t eg_intr_md) {
    state start {
        pkt.extract(eg_intr_md);
        pkt.extract(hdr.bridge);
        // The announcement pass's running minima start with no lane in them (generated/worker_announcements.p4).
        meta.chain_0 = END_OF_TENSOR;
        meta.chain_1 = END_OF_TENSOR;
        meta.chain_2 = END_OF_TENSOR;
        meta.chain_3 = END_OF_TENSOR;
        meta.lane_0 = END_OF_TENSOR;
        meta.lane_1 = END_OF_TENSOR;
        meta.lane_2 = END_OF_TENSOR;
        meta.lane_3 = END_OF_TENSOR;
        transition parse_ethernet;
    }

    state parse_ethernet {
        pkt.extract(hdr.ethernet);
        transition select(hdr.ethernet.ether_type) {
            ETHERTYPE_IPV4: parse_ipv4;
            default: accept;
        }
    }

    state parse_ipv4 {
        pkt.extract(hdr.ipv4);
        transition select(hdr.ipv4.ihl, hdr.ipv4.protocol) {
            (5, IP_PROTO_UDP): parse_udp;
            default: accept;
        }
    }

    state parse_udp {
        pkt.extract(hdr.udp);
        transition select(hdr.udp.dst_port) {
            OMNI_UDP_PORT: parse_omni;
            default: accept;
        }
    }

    state parse_omni {
        pkt.extract(hdr.omni);
        transition select(hdr.omni.msg_type) {
            MSG_CONTRIB: parse_contribution;
            default: parse_request;
        }
    }

    // NOTE: each of these fields is written once on a path: a Tofino 1 parser ORs a second write into the first
    // (no clear-on-write), so a default set in `start` and overwritten here would not be replaced.
    // A CONTRIB replaces the sender's lane by its next_block if the lane holds its block_index.
    state parse_contribution {
        meta.accept_block = hdr.omni.block_index;
        meta.accept_next = hdr.omni.next_block;
        transition accept;
    }

    // A REQUEST compares and replaces the sender's lane with END_OF_TENSOR: nothing changes (announcements.p4).
    // (Packets without omni never take the announcement pass.)
    state parse_request {
        meta.accept_block = END_OF_TENSOR;
        meta.accept_next = END_OF_TENSOR;
        transition accept;
    }
}

control EgressDeparser(packet_out pkt,
                       inout tna_headers_t hdr,
                       in egress_metadata_t meta,
                       in egress_intrinsic_metadata_for_deparser_t eg_dprsr_md) {
    Checksum() ipv4_checksum;

    apply {
        if (hdr.ipv4.isValid()) {
            hdr.ipv4.hdr_checksum = ipv4_checksum.update({
                hdr.ipv4.version, hdr.ipv4.ihl, hdr.ipv4.dscp_ecn, hdr.ipv4.total_len,
                hdr.ipv4.identification, hdr.ipv4.flags, hdr.ipv4.frag_offset,
                hdr.ipv4.ttl, hdr.ipv4.protocol, hdr.ipv4.src_addr, hdr.ipv4.dst_addr });
        }
        // Valid only on the way from the announcement pass back into ingress.
        pkt.emit(hdr.bridge);
        pkt.emit(hdr.ethernet);
        pkt.emit(hdr.ipv4);
        pkt.emit(hdr.udp);
        pkt.emit(hdr.omni);
    }
}

#endif
