/*
 * admission.p4 (Tofino, ingress, first pass): step 1 of docs/protocol.md section 4.2 -- which tensor the slot is
 * in -- and the REPAIRs and REQUESTs that only need forwarding. What passes goes on to the announcement pass.
 *
 * Input: a validated CONTRIB, REQUEST or REPAIR from a registered worker (WorkerIdentity set meta.job_id etc.).
 * Output: meta.outcome = OUTCOME_FORWARD, meta.drop_reason, or meta.to_announce (with meta.new_tensor).
 */
#ifndef OMNIREDUCE_TNA_ADMISSION_P4
#define OMNIREDUCE_TNA_ADMISSION_P4

control Admission(inout tna_headers_t hdr,
                  inout ingress_metadata_t meta) {

    // Per slot: the tensor its announcements belong to, (tensor_id << 16) | TNA_TENSOR_MARK; 0: never used.
    Register<bit<32>, slot_t>(TNA_SLOT_COUNT, 0) slot_tensor;

    // Both return the packet's tensor relative to the slot's, tensor_cell - held: 0 the same tensor; sign bit clear
    // newer, set older (16-bit serial arithmetic on the ids in the upper half); a never used slot (0) gives
    // TNA_UNUSED_DELTA, "newer". NOTE: the difference comes out of the stateful ALU so that the decisions below
    // test one 32-bit word: a Tofino 1 gateway reads at most 4 bytes (held != 0, delta == 0 and the sign were 8).
    // A CONTRIB for the column's first block takes the slot for its tensor when the slot was never used or holds an
    // older one.
    RegisterAction<bit<32>, slot_t, bit<32>>(slot_tensor) slot_tensor_claim = {
        void apply(inout bit<32> value, out bit<32> delta) {
            if (value == 0) {
                delta = TNA_UNUSED_DELTA;
            } else {
                delta = meta.tensor_cell - value;
            }
            if (value == 0 || (int<32>)(meta.tensor_cell - value) > 0) {
                value = meta.tensor_cell;
            }
        }
    };

    RegisterAction<bit<32>, slot_t, bit<32>>(slot_tensor) slot_tensor_read = {
        void apply(inout bit<32> value, out bit<32> delta) {
            if (value == 0) {
                delta = TNA_UNUSED_DELTA;
            } else {
                delta = meta.tensor_cell - value;
            }
        }
    };

    // REQUEST or REPAIR for one other worker of the job: delivered to it alone, naming the sender in `peer`.
    action forward_to_peer() {
        meta.forward_to = hdr.omni.peer;
        hdr.omni.peer = meta.worker_id;
        meta.outcome = OUTCOME_FORWARD;
    }

    apply {
        // peer < worker_count: max(peer, worker_count) is not the peer.
        meta.peer_max = max(hdr.omni.peer, meta.worker_count);
        bool peer_valid = hdr.omni.peer != meta.worker_id && meta.peer_max != hdr.omni.peer;

        if (hdr.omni.msg_type == MSG_REPAIR) {
            // A peer's copy of a result for a worker that asked for it: no state is touched.
            if (peer_valid) {
                forward_to_peer();
            } else {
                meta.drop_reason = DROP_BAD_PEER;
            }
        } else {
            bool first_block_contribution = hdr.omni.msg_type == MSG_CONTRIB
                && hdr.omni.block_index == (block_index_t)hdr.omni.slot;
            if (first_block_contribution) {
                meta.tensor_delta = slot_tensor_claim.execute(meta.global_slot);
            } else {
                meta.tensor_delta = slot_tensor_read.execute(meta.global_slot);
            }
            bool same_tensor = meta.tensor_delta == 0;
            bool older_tensor = meta.tensor_delta[31:31] == 1;
            bool newer_tensor = !same_tensor && meta.tensor_delta[31:31] == 0;
            if (first_block_contribution && newer_tensor) {
                meta.new_tensor = 1;
            } else {
                meta.new_tensor = 0;
            }

            if (!same_tensor && meta.new_tensor == 0 && hdr.omni.msg_type == MSG_REQUEST && older_tensor) {
                // A result of the slot's previous tensor, lost by a worker that the others have left behind: only
                // a peer still holds it.
                if (peer_valid) {
                    forward_to_peer();
                } else {
                    meta.drop_reason = DROP_BAD_PEER;
                }
            } else if (!same_tensor && meta.new_tensor == 0) {
                meta.drop_reason = DROP_STALE;
            } else {
                meta.to_announce = 1;
            }
        }
    }
}

#endif
