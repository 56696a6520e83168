/*
 * announcements.p4 (Tofino, egress of the job's recirculation port, the announcement pass): step 2 of
 * docs/protocol.md section 8 -- every worker's announced next block in the packet's slot, the sender's own, and the
 * minimum over all of them after this packet.
 *
 * NOTE on why this runs in egress: a Tofino 1 stateful ALU hands one 32-bit word to the pipeline per packet, so the
 * minimum over 32 announcements needs 32 of them (each lane is folded into a running minimum: codegen.py), and the
 * lanes need 32 more (SwitchML pays the same for its value pairs with extra passes). Ingress has 48; so the
 * announcements take the egress pipeline of the job's recirculation port and the packet comes back into ingress
 * for the round (docs/protocol.md section 8).
 *
 * Input: hdr.bridge from the first pass (worker_id, worker_count, global_slot, new_tensor), meta.accept_block and
 * accept_next from the parser. Output: hdr.bridge.announced, accepted and min_next, phase = PHASE_ROUND.
 */
#ifndef OMNIREDUCE_TNA_ANNOUNCEMENTS_P4
#define OMNIREDUCE_TNA_ANNOUNCEMENTS_P4

#include "../generated/worker_announcements.p4"

control Announcements(inout tna_headers_t hdr,
                      inout egress_metadata_t meta) {

    WorkerAnnouncements() workers;

    apply {
        // Every lane is read (and reset on a new tensor); the sender's is replaced by its next block when it holds
        // the block this CONTRIB is for. Afterwards hdr.bridge.announced is the sender's lane before the packet and
        // meta.chain_0 the minimum over every other lane.
        workers.apply(hdr, meta);

        // The contribution is accepted when it is for the block its sender announced (a new tensor has just reset
        // that announcement to this, the column's first, block). The minimum takes the sender's lane after this
        // packet: the next block if accepted, else the announcement. NOTE: meta.accept_block and accept_next
        // (the parser's copies) rather than hdr.omni's fields, which egress then leaves alone: they need no
        // 32-bit container of the egress, which has few to spare (docs/tofino.md, "PHV").
        if (hdr.omni.msg_type == MSG_CONTRIB
                && (hdr.bridge.new_tensor == 1 || hdr.bridge.announced == meta.accept_block)) {
            hdr.bridge.accepted = 1;
            hdr.bridge.min_next = min(meta.chain_0, meta.accept_next);
        } else {
            hdr.bridge.accepted = 0;
            hdr.bridge.min_next = min(meta.chain_0, hdr.bridge.announced);
        }
        hdr.bridge.phase = PHASE_ROUND;
    }
}

#endif
