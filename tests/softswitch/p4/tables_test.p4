/*
 * tables_test.p4: exercises softswitch match tables (tests/softswitch/test_tables.py).
 *
 * A `probe` header after Ethernet carries lookup keys; each table writes its result into the probe, and the
 * packet is reflected to its ingress port, so tests read every lookup's outcome from the output bytes.
 * Covers exact (with a direct counter), lpm, ternary (priorities), range, optional, const entries (exact and
 * ternary), default actions, `.hit`, `switch (.action_run)`, an indirect counter and mark_to_drop.
 */
#include <core.p4>
#include <v1model.p4>

const bit<16> ETHERTYPE_PROBE = 0x88B6;

header ethernet_t { bit<48> dst; bit<48> src; bit<16> ether_type; }
header probe_t {
    // keys
    bit<32> addr;
    bit<16> port;
    bit<8>  proto;
    bit<8>  kind;
    bit<8>  opt;
    // results
    bit<8>  r_exact;
    bit<8>  r_lpm;
    bit<8>  r_tern;
    bit<8>  r_range;
    bit<8>  r_opt;
    bit<8>  r_const;
    bit<8>  r_const_tern;
    bit<8>  r_hit;
    bit<8>  r_switch;
    bit<32> r_param;
}

struct headers_t { ethernet_t ethernet; probe_t probe; }
struct meta_t { bit<8> unused; }

parser TestParser(packet_in pkt, out headers_t hdr, inout meta_t meta, inout standard_metadata_t sm) {
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

control TestVerifyChecksum(inout headers_t hdr, inout meta_t meta) { apply { } }

control TestIngress(inout headers_t hdr, inout meta_t meta, inout standard_metadata_t sm) {
    direct_counter(CounterType.packets_and_bytes) exact_hits;
    counter(16, CounterType.packets_and_bytes) kind_seen;

    action drop() { mark_to_drop(sm); }
    action set_exact(bit<8> v) { hdr.probe.r_exact = v; exact_hits.count(); }
    action set_exact_drop() { exact_hits.count(); mark_to_drop(sm); }
    action set_lpm(bit<8> v, bit<32> p) { hdr.probe.r_lpm = v; hdr.probe.r_param = p; }
    action set_tern(bit<8> v) { hdr.probe.r_tern = v; }
    action set_range(bit<8> v) { hdr.probe.r_range = v; }
    action set_opt(bit<8> v) { hdr.probe.r_opt = v; }
    action set_const(bit<8> v) { hdr.probe.r_const = v; }
    action set_const_tern(bit<8> v) { hdr.probe.r_const_tern = v; }
    action first() { }
    action second() { }

    table t_exact {
        key = { hdr.probe.kind: exact; hdr.ethernet.src: exact; }
        actions = { set_exact; set_exact_drop; NoAction; }
        default_action = NoAction();
        counters = exact_hits;
        size = 64;
    }
    table t_lpm {
        key = { hdr.probe.addr: lpm; }
        actions = { set_lpm; }
        default_action = set_lpm(0xDD, 0);
    }
    table t_tern {
        key = { hdr.probe.proto: ternary; hdr.probe.addr: ternary; }
        actions = { set_tern; NoAction; }
        default_action = NoAction();
    }
    table t_range {
        key = { hdr.probe.port: range; }
        actions = { set_range; NoAction; }
        default_action = NoAction();
    }
    table t_opt {
        key = { hdr.probe.opt: optional; hdr.probe.kind: exact; }
        actions = { set_opt; NoAction; }
        default_action = NoAction();
    }
    table t_const {
        key = { hdr.probe.kind: exact; }
        actions = { set_const; }
        const entries = {
            1 : set_const(11);
            2 : set_const(22);
        }
        const default_action = set_const(0xCC);
    }
    table t_const_tern {
        key = { hdr.probe.proto: ternary; }
        actions = { set_const_tern; }
        // Earlier entries win: 0x11 matches both and must get 1.
        const entries = {
            0x10 &&& 0xF0 : set_const_tern(1);
            0x11          : set_const_tern(2);
            _             : set_const_tern(3);
        }
    }
    table t_hit {
        key = { hdr.probe.kind: exact; }
        actions = { NoAction; }
        default_action = NoAction();
    }
    table t_switch {
        key = { hdr.probe.opt: exact; }
        actions = { first; second; NoAction; }
        default_action = NoAction();
    }

    apply {
        sm.egress_spec = sm.ingress_port;
        if (!hdr.probe.isValid()) {
            drop();
            exit;
        }
        kind_seen.count((bit<32>)hdr.probe.kind);
        t_exact.apply();
        t_lpm.apply();
        t_tern.apply();
        t_range.apply();
        t_opt.apply();
        t_const.apply();
        t_const_tern.apply();
        if (t_hit.apply().hit) {
            hdr.probe.r_hit = 1;
        } else {
            hdr.probe.r_hit = 2;
        }
        switch (t_switch.apply().action_run) {
            first: { hdr.probe.r_switch = 1; }
            second: { hdr.probe.r_switch = 2; }
            default: { hdr.probe.r_switch = 3; }
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
