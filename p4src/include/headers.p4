/*
 * headers.p4: the headers omnireduce parses and the metadata its controls share.
 */
#ifndef OMNIREDUCE_HEADERS_P4
#define OMNIREDUCE_HEADERS_P4

#include "defines.p4"

header ethernet_t {
    mac_addr_t dst_addr;
    mac_addr_t src_addr;
    bit<16>    ether_type;
}

header ipv4_t {
    bit<4>      version;
    bit<4>      ihl;
    bit<8>      dscp_ecn;
    bit<16>     total_len;
    bit<16>     identification;
    bit<3>      flags;
    bit<13>     frag_offset;
    bit<8>      ttl;
    bit<8>      protocol;
    bit<16>     hdr_checksum;
    ipv4_addr_t src_addr;
    ipv4_addr_t dst_addr;
}

header udp_t {
    bit<16> src_port;
    bit<16> dst_port;
    bit<16> length;
    bit<16> checksum;
}

// The omni header (docs/protocol.md section 2). p4src/generate.py reads this declaration to export the field
// layout to Python, so keep one field per line.
header omni_t {
    bit<8>        msg_type;
    bit<8>        flags;
    job_id_t      job_id;
    tensor_id_t   tensor_id;
    slot_t        slot;
    block_index_t block_index;
    block_index_t next_block;
    exponent_t    exponent;
    bit<8>        lane_count;
    worker_id_t   peer;
    bit<8>        reserved;
}

// omni_lanes_t (LANES x value_t) is generated from LANES.
#include "generated/lanes_header.p4"

struct headers_t {
    ethernet_t   ethernet;
    ipv4_t       ipv4;
    udp_t        udp;
    omni_t       omni;
    omni_lanes_t lanes;
}

struct local_metadata_t {
    // Identity, from the workers and jobs tables.
    job_id_t        job_id;
    worker_id_t     worker_id;
    slot_t          slot_base;
    slot_t          slot_count;
    bit<8>          worker_count;
    bit<16>         mcast_grp;
    // Register index of this packet's slot and of its round ((global_slot << SET_INDEX_BITS) | set).
    bit<32>         global_slot;
    bit<32>         round_index;
    // The sender's lane in the worker_next registers: group (worker_id >> 3), shift 32 * (worker_id & 7).
    bit<8>          worker_group;
    bit<8>          worker_shift;
    // Whether this CONTRIB starts a new tensor in its slot (resets the slot's worker_next cells).
    bool            new_tensor;
    // The sender's announced next block before this packet, and the minimum over the job's workers after it.
    block_index_t   announced;
    block_index_t   min_next;
    // Forwarded REQUEST/REPAIR: the one worker whose multicast copy is delivered.
    worker_id_t     forward_to;
    // Decisions.
    drop_reason_t   drop_reason;
    bit<8>          outcome;
    // Set on results that the PRE multicasts; egress then writes each copy's destination.
    bit<1>          deliver_by_multicast;
    mac_addr_t      result_src_mac;
    ipv4_addr_t     result_src_addr;
}

#endif
