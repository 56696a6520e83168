/*
 * parser_test.p4: exercises the softswitch parser (tests/softswitch/test_parser.py).
 *
 * The parser covers select on a field with exact, masked and default cases, a two-field select key with a
 * lookahead, verify() with a program error, advance(), a select without default (p4c's NoMatch state) and
 * truncated input. Ingress reflects the packet to its ingress port and prepends a `report` header that says
 * which parser error, checksum error and headers it saw, so tests read the parser's outcome from the bytes.
 */
#include <core.p4>
#include <v1model.p4>

const bit<16> ETHERTYPE_IPV4 = 0x0800;
const bit<8>  IP_PROTO_UDP   = 17;

error { BadTag }

header ethernet_t { bit<48> dst; bit<48> src; bit<16> ether_type; }
header tag_t      { bit<8> kind; bit<8> len; }
header big_t      { bit<32> a; bit<32> b; }
header ipv4_t {
    bit<4>  version; bit<4> ihl; bit<8> dscp_ecn; bit<16> total_len;
    bit<16> identification; bit<3> flags; bit<13> frag_offset;
    bit<8>  ttl; bit<8> protocol; bit<16> checksum;
    bit<32> src; bit<32> dst;
}
header udp_t      { bit<16> sport; bit<16> dport; bit<16> length; bit<16> checksum; }
// What the parser saw: error code (see ingress), checksum error, one bit per valid header, parse path.
header report_t   { bit<8> error_code; bit<8> checksum_error; bit<8> valid_mask; bit<8> path; }

struct headers_t {
    report_t   report;
    ethernet_t ethernet;
    tag_t      tag;
    big_t      big;
    ipv4_t     ipv4;
    udp_t      udp;
}

struct meta_t { bit<8> path; }

parser TestParser(packet_in pkt, out headers_t hdr, inout meta_t meta, inout standard_metadata_t sm) {
    state start {
        pkt.extract(hdr.ethernet);
        transition select(hdr.ethernet.ether_type) {
            ETHERTYPE_IPV4: parse_ipv4;
            0x8800 &&& 0xff00: parse_tag;  // any 0x88xx ether type
            default: accept;
        }
    }
    state parse_tag {
        pkt.extract(hdr.tag);
        meta.path = 1;
        transition select(hdr.tag.kind, pkt.lookahead<bit<8>>()) {
            (1, _): parse_big;
            (2, 0xAA): skip_then_ipv4;
            default: accept;
        }
    }
    state parse_big {
        pkt.extract(hdr.big);
        meta.path = 2;
        verify(hdr.big.a != 0, error.BadTag);
        transition accept;
    }
    state skip_then_ipv4 {
        pkt.advance(16);
        meta.path = 3;
        transition parse_ipv4;
    }
    state parse_ipv4 {
        pkt.extract(hdr.ipv4);
        transition select(hdr.ipv4.protocol) {
            IP_PROTO_UDP: parse_udp;
        }
    }
    state parse_udp {
        pkt.extract(hdr.udp);
        transition accept;
    }
}

control TestVerifyChecksum(inout headers_t hdr, inout meta_t meta) {
    apply {
        verify_checksum(hdr.ipv4.isValid(),
            { hdr.ipv4.version, hdr.ipv4.ihl, hdr.ipv4.dscp_ecn, hdr.ipv4.total_len,
              hdr.ipv4.identification, hdr.ipv4.flags, hdr.ipv4.frag_offset,
              hdr.ipv4.ttl, hdr.ipv4.protocol, hdr.ipv4.src, hdr.ipv4.dst },
            hdr.ipv4.checksum, HashAlgorithm.csum16);
    }
}

control TestIngress(inout headers_t hdr, inout meta_t meta, inout standard_metadata_t sm) {
    apply {
        sm.egress_spec = sm.ingress_port;
        hdr.report.setValid();
        // An `error` cannot be cast to bits; map it explicitly.
        if (sm.parser_error == error.NoError) {
            hdr.report.error_code = 0;
        } else if (sm.parser_error == error.PacketTooShort) {
            hdr.report.error_code = 1;
        } else if (sm.parser_error == error.NoMatch) {
            hdr.report.error_code = 2;
        } else if (sm.parser_error == error.BadTag) {
            hdr.report.error_code = 3;
        } else {
            hdr.report.error_code = 0xFF;
        }
        hdr.report.checksum_error = (bit<8>)sm.checksum_error;
        hdr.report.valid_mask = (hdr.ethernet.isValid() ? 8w1 : 8w0)
                              | (hdr.tag.isValid() ? 8w2 : 8w0)
                              | (hdr.big.isValid() ? 8w4 : 8w0)
                              | (hdr.ipv4.isValid() ? 8w8 : 8w0)
                              | (hdr.udp.isValid() ? 8w16 : 8w0);
        hdr.report.path = meta.path;
    }
}

control TestEgress(inout headers_t hdr, inout meta_t meta, inout standard_metadata_t sm) {
    apply { }
}

control TestComputeChecksum(inout headers_t hdr, inout meta_t meta) {
    apply { }
}

control TestDeparser(packet_out pkt, in headers_t hdr) {
    apply {
        pkt.emit(hdr.report);
        pkt.emit(hdr.ethernet);
        pkt.emit(hdr.tag);
        pkt.emit(hdr.big);
        pkt.emit(hdr.ipv4);
        pkt.emit(hdr.udp);
    }
}

V1Switch(TestParser(), TestVerifyChecksum(), TestIngress(), TestEgress(), TestComputeChecksum(), TestDeparser()) main;
