/*
 * rounds.p4 (Tofino, ingress, second pass): steps 3 to 6 of docs/protocol.md section 8 -- the round held in the
 * packet's set, its exponent, its next block and its lanes -- and every decision of section 4.2 that depends on
 * them, in the v1model program's order (p4src/include/control/aggregation.p4).
 *
 * Input: a CONTRIB or REQUEST back from the announcement pass, with hdr.bridge.accepted, announced (the sender's
 * announcement before it) and min_next (the minimum over the job's announcements after it).
 * Output: meta.outcome (ABSORBED, RESULT, REPLAY, FORWARD) or meta.drop_reason; for RESULT and REPLAY the omni
 * header and lanes already hold the result.
 *
 * NOTE: every register is accessed once, by one RegisterAction chosen from values computed before it: the
 * register's own comparisons are made inside the stateful ALU (round_block's outcome comes back on its predicate
 * output), so the lanes can follow round_block one stage later. A Tofino 1 stateful
 * ALU takes at most two words from the packet and has two comparators: round_block compares with
 * meta.reuse_below, computed before it, rather than with min_next and block_index.
 */
#ifndef OMNIREDUCE_TNA_ROUNDS_P4
#define OMNIREDUCE_TNA_ROUNDS_P4

#include "../generated/round_values.p4"

control Rounds(inout tna_headers_t hdr,
               inout ingress_metadata_t meta) {

    // Per (slot, set), index (global_slot << SET_INDEX_BITS) | set: the round held there.
    Register<bit<32>, round_index_t>(TNA_ROUND_COUNT, 0) round_tensor;
    Register<block_index_t, round_index_t>(TNA_ROUND_COUNT, 0) round_block;
    Register<exponent_t, round_index_t>(TNA_ROUND_COUNT, 0) round_exponent;
    // The result's next block once complete; 0 while the round aggregates (no next block is 0).
    Register<block_index_t, round_index_t>(TNA_ROUND_COUNT, 0) round_next;

    RoundValues() values;

    // An accepted contribution claims the set for its tensor. NOTE: unconditionally: a set holding a round of
    // another tensor is free (every round of an older tensor is complete), and writing the tensor that the set
    // already holds changes nothing; whether a round of this tensor may be replaced is round_block's decision.
    RegisterAction<bit<32>, round_index_t, bit<32>>(round_tensor) round_tensor_claim = {
        void apply(inout bit<32> value, out bit<32> held) {
            held = value;
            value = meta.tensor_cell;
        }
    };

    RegisterAction<bit<32>, round_index_t, bit<32>>(round_tensor) round_tensor_read = {
        void apply(inout bit<32> value, out bit<32> held) {
            held = value;
        }
    };

    // The set held another tensor's round: this contribution starts the round.
    RegisterAction<block_index_t, round_index_t, block_index_t>(round_block) round_block_start = {
        void apply(inout block_index_t value) {
            value = hdr.omni.block_index;
        }
    };

    // The set holds a round of this tensor. An accepted contribution starts its round over it if the held block is
    // older than the block and the column's minimum has passed it (held < meta.reuse_below = min(min_next, block)):
    // that round is complete. For any other packet meta.reuse_below is 0, so this only tells whether the set holds
    // the packet's round. Returns the predicate (defines.p4: ROUND_*).
    RegisterAction<block_index_t, round_index_t, bit<4>>(round_block) round_block_update = {
        void apply(inout block_index_t value, out bit<4> state) {
            state = this.predicate(value < meta.reuse_below, value == hdr.omni.block_index);
            if (value < meta.reuse_below) {
                value = hdr.omni.block_index;
            }
        }
    };

    RegisterAction<exponent_t, round_index_t, exponent_t>(round_exponent) round_exponent_max = {
        void apply(inout exponent_t value, out exponent_t result) {
            value = max(value, hdr.omni.exponent);
            result = value;
        }
    };

    RegisterAction<exponent_t, round_index_t, exponent_t>(round_exponent) round_exponent_store = {
        void apply(inout exponent_t value, out exponent_t result) {
            value = hdr.omni.exponent;
            result = value;
        }
    };

    RegisterAction<exponent_t, round_index_t, exponent_t>(round_exponent) round_exponent_read = {
        void apply(inout exponent_t value, out exponent_t result) {
            result = value;
        }
    };

    RegisterAction<block_index_t, round_index_t, block_index_t>(round_next) round_next_write = {
        void apply(inout block_index_t value) {
            value = meta.next_to_store;
        }
    };

    RegisterAction<block_index_t, round_index_t, block_index_t>(round_next) round_next_read = {
        void apply(inout block_index_t value, out block_index_t result) {
            result = value;
        }
    };

    action exponent_max() {
        meta.result_exponent = round_exponent_max.execute(meta.round_index);
    }
    action exponent_store() {
        meta.result_exponent = round_exponent_store.execute(meta.round_index);
    }
    action exponent_load() {
        meta.result_exponent = round_exponent_read.execute(meta.round_index);
    }
    // The round's exponent: the max of the claims (protocol section 5).
    table exponent_access {
        key = {
            meta.lane_op : exact;
        }
        actions = { exponent_max; exponent_store; exponent_load; NoAction; }
        const entries = {
            LANE_ADD : exponent_max();
            LANE_STORE : exponent_store();
            LANE_LOAD : exponent_load();
        }
        const default_action = NoAction();
        size = 3;
    }

    action next_write() {
        round_next_write.execute(meta.round_index);
    }
    action next_load() {
        meta.result_next = round_next_read.execute(meta.round_index);
    }
    // The round's next block: written by every contribution to it, read by a replay.
    table next_access {
        key = {
            meta.lane_op : exact;
        }
        actions = { next_write; next_load; NoAction; }
        const entries = {
            LANE_ADD : next_write();
            LANE_STORE : next_write();
            LANE_LOAD : next_load();
        }
        const default_action = NoAction();
        size = 3;
    }

    // Turn the packet into a RESULT (sums or held lanes already in hdr.lanes).
    action make_result(block_index_t result_next, exponent_t result_exponent) {
        hdr.omni.msg_type = MSG_RESULT;
        hdr.omni.next_block = result_next;
        hdr.omni.exponent = result_exponent;
        hdr.omni.lane_count = LANES;
        hdr.omni.peer = 0;
    }

    action forward_to_peer() {
        meta.forward_to = hdr.omni.peer;
        hdr.omni.peer = hdr.bridge.worker_id;
        meta.outcome = OUTCOME_FORWARD;
    }

    apply {
        meta.round_index = hdr.bridge.global_slot[TNA_SLOT_INDEX_BITS - 1:0] ++ hdr.omni.flags[SET_INDEX_BITS - 1:0];
        // complete = min_next > block: min(min_next, block) is then the block, not min_next.
        meta.block_floor = min(hdr.bridge.min_next, hdr.omni.block_index);
        bool complete = meta.block_floor != hdr.bridge.min_next;
        // announced > block: min(announced, block) is then the block, not the announcement.
        meta.announced_floor = min(hdr.bridge.announced, hdr.omni.block_index);
        meta.peer_max = max(hdr.omni.peer, hdr.bridge.worker_count);
        bool peer_valid = hdr.omni.peer != hdr.bridge.worker_id && meta.peer_max != hdr.omni.peer;
        bool accepted = hdr.bridge.accepted == 1;
        if (accepted) {
            meta.reuse_below = min(hdr.bridge.min_next, hdr.omni.block_index);
        } else {
            meta.reuse_below = 0;
        }

        // 3. The round held in the packet's set.
        if (accepted) {
            meta.held_round_tensor = round_tensor_claim.execute(meta.round_index);
        } else {
            meta.held_round_tensor = round_tensor_read.execute(meta.round_index);
        }
        bool same_tensor = meta.held_round_tensor == meta.tensor_cell;
        if (accepted && !same_tensor) {
            round_block_start.execute(meta.round_index);
            meta.round_state = (bit<4>)ROUND_DONE;
        } else if (same_tensor) {
            meta.round_state = round_block_update.execute(meta.round_index);
        } else {
            meta.round_state = (bit<4>)ROUND_OTHER;
        }
        bool same_round = meta.round_state == (bit<4>)ROUND_SAME;
        bool held_done = (meta.round_state & (bit<4>)ROUND_DONE_MASK) != 0;

        // NOTE: every branch sets all it decides (lane_op, next_to_store, outcome or drop_reason) once, so that the
        // branches are exclusive writers and the lanes can follow in the next stage; lane_op is LANE_NONE from the
        // parser.
        if (hdr.omni.msg_type == MSG_CONTRIB) {
            if (accepted && same_round && complete) {
                meta.lane_op = LANE_ADD;
                meta.next_to_store = hdr.bridge.min_next;
                meta.outcome = OUTCOME_RESULT;
            } else if (accepted && same_round) {
                meta.lane_op = LANE_ADD;
                meta.next_to_store = 0;
                meta.outcome = OUTCOME_ABSORBED;
            } else if (accepted && held_done && complete) {
                meta.lane_op = LANE_STORE;
                meta.next_to_store = hdr.bridge.min_next;
                meta.outcome = OUTCOME_RESULT;
            } else if (accepted && held_done) {
                meta.lane_op = LANE_STORE;
                meta.next_to_store = 0;
                meta.outcome = OUTCOME_ABSORBED;
            } else if (accepted) {
                // The set still holds an unfinished or later round: the sender's set index is wrong.
                meta.drop_reason = DROP_SET_BUSY;
            } else if (hdr.bridge.announced == hdr.omni.next_block && same_round) {
                // A retransmission of a contribution already added: replayed once the round is complete.
                if (complete) {
                    meta.lane_op = LANE_LOAD;
                    meta.outcome = OUTCOME_REPLAY;
                } else {
                    meta.drop_reason = DROP_DUPLICATE;
                }
            } else if (meta.announced_floor != hdr.bridge.announced) {
                meta.drop_reason = DROP_STALE;
            } else {
                meta.drop_reason = DROP_NOT_ANNOUNCED;
            }
        } else {
            // MSG_REQUEST: the sender misses this round's result.
            if (same_round && complete) {
                meta.lane_op = LANE_LOAD;
                meta.outcome = OUTCOME_REPLAY;
            } else if (!same_round && complete) {
                if (peer_valid) {
                    forward_to_peer();
                } else {
                    meta.drop_reason = DROP_BAD_PEER;
                }
            } else {
                meta.drop_reason = DROP_ROUND_NOT_READY;
            }
        }

        // 5. Exponent and next block. 6. Lanes.
        exponent_access.apply();
        next_access.apply();
        if (meta.outcome == OUTCOME_REPLAY) {
            // A REQUEST carries no lanes: the replay brings them.
            hdr.lanes.setValid();
        }
        values.apply(hdr, meta);

        if (meta.outcome == OUTCOME_RESULT) {
            make_result(hdr.bridge.min_next, meta.result_exponent);
        } else if (meta.outcome == OUTCOME_REPLAY) {
            make_result(meta.result_next, meta.result_exponent);
        }
    }
}

#endif
