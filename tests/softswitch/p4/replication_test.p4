/*
 * replication_test.p4: exercises the softswitch packet replication engine and the v1model packet paths
 * (tests/softswitch/test_replication.py): multicast with egress_rid, ingress and egress clones (with and
 * without preserved metadata), resubmit and recirculate with preserved metadata, and truncate().
 *
 * A `rep` header says what to do (op) and records what each copy saw in egress.
 */
#include <core.p4>
#include <v1model.p4>

const bit<16> ETHERTYPE_REP = 0x88B8;
const bit<32> INSTANCE_NORMAL = 0;
const bit<32> INSTANCE_INGRESS_CLONE = 1;
const bit<32> INSTANCE_EGRESS_CLONE = 2;
const bit<32> INSTANCE_RECIRC = 4;
const bit<32> INSTANCE_RESUBMIT = 6;

const bit<8> OP_FORWARD = 0;
const bit<8> OP_MULTICAST = 1;
const bit<8> OP_CLONE_I2E = 2;
const bit<8> OP_RESUBMIT = 3;
const bit<8> OP_RECIRCULATE = 4;
const bit<8> OP_CLONE_I2E_FIELDS = 5;
const bit<8> OP_CLONE_E2E = 6;
const bit<8> OP_TRUNCATE = 7;
const bit<8> OP_DROP = 8;

const bit<32> CLONE_SESSION = 5;

header ethernet_t { bit<48> dst; bit<48> src; bit<16> ether_type; }
header rep_t {
    bit<8>  op;
    bit<16> mgid;
    bit<16> rid_seen;       // egress_rid in egress
    bit<8>  instance_seen;  // instance_type in egress
    bit<8>  ingress_instance; // instance_type in ingress
    bit<16> port_seen;      // egress_port in egress
    bit<8>  preserved_seen; // meta.preserved in ingress (resubmit/recirculate) or egress (clones)
    bit<8>  passes;         // incremented on each ingress pass
    bit<32> length_seen;    // standard_metadata.packet_length in ingress
}

struct headers_t { ethernet_t ethernet; rep_t rep; }
struct meta_t {
    @field_list(1)
    bit<8> preserved;
    bit<8> not_preserved;
}

parser TestParser(packet_in pkt, out headers_t hdr, inout meta_t meta, inout standard_metadata_t sm) {
    state start {
        pkt.extract(hdr.ethernet);
        transition select(hdr.ethernet.ether_type) {
            ETHERTYPE_REP: parse_rep;
            default: accept;
        }
    }
    state parse_rep {
        pkt.extract(hdr.rep);
        transition accept;
    }
}

control TestVerifyChecksum(inout headers_t hdr, inout meta_t meta) { apply { } }

control TestIngress(inout headers_t hdr, inout meta_t meta, inout standard_metadata_t sm) {
    apply {
        if (!hdr.rep.isValid()) {
            mark_to_drop(sm);
            exit;
        }
        hdr.rep.passes = hdr.rep.passes + 1;
        hdr.rep.ingress_instance = (bit<8>)sm.instance_type;
        hdr.rep.length_seen = sm.packet_length;
        sm.egress_spec = 1;
        if (sm.instance_type == INSTANCE_RESUBMIT || sm.instance_type == INSTANCE_RECIRC) {
            hdr.rep.preserved_seen = meta.preserved;
            sm.egress_spec = 3;
        } else if (hdr.rep.op == OP_MULTICAST) {
            sm.mcast_grp = hdr.rep.mgid;
        } else if (hdr.rep.op == OP_CLONE_I2E) {
            meta.preserved = 0x55;
            clone(CloneType.I2E, CLONE_SESSION);
        } else if (hdr.rep.op == OP_CLONE_I2E_FIELDS) {
            meta.preserved = 0x55;
            clone_preserving_field_list(CloneType.I2E, CLONE_SESSION, 1);
        } else if (hdr.rep.op == OP_RESUBMIT) {
            meta.preserved = 0x77;
            meta.not_preserved = 0x11;
            resubmit_preserving_field_list(1);
        } else if (hdr.rep.op == OP_TRUNCATE) {
            truncate(16);
        } else if (hdr.rep.op == OP_DROP) {
            mark_to_drop(sm);
        }
    }
}

control TestEgress(inout headers_t hdr, inout meta_t meta, inout standard_metadata_t sm) {
    apply {
        hdr.rep.rid_seen = sm.egress_rid;
        hdr.rep.instance_seen = (bit<8>)sm.instance_type;
        hdr.rep.port_seen = (bit<16>)sm.egress_port;
        if (sm.instance_type == INSTANCE_INGRESS_CLONE || sm.instance_type == INSTANCE_EGRESS_CLONE) {
            hdr.rep.preserved_seen = meta.preserved;
        }
        if (hdr.rep.op == OP_RECIRCULATE && sm.instance_type == INSTANCE_NORMAL && hdr.rep.passes == 1) {
            meta.preserved = 0x66;
            recirculate_preserving_field_list(1);
        } else if (hdr.rep.op == OP_CLONE_E2E && sm.instance_type == INSTANCE_NORMAL) {
            meta.preserved = 0x44;
            clone_preserving_field_list(CloneType.E2E, CLONE_SESSION, 1);
        }
    }
}

control TestComputeChecksum(inout headers_t hdr, inout meta_t meta) { apply { } }

control TestDeparser(packet_out pkt, in headers_t hdr) {
    apply {
        pkt.emit(hdr.ethernet);
        pkt.emit(hdr.rep);
    }
}

V1Switch(TestParser(), TestVerifyChecksum(), TestIngress(), TestEgress(), TestComputeChecksum(), TestDeparser()) main;
