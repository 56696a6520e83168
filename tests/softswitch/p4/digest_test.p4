/*
 * digest_test.p4: digests (tests/softswitch/test_digests.py).
 *
 * `learn` bit 0 sends a mac_learn_t digest (Ethernet source, ingress port, a 4-bit nibble: fields of 48, 9 and 4
 * bits), bit 1 a tag_t digest (a 16-bit tag and a constant). BMv2 sends one digest per packet, the last one
 * asked for (bits 0 and 1 together send only tag_t), with its fields as they are at the end of ingress; p4c copies
 * a digest's data into temporaries at the call, so bit 2, which changes the nibble after the call, changes nothing
 * in the digest. Every packet is reflected, its tag incremented.
 */
#include <core.p4>
#include <v1model.p4>

const bit<16> ETHERTYPE_PROBE = 0x88BA;

header ethernet_t { bit<48> dst; bit<48> src; bit<16> ether_type; }
header probe_t { bit<8> learn; bit<4> nibble; bit<4> pad; bit<16> tag; }

struct headers_t { ethernet_t ethernet; probe_t probe; }
struct mac_learn_t { bit<48> src; bit<9> port; bit<4> nibble; }
// bit<8>, not int<8>: simple_switch_grpc (PI) cannot import a P4Info whose digest has an int<W> member.
struct tag_t { bit<16> tag; bit<8> delta; }
struct meta_t { mac_learn_t learned; }

parser DigestParser(packet_in pkt, out headers_t hdr, inout meta_t meta, inout standard_metadata_t sm) {
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

control DigestVerifyChecksum(inout headers_t hdr, inout meta_t meta) { apply { } }

control DigestIngress(inout headers_t hdr, inout meta_t meta, inout standard_metadata_t sm) {
    apply {
        sm.egress_spec = sm.ingress_port;
        if (hdr.probe.isValid()) {
            if (hdr.probe.learn & 1 == 1) {
                meta.learned.src = hdr.ethernet.src;
                meta.learned.port = sm.ingress_port;
                meta.learned.nibble = hdr.probe.nibble;
                digest<mac_learn_t>(1, meta.learned);
            }
            if (hdr.probe.learn & 2 == 2) {
                digest<tag_t>(1, {hdr.probe.tag, 8w0xFD});
            }
            if (hdr.probe.learn & 4 == 4) {
                meta.learned.nibble = 0xF;   // after the call: the digest carries the value at the end of ingress
            }
            hdr.probe.tag = hdr.probe.tag + 1;
        }
    }
}

control DigestEgress(inout headers_t hdr, inout meta_t meta, inout standard_metadata_t sm) { apply { } }
control DigestComputeChecksum(inout headers_t hdr, inout meta_t meta) { apply { } }

control DigestDeparser(packet_out pkt, in headers_t hdr) {
    apply {
        pkt.emit(hdr.ethernet);
        pkt.emit(hdr.probe);
    }
}

V1Switch(DigestParser(), DigestVerifyChecksum(), DigestIngress(), DigestEgress(), DigestComputeChecksum(),
         DigestDeparser()) main;
