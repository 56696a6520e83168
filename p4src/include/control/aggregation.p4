/*
 * aggregation.p4: the OmniReduce slot state machine (docs/protocol.md section 4 is its specification).
 *
 * Input: a validated CONTRIB, REQUEST or REPAIR from a registered worker of a job, with meta.job_id, worker_id,
 * slot_base, slot_count, worker_count and mcast_grp set by WorkerIdentity.
 * Output: meta.outcome (ABSORBED, RESULT, REPLAY, FORWARD) or meta.drop_reason; for RESULT and REPLAY the omni
 * header and lanes already hold the result.
 *
 * NOTE on the register layout: every register is read-modified-written at most once per packet, at one index,
 * and in pipeline order (slot_tensor, worker_next_<g>, round_tensor/round_block, round_exponent, round_next,
 * round_value_<k>): each maps onto one Tofino stateful ALU (docs/protocol.md section 8). One register per value
 * lane for the same reason. No worker acknowledges anything: a contribution is accepted exactly when it is for the
 * block its sender announced (so nothing is added twice), and a set is reused without confirmation; a worker that
 * lost a result gets it replayed while the switch holds it, or from a peer worker (REQUEST forwarded) afterwards.
 */
#ifndef OMNIREDUCE_AGGREGATION_P4
#define OMNIREDUCE_AGGREGATION_P4

control Aggregation(inout headers_t hdr,
                    inout local_metadata_t meta,
                    inout standard_metadata_t standard_metadata) {

    // Per (slot, set): the round held there. Index: (global_slot << SET_INDEX_BITS) | set.
    register<tensor_cell_t>(ROUND_COUNT) round_tensor;
    register<block_index_t>(ROUND_COUNT) round_block;
    register<exponent_t>(ROUND_COUNT)    round_exponent;
    // The result's next block, written on completion (0 while the round aggregates: no next block is 0).
    register<block_index_t>(ROUND_COUNT) round_next;

    // Per slot: the tensor the slot's worker_next cells belong to (TENSOR_VALID | id; 0: never used).
    register<tensor_cell_t>(SLOT_COUNT) slot_tensor;

    // round_value_<k> registers and the lanes_store / lanes_add / lanes_load actions.
    #include "../generated/lane_state.p4"
    // worker_next_<g> registers and the worker_next_access action.
    #include "../generated/worker_state.p4"

    action locate_round() {
        meta.global_slot = (bit<32>)(meta.slot_base + hdr.omni.slot);
        meta.round_index = (meta.global_slot << SET_INDEX_BITS) | (bit<32>)(hdr.omni.flags & SET_MASK);
        meta.worker_group = meta.worker_id >> WORKER_LANE_BITS;
        meta.worker_shift = ((bit<8>)(meta.worker_id & (WORKERS_PER_GROUP - 1))) << 5;
    }

    // Turn the packet into a RESULT (sums or held lanes already in hdr.lanes).
    action make_result(block_index_t next_block, exponent_t exponent) {
        hdr.omni.msg_type = MSG_RESULT;
        hdr.omni.next_block = next_block;
        hdr.omni.exponent = exponent;
        hdr.omni.lane_count = LANES;
        hdr.omni.peer = 0;
    }

    // REQUEST or REPAIR for one other worker of the job: delivered to it alone (multicast copy filtered in egress),
    // naming the sender in `peer`.
    action forward_to_peer() {
        meta.forward_to = hdr.omni.peer;
        hdr.omni.peer = meta.worker_id;
        meta.outcome = OUTCOME_FORWARD;
    }

    apply {
        tensor_cell_t held_slot_tensor;
        tensor_cell_t held_tensor;
        block_index_t held_block;
        // The exponent the result carries: the packet's claim, maxed with the round's when it joins a round.
        exponent_t    held_exponent = hdr.omni.exponent;
        block_index_t held_next;
        tensor_cell_t packet_tensor = TENSOR_VALID | (tensor_cell_t)hdr.omni.tensor_id;
        bool          peer_valid = hdr.omni.peer != meta.worker_id && (bit<8>)hdr.omni.peer < meta.worker_count;

        locate_round();

        if (hdr.omni.msg_type == MSG_REPAIR) {
            // A peer's copy of a result for a worker that asked for it: no state is touched.
            if (peer_valid) {
                forward_to_peer();
            } else {
                meta.drop_reason = DROP_BAD_PEER;
            }
        } else {
            // 1. Which tensor the slot is in. A CONTRIB for the column's first block (block == slot) of a newer
            //    tensor (16-bit serial arithmetic) starts that tensor in the slot; anything else of another tensor
            //    is stale.
            slot_tensor.read(held_slot_tensor, meta.global_slot);
            bit<16> tensor_delta = hdr.omni.tensor_id - (bit<16>)held_slot_tensor;
            bool same_tensor = held_slot_tensor == packet_tensor;
            meta.new_tensor = hdr.omni.msg_type == MSG_CONTRIB && !same_tensor
                && hdr.omni.block_index == (block_index_t)hdr.omni.slot
                && ((held_slot_tensor & TENSOR_VALID) == 0 || tensor_delta < 0x8000);
            if (meta.new_tensor) {
                slot_tensor.write(meta.global_slot, packet_tensor);
            }

            bool older_tensor = (held_slot_tensor & TENSOR_VALID) != 0 && tensor_delta >= 0x8000;
            if (!same_tensor && !meta.new_tensor && hdr.omni.msg_type == MSG_REQUEST && older_tensor) {
                // A result of the slot's previous tensor, lost by a worker that the others have left behind: only
                // a peer still holds it (every worker serves the tensor before the one it is in).
                if (peer_valid) {
                    forward_to_peer();
                } else {
                    meta.drop_reason = DROP_BAD_PEER;
                }
            } else if (!same_tensor && !meta.new_tensor) {
                meta.drop_reason = DROP_STALE;
            } else {
                // 2. The sender's announcement and the column's minimum (accepting the contribution if it is for
                //    the announced block).
                worker_next_access();
                bool accepted = hdr.omni.msg_type == MSG_CONTRIB && meta.announced == hdr.omni.block_index;
                bool complete = meta.min_next > hdr.omni.block_index;

                // 3. The round held in the packet's set.
                round_tensor.read(held_tensor, meta.round_index);
                round_block.read(held_block, meta.round_index);
                bool same_round = held_tensor == packet_tensor && held_block == hdr.omni.block_index;
                // A set may be reused once its round is complete: every round of an older tensor is (workers close
                // a tensor before starting the next), one of this tensor when the minimum has passed it.
                bool held_done = held_tensor != packet_tensor || (held_block < hdr.omni.block_index
                                                                   && meta.min_next > held_block);

                if (hdr.omni.msg_type == MSG_CONTRIB) {
                    if (accepted && same_round) {
                        lanes_add();
                        round_exponent.read(held_exponent, meta.round_index);
                        if (hdr.omni.exponent > held_exponent) {
                            held_exponent = hdr.omni.exponent;
                            round_exponent.write(meta.round_index, held_exponent);
                        }
                    } else if (accepted && held_done) {
                        round_tensor.write(meta.round_index, packet_tensor);
                        round_block.write(meta.round_index, hdr.omni.block_index);
                        round_exponent.write(meta.round_index, held_exponent);
                        lanes_store();
                    } else if (accepted) {
                        // The set still holds an unfinished or later round: the sender's set index is wrong.
                        meta.drop_reason = DROP_SET_BUSY;
                    } else if (meta.announced == hdr.omni.next_block && same_round) {
                        // The sender already contributed this block (its announcement moved on to this packet's
                        // next): a retransmission. Never added twice; replayed once the round is complete.
                        if (complete) {
                            meta.outcome = OUTCOME_REPLAY;
                        } else {
                            meta.drop_reason = DROP_DUPLICATE;
                        }
                    } else if (meta.announced > hdr.omni.block_index) {
                        // An old contribution (the set moved on, or the sender did).
                        meta.drop_reason = DROP_STALE;
                    } else {
                        // A block the sender never announced.
                        meta.drop_reason = DROP_NOT_ANNOUNCED;
                    }

                    if (accepted && meta.drop_reason == 0) {
                        // round_next stays 0 while the round aggregates, and holds the result's next once complete.
                        round_next.write(meta.round_index, complete ? meta.min_next : 0);
                        if (complete) {
                            // Every worker has moved past this block: the round is complete.
                            make_result(meta.min_next, held_exponent);
                            meta.outcome = OUTCOME_RESULT;
                        } else {
                            meta.outcome = OUTCOME_ABSORBED;
                        }
                    }
                } else {
                    // MSG_REQUEST (ingress admits no other type here): the sender misses this round's result.
                    if (same_round && complete) {
                        meta.outcome = OUTCOME_REPLAY;
                    } else if (!same_round && complete) {
                        // Complete, and its set reused since: every worker that contributed to a later round of
                        // the column holds the result. Ask the peer the sender names.
                        if (peer_valid) {
                            forward_to_peer();
                        } else {
                            meta.drop_reason = DROP_BAD_PEER;
                        }
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
    }
}

#endif
