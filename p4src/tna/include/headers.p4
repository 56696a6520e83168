/*
 * headers.p4 (Tofino): the wire headers of p4src/include/headers.p4, the header that carries a packet between the
 * passes, and the metadata of ingress and egress.
 */
#ifndef OMNIREDUCE_TNA_HEADERS_P4
#define OMNIREDUCE_TNA_HEADERS_P4

#include "defines.p4"
#include "../../include/headers.p4"

// NOTE: Tofino keeps nothing of a packet between ingress and egress, or between egress and the next ingress of a
// recirculated packet, except what travels in front of it. omni_bridge_t is that: emitted by the ingress deparser
// for every packet that goes to egress, and by the egress deparser of the announcement pass in front of the
// recirculated packet. It never leaves the switch. 22 bytes.
header omni_bridge_t {
    bit<8>        phase;              // PHASE_DELIVER, PHASE_ANNOUNCE or PHASE_ROUND
    bit<8>        outcome;            // PHASE_DELIVER: OUTCOME_RESULT, REPLAY, FORWARD or NONE (routed)
    job_id_t      job_id;
    worker_id_t   worker_id;
    bit<8>        worker_count;
    bit<16>       global_slot;
    bit<16>       mcast_grp;
    @padding bit<7> _pad0;
    port_t        ingress_port;       // where the packet entered the switch: a replay leaves there
    worker_id_t   forward_to;         // PHASE_DELIVER of a forwarded REQUEST/REPAIR: the one worker that gets it
    @padding bit<5> _pad1;
    bit<1>        deliver_by_multicast;
    bit<1>        new_tensor;         // this CONTRIB starts a new tensor in its slot (resets the announcements)
    bit<1>        accepted;           // PHASE_ROUND: the sender announced this block (the contribution counts)
    block_index_t announced;          // PHASE_ROUND: the sender's announcement before this packet
    block_index_t min_next;           // PHASE_ROUND: the minimum over the job's announcements after it
}

struct tna_headers_t {
    omni_bridge_t bridge;
    ethernet_t    ethernet;
    ipv4_t        ipv4;
    udp_t         udp;
    omni_t        omni;
    omni_lanes_t  lanes;
}

struct ingress_metadata_t {
    bool          checksum_error;
    // Identity, from the workers and jobs tables.
    job_id_t      job_id;
    worker_id_t   worker_id;
    slot_t        slot_base;
    slot_t        slot_count;
    bit<8>        worker_count;
    bit<16>       mcast_grp;
    port_t        recirculation_port;
    // Shape checks (field-to-field comparisons are made with min/max and an equality test).
    bit<16>       expected_udp_length;
    bit<16>       expected_ipv4_length;
    slot_t        slot_max;           // max(slot, slot_count): slot is in range when it is not the slot
    bit<8>        peer_max;           // max(peer, worker_count): peer is a worker of the job when it is not the peer
    // First pass: the slot's tensor.
    bit<32>       tensor_cell;        // (tensor_id << 16) | TNA_TENSOR_MARK
    bit<32>       tensor_delta;       // from slot_tensor: tensor_cell - held: 0 same, > 0 newer, < 0 older (signed)
    bit<1>        new_tensor;
    bit<1>        to_announce;        // on to the announcement pass (egress of the job's recirculation port)
    bit<16>       global_slot;        // slot_base + slot
    // Second pass: the round.
    round_index_t round_index;
    bit<32>       held_round_tensor;
    bit<4>        round_state;        // ROUND_* from round_block's predicate output
    block_index_t block_floor;        // min(min_next, block_index): complete when it is not min_next
    block_index_t reuse_below;        // accepted: block_floor (a held block below it is complete); else 0
    block_index_t announced_floor;    // min(announced, block_index): announced > block_index when it is not announced
    bit<8>        lane_op;
    block_index_t next_to_store;      // round_next's new value: min_next if complete, else 0
    exponent_t    result_exponent;
    block_index_t result_next;
    // Decisions.
    drop_reason_t drop_reason;
    bit<8>        outcome;
    worker_id_t   forward_to;
}

struct egress_metadata_t {
    // The announcement pass (announcements.p4): what the sender's lane is compared with and replaced by (CONTRIB:
    // block_index and next_block; REQUEST: END_OF_TENSOR twice, which changes nothing).
    block_index_t accept_block;
    block_index_t accept_next;
    // The running minima over the workers' lanes and the sender's lane (generated, codegen.py).
    #include "generated/announcement_fields.p4"
    drop_reason_t drop_reason;
}

#endif
