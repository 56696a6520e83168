/*
 * p4info_edge_test.p4: a program whose P4Info and JSON differ the way p4c makes them differ, which BMv2
 * accepts (tests/softswitch/test_p4info_edges.py):
 * - `errors` is keyed on a field of type error: its P4Info match field has no bitwidth (P4Runtime translates
 *   the type);
 * - `unused` is keyless and applied in a switch nested in an if whose condition p4c folds to false: p4c
 *   removes the table from the JSON, and `never_run`, which only it runs, but keeps both in the P4Info;
 * - `prefixes` has a const LPM entry written with bits past its prefix (0x11 &&& 0xF0 is 0x10/4).
 * A frame is ethernet (ether type 0x88BC) and one probe header; ingress reports which entries it hit.
 */
#include <core.p4>
#include <v1model.p4>

header ethernet_t { bit<48> dst; bit<48> src; bit<16> ether_type; }
header probe_t    { bit<8> prefix_key; bit<8> prefix_hit; bit<8> error_hit; bit<8> branch; }

struct headers_t {
    ethernet_t ethernet;
    probe_t    probe;
}

struct meta_t { error parse_status; }

parser TestParser(packet_in pkt, out headers_t hdr, inout meta_t meta, inout standard_metadata_t sm) {
    state start {
        pkt.extract(hdr.ethernet);
        transition select(hdr.ethernet.ether_type) {
            0x88BC: parse_probe;
            default: accept;
        }
    }
    state parse_probe {
        pkt.extract(hdr.probe);
        transition accept;
    }
}

control TestVerifyChecksum(inout headers_t hdr, inout meta_t meta) { apply { } }

control TestIngress(inout headers_t hdr, inout meta_t meta, inout standard_metadata_t sm) {
    action prefix_hit(bit<8> id) { hdr.probe.prefix_hit = id; }
    action error_hit(bit<8> id) { hdr.probe.error_hit = id; }
    action never_run() { hdr.probe.branch = 0xEE; }

    table prefixes {
        key = { hdr.probe.prefix_key : lpm; }
        actions = { prefix_hit; }
        const entries = {
            0x11 &&& 0xF0 : prefix_hit(1);
            0x22          : prefix_hit(2);
            _             : prefix_hit(3);
        }
    }
    table errors {
        key = { meta.parse_status : exact; }
        actions = { error_hit; NoAction; }
        default_action = NoAction();
    }
    table unused {
        key = { }
        actions = { never_run; }
    }
    apply {
        sm.egress_spec = sm.ingress_port;
        if (!hdr.probe.isValid()) {
            return;
        }
        meta.parse_status = sm.parser_error;
        prefixes.apply();
        errors.apply();
        bit<16> limit = 2;
        if (limit <= 5) {
            hdr.probe.branch = 0xA0;
        } else {
            switch (unused.apply().action_run) {
                default: {
                    hdr.probe.branch = 0xB0;
                }
            }
        }
    }
}

control TestEgress(inout headers_t hdr, inout meta_t meta, inout standard_metadata_t sm) { apply { } }

control TestComputeChecksum(inout headers_t hdr, inout meta_t meta) { apply { } }

control TestDeparser(packet_out pkt, in headers_t hdr) {
    apply {
        pkt.emit(hdr.ethernet);
        pkt.emit(hdr.probe);
    }
}

V1Switch(TestParser(), TestVerifyChecksum(), TestIngress(), TestEgress(), TestComputeChecksum(), TestDeparser()) main;
