/*
 * log_test.p4: log_msg, assert and assume as BMv2 runs them (tests/softswitch/test_log_assert.py).
 *
 * Every `log` frame logs a few messages whose formats exercise BMv2's expansion (values of different widths and
 * signedness, `{x}` placeholders, escaped braces, no values at all), then is reflected to its ingress port.
 * `flags` bit 0 fails an assert, bit 1 fails an assume: BMv2 aborts the process there, the softswitch drops the
 * packet and counts it. Formats that make BMv2 exit (a `{` in the first character, `{}{}`, too few values) are
 * not in this program, because BMv2 could then run nothing else: the tests build them from its JSON instead.
 */
#include <core.p4>
#include <v1model.p4>

const bit<16> ETHERTYPE_LOG = 0x88BC;

header ethernet_t { bit<48> dst; bit<48> src; bit<16> ether_type; }
header log_t {
    bit<8>  flags;
    bit<8>  a8;
    bit<16> b16;
    bit<32> c32;
    bit<64> d64;
    int<8>  s8;
}

struct headers_t { ethernet_t ethernet; log_t log; }
struct meta_t { bit<8> unused; }

parser LogParser(packet_in pkt, out headers_t hdr, inout meta_t meta, inout standard_metadata_t sm) {
    state start {
        pkt.extract(hdr.ethernet);
        transition select(hdr.ethernet.ether_type) {
            ETHERTYPE_LOG: parse_log;
            default: accept;
        }
    }
    state parse_log {
        pkt.extract(hdr.log);
        transition accept;
    }
}

control LogVerifyChecksum(inout headers_t hdr, inout meta_t meta) { apply { } }

control LogIngress(inout headers_t hdr, inout meta_t meta, inout standard_metadata_t sm) {
    apply {
        sm.egress_spec = sm.ingress_port;
        if (hdr.log.isValid()) {
            log_msg("lt plain message");
            log_msg("lt a8={} b16={} c32={}", {hdr.log.a8, hdr.log.b16, hdr.log.c32});
            log_msg("lt d64={} s8={} port={}", {hdr.log.d64, hdr.log.s8, sm.ingress_port});
            log_msg("lt named {a} and {b}", {hdr.log.a8, hdr.log.s8});
            log_msg("lt escaped \\{ {} \\} end", {hdr.log.b16});
            log_msg("lt sum={}", {hdr.log.a8 + 1});
            assert(hdr.log.flags & 1 == 0);
            assume(hdr.log.flags & 2 == 0);
            log_msg("lt after the checks");
        }
    }
}

control LogEgress(inout headers_t hdr, inout meta_t meta, inout standard_metadata_t sm) { apply { } }
control LogComputeChecksum(inout headers_t hdr, inout meta_t meta) { apply { } }

control LogDeparser(packet_out pkt, in headers_t hdr) {
    apply {
        pkt.emit(hdr.ethernet);
        pkt.emit(hdr.log);
    }
}

V1Switch(LogParser(), LogVerifyChecksum(), LogIngress(), LogEgress(), LogComputeChecksum(), LogDeparser()) main;
