"""A synthetic omnireduce pipeline for controller tests: P4Info and matching BMv2 JSON built from the plan.

Used only where the compiled program (p4src/build/omnireduce.{p4info.txtpb,json}) is not there yet; the P4Info
has the entity names of briefs/p4names.md and the sizes of the generated constants, and the JSON agrees with it in
everything a P4Runtime server cross-checks. The controller's names come from controller/program.py, so a test on
this pipeline exercises exactly the code paths the real one does.
"""

from __future__ import annotations

import json
from pathlib import Path

from google.protobuf import text_format
from p4.config.v1 import p4info_pb2

from omnireduce.controller import program
from omnireduce.p4src import constants

EXACT, LPM = p4info_pb2.MatchField.EXACT, p4info_pb2.MatchField.LPM

# (table, size, [(key, bitwidth, kind)], [(action, [(param, bitwidth)])], default action)
_TABLES = [
    (program.WORKERS_TABLE, constants.WORKER_TABLE_SIZE,
     [(program.WORKERS_KEY_PORT, 9, EXACT), (program.WORKERS_KEY_SRC_ADDR, 32, EXACT),
      (program.WORKERS_KEY_UDP_SRC_PORT, 16, EXACT)],
     [(program.SET_WORKER, [(program.SET_WORKER_JOB_ID, 16), (program.SET_WORKER_WORKER_ID, 8)])],
     "IngressPipe.identity.unknown_worker"),
    (program.JOBS_TABLE, constants.MAX_JOBS, [(program.JOBS_KEY_JOB_ID, 16, EXACT)],
     [(program.SET_JOB, [(program.SET_JOB_SLOT_BASE, 16), (program.SET_JOB_SLOT_COUNT, 16),
                         (program.SET_JOB_WORKER_COUNT, 8), (program.SET_JOB_MCAST_GRP, 16)])],
     "IngressPipe.identity.unknown_worker"),
    (program.RESULT_DESTINATIONS_TABLE, constants.MAX_JOBS * constants.MAX_WORKERS,
     [(program.RESULT_DESTINATIONS_KEY_JOB_ID, 16, EXACT), (program.RESULT_DESTINATIONS_KEY_WORKER_ID, 16, EXACT)],
     [(program.SET_RESULT_DESTINATION, [(program.SET_RESULT_DESTINATION_DST_MAC, 48),
                                        (program.SET_RESULT_DESTINATION_DST_ADDR, 32),
                                        (program.SET_RESULT_DESTINATION_UDP_DST_PORT, 16)])],
     "EgressPipe.delivery.no_destination"),
    (program.IPV4_ROUTES_TABLE, constants.ROUTE_TABLE_SIZE, [(program.IPV4_ROUTES_KEY_DST_ADDR, 32, LPM)],
     [(program.ROUTE, [(program.ROUTE_PORT, 9), (program.ROUTE_SRC_MAC, 48), (program.ROUTE_DST_MAC, 48)])],
     "IngressPipe.forwarding.no_route"),
]

_ROUND_WIDTHS = {program.ROUND_STATE: 8, program.ROUND_TENSOR: 16, program.ROUND_BLOCK: 32,
                 program.ROUND_CONTRIBUTED: 32, program.ROUND_UNACKED: 32, program.ROUND_NEXT: 32,
                 program.ROUND_EXPONENT: 8}


def _registers() -> list[tuple[str, int, int]]:
    registers = [(name, constants.ROUND_COUNT, _ROUND_WIDTHS.get(name, 32)) for name in program.ROUND_REGISTERS]
    registers.append((program.SLOT_TENSOR, constants.SLOT_COUNT, 16))
    registers.append((program.WORKER_NEXT, constants.WORKER_NEXT_COUNT, 32))
    return registers


def _counters() -> list[tuple[str, int]]:
    sizes = {program.PORT_RX: constants.PORT_COUNT, program.PORT_TX: constants.PORT_COUNT,
             program.INGRESS_DROPS: constants.DROP_REASON_COUNT, program.EGRESS_DROPS: constants.DROP_REASON_COUNT}
    return [(name, sizes.get(name, constants.MAX_JOBS)) for name in program.COUNTERS]


def _alias(name: str) -> str:
    return name.rsplit(".", 1)[-1]


def synthetic_p4info() -> p4info_pb2.P4Info:
    p4info = p4info_pb2.P4Info()
    p4info.pkg_info.arch = "v1model"
    action_ids: dict[str, int] = {}

    def add_action(name: str, params: list[tuple[str, int]]) -> int:
        if name in action_ids:
            return action_ids[name]
        action = p4info.actions.add()
        action.preamble.id = 0x01000001 + len(action_ids)
        action.preamble.name = name
        action.preamble.alias = name if "." not in name else _alias(name)
        for index, (param, width) in enumerate(params, start=1):
            action.params.add(id=index, name=param, bitwidth=width)
        action_ids[name] = action.preamble.id
        return action.preamble.id

    for index, (name, size, keys, actions, default) in enumerate(_TABLES):
        table = p4info.tables.add()
        table.preamble.id = 0x02000001 + index
        table.preamble.name = name
        table.preamble.alias = _alias(name)
        for key_index, (key, width, kind) in enumerate(keys, start=1):
            table.match_fields.add(id=key_index, name=key, bitwidth=width, match_type=kind)
        for action_name, params in actions:
            table.action_refs.add(id=add_action(action_name, params))
        default_id = add_action(default, [])
        table.action_refs.add(id=default_id, scope=p4info_pb2.ActionRef.DEFAULT_ONLY)
        table.const_default_action_id = default_id
        table.size = size
    for index, (name, size) in enumerate(_counters()):
        counter = p4info.counters.add()
        counter.preamble.id = 0x13000001 + index
        counter.preamble.name = name
        # Two counters are called `drops`: p4c then keeps the full names as aliases.
        counter.preamble.alias = name if name.endswith(".drops") else _alias(name)
        counter.spec.unit = p4info_pb2.CounterSpec.BOTH
        counter.size = size
    for index, (name, size, width) in enumerate(_registers()):
        register = p4info.registers.add()
        register.preamble.id = 0x16000001 + index
        register.preamble.name = name
        register.preamble.alias = _alias(name)
        register.type_spec.bitstring.bit.bitwidth = width
        register.size = size
    return p4info


def bmv2_json(p4info: p4info_pb2.P4Info) -> dict:
    """A BMv2 JSON program that agrees with `p4info` (tables, actions, registers, counters; no packet logic)."""
    actions_by_id = {action.preamble.id: action for action in p4info.actions}
    kinds = {EXACT: "exact", LPM: "lpm"}
    tables = []
    for table in p4info.tables:
        default_id = table.const_default_action_id
        tables.append({
            "name": table.preamble.name, "id": len(tables), "max_size": table.size, "with_counters": False,
            "key": [{"match_type": kinds[field.match_type], "name": field.name, "target": ["scalars", field.name],
                     "mask": None} for field in table.match_fields],
            "actions": [actions_by_id[ref.id].preamble.name for ref in table.action_refs],
            "action_ids": [ref.id for ref in table.action_refs],
            "default_entry": {"action_id": default_id, "action_const": True, "action_data": [],
                              "action_entry_const": True},
        })
    return {
        "header_types": [], "headers": [],
        "actions": [{"name": action.preamble.name, "id": action.preamble.id,
                     "runtime_data": [{"name": param.name, "bitwidth": param.bitwidth} for param in action.params],
                     "primitives": []} for action in p4info.actions],
        "register_arrays": [{"name": register.preamble.name, "id": index, "size": register.size,
                             "bitwidth": register.type_spec.bitstring.bit.bitwidth}
                            for index, register in enumerate(p4info.registers)],
        "counter_arrays": [{"name": counter.preamble.name, "id": index, "is_direct": False, "size": counter.size}
                           for index, counter in enumerate(p4info.counters)],
        "pipelines": [{"name": "ingress", "init_table": None, "tables": tables}],
    }


def write_synthetic_pipeline(directory: Path) -> tuple[Path, Path]:
    """Write omnireduce.p4info.txtpb and omnireduce.json into `directory`; returns their paths."""
    p4info = synthetic_p4info()
    p4info_path = directory / "omnireduce.p4info.txtpb"
    json_path = directory / "omnireduce.json"
    p4info_path.write_text(text_format.MessageToString(p4info))
    json_path.write_text(json.dumps(bmv2_json(p4info)))
    return p4info_path, json_path
