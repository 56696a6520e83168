"""A synthetic omnireduce pipeline for controller tests: P4Info and matching BMv2 JSON built from the plan.

Used only where the compiled program (p4src/build/omnireduce.{p4info.txtpb,json}) is not there yet; the P4Info
has the entity names of p4src/ (controller/program.py) and the sizes of the generated constants, and the JSON agrees with it in
everything a P4Runtime server cross-checks. The controller's names come from controller/program.py, so a test on
this pipeline exercises exactly the code paths the real one does.
"""

from __future__ import annotations

import json
from pathlib import Path

from google.protobuf import text_format

from omnireduce.controller import program
from omnireduce.p4proto import p4info_pb2
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

_ROUND_WIDTHS = {program.ROUND_TENSOR: 32, program.ROUND_BLOCK: 32, program.ROUND_NEXT: 32,
                 program.ROUND_EXPONENT: 8}


def _registers() -> list[tuple[str, int, int]]:
    registers = [(name, constants.ROUND_COUNT, _ROUND_WIDTHS.get(name, 32)) for name in program.ROUND_REGISTERS]
    registers.append((program.SLOT_TENSOR, constants.SLOT_COUNT, 32))
    registers.extend((name, constants.SLOT_COUNT, 32 * constants.WORKERS_PER_GROUP)
                     for name in program.WORKER_NEXT_GROUPS)
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
        counter.preamble.id = 0x12000001 + index  # P4Runtime id prefix 0x12: counter (0x13 is direct counter)
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


# Standard metadata as p4c-bm2-ss lays it out for v1model; the tables' keys live in `scalars` (local metadata).
_STANDARD_METADATA = [
    ["ingress_port", 9, False], ["egress_spec", 9, False], ["egress_port", 9, False], ["instance_type", 32, False],
    ["packet_length", 32, False], ["enq_timestamp", 32, False], ["enq_qdepth", 19, False],
    ["deq_timedelta", 32, False], ["deq_qdepth", 19, False], ["ingress_global_timestamp", 48, False],
    ["egress_global_timestamp", 48, False], ["mcast_grp", 16, False], ["egress_rid", 16, False],
    ["checksum_error", 1, False], ["parser_error", 32, False], ["priority", 3, False], ["_padding_0", 3, False],
]
_EGRESS_TABLES = {program.RESULT_DESTINATIONS_TABLE}


def _chain(tables: list[dict]) -> None:
    """Apply the tables of one control one after the other, as a straight-line control would."""
    for index, table in enumerate(tables):
        following = tables[index + 1]["name"] if index + 1 < len(tables) else None
        table["base_default_next"] = following
        table["next_tables"] = {action: following for action in table["actions"]}


def bmv2_json(p4info: p4info_pb2.P4Info) -> dict:
    """A BMv2 JSON program (format 2.x) that agrees with `p4info`: its tables, actions (which do nothing),
    registers and counters, over an Ethernet-only parser. Enough for a P4Runtime server and the softswitch Device
    to load it; no packet logic."""
    json_ids = {action.preamble.id: index for index, action in enumerate(p4info.actions)}
    names = {action.preamble.id: action.preamble.name for action in p4info.actions}
    kinds = {EXACT: "exact", LPM: "lpm"}
    scalars: dict[str, int] = {}
    pipelines: dict[str, list[dict]] = {"ingress": [], "egress": []}
    for table in p4info.tables:
        for field in table.match_fields:
            scalars[field.name] = field.bitwidth
        refs = [ref.id for ref in table.action_refs]
        default_id = table.const_default_action_id
        pipe = "egress" if table.preamble.name in _EGRESS_TABLES else "ingress"
        pipelines[pipe].append({
            "name": table.preamble.name, "id": sum(map(len, pipelines.values())), "type": "simple",
            "match_type": "lpm" if any(field.match_type == LPM for field in table.match_fields) else "exact",
            "max_size": table.size, "with_counters": False, "support_timeout": False, "direct_meters": None,
            "key": [{"match_type": kinds[field.match_type], "name": field.name, "target": ["scalars", field.name],
                     "mask": None} for field in table.match_fields],
            "action_ids": [json_ids[ref] for ref in refs], "actions": [names[ref] for ref in refs],
            "default_entry": {"action_id": json_ids[default_id], "action_const": True, "action_data": [],
                              "action_entry_const": True},
        })
    for tables in pipelines.values():
        _chain(tables)
    return {
        "header_types": [
            {"name": "scalars_0", "id": 0, "fields": [[name, width, False] for name, width in scalars.items()]},
            {"name": "standard_metadata", "id": 1, "fields": _STANDARD_METADATA},
            {"name": "ethernet_t", "id": 2,
             "fields": [["dst_addr", 48, False], ["src_addr", 48, False], ["ether_type", 16, False]]},
        ],
        "headers": [
            {"name": "scalars", "id": 0, "header_type": "scalars_0", "metadata": True, "pi_omit": True},
            {"name": "standard_metadata", "id": 1, "header_type": "standard_metadata", "metadata": True,
             "pi_omit": True},
            {"name": "ethernet", "id": 2, "header_type": "ethernet_t", "metadata": False, "pi_omit": True},
        ],
        "header_stacks": [], "header_union_types": [], "header_unions": [], "header_union_stacks": [],
        "field_lists": [], "enums": [], "parse_vsets": [], "meter_arrays": [], "learn_lists": [],
        "calculations": [], "checksums": [], "force_arith": [], "extern_instances": [], "field_aliases": [],
        "errors": [["NoError", 0], ["PacketTooShort", 1], ["NoMatch", 2], ["StackOutOfBounds", 3],
                   ["HeaderTooShort", 4], ["ParserTimeout", 5], ["ParserInvalidArgument", 6]],
        "parsers": [{"name": "parser", "id": 0, "init_state": "start", "parse_states": [
            {"name": "start", "id": 0,
             "parser_ops": [{"parameters": [{"type": "regular", "value": "ethernet"}], "op": "extract"}],
             "transition_key": [],
             "transitions": [{"type": "default", "value": None, "mask": None, "next_state": None}]}]}],
        "deparsers": [{"name": "deparser", "id": 0, "order": ["ethernet"], "primitives": []}],
        "actions": [{"name": action.preamble.name, "id": json_ids[action.preamble.id],
                     "runtime_data": [{"name": param.name, "bitwidth": param.bitwidth} for param in action.params],
                     "primitives": []} for action in p4info.actions],
        "register_arrays": [{"name": register.preamble.name, "id": index, "size": register.size,
                             "bitwidth": register.type_spec.bitstring.bit.bitwidth}
                            for index, register in enumerate(p4info.registers)],
        "counter_arrays": [{"name": counter.preamble.name, "id": index, "is_direct": False, "size": counter.size}
                           for index, counter in enumerate(p4info.counters)],
        "pipelines": [{"name": pipe, "id": index, "init_table": tables[0]["name"] if tables else None,
                       "tables": tables, "action_profiles": [], "conditionals": []}
                      for index, (pipe, tables) in enumerate(pipelines.items())],
        "program": "synthetic omnireduce (tests/controller/synthetic.py)",
        "__meta__": {"version": [2, 23], "compiler": "tests/controller/synthetic.py"},
    }


def write_synthetic_pipeline(directory: Path) -> tuple[Path, Path]:
    """Write omnireduce.p4info.txtpb and omnireduce.json into `directory`; returns their paths."""
    p4info = synthetic_p4info()
    p4info_path = directory / "omnireduce.p4info.txtpb"
    json_path = directory / "omnireduce.json"
    p4info_path.write_text(text_format.MessageToString(p4info))
    json_path.write_text(json.dumps(bmv2_json(p4info)))
    return p4info_path, json_path
