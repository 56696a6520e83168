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

// NOTE: the slot registers are indexed by the 16-bit global slot itself (slot_t; the low TNA_SLOT_INDEX_BITS
// address a cell): bf-p4c takes a field as a register index, but not a slice of one.
typedef bit<TNA_ROUND_INDEX_BITS> round_index_t;

// slot_tensor and round_tensor cells hold (tensor_id << 16) | TNA_TENSOR_MARK once used, 0 before. NOTE: the
// v1model program stores TENSOR_VALID | tensor_id; Tofino's stateful ALU compares 32-bit words, and with the id in
// the upper half "newer in 16-bit serial arithmetic" becomes one signed 32-bit comparison, (new - held) > 0.
const bit<32> TNA_TENSOR_MARK = 1;
// What slot_tensor's RegisterActions return for a never used slot in place of tensor_cell - held: any positive
// value ("newer"); the cell of tensor 0 is 1.
const bit<32> TNA_UNUSED_DELTA = 1;

// Which part of the program a packet is in, carried in omni_bridge_t.phase (docs/tofino.md, "Passes").
// Ingress to egress, to be delivered: a result, a replay, a forwarded REQUEST or REPAIR, or routed traffic.
const bit<8> PHASE_DELIVER = 0;
// Ingress (first pass) to the egress of the job's recirculation port: the announcements.
const bit<8> PHASE_ANNOUNCE = 1;
// Egress of the recirculation port back into ingress (second pass): the round and its lanes.
const bit<8> PHASE_ROUND = 2;

// What round_block says about the round held in the packet's set: the stateful ALU's 4-bit predicate output, bit
// (cmplo + 2 * cmphi) set for the outcome of its two comparisons -- cmplo: held block < reuse_below (the round is
// done and replaced), cmphi: held block == block_index. NOTE: returned as such (this.predicate(...)) rather than as
// a code computed from the held block, which would take two more stages; bf-p4c 9.13's enum return crashes.
const bit<8> ROUND_OTHER = 1;
const bit<8> ROUND_SAME = 4;
const bit<8> ROUND_DONE = 2;
// Either predicate bit with cmplo set: done.
const bit<8> ROUND_DONE_MASK = 0xA;

// What the second pass does to the lanes.
const bit<8> LANE_NONE = 0;
const bit<8> LANE_STORE = 1;
const bit<8> LANE_ADD = 2;
const bit<8> LANE_LOAD = 3;

#endif
