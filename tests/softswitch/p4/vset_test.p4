/*
 * vset_test.p4: parser value sets (tests/softswitch/test_value_sets.py).
 *
 * Three value sets, each selected on in its own parse state, record in meta.r which states the parser went
 * through; ingress writes meta.r into the probe and reflects the packet, so a test reads the parser's path from
 * the output bytes:
 *   ether_types  one 16-bit field (EtherTypes that lead to the probe besides 0x88BB)        r |= 0x10
 *   pairs        two fields of 8 and 16 bits, after a constant case that comes first        r |= 0x01 (0x02 const)
 *   masked       one 8-bit field whose P4Info match kind is ternary (p4c-bm2-ss warns that BMv2 only takes exact
 *                values; the softswitch honours the kind the control plane gives)           r |= 0x04
 */
#include <core.p4>
#include <v1model.p4>

const bit<16> ETHERTYPE_PROBE = 0x88BB;

header ethernet_t { bit<48> dst; bit<48> src; bit<16> ether_type; }
header probe_t { bit<8> a; bit<16> b; bit<8> c; bit<8> r; }

struct headers_t { ethernet_t ethernet; probe_t probe; }
struct pair_t { bit<8> a; bit<16> b; }
struct masked_t { @match(ternary) bit<8> c; }
struct meta_t { bit<8> r; }

parser VsetParser(packet_in pkt, out headers_t hdr, inout meta_t meta, inout standard_metadata_t sm) {
    value_set<bit<16>>(4) ether_types;
    value_set<pair_t>(8) pairs;
    value_set<masked_t>(4) masked;

    state start {
        pkt.extract(hdr.ethernet);
        transition select(hdr.ethernet.ether_type) {
            ETHERTYPE_PROBE: parse_probe;
            ether_types: via_set;
            default: accept;
        }
    }
    state via_set {
        meta.r = 0x10;
        transition parse_probe;
    }
    state parse_probe {
        pkt.extract(hdr.probe);
        transition select(hdr.probe.a, hdr.probe.b) {
            (0xFF, 0xFFFF): const_pair;   // a constant case before the value set: it wins
            pairs: in_pairs;
            default: check_c;
        }
    }
    state const_pair {
        meta.r = meta.r | 0x02;
        transition check_c;
    }
    state in_pairs {
        meta.r = meta.r | 0x01;
        transition check_c;
    }
    state check_c {
        transition select(hdr.probe.c) {
            masked: in_masked;
            default: accept;
        }
    }
    state in_masked {
        meta.r = meta.r | 0x04;
        transition accept;
    }
}

control VsetVerifyChecksum(inout headers_t hdr, inout meta_t meta) { apply { } }

control VsetIngress(inout headers_t hdr, inout meta_t meta, inout standard_metadata_t sm) {
    apply {
        sm.egress_spec = sm.ingress_port;
        if (hdr.probe.isValid()) {
            hdr.probe.r = meta.r;
        }
    }
}

control VsetEgress(inout headers_t hdr, inout meta_t meta, inout standard_metadata_t sm) { apply { } }
control VsetComputeChecksum(inout headers_t hdr, inout meta_t meta) { apply { } }

control VsetDeparser(packet_out pkt, in headers_t hdr) {
    apply {
        pkt.emit(hdr.ethernet);
        pkt.emit(hdr.probe);
    }
}

V1Switch(VsetParser(), VsetVerifyChecksum(), VsetIngress(), VsetEgress(), VsetComputeChecksum(), VsetDeparser()) main;
