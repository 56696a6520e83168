/*
 * arith_test.p4: exercises softswitch expressions and primitives (tests/softswitch/test_arith.py).
 *
 * An `ops` header carries operands; ingress computes results into a `res` header and reflects the packet.
 * Covers fixed-width wraparound of + - * on bit<8>/bit<16>/bit<32>, signed int<8>/int<16> arithmetic and
 * comparisons, shifts by a runtime amount (logical and arithmetic), & | ^ ~, slices, concatenation, casts,
 * saturating |+| |-|, the ?: operator, if/else inside an action, registers (bit<16>, bit<48>), v1model
 * hash() with crc16/crc32/identity/csum16, log_msg, assert and exit.
 */
#include <core.p4>
#include <v1model.p4>

const bit<16> ETHERTYPE_OPS = 0x88B7;

header ethernet_t { bit<48> dst; bit<48> src; bit<16> ether_type; }
header ops_t {
    bit<8>  a8;  bit<8>  b8;
    bit<16> a16; bit<16> b16;
    bit<32> a32; bit<32> b32;
    int<8>  s8a; int<8>  s8b;
    int<16> s16a;
    bit<8>  shift;
    bit<8>  reg_index;
    bit<8>  flags;   // bit 0: take the exit branch, bit 1: fail the assert
}
header res_t {
    bit<8>  add8;  bit<8>  sub8;  bit<8>  mul8;
    bit<16> add16; bit<16> sub16;
    bit<32> add32; bit<32> sub32; bit<32> mul32;
    int<8>  sadd8; int<8>  ssub8; int<8> sneg8;
    bit<8>  cmp;     // bit0: a8<b8, bit1: s8a<s8b, bit2: a16>=b16, bit3: s8a<=s8b, bit4: a32==b32, bit5: a32!=b32
    bit<16> shl16; bit<16> shr16; int<16> sar16;
    bit<32> and32; bit<32> or32; bit<32> xor32; bit<16> not16;
    bit<8>  slice8;  // a32[15:8]
    bit<16> concat16; // a8 ++ b8
    bit<8>  trunc8;  // (bit<8>)a32
    bit<32> sext32;  // (bit<32>)(int<32>)s8a
    bit<8>  uaddsat; bit<8> usubsat; int<8> saddsat;
    bit<8>  max8;    // a8 > b8 ? a8 : b8
    bit<8>  cls;     // if/else inside an action
    bit<16> reg16;   // register value after adding a16
    bit<48> reg48;   // register value after adding a32
    bit<16> crc16; bit<32> crc32; bit<32> ident; bit<16> csum;
    bit<8>  after_exit;
}

struct headers_t { ethernet_t ethernet; ops_t ops; res_t res; }
struct meta_t { bit<16> old16; bit<48> old48; }

parser TestParser(packet_in pkt, out headers_t hdr, inout meta_t meta, inout standard_metadata_t sm) {
    state start {
        pkt.extract(hdr.ethernet);
        transition select(hdr.ethernet.ether_type) {
            ETHERTYPE_OPS: parse_ops;
            default: accept;
        }
    }
    state parse_ops {
        pkt.extract(hdr.ops);
        transition accept;
    }
}

control TestVerifyChecksum(inout headers_t hdr, inout meta_t meta) { apply { } }

control TestIngress(inout headers_t hdr, inout meta_t meta, inout standard_metadata_t sm) {
    register<bit<16>>(8) acc16;
    register<bit<48>>(8) acc48;

    action classify() {
        if (hdr.ops.a8 > 100) {
            hdr.res.cls = 3;
        } else if (hdr.ops.a8 > 50) {
            hdr.res.cls = 2;
        } else {
            hdr.res.cls = 1;
        }
    }

    action accumulate(bit<8> index) {
        acc16.read(meta.old16, (bit<32>)index);
        acc16.write((bit<32>)index, meta.old16 + hdr.ops.a16);
        acc16.read(hdr.res.reg16, (bit<32>)index);
        acc48.read(meta.old48, (bit<32>)index);
        acc48.write((bit<32>)index, meta.old48 + (bit<48>)hdr.ops.a32);
        acc48.read(hdr.res.reg48, (bit<32>)index);
    }

    apply {
        sm.egress_spec = sm.ingress_port;
        if (!hdr.ops.isValid()) {
            mark_to_drop(sm);
            exit;
        }
        hdr.res.setValid();
        hdr.res.add8 = hdr.ops.a8 + hdr.ops.b8;
        hdr.res.sub8 = hdr.ops.a8 - hdr.ops.b8;
        hdr.res.mul8 = hdr.ops.a8 * hdr.ops.b8;
        hdr.res.add16 = hdr.ops.a16 + hdr.ops.b16;
        hdr.res.sub16 = hdr.ops.a16 - hdr.ops.b16;
        hdr.res.add32 = hdr.ops.a32 + hdr.ops.b32;
        hdr.res.sub32 = hdr.ops.a32 - hdr.ops.b32;
        hdr.res.mul32 = hdr.ops.a32 * hdr.ops.b32;
        hdr.res.sadd8 = hdr.ops.s8a + hdr.ops.s8b;
        hdr.res.ssub8 = hdr.ops.s8a - hdr.ops.s8b;
        hdr.res.sneg8 = -hdr.ops.s8a;

        bit<8> cmp = 0;
        if (hdr.ops.a8 < hdr.ops.b8) { cmp = cmp | 1; }
        if (hdr.ops.s8a < hdr.ops.s8b) { cmp = cmp | 2; }
        if (hdr.ops.a16 >= hdr.ops.b16) { cmp = cmp | 4; }
        if (hdr.ops.s8a <= hdr.ops.s8b) { cmp = cmp | 8; }
        if (hdr.ops.a32 == hdr.ops.b32) { cmp = cmp | 16; }
        if (hdr.ops.a32 != hdr.ops.b32) { cmp = cmp | 32; }
        hdr.res.cmp = cmp;

        hdr.res.shl16 = hdr.ops.a16 << hdr.ops.shift;
        hdr.res.shr16 = hdr.ops.a16 >> hdr.ops.shift;
        hdr.res.sar16 = hdr.ops.s16a >> hdr.ops.shift;
        hdr.res.and32 = hdr.ops.a32 & hdr.ops.b32;
        hdr.res.or32 = hdr.ops.a32 | hdr.ops.b32;
        hdr.res.xor32 = hdr.ops.a32 ^ hdr.ops.b32;
        hdr.res.not16 = ~hdr.ops.a16;
        hdr.res.slice8 = hdr.ops.a32[15:8];
        hdr.res.concat16 = hdr.ops.a8 ++ hdr.ops.b8;
        hdr.res.trunc8 = (bit<8>)hdr.ops.a32;
        hdr.res.sext32 = (bit<32>)(int<32>)hdr.ops.s8a;
        hdr.res.uaddsat = hdr.ops.a8 |+| hdr.ops.b8;
        hdr.res.usubsat = hdr.ops.a8 |-| hdr.ops.b8;
        hdr.res.saddsat = hdr.ops.s8a |+| hdr.ops.s8b;
        hdr.res.max8 = hdr.ops.a8 > hdr.ops.b8 ? hdr.ops.a8 : hdr.ops.b8;
        classify();
        accumulate(hdr.ops.reg_index);

        hash(hdr.res.crc16, HashAlgorithm.crc16, 16w0, { hdr.ops.a32, hdr.ops.b32 }, 32w65536);
        hash(hdr.res.crc32, HashAlgorithm.crc32, 32w0, { hdr.ops.a32, hdr.ops.b32 }, 64w4294967296);
        hash(hdr.res.ident, HashAlgorithm.identity, 32w0, { hdr.ops.a32 }, 64w4294967296);
        hash(hdr.res.csum, HashAlgorithm.csum16, 16w0, { hdr.ops.a16, hdr.ops.b16, hdr.ops.a8 }, 32w65536);
        log_msg("arith_test: a8={} b8={}", { hdr.ops.a8, hdr.ops.b8 });

        assert((hdr.ops.flags & 2) == 0);
        if ((hdr.ops.flags & 1) == 1) {
            exit;
        }
        hdr.res.after_exit = 1;
    }
}

control TestEgress(inout headers_t hdr, inout meta_t meta, inout standard_metadata_t sm) { apply { } }
control TestComputeChecksum(inout headers_t hdr, inout meta_t meta) { apply { } }

control TestDeparser(packet_out pkt, in headers_t hdr) {
    apply {
        pkt.emit(hdr.ethernet);
        pkt.emit(hdr.ops);
        pkt.emit(hdr.res);
    }
}

V1Switch(TestParser(), TestVerifyChecksum(), TestIngress(), TestEgress(), TestComputeChecksum(), TestDeparser()) main;
