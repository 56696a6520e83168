/*
 * meter_test.p4: meters (tests/softswitch/test_meters.py).
 *
 * A `probe` header carries a meter index and a table key in, and three colors out (0 GREEN, 1 YELLOW, 2 RED),
 * then the packet is reflected to its ingress port:
 *   c_pkts    pkt_meter[index], an indirect meter counting packets
 *   c_bytes   byte_meter[index], an indirect meter counting bytes (the packet's length as received)
 *   c_direct  the direct meter of table `flows` for the entry hit by `key`: BMv2 executes it on a hit, before the
 *             action, and writes the color to meta.direct_color; a miss leaves the 0xEE put there beforehand
 * An index past the end (8 or more) leaves c_pkts and c_bytes as they came in.
 */
#include <core.p4>
#include <v1model.p4>

const bit<16> ETHERTYPE_PROBE = 0x88B8;

header ethernet_t { bit<48> dst; bit<48> src; bit<16> ether_type; }
header probe_t {
    bit<32> index;
    bit<8>  key;
    bit<8>  c_pkts;
    bit<8>  c_bytes;
    bit<8>  c_direct;
}

struct headers_t { ethernet_t ethernet; probe_t probe; }
struct meta_t { bit<8> direct_color; }

parser MeterParser(packet_in pkt, out headers_t hdr, inout meta_t meta, inout standard_metadata_t sm) {
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

control MeterVerifyChecksum(inout headers_t hdr, inout meta_t meta) { apply { } }

control MeterIngress(inout headers_t hdr, inout meta_t meta, inout standard_metadata_t sm) {
    meter(8, MeterType.packets) pkt_meter;
    meter(8, MeterType.bytes) byte_meter;
    direct_meter<bit<8>>(MeterType.packets) flow_meter;

    action metered() { flow_meter.read(meta.direct_color); }

    table flows {
        key = { hdr.probe.key: exact; }
        actions = { metered; NoAction; }
        meters = flow_meter;
        default_action = NoAction();
        size = 16;
    }

    apply {
        sm.egress_spec = sm.ingress_port;
        if (hdr.probe.isValid()) {
            pkt_meter.execute_meter(hdr.probe.index, hdr.probe.c_pkts);
            byte_meter.execute_meter(hdr.probe.index, hdr.probe.c_bytes);
            meta.direct_color = 0xEE;
            flows.apply();
            hdr.probe.c_direct = meta.direct_color;
        }
    }
}

control MeterEgress(inout headers_t hdr, inout meta_t meta, inout standard_metadata_t sm) { apply { } }
control MeterComputeChecksum(inout headers_t hdr, inout meta_t meta) { apply { } }

control MeterDeparser(packet_out pkt, in headers_t hdr) {
    apply {
        pkt.emit(hdr.ethernet);
        pkt.emit(hdr.probe);
    }
}

V1Switch(MeterParser(), MeterVerifyChecksum(), MeterIngress(), MeterEgress(), MeterComputeChecksum(),
         MeterDeparser()) main;
