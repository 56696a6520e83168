/*
 * sizes.p4: every size of the omnireduce program, in one place.
 *
 * Each value is a plain integer on its own `#define` line: p4src/generate.py reads this file to generate the
 * per-lane and per-worker P4 code and the Python constants (omnireduce.p4src.constants). Change a number here,
 * then run `make p4` (regenerates, recompiles, refreshes p4src/build/).
 */
#ifndef OMNIREDUCE_SIZES_P4
#define OMNIREDUCE_SIZES_P4

// Values per block: one int32 lane each. 32 lanes = 128 bytes of payload, so a CONTRIB frame is 190 bytes.
// The issue asks for at least 32; 64 would halve the header overhead but doubles the per-packet register work,
// which the software targets (BMv2, softswitch) pay per lane.
#define LANES 32

// Workers per job: the contribution and confirmation bitmaps are bit<32>.
#define MAX_WORKERS 32
// log2(MAX_WORKERS): worker_next is indexed by (global_slot << WORKER_INDEX_BITS) + worker_id.
#define WORKER_INDEX_BITS 5

// Aggregation slots of the whole switch, shared by all jobs (each job owns a contiguous range).
#define SLOT_COUNT 512
// Two shadow sets per slot: round registers are indexed by 2 * global_slot + set.
#define ROUND_COUNT 1024
// worker_next holds SLOT_COUNT * MAX_WORKERS announced next blocks.
#define WORKER_NEXT_COUNT 16384

// Jobs: job ids index the per-job counters, so a job id must be < MAX_JOBS.
#define MAX_JOBS 64
// Registered workers over all jobs (MAX_JOBS * MAX_WORKERS would be 2048; 1024 is plenty for one switch).
#define WORKER_TABLE_SIZE 1024
#define ROUTE_TABLE_SIZE 1024

// v1model ports are bit<9>; port counters are indexed by port number.
#define PORT_COUNT 512
// Size of the drop-reason counters (reasons are defined in defines.p4).
#define DROP_REASON_COUNT 32

#endif
