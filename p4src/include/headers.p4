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
    bit<16>       reserved;
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
    // Register indexes of this packet's round (2 * global_slot + set), of the slot's other set, and of the slot's
    // first worker_next entry.
    bit<32>         global_slot;
    bit<32>         round_index;
    bit<32>         other_round_index;
    bit<32>         worker_next_base;
    worker_bitmap_t worker_bit;
    block_index_t   min_next;
    // Decisions.
    drop_reason_t   drop_reason;
    bit<8>          outcome;
    // Set on results that the PRE multicasts; egress then writes each copy's destination.
    bit<1>          deliver_by_multicast;
    mac_addr_t      result_src_mac;
    ipv4_addr_t     result_src_addr;
}

#endif
