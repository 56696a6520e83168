/*
 * union_test.p4: header unions and a stack of unions on the softswitch (tests/softswitch/test_unions.py).
 *
 * A frame is ethernet (ether type 0x88BA), a selector byte, then an option that is a union of a 1-byte and
 * a 2-byte header (the selector's low bit picks which one the parser extracts), then a union stack of two
 * such options, each picked by the selector's bits 1 and 2. Ingress runs the command in the selector's high
 * nibble (make the other member valid, invalidate the valid one, copy the union, compare it) and prepends
 * a report: the union's validity and each member's, the stack's valid members, and a comparison.
 */
#include <core.p4>
#include <v1model.p4>

const bit<16> ETHERTYPE_UNION = 0x88BA;

header ethernet_t { bit<48> dst; bit<48> src; bit<16> ether_type; }
header selector_t { bit<4> op; bit<1> pad; bit<1> second; bit<1> first; bit<1> short_option; }
header byte_t     { bit<8> value; }
header short_t    { bit<16> value; }
header_union option_t { byte_t byte; short_t short; }
// valid: bit 0 option, 1 option.byte, 2 option.short, 3 copy, 4 copy.byte, 5 copy.short;
// stack: bit 0 options[0].byte, 1 options[0].short, 2 options[1].byte, 3 options[1].short; equal: copy == option
header report_t   { bit<8> valid; bit<8> stack; bit<8> equal; }

struct headers_t {
    report_t    report;
    ethernet_t  ethernet;
    selector_t  selector;
    option_t    option;
    option_t[2] options;
    option_t    copy;
}

struct meta_t { }

parser TestParser(packet_in pkt, out headers_t hdr, inout meta_t meta, inout standard_metadata_t sm) {
    state start {
        pkt.extract(hdr.ethernet);
        transition select(hdr.ethernet.ether_type) {
            ETHERTYPE_UNION: parse_selector;
            default: accept;
        }
    }
    state parse_selector {
        pkt.extract(hdr.selector);
        transition select(hdr.selector.short_option) {
            0: parse_byte;
            1: parse_short;
        }
    }
    state parse_byte {
        pkt.extract(hdr.option.byte);
        transition parse_first;
    }
    state parse_short {
        pkt.extract(hdr.option.short);
        transition parse_first;
    }
    state parse_first {
        transition select(hdr.selector.first) {
            0: first_byte;
            1: first_short;
        }
    }
    state first_byte {
        pkt.extract(hdr.options.next.byte);
        transition parse_second;
    }
    state first_short {
        pkt.extract(hdr.options.next.short);
        transition parse_second;
    }
    state parse_second {
        transition select(hdr.selector.second) {
            0: second_byte;
            1: second_short;
        }
    }
    state second_byte {
        pkt.extract(hdr.options.next.byte);
        transition accept;
    }
    state second_short {
        pkt.extract(hdr.options.next.short);
        transition accept;
    }
}

control TestVerifyChecksum(inout headers_t hdr, inout meta_t meta) { apply { } }

control TestIngress(inout headers_t hdr, inout meta_t meta, inout standard_metadata_t sm) {
    apply {
        sm.egress_spec = sm.ingress_port;
        hdr.report.setValid();
        if (hdr.selector.isValid()) {
            bit<4> op = hdr.selector.op;
            if (op == 1) {
                // Making the other member valid invalidates the one the parser extracted.
                if (hdr.option.byte.isValid()) {
                    hdr.option.short.setValid();
                    hdr.option.short.value = 0xABCD;
                } else {
                    hdr.option.byte.setValid();
                    hdr.option.byte.value = 0xEF;
                }
            } else if (op == 2) {
                hdr.option.byte.setInvalid();
                hdr.option.short.setInvalid();
            } else if (op == 3) {
                hdr.copy = hdr.option;
            } else if (op == 4) {
                hdr.copy = hdr.options[1];
            } else if (op == 5) {
                hdr.options[0].short.setValid();
                hdr.options[0].short.value = 0x1234;
            }
        }
        hdr.report.valid = (hdr.option.isValid() ? 8w1 : 8w0)
                         | (hdr.option.byte.isValid() ? 8w2 : 8w0)
                         | (hdr.option.short.isValid() ? 8w4 : 8w0)
                         | (hdr.copy.isValid() ? 8w8 : 8w0)
                         | (hdr.copy.byte.isValid() ? 8w16 : 8w0)
                         | (hdr.copy.short.isValid() ? 8w32 : 8w0);
        hdr.report.stack = (hdr.options[0].byte.isValid() ? 8w1 : 8w0)
                         | (hdr.options[0].short.isValid() ? 8w2 : 8w0)
                         | (hdr.options[1].byte.isValid() ? 8w4 : 8w0)
                         | (hdr.options[1].short.isValid() ? 8w8 : 8w0);
        hdr.report.equal = hdr.copy.byte.isValid() && hdr.option.byte.isValid()
                           && hdr.copy.byte.value == hdr.option.byte.value ? 8w1 : 8w0;
    }
}

control TestEgress(inout headers_t hdr, inout meta_t meta, inout standard_metadata_t sm) { apply { } }

control TestComputeChecksum(inout headers_t hdr, inout meta_t meta) { apply { } }

control TestDeparser(packet_out pkt, in headers_t hdr) {
    apply {
        pkt.emit(hdr.report);
        pkt.emit(hdr.ethernet);
        pkt.emit(hdr.selector);
        pkt.emit(hdr.option);
        pkt.emit(hdr.options);
        pkt.emit(hdr.copy);
    }
}

V1Switch(TestParser(), TestVerifyChecksum(), TestIngress(), TestEgress(), TestComputeChecksum(), TestDeparser()) main;
