/*
 * selector_test.p4: action profiles and action selectors (tests/softswitch/test_action_profiles.py).
 *
 * A `probe` header carries the keys in and the results out, and the packet is reflected to its ingress port:
 *   t_prof  (action profile `prof`)      exact on `key`          writes r_prof and r_param
 *   t_sel   (action selector `sel`)      ternary on `key`, with `flow` and `port` as selector fields (crc16 of
 *                                        the two picks a group's member)           writes r_sel (set_sel) or
 *                                                                                  r_sel2 (set_sel2)
 *   t_after                              keyless, runs only when t_sel ran set_sel2: r_after = 1
 * The results start at 0; a table that misses (or hits an empty group) leaves its result alone.
 * (Tables sharing one profile are in shared_profile_test.p4: BMv2 aborts on them.)
 */
#include <core.p4>
#include <v1model.p4>

const bit<16> ETHERTYPE_PROBE = 0x88B9;

header ethernet_t { bit<48> dst; bit<48> src; bit<16> ether_type; }
header probe_t {
    bit<8>  key;
    bit<32> flow;
    bit<16> port;
    bit<8>  r_prof;
    bit<8>  r_sel;
    bit<8>  r_sel2;
    bit<8>  r_after;
    bit<16> r_param;
}

struct headers_t { ethernet_t ethernet; probe_t probe; }
struct meta_t { bit<8> unused; }

parser SelParser(packet_in pkt, out headers_t hdr, inout meta_t meta, inout standard_metadata_t sm) {
    state start {
        pkt.extract(hdr.ethernet);
        transition select(hdr.ethernet.ether_type) {
            ETHERTYPE_PROBE: parse_probe;
            default: accept;
        }
    }
    state parse_probe {
        pkt.extract(hdr.probe);
        transition accept;
    }
}

control SelVerifyChecksum(inout headers_t hdr, inout meta_t meta) { apply { } }

control SelIngress(inout headers_t hdr, inout meta_t meta, inout standard_metadata_t sm) {
    action_profile(32) prof;
    // 32 members; the third argument is the hash's output width, which BMv2 ignores (it keeps the whole hash).
    action_selector(HashAlgorithm.crc16, 32, 16) sel;

    action set_prof(bit<8> v, bit<16> p) { hdr.probe.r_prof = v; hdr.probe.r_param = p; }
    action set_sel(bit<8> v) { hdr.probe.r_sel = v; }
    action set_sel2(bit<8> v) { hdr.probe.r_sel2 = v; }

    table t_prof {
        key = { hdr.probe.key: exact; }
        actions = { set_prof; NoAction; }
        implementation = prof;
    }
    table t_sel {
        key = { hdr.probe.key: ternary; hdr.probe.flow: selector; hdr.probe.port: selector; }
        actions = { set_sel; set_sel2; NoAction; }
        implementation = sel;
    }
    action after() { hdr.probe.r_after = 1; }
    table t_after {
        actions = { after; }
        const default_action = after();
    }

    apply {
        sm.egress_spec = sm.ingress_port;
        if (hdr.probe.isValid()) {
            t_prof.apply();
            switch (t_sel.apply().action_run) {
                set_sel2: { t_after.apply(); }
            }
        }
    }
}

control SelEgress(inout headers_t hdr, inout meta_t meta, inout standard_metadata_t sm) { apply { } }
control SelComputeChecksum(inout headers_t hdr, inout meta_t meta) { apply { } }

control SelDeparser(packet_out pkt, in headers_t hdr) {
    apply {
        pkt.emit(hdr.ethernet);
        pkt.emit(hdr.probe);
    }
}

V1Switch(SelParser(), SelVerifyChecksum(), SelIngress(), SelEgress(), SelComputeChecksum(), SelDeparser()) main;
