/*
 * aggregation.p4: the OmniReduce slot state machine (docs/protocol.md section 4 is its specification).
 *
 * Input: a validated CONTRIB, ACK or REQUEST from a registered worker of a job, with meta.job_id, worker_id,
 * slot_base, slot_count, worker_count and mcast_grp set by WorkerIdentity.
 * Output: meta.outcome (ABSORBED, RESULT, REPLAY, ACK) or meta.drop_reason; for RESULT and REPLAY the omni header
 * and lanes already hold the result.
 *
 * NOTE on register layout: one register per value lane (round_value_<k>) rather than one register of
 * ROUND_COUNT * LANES entries, because a hardware target (Tofino) gives each register its own stateful ALU and can
 * only touch one entry of a register per packet. The same layout keeps the v1model program portable.
 */
#ifndef OMNIREDUCE_AGGREGATION_P4
#define OMNIREDUCE_AGGREGATION_P4

control Aggregation(inout headers_t hdr,
                    inout local_metadata_t meta,
                    inout standard_metadata_t standard_metadata) {

    // Per (slot, set): the round held there. Index: 2 * global_slot + set.
    register<round_state_t>(ROUND_COUNT)   round_state;
    register<tensor_id_t>(ROUND_COUNT)     round_tensor;
    register<block_index_t>(ROUND_COUNT)   round_block;
    register<worker_bitmap_t>(ROUND_COUNT) round_contributed;
    register<worker_bitmap_t>(ROUND_COUNT) round_unacked;
    register<block_index_t>(ROUND_COUNT)   round_next;
    register<exponent_t>(ROUND_COUNT)      round_exponent;

    // Per slot: the tensor the slot's worker_next entries belong to.
    register<tensor_id_t>(SLOT_COUNT) slot_tensor;
    // Per (slot, worker): the worker's announced next block in this column. Index: (global_slot << 5) + worker.
    register<block_index_t>(WORKER_NEXT_COUNT) worker_next;

    // round_value_<k> registers and the lanes_store / lanes_add / lanes_load actions.
    #include "../generated/lane_state.p4"
    // worker_next_reset / worker_next_min actions over the MAX_WORKERS entries of a slot.
    #include "../generated/worker_state.p4"

    action locate_round() {
        meta.global_slot = (bit<32>)(meta.slot_base + hdr.omni.slot);
        meta.round_index = (meta.global_slot << 1) | (bit<32>)(hdr.omni.flags & FLAG_SET);
        meta.other_round_index = meta.round_index ^ 1;
        meta.worker_next_base = meta.global_slot << WORKER_INDEX_BITS;
        meta.worker_bit = (worker_bitmap_t)1 << meta.worker_id;
    }

    // Turn the packet into the result of the round held at round_index (sums already in hdr.lanes).
    action make_result(block_index_t next_block, exponent_t exponent) {
        hdr.omni.msg_type = MSG_RESULT;
        hdr.omni.next_block = next_block;
        hdr.omni.exponent = exponent;
        hdr.omni.lane_count = LANES;
    }

    apply {
        round_state_t   held_state;
        tensor_id_t     held_tensor;
        block_index_t   held_block;
        worker_bitmap_t held_contributed;
        worker_bitmap_t held_unacked;
        worker_bitmap_t other_unacked;
        exponent_t      held_exponent = 0;
        block_index_t   held_next;
        tensor_id_t     held_slot_tensor;
        bool            accepted = false;

        locate_round();
        round_state.read(held_state, meta.round_index);
        round_tensor.read(held_tensor, meta.round_index);
        round_block.read(held_block, meta.round_index);
        round_contributed.read(held_contributed, meta.round_index);

        // Compare the packet's round (tensor, block) with the one held in its set. Tensor ids are compared in
        // 16-bit serial arithmetic so that they may wrap.
        tensor_id_t tensor_delta = hdr.omni.tensor_id - held_tensor;
        bool same_round = held_state != ROUND_IDLE && tensor_delta == 0 && hdr.omni.block_index == held_block;
        bool newer_round = held_state == ROUND_IDLE
            || (tensor_delta != 0 && tensor_delta < 0x8000)
            || (tensor_delta == 0 && hdr.omni.block_index > held_block);
        bool held_complete = held_state == ROUND_COMPLETE;

        if (hdr.omni.msg_type == MSG_CONTRIB) {
            if (same_round) {
                if ((held_contributed & meta.worker_bit) != 0) {
                    // A retransmission: never added twice. Replay the result if there is one.
                    if (held_complete) {
                        meta.outcome = OUTCOME_REPLAY;
                    } else {
                        meta.drop_reason = DROP_DUPLICATE;
                    }
                } else if (held_complete) {
                    meta.drop_reason = DROP_LATE_CONTRIBUTION;
                } else {
                    lanes_add();
                    round_contributed.write(meta.round_index, held_contributed | meta.worker_bit);
                    round_exponent.read(held_exponent, meta.round_index);
                    if (hdr.omni.exponent > held_exponent) {
                        held_exponent = hdr.omni.exponent;
                        round_exponent.write(meta.round_index, held_exponent);
                    }
                    accepted = true;
                }
            } else if (newer_round) {
                round_unacked.read(held_unacked, meta.round_index);
                if (held_state == ROUND_AGGREGATING || (held_complete && held_unacked != 0)) {
                    // The set's previous round still aggregates, or some worker has not confirmed its result yet.
                    meta.drop_reason = DROP_SET_BUSY;
                } else {
                    slot_tensor.read(held_slot_tensor, meta.global_slot);
                    if (held_slot_tensor != hdr.omni.tensor_id) {
                        // First round of a new tensor in this slot: nobody has announced anything yet.
                        worker_next_reset();
                        slot_tensor.write(meta.global_slot, hdr.omni.tensor_id);
                    }
                    round_state.write(meta.round_index, ROUND_AGGREGATING);
                    round_tensor.write(meta.round_index, hdr.omni.tensor_id);
                    round_block.write(meta.round_index, hdr.omni.block_index);
                    round_contributed.write(meta.round_index, meta.worker_bit);
                    round_unacked.write(meta.round_index, 0);
                    held_exponent = hdr.omni.exponent;
                    round_exponent.write(meta.round_index, held_exponent);
                    lanes_store();
                    accepted = true;
                }
            } else {
                meta.drop_reason = DROP_STALE;
            }

            if (accepted) {
                worker_next.write(meta.worker_next_base + (bit<32>)meta.worker_id, hdr.omni.next_block);
                // Contributing to this round proves the worker received the other set's (previous) result.
                round_unacked.read(other_unacked, meta.other_round_index);
                round_unacked.write(meta.other_round_index, other_unacked & ~meta.worker_bit);

                worker_next_min();
                if (meta.min_next > hdr.omni.block_index) {
                    // Every worker has moved past this block: the round is complete.
                    round_state.write(meta.round_index, ROUND_COMPLETE);
                    round_next.write(meta.round_index, meta.min_next);
                    round_unacked.write(meta.round_index,
                        (worker_bitmap_t)((((bit<64>)1) << meta.worker_count) - 1));
                    // held_exponent is the round's max exponent, including this packet's claim.
                    make_result(meta.min_next, held_exponent);
                    meta.outcome = OUTCOME_RESULT;
                } else {
                    meta.outcome = OUTCOME_ABSORBED;
                }
            }
        } else if (hdr.omni.msg_type == MSG_ACK) {
            if (same_round && held_complete) {
                round_unacked.read(held_unacked, meta.round_index);
                round_unacked.write(meta.round_index, held_unacked & ~meta.worker_bit);
                meta.outcome = OUTCOME_ACK;
            } else {
                meta.drop_reason = DROP_ROUND_NOT_READY;
            }
        } else {
            // MSG_REQUEST (ingress admits no other type here).
            if (same_round && held_complete) {
                meta.outcome = OUTCOME_REPLAY;
            } else {
                meta.drop_reason = DROP_ROUND_NOT_READY;
            }
        }

        if (meta.outcome == OUTCOME_REPLAY) {
            hdr.lanes.setValid();
            lanes_load();
            round_next.read(held_next, meta.round_index);
            round_exponent.read(held_exponent, meta.round_index);
            make_result(held_next, held_exponent);
        }
    }
}

#endif
