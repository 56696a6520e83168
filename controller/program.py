"""The P4 names the controller drives: tables, keys, actions, parameters, registers and counters of p4src/.

This is the ONE place those names are written in Python; a unit test checks each of them against the committed
P4Info (p4src/build/omnireduce.p4info.txtpb), so a rename in the P4 program fails a test instead of a switch.
Sizes and codes come from the generated `omnireduce.p4src.constants`, never from a copy.
"""

from __future__ import annotations

from omnireduce.p4src import constants

# --- identity (p4src/include/control/identity.p4) ------------------------------------------------------------

WORKERS_TABLE = "IngressPipe.identity.workers"
WORKERS_KEY_PORT = "ingress_port"
WORKERS_KEY_SRC_ADDR = "src_addr"
WORKERS_KEY_UDP_SRC_PORT = "udp_src_port"
SET_WORKER = "IngressPipe.identity.set_worker"
SET_WORKER_JOB_ID = "job_id"
SET_WORKER_WORKER_ID = "worker_id"

JOBS_TABLE = "IngressPipe.identity.jobs"
JOBS_KEY_JOB_ID = "job_id"
SET_JOB = "IngressPipe.identity.set_job"
SET_JOB_SLOT_BASE = "slot_base"
SET_JOB_SLOT_COUNT = "slot_count"
SET_JOB_WORKER_COUNT = "worker_count"
SET_JOB_MCAST_GRP = "mcast_grp"

# --- delivery (p4src/include/control/delivery.p4) ------------------------------------------------------------

RESULT_DESTINATIONS_TABLE = "EgressPipe.delivery.result_destinations"
RESULT_DESTINATIONS_KEY_JOB_ID = "job_id"
RESULT_DESTINATIONS_KEY_WORKER_ID = "worker_id"  # = egress_rid, the multicast replica's instance
SET_RESULT_DESTINATION = "EgressPipe.delivery.set_result_destination"
SET_RESULT_DESTINATION_DST_MAC = "dst_mac"
SET_RESULT_DESTINATION_DST_ADDR = "dst_addr"
SET_RESULT_DESTINATION_UDP_DST_PORT = "udp_dst_port"

# --- forwarding (p4src/include/control/forwarding.p4) --------------------------------------------------------

IPV4_ROUTES_TABLE = "IngressPipe.forwarding.ipv4_routes"
IPV4_ROUTES_KEY_DST_ADDR = "dst_addr"
ROUTE = "IngressPipe.forwarding.route"
ROUTE_PORT = "port"
ROUTE_SRC_MAC = "src_mac"
ROUTE_DST_MAC = "dst_mac"

# --- aggregation state (p4src/include/control/aggregation.p4) ------------------------------------------------

_AGGREGATION = "IngressPipe.aggregation."
ROUND_TENSOR = _AGGREGATION + "round_tensor"
ROUND_BLOCK = _AGGREGATION + "round_block"
ROUND_NEXT = _AGGREGATION + "round_next"
ROUND_EXPONENT = _AGGREGATION + "round_exponent"
ROUND_VALUES = tuple(f"{_AGGREGATION}round_value_{lane}" for lane in range(constants.LANES))
# Per (slot, set): index (global_slot << SET_INDEX_BITS) | set.
ROUND_REGISTERS = (ROUND_TENSOR, ROUND_BLOCK, ROUND_NEXT, ROUND_EXPONENT) + ROUND_VALUES
# Per slot: index global_slot.
SLOT_TENSOR = _AGGREGATION + "slot_tensor"
# Per slot, one register per group of WORKERS_PER_GROUP workers: lane (worker & 7) holds worker's announced next.
WORKER_NEXT_GROUPS = tuple(f"{_AGGREGATION}worker_next_{group}" for group in range(constants.WORKER_GROUPS))
SETS_PER_SLOT = constants.SETS


def round_cell(global_slot: int, set_index: int) -> int:
    """Index of a (slot, set) in the round registers."""
    return (global_slot << constants.SET_INDEX_BITS) | set_index


def worker_next_lanes(cells: "list[int] | tuple[int, ...]") -> tuple[int, ...]:
    """The announced next block of every worker id, from the slot's worker_next cells (one per group)."""
    return tuple((cell >> (32 * lane)) & 0xFFFFFFFF for cell in cells for lane in range(constants.WORKERS_PER_GROUP))


# --- counters (p4src/omnireduce.p4), all packets_and_bytes -----------------------------------------------------

PORT_RX = "IngressPipe.port_rx"
PORT_TX = "EgressPipe.port_tx"
INGRESS_DROPS = "IngressPipe.drops"
EGRESS_DROPS = "EgressPipe.drops"
JOB_COUNTERS = {
    "contributions": "IngressPipe.job_contributions",
    "results": "IngressPipe.job_results",
    "replays": "IngressPipe.job_replays",
    "forwards": "IngressPipe.job_forwards",
}

TABLES = (WORKERS_TABLE, JOBS_TABLE, RESULT_DESTINATIONS_TABLE, IPV4_ROUTES_TABLE)
REGISTERS = ROUND_REGISTERS + (SLOT_TENSOR,) + WORKER_NEXT_GROUPS
COUNTERS = (PORT_RX, PORT_TX, INGRESS_DROPS, EGRESS_DROPS) + tuple(JOB_COUNTERS.values())
# (table, action, parameter names) for every action the controller installs.
ACTIONS = (
    (WORKERS_TABLE, SET_WORKER, (SET_WORKER_JOB_ID, SET_WORKER_WORKER_ID)),
    (JOBS_TABLE, SET_JOB, (SET_JOB_SLOT_BASE, SET_JOB_SLOT_COUNT, SET_JOB_WORKER_COUNT, SET_JOB_MCAST_GRP)),
    (RESULT_DESTINATIONS_TABLE, SET_RESULT_DESTINATION,
     (SET_RESULT_DESTINATION_DST_MAC, SET_RESULT_DESTINATION_DST_ADDR, SET_RESULT_DESTINATION_UDP_DST_PORT)),
    (IPV4_ROUTES_TABLE, ROUTE, (ROUTE_PORT, ROUTE_SRC_MAC, ROUTE_DST_MAC)),
)
# (table, key field names) as the P4 program declares them.
TABLE_KEYS = (
    (WORKERS_TABLE, (WORKERS_KEY_PORT, WORKERS_KEY_SRC_ADDR, WORKERS_KEY_UDP_SRC_PORT)),
    (JOBS_TABLE, (JOBS_KEY_JOB_ID,)),
    (RESULT_DESTINATIONS_TABLE, (RESULT_DESTINATIONS_KEY_JOB_ID, RESULT_DESTINATIONS_KEY_WORKER_ID)),
    (IPV4_ROUTES_TABLE, (IPV4_ROUTES_KEY_DST_ADDR,)),
)
