/*
 * defines.p4 (Tofino): the types and codes of the TNA program that the v1model program does not have.
 *
 * The protocol's constants (message types, drop reasons, END_OF_TENSOR, ...) come from p4src/include/defines.p4.
 * The codes here never leave the switch; p4src/generate.py exports them to Python too (the TNA model in
 * tests/p4/tna_model.py follows the program with them). Keep one `const bit<N> NAME = <integer>;` per line.
 */
#ifndef OMNIREDUCE_TNA_DEFINES_P4
#define OMNIREDUCE_TNA_DEFINES_P4

#include "../../include/defines.p4"
#include "sizes.p4"

typedef bit<TNA_SLOT_INDEX_BITS>  slot_index_t;
typedef bit<TNA_ROUND_INDEX_BITS> round_index_t;

// slot_tensor and round_tensor cells hold (tensor_id << 16) | TNA_TENSOR_MARK once used, 0 before. NOTE: the
// v1model program stores TENSOR_VALID | tensor_id; Tofino's stateful ALU compares 32-bit words, and with the id in
// the upper half "newer in 16-bit serial arithmetic" becomes one signed 32-bit comparison, (new - held) > 0.
const bit<32> TNA_TENSOR_MARK = 1;

// Which part of the program a packet is in, carried in omni_bridge_t.phase (docs/tofino.md, "Passes").
// Ingress to egress, to be delivered: a result, a replay, a forwarded REQUEST or REPAIR, or routed traffic.
const bit<8> PHASE_DELIVER = 0;
// Ingress (first pass) to the egress of the job's recirculation port: the announcements.
const bit<8> PHASE_ANNOUNCE = 1;
// Egress of the recirculation port back into ingress (second pass): the round and its lanes.
const bit<8> PHASE_ROUND = 2;

// What round_block says about the round held in the packet's set. NOTE: an enum, because bf-p4c returns an enum
// from a RegisterAction as the stateful ALU's predicate output (the outcome of its comparisons), which needs no
// comparison in a later stage.
enum round_state_t { OTHER, SAME, DONE }

// What the second pass does to the lanes.
const bit<8> LANE_NONE = 0;
const bit<8> LANE_STORE = 1;
const bit<8> LANE_ADD = 2;
const bit<8> LANE_LOAD = 3;

#endif
