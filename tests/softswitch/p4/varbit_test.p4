/*
 * varbit_test.p4: varbit fields on the softswitch (tests/softswitch/test_varbit.py).
 *
 * IPv4 with options (a varbit of up to 320 bits, its length from ihl) is verified and updated with a
 * checksum over the options; a `mid` header carries a varbit between two fixed fields, its length in bits
 * in its first byte (not a multiple of 8: ParserInvalidArgument; more than 64: HeaderTooShort).
 * Ingress compares the two varbits, copies `mid` (a header copy and a varbit assignment) into `copy`, and
 * prepends a report; the deparser emits every header at its current length.
 */
#include <core.p4>
#include <v1model.p4>

header ethernet_t { bit<48> dst; bit<48> src; bit<16> ether_type; }
header ipv4_t {
    bit<4>  version; bit<4> ihl; bit<8> dscp_ecn; bit<16> total_len;
    bit<16> identification; bit<3> flags; bit<13> frag_offset;
    bit<8>  ttl; bit<8> protocol; bit<16> checksum;
    bit<32> src; bit<32> dst;
    varbit<320> options;
}
// len: the varbit's length in bits; op: what ingress does with it.
header mid_t      { bit<8> len; bit<8> op; varbit<64> data; bit<16> trailer; }
header copy_t     { varbit<64> data; }
// error: 0 none, 1 PacketTooShort, 2 ParserInvalidArgument, 3 HeaderTooShort; equal: mid.data == copy.data.
header report_t   { bit<8> error_code; bit<8> checksum_error; bit<8> equal; bit<8> valid_mask; }

struct headers_t {
    report_t   report;
    ethernet_t ethernet;
    ipv4_t     ipv4;
    mid_t      mid;
    mid_t      mid2;
    copy_t     copy;
}

struct meta_t { }

parser TestParser(packet_in pkt, out headers_t hdr, inout meta_t meta, inout standard_metadata_t sm) {
    state start {
        pkt.extract(hdr.ethernet);
        transition select(hdr.ethernet.ether_type) {
            0x0800: parse_ipv4;
            0x88BB: parse_mid;
            default: accept;
        }
    }
    state parse_ipv4 {
        pkt.extract(hdr.ipv4, ((bit<32>)pkt.lookahead<bit<8>>()[3:0] - 5) * 32);
        transition accept;
    }
    state parse_mid {
        pkt.extract(hdr.mid, (bit<32>)pkt.lookahead<bit<8>>());
        transition accept;
    }
}

control TestVerifyChecksum(inout headers_t hdr, inout meta_t meta) {
    apply {
        verify_checksum(hdr.ipv4.isValid(),
            { hdr.ipv4.version, hdr.ipv4.ihl, hdr.ipv4.dscp_ecn, hdr.ipv4.total_len,
              hdr.ipv4.identification, hdr.ipv4.flags, hdr.ipv4.frag_offset,
              hdr.ipv4.ttl, hdr.ipv4.protocol, hdr.ipv4.src, hdr.ipv4.dst, hdr.ipv4.options },
            hdr.ipv4.checksum, HashAlgorithm.csum16);
    }
}

control TestIngress(inout headers_t hdr, inout meta_t meta, inout standard_metadata_t sm) {
    apply {
        sm.egress_spec = sm.ingress_port;
        hdr.report.setValid();
        if (sm.parser_error == error.NoError) {
            hdr.report.error_code = 0;
        } else if (sm.parser_error == error.PacketTooShort) {
            hdr.report.error_code = 1;
        } else if (sm.parser_error == error.ParserInvalidArgument) {
            hdr.report.error_code = 2;
        } else if (sm.parser_error == error.HeaderTooShort) {
            hdr.report.error_code = 3;
        } else {
            hdr.report.error_code = 0xFF;
        }
        hdr.report.checksum_error = (bit<8>)sm.checksum_error;
        if (hdr.ipv4.isValid()) {
            hdr.ipv4.ttl = hdr.ipv4.ttl - 1;
        }
        if (hdr.mid.isValid()) {
            if (hdr.mid.op == 1) {
                hdr.mid2 = hdr.mid;          // a header copy, varbit and its length included
                hdr.mid2.trailer = 0xBEEF;
            } else if (hdr.mid.op == 2) {
                hdr.copy.setValid();
                hdr.copy.data = hdr.mid.data; // a varbit assignment
            } else if (hdr.mid.op == 3) {
                hdr.mid.setInvalid();
            }
        }
        hdr.report.equal = hdr.copy.isValid() && hdr.mid.isValid() && hdr.copy.data == hdr.mid.data ? 8w1 : 8w0;
        hdr.report.valid_mask = (hdr.ipv4.isValid() ? 8w1 : 8w0) | (hdr.mid.isValid() ? 8w2 : 8w0)
                              | (hdr.mid2.isValid() ? 8w4 : 8w0) | (hdr.copy.isValid() ? 8w8 : 8w0);
    }
}

control TestEgress(inout headers_t hdr, inout meta_t meta, inout standard_metadata_t sm) { apply { } }

control TestComputeChecksum(inout headers_t hdr, inout meta_t meta) {
    apply {
        update_checksum(hdr.ipv4.isValid(),
            { hdr.ipv4.version, hdr.ipv4.ihl, hdr.ipv4.dscp_ecn, hdr.ipv4.total_len,
              hdr.ipv4.identification, hdr.ipv4.flags, hdr.ipv4.frag_offset,
              hdr.ipv4.ttl, hdr.ipv4.protocol, hdr.ipv4.src, hdr.ipv4.dst, hdr.ipv4.options },
            hdr.ipv4.checksum, HashAlgorithm.csum16);
    }
}

control TestDeparser(packet_out pkt, in headers_t hdr) {
    apply {
        pkt.emit(hdr.report);
        pkt.emit(hdr.ethernet);
        pkt.emit(hdr.ipv4);
        pkt.emit(hdr.mid);
        pkt.emit(hdr.mid2);
        pkt.emit(hdr.copy);
    }
}

V1Switch(TestParser(), TestVerifyChecksum(), TestIngress(), TestEgress(), TestComputeChecksum(), TestDeparser()) main;
