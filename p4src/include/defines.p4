/*
 * defines.p4: types and protocol constants of omnireduce (docs/protocol.md is the prose for each of them).
 *
 * Every `const` here is also exported to Python by p4src/generate.py (omnireduce.p4src.constants), so the agent
 * and controller never copy a number by hand. Keep one `const <type> NAME = <integer>;` per line.
 */
#ifndef OMNIREDUCE_DEFINES_P4
#define OMNIREDUCE_DEFINES_P4

#include "sizes.p4"

typedef bit<9>  port_t;
typedef bit<48> mac_addr_t;
typedef bit<32> ipv4_addr_t;
typedef bit<16> job_id_t;
typedef bit<16> tensor_id_t;
typedef bit<16> slot_t;
typedef bit<32> block_index_t;
typedef bit<8>  worker_id_t;
typedef bit<32> value_t;
typedef bit<8>  exponent_t;
typedef bit<8>  drop_reason_t;
// A slot_tensor / round_tensor cell: TENSOR_VALID | tensor id, or 0 when never used.
typedef bit<32> tensor_cell_t;

const bit<16> ETHERTYPE_IPV4 = 0x0800;
const bit<8>  IP_PROTO_UDP = 17;

// UDP destination port that marks aggregation traffic ("OR" in ASCII); not registered with IANA.
const bit<16> OMNI_UDP_PORT = 20306;

// Header sizes in bytes (the omni header is 20 bytes; docs/protocol.md section 2).
const bit<16> IPV4_HEADER_BYTES = 20;
const bit<16> UDP_HEADER_BYTES = 8;
const bit<16> OMNI_HEADER_BYTES = 20;

// msg_type values.
const bit<8> MSG_CONTRIB = 1;
const bit<8> MSG_RESULT = 2;
const bit<8> MSG_REQUEST = 4;
const bit<8> MSG_REPAIR = 5;

// flags bits 0-1: the shadow set (0 .. SETS-1) of the slot the round uses. Other bits are zero and ignored.
const bit<8> SET_MASK = 3;

// slot_tensor and round_tensor cells hold a tensor id with this bit set once used (0: never used).
const bit<32> TENSOR_VALID = 0x10000;

// "No further non-zero block in this column".
const bit<32> END_OF_TENSOR = 0xFFFFFFFF;

// Exponent claims are biased like IEEE-754 single precision exponents (docs/protocol.md section 5).
const bit<8> EXPONENT_BIAS = 127;

// Drop reasons: the index into the `drops` counters of ingress and egress.
const bit<8> DROP_PARSER_ERROR = 1;
const bit<8> DROP_BAD_CHECKSUM = 2;
const bit<8> DROP_BAD_LENGTH = 3;
const bit<8> DROP_BAD_LANE_COUNT = 4;
const bit<8> DROP_BAD_MSG_TYPE = 5;
const bit<8> DROP_UNKNOWN_WORKER = 6;
const bit<8> DROP_JOB_MISMATCH = 7;
const bit<8> DROP_SLOT_OUT_OF_RANGE = 8;
const bit<8> DROP_DUPLICATE = 9;
const bit<8> DROP_STALE = 10;
const bit<8> DROP_SET_BUSY = 11;
const bit<8> DROP_NOT_ANNOUNCED = 12;
const bit<8> DROP_ROUND_NOT_READY = 13;
const bit<8> DROP_NO_ROUTE = 14;
const bit<8> DROP_NOT_IPV4 = 15;
const bit<8> DROP_TTL_EXPIRED = 16;
const bit<8> DROP_NO_RESULT_DESTINATION = 17;
const bit<8> DROP_BAD_PEER = 18;

// What ingress decided for an aggregation packet (local_metadata.outcome); not on the wire.
const bit<8> OUTCOME_NONE = 0;
const bit<8> OUTCOME_ABSORBED = 1;
const bit<8> OUTCOME_RESULT = 2;
const bit<8> OUTCOME_REPLAY = 3;
const bit<8> OUTCOME_FORWARD = 4;

#endif
