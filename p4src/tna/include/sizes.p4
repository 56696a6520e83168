/*
 * sizes.p4 (Tofino): the sizes that differ from the v1model program's, in one place.
 *
 * Everything else (LANES, MAX_WORKERS, SETS, table sizes, the wire format) comes from p4src/include/sizes.p4 and
 * defines.p4, shared with the v1model program. Each value is a plain integer on its own `#define` line:
 * p4src/generate.py reads this file too (the Python constants get them with their TNA_ names).
 */
#ifndef OMNIREDUCE_TNA_SIZES_P4
#define OMNIREDUCE_TNA_SIZES_P4

// Aggregation slots of one pipe. A slot holds SETS rounds, so the round registers have TNA_ROUND_COUNT cells
// ("aggregation slots" in SwitchML's sense: one cell holds one block's running sums; SwitchML's register_size of
// 22,528 cells is 11,264 slots of 2 pools). 8,192 slots is the most that fits: each lane's register is then 32,768
// x 32 bits = 128 KiB = 8 SRAM blocks (+1 spare for the stateful ALU), 4 lanes a stage use 36 of a stage's 48 map
// RAMs; 16,384 slots (17 map RAMs a lane) would leave room for only 2 lanes a stage, and 32 lanes need 16 stages.
#define TNA_SLOT_COUNT 8192
// log2(TNA_SLOT_COUNT): the width of a slot register's index.
#define TNA_SLOT_INDEX_BITS 13
// TNA_SLOT_COUNT * SETS; index (global_slot << SET_INDEX_BITS) | set, TNA_SLOT_INDEX_BITS + SET_INDEX_BITS wide.
#define TNA_ROUND_COUNT 32768
#define TNA_ROUND_INDEX_BITS 15

// Ports that send a packet back into ingress after egress (a pipe's recirculation port, or front-panel ports in
// loopback): the ingress parser's value set recirculation_ports, programmed by the controller.
#define TNA_RECIRCULATION_PORTS 8

#endif
