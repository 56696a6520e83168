/*
 * stack_test.p4: header stacks on the softswitch (tests/softswitch/test_stacks.py).
 *
 * A frame is ethernet (ether type 0x88B9), a command header, then labels: 4-byte headers extracted into a
 * stack of 3 by a subparser until one has its bottom-of-stack bit set (a loop over `next`, selecting on
 * `last`); a fourth label is the StackOutOfBounds parser error. Ingress runs the command on the stack
 * (push/pop by 1, 2 or 4, a read, a write, setValid and setInvalid at a run-time index, a copy of the stack,
 * a ?: between two headers) and prepends a report of what it saw; the deparser emits the
 * stack, so tests read every effect from the bytes.
 */
#include <core.p4>
#include <v1model.p4>

const bit<16> ETHERTYPE_STACK = 0x88B9;
#define LABELS 3

header ethernet_t { bit<48> dst; bit<48> src; bit<16> ether_type; }
// op: what ingress does; index: a run-time stack index; value: the label it writes.
header command_t  { bit<8> op; bit<8> index; bit<16> value; }
header label_t    { bit<16> label; bit<7> ttl; bit<1> bos; bit<8> tag; }
// What ingress saw: the parser error (0 none, 1 PacketTooShort, 2 StackOutOfBounds), the parser's lastIndex
// after the last label (its low 8 bits), one valid bit per element after the command, a value the command
// read, the saved copy's valid bits.
header report_t   { bit<8> error_code; bit<8> last_index; bit<8> valid_mask; bit<16> read; bit<8> saved_mask; }

struct headers_t {
    report_t           report;
    ethernet_t         ethernet;
    command_t          command;
    label_t[LABELS]    labels;
    label_t[LABELS]    saved;
    label_t            spare;
}

struct meta_t { bit<8> count; bit<8> last_index; }

parser LabelParser(packet_in pkt, inout headers_t hdr, inout meta_t meta) {
    state start {
        pkt.extract(hdr.labels.next);
        meta.count = meta.count + 1;
        transition accept;
    }
}

parser TestParser(packet_in pkt, out headers_t hdr, inout meta_t meta, inout standard_metadata_t sm) {
    LabelParser() labels;
    state start {
        pkt.extract(hdr.ethernet);
        transition select(hdr.ethernet.ether_type) {
            ETHERTYPE_STACK: parse_command;
            default: accept;
        }
    }
    state parse_command {
        pkt.extract(hdr.command);
        transition parse_label;
    }
    state parse_label {
        labels.apply(pkt, hdr, meta);
        meta.last_index = (bit<8>)hdr.labels.lastIndex;
        transition select(hdr.labels.last.bos) {
            0: parse_label;
            1: accept;
        }
    }
}

control TestVerifyChecksum(inout headers_t hdr, inout meta_t meta) { apply { } }

control TestIngress(inout headers_t hdr, inout meta_t meta, inout standard_metadata_t sm) {
    action fresh_label(bit<16> value) {
        hdr.labels[0].setValid();
        hdr.labels[0].label = value;
        hdr.labels[0].ttl = 64;
        hdr.labels[0].bos = 0;
        hdr.labels[0].tag = 0xEE;
    }
    // A ?: between two headers in an action stays one (a header-valued operand) in the JSON.
    action pick() {
        hdr.spare = hdr.command.index == 0 ? hdr.labels[0] : hdr.labels[1];
        hdr.report.read = hdr.spare.label;
    }
    apply {
        sm.egress_spec = sm.ingress_port;
        hdr.report.setValid();
        if (sm.parser_error == error.NoError) {
            hdr.report.error_code = 0;
        } else if (sm.parser_error == error.PacketTooShort) {
            hdr.report.error_code = 1;
        } else if (sm.parser_error == error.StackOutOfBounds) {
            hdr.report.error_code = 2;
        } else {
            hdr.report.error_code = 0xFF;
        }
        if (hdr.command.isValid()) {
            bit<8> op = hdr.command.op;
            if (op == 1) {
                hdr.labels.push_front(1);
                fresh_label(hdr.command.value);
            } else if (op == 2) {
                hdr.labels.pop_front(1);
            } else if (op == 3) {
                hdr.labels.push_front(2);
            } else if (op == 4) {
                hdr.labels.pop_front(2);
            } else if (op == 5) {
                hdr.labels.push_front(4);
            } else if (op == 6) {
                hdr.labels.pop_front(4);
            } else if (op == 7) {
                hdr.report.read = hdr.labels[hdr.command.index].label;
            } else if (op == 8) {
                hdr.labels[hdr.command.index].label = hdr.command.value;
            } else if (op == 9) {
                // (A whole-header write, labels[i] = h, makes p4c 1.2.4 emit an operand simple_switch refuses.)
                hdr.labels[hdr.command.index].setValid();
                hdr.labels[hdr.command.index].label = hdr.command.value;
                hdr.labels[hdr.command.index].ttl = 1;
                hdr.labels[hdr.command.index].bos = 1;
                hdr.labels[hdr.command.index].tag = 0x55;
            } else if (op == 10) {
                hdr.saved = hdr.labels;
                hdr.labels[0].setInvalid();
            } else if (op == 11) {
                pick();
            } else if (op == 12) {
                hdr.labels[hdr.command.index].setInvalid();
            }
        }
        hdr.report.last_index = meta.last_index;
        hdr.report.valid_mask = (hdr.labels[0].isValid() ? 8w1 : 8w0)
                              | (hdr.labels[1].isValid() ? 8w2 : 8w0)
                              | (hdr.labels[2].isValid() ? 8w4 : 8w0);
        hdr.report.saved_mask = (hdr.saved[0].isValid() ? 8w1 : 8w0)
                              | (hdr.saved[1].isValid() ? 8w2 : 8w0)
                              | (hdr.saved[2].isValid() ? 8w4 : 8w0);
    }
}

control TestEgress(inout headers_t hdr, inout meta_t meta, inout standard_metadata_t sm) { apply { } }

control TestComputeChecksum(inout headers_t hdr, inout meta_t meta) { apply { } }

control TestDeparser(packet_out pkt, in headers_t hdr) {
    apply {
        pkt.emit(hdr.report);
        pkt.emit(hdr.ethernet);
        pkt.emit(hdr.command);
        pkt.emit(hdr.labels);
        pkt.emit(hdr.saved);
        pkt.emit(hdr.spare);
    }
}

V1Switch(TestParser(), TestVerifyChecksum(), TestIngress(), TestEgress(), TestComputeChecksum(), TestDeparser()) main;
