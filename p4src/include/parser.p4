/*
 * parser.p4: Ethernet / IPv4 / UDP / omni / lanes, and the deparser.
 *
 * NOTE: the parser never rejects. A frame too short for a header it needs ends with v1model's
 * standard_metadata.parser_error set (BMv2 then still runs ingress), and ingress drops it with
 * DROP_PARSER_ERROR, so that every malformed frame is counted.
 */
#ifndef OMNIREDUCE_PARSER_P4
#define OMNIREDUCE_PARSER_P4

#include "headers.p4"

parser OmniParser(packet_in packet,
                  out headers_t hdr,
                  inout local_metadata_t meta,
                  inout standard_metadata_t standard_metadata) {
    state start {
        packet.extract(hdr.ethernet);
        transition select(hdr.ethernet.ether_type) {
            ETHERTYPE_IPV4: parse_ipv4;
            default: accept;
        }
    }

    state parse_ipv4 {
        packet.extract(hdr.ipv4);
        // Only option-less IPv4 carries aggregation traffic; other IPv4 is just routed.
        transition select(hdr.ipv4.ihl, hdr.ipv4.protocol) {
            (5, IP_PROTO_UDP): parse_udp;
            default: accept;
        }
    }

    state parse_udp {
        packet.extract(hdr.udp);
        transition select(hdr.udp.dst_port) {
            OMNI_UDP_PORT: parse_omni;
            default: accept;
        }
    }

    state parse_omni {
        packet.extract(hdr.omni);
        // Lanes are parsed only when lane_count says they are there; any other count leaves them invalid and
        // ingress drops the packet with DROP_BAD_LANE_COUNT.
        transition select(hdr.omni.lane_count) {
            LANES: parse_lanes;
            default: accept;
        }
    }

    state parse_lanes {
        packet.extract(hdr.lanes);
        transition accept;
    }
}

control OmniDeparser(packet_out packet, in headers_t hdr) {
    apply {
        packet.emit(hdr.ethernet);
        packet.emit(hdr.ipv4);
        packet.emit(hdr.udp);
        packet.emit(hdr.omni);
        packet.emit(hdr.lanes);
    }
}

#endif
