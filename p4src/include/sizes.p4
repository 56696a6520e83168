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

// Workers per job (worker ids are 0..MAX_WORKERS-1).
#define MAX_WORKERS 32
// Each slot's announced next blocks live in WORKER_GROUPS registers of WORKERS_PER_GROUP 32-bit lanes each, one
// cell per slot, so that a packet touches every worker_next register once, reading the minimum of its lanes in the
// same access (docs/protocol.md section 8 regroups them for Tofino 2). One lane a register here: BMv2's Thrift
// runtime reads register cells as signed 64-bit integers, so a cell of two lanes with END_OF_TENSOR in the upper one
// (at or above 2^63) cannot be read back there. WORKER_GROUPS * WORKERS_PER_GROUP = MAX_WORKERS.
#define WORKERS_PER_GROUP 1
#define WORKER_GROUPS 32
// log2(WORKERS_PER_GROUP): worker w is lane (w & (WORKERS_PER_GROUP - 1)) of group (w >> WORKER_LANE_BITS).
#define WORKER_LANE_BITS 0

// Aggregation slots of the whole switch, shared by all jobs (each job owns a contiguous range).
#define SLOT_COUNT 512
// Shadow sets per slot: the switch keeps each column's last SETS completed rounds, so that a worker that missed a
// result can have it replayed while it is held (docs/protocol.md section 4). Round registers are indexed by
// (global_slot << SET_INDEX_BITS) | set.
#define SETS 4
#define SET_INDEX_BITS 2
#define ROUND_COUNT 2048

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
