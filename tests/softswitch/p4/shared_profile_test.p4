/*
 * shared_profile_test.p4: one action selector implementing two tables (tests/softswitch/test_action_profiles.py).
 *
 * t_first (ternary on `key`) and t_second (exact on `port`) share the selector `sel`: its members and groups serve
 * both. p4c gives each table its own copy of every action (under its own id); BMv2 then runs a member's action
 * under the id of one copy and aborts (std::out_of_range) when a packet hits the other table. The softswitch runs
 * both. r_first / r_second take the value of the member that ran in each table.
 */
#include <core.p4>
#include <v1model.p4>

const bit<16> ETHERTYPE_PROBE = 0x88BD;

header ethernet_t { bit<48> dst; bit<48> src; bit<16> ether_type; }
header probe_t { bit<8> key; bit<16> port; bit<8> in_first; bit<8> r_first; bit<8> r_second; }

struct headers_t { ethernet_t ethernet; probe_t probe; }
struct meta_t { bit<8> unused; }

parser SharedParser(packet_in pkt, out headers_t hdr, inout meta_t meta, inout standard_metadata_t sm) {
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

control SharedVerifyChecksum(inout headers_t hdr, inout meta_t meta) { apply { } }

control SharedIngress(inout headers_t hdr, inout meta_t meta, inout standard_metadata_t sm) {
    action_selector(HashAlgorithm.crc32, 16, 32) sel;

    action set(bit<8> v) {
        if (hdr.probe.in_first == 1) { hdr.probe.r_first = v; } else { hdr.probe.r_second = v; }
    }

    table t_first {
        key = { hdr.probe.key: ternary; hdr.probe.port: selector; }
        actions = { set; NoAction; }
        implementation = sel;
    }
    table t_second {
        key = { hdr.probe.port: exact; hdr.probe.port: selector; }
        actions = { set; NoAction; }
        implementation = sel;
    }

    apply {
        sm.egress_spec = sm.ingress_port;
        if (hdr.probe.isValid()) {
            hdr.probe.in_first = 1;
            t_first.apply();
            hdr.probe.in_first = 0;
            t_second.apply();
        }
    }
}

control SharedEgress(inout headers_t hdr, inout meta_t meta, inout standard_metadata_t sm) { apply { } }
control SharedComputeChecksum(inout headers_t hdr, inout meta_t meta) { apply { } }

control SharedDeparser(packet_out pkt, in headers_t hdr) {
    apply {
        pkt.emit(hdr.ethernet);
        pkt.emit(hdr.probe);
    }
}

V1Switch(SharedParser(), SharedVerifyChecksum(), SharedIngress(), SharedEgress(), SharedComputeChecksum(),
         SharedDeparser()) main;
