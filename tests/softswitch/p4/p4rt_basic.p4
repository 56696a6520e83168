/*
 * Test program of the softswitch P4Runtime server (tests/softswitch/test_p4runtime*.py).
 *
 * It exists to give the server one object of every kind it serves, not to forward anything useful:
 * an exact table with a direct counter and a deliberately tiny size (to reach RESOURCE_EXHAUSTED),
 * an LPM table with a @defaultonly action, a ternary/range/optional table (priorities), a table whose
 * default action is const, an indexed counter and a register.
 *
 * Build: p4c-bm2-ss --arch v1model --std p4-16 --p4runtime-files build/p4rt_basic.p4info.txtpb \
 *            -o build/p4rt_basic.json p4rt_basic.p4
 */
#include <core.p4>
#include <v1model.p4>

const bit<16> ETHERTYPE_IPV4 = 0x0800;
const bit<8>  PROTO_TCP = 6;

header ethernet_t {
    bit<48> dst_addr;
    bit<48> src_addr;
    bit<16> ether_type;
}

header ipv4_t {
    bit<4>  version;
    bit<4>  ihl;
    bit<8>  diffserv;
    bit<16> total_len;
    bit<16> identification;
    bit<3>  flags;
    bit<13> frag_offset;
    bit<8>  ttl;
    bit<8>  protocol;
    bit<16> hdr_checksum;
    bit<32> src_addr;
    bit<32> dst_addr;
}

header tcp_t {
    bit<16> src_port;
    bit<16> dst_port;
    bit<32> seq_no;
    bit<32> ack_no;
    bit<4>  data_offset;
    bit<4>  res;
    bit<8>  flags;
    bit<16> window;
    bit<16> checksum;
    bit<16> urgent_ptr;
}

struct headers_t {
    ethernet_t ethernet;
    ipv4_t     ipv4;
    tcp_t      tcp;
}

struct metadata_t { }

parser MyParser(packet_in packet, out headers_t hdr, inout metadata_t meta,
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
        transition select(hdr.ipv4.protocol) {
            PROTO_TCP: parse_tcp;
            default: accept;
        }
    }
    state parse_tcp {
        packet.extract(hdr.tcp);
        transition accept;
    }
}

control MyVerifyChecksum(inout headers_t hdr, inout metadata_t meta) {
    apply { }
}

control MyIngress(inout headers_t hdr, inout metadata_t meta, inout standard_metadata_t standard_metadata) {
    direct_counter(CounterType.packets_and_bytes) exact_hits;
    counter(4, CounterType.packets_and_bytes) pkts;
    register<bit<32>>(8) slots;

    action fwd(bit<9> port) {
        standard_metadata.egress_spec = port;
    }

    action drop() {
        mark_to_drop(standard_metadata);
    }

    table exact_t {
        key = { hdr.ethernet.dst_addr: exact; }
        actions = { fwd; NoAction; }
        counters = exact_hits;
        // NOTE: tiny on purpose, so the tests can fill it.
        size = 4;
        default_action = NoAction();
    }

    table lpm_t {
        key = { hdr.ipv4.dst_addr: lpm; }
        actions = { fwd; drop; @defaultonly NoAction; }
        size = 64;
        default_action = NoAction();
    }

    table acl_t {
        key = {
            hdr.ipv4.src_addr: ternary;
            hdr.tcp.dst_port: range;
            hdr.ipv4.protocol: optional;
        }
        actions = { drop; NoAction; }
        size = 64;
        default_action = NoAction();
    }

    table const_default_t {
        key = { standard_metadata.ingress_port: exact; }
        actions = { drop; }
        size = 16;
        const default_action = drop();
    }

    apply {
        pkts.count((bit<32>) standard_metadata.ingress_port[1:0]);
        bit<32> seen;
        slots.read(seen, 0);
        slots.write(0, seen + 1);
        const_default_t.apply();
        exact_t.apply();
        if (hdr.ipv4.isValid()) {
            lpm_t.apply();
            acl_t.apply();
        }
    }
}

control MyEgress(inout headers_t hdr, inout metadata_t meta, inout standard_metadata_t standard_metadata) {
    apply { }
}

control MyComputeChecksum(inout headers_t hdr, inout metadata_t meta) {
    apply { }
}

control MyDeparser(packet_out packet, in headers_t hdr) {
    apply {
        packet.emit(hdr.ethernet);
        packet.emit(hdr.ipv4);
        packet.emit(hdr.tcp);
    }
}

V1Switch(MyParser(), MyVerifyChecksum(), MyIngress(), MyEgress(), MyComputeChecksum(), MyDeparser()) main;
