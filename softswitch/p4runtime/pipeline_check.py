"""Check that a P4Info and a BMv2 JSON describe the same program before the server accepts the pair.

SetForwardingPipelineConfig carries both halves separately, and a client can easily pair a P4Info with
the JSON of another build. The server translates ids through the P4Info and names through the JSON,
so a mismatch would silently program the wrong thing; instead it is refused with INVALID_ARGUMENT
naming the first difference found.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from omnireduce.softswitch.p4runtime.p4info_map import P4InfoMap, TableInfo
from omnireduce.p4proto import p4info_pb2
from omnireduce.softswitch.p4runtime.digest_ops import digest_shape, match_learn_lists
from omnireduce.softswitch.p4runtime.errors import P4RuntimeError

# BMv2 JSON match_type -> the P4Info kinds it may realise. p4c-bm2-ss emits "optional" for optional
# matches; older toolchains lowered them to "ternary", and "valid" (P4_14) appears as exact in P4Info.
_COMPATIBLE_KINDS: Mapping[str, frozenset[str]] = {
    "exact": frozenset({"exact"}),
    "lpm": frozenset({"lpm"}),
    "ternary": frozenset({"ternary", "optional"}),
    "range": frozenset({"range"}),
    "optional": frozenset({"optional"}),
    "valid": frozenset({"exact"}),
}


def parse_bmv2_json(device_config: bytes | str) -> dict[str, Any]:
    """The BMv2 JSON object of a `p4_device_config`, or INVALID_ARGUMENT saying why it is not one."""
    if not device_config:
        raise P4RuntimeError.invalid_argument("p4_device_config is empty: expected the BMv2 JSON of the program")
    try:
        program = json.loads(device_config)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise P4RuntimeError.invalid_argument(f"p4_device_config is not BMv2 JSON: {error}") from None
    except RecursionError:
        raise P4RuntimeError.invalid_argument("p4_device_config is nested too deeply to parse") from None
    if not isinstance(program, dict) or not isinstance(program.get("pipelines"), list):
        raise P4RuntimeError.invalid_argument("p4_device_config is not BMv2 JSON: no 'pipelines' list")
    return program


def _mismatch(what: str) -> P4RuntimeError:
    return P4RuntimeError.invalid_argument(f"P4Info and BMv2 JSON disagree: {what}")


class _JsonProgram:
    """The parts of a BMv2 JSON program that P4Info also describes, indexed by name."""

    def __init__(self, program: Mapping[str, Any]) -> None:
        self.tables: dict[str, Mapping[str, Any]] = {}
        for pipeline in program.get("pipelines", []):
            for table in pipeline.get("tables", []):
                self.tables[table["name"]] = table
        # p4c localises actions per table, so one name (e.g. NoAction) may occur under several ids.
        self.actions: dict[str, list[Mapping[str, Any]]] = {}
        for action in program.get("actions", []):
            self.actions.setdefault(action["name"], []).append(action)
        self.registers = {r["name"]: r for r in program.get("register_arrays", [])}
        self.counters = {c["name"]: c for c in program.get("counter_arrays", [])}
        self.value_sets = {v["name"]: v for v in program.get("parse_vsets", []) or []}
        self.meters = {m["name"]: m for m in program.get("meter_arrays", []) or []}
        self.learn_lists = {item["name"]: item for item in program.get("learn_lists", []) or []}
        self.action_profiles = {a["name"]: a for pipeline in program.get("pipelines", [])
                                for a in pipeline.get("action_profiles", []) or []}
        header_types = {t["name"]: t for t in program.get("header_types", [])}
        self.field_widths: dict[tuple[str, str], int] = {}
        for header in program.get("headers", []):
            header_type = header_types.get(header.get("header_type"), {})
            for spec in header_type.get("fields", []):
                if len(spec) >= 2 and isinstance(spec[1], int):
                    self.field_widths[(header["name"], spec[0])] = spec[1]

    def key_width(self, key: Mapping[str, Any]) -> int | None:
        """Bitwidth of a table key element, when its target is a plain, unmasked header field.

        A masked key (a slice `f[7:0]` or `f & M`) has no width P4Info and JSON state the same way.
        """
        target = key.get("target")
        if key.get("match_type") == "valid":
            return 1
        if key.get("mask") is not None:
            return None
        if isinstance(target, list) and len(target) == 2:
            return self.field_widths.get((target[0], target[1]))
        return None


def _check_table(table: TableInfo, p4map: P4InfoMap, program: _JsonProgram) -> None:
    json_table = program.tables.get(table.name)
    if json_table is None:
        names = {p4map.action(a).name for a in table.action_scopes} - {"NoAction"}
        if not names & set(program.actions):
            # Nothing of the table survived p4c's dead-code elimination (its actions went with it; NoAction,
            # which every table may share, says nothing): p4c keeps it in the P4Info only, BMv2 accepts that.
            return
        raise _mismatch(f"table '{table.name}' is in the P4Info but not in the JSON")
    keys = json_table.get("key", [])
    if len(keys) != len(table.match_fields):
        raise _mismatch(f"table '{table.name}' has {len(table.match_fields)} match fields in the P4Info "
                        f"but {len(keys)} in the JSON")
    for field, key in zip(table.match_fields, keys):
        json_kind = key.get("match_type", "")
        if field.kind not in _COMPATIBLE_KINDS.get(json_kind, frozenset()):
            raise _mismatch(f"table '{table.name}' field {field.position} ('{field.name}') is {field.kind} "
                            f"in the P4Info but {json_kind} in the JSON")
        width = program.key_width(key)
        if width is not None and field.bitwidth and width != field.bitwidth:
            raise _mismatch(f"table '{table.name}' field {field.position} ('{field.name}') is "
                            f"{field.bitwidth} bits in the P4Info but {width} bits in the JSON")
    json_actions = set(json_table.get("actions", []))
    for action_id in table.action_scopes:
        name = p4map.action(action_id).name
        if name not in json_actions:
            raise _mismatch(f"table '{table.name}' may use action '{name}' in the P4Info but not in the JSON")
    max_size = json_table.get("max_size")
    # p4c sizes a table with const entries to exactly those entries in the JSON, while the P4Info keeps the
    # declared (or default) size: only tables the control plane fills must agree.
    has_const_entries = bool(json_table.get("entries"))
    if table.size and isinstance(max_size, int) and max_size != table.size and not has_const_entries:
        raise _mismatch(f"table '{table.name}' has size {table.size} in the P4Info but {max_size} in the JSON")


def check_p4info_matches_json(p4map: P4InfoMap, bmv2_json: Mapping[str, Any]) -> None:
    """Raise INVALID_ARGUMENT naming the first object the P4Info and the JSON describe differently."""
    program = _JsonProgram(bmv2_json)
    for action in p4map.actions:
        candidates = program.actions.get(action.name)
        if not candidates:
            # p4c lists actions no table or apply block runs (NoAction beside a nested switch) in the P4Info but
            # leaves them out of the JSON; BMv2 accepts that. A table that may run one is checked below.
            continue
        widths = tuple(p.bitwidth for p in action.params)
        if not any(tuple(d.get("bitwidth") for d in c.get("runtime_data", [])) == widths for c in candidates):
            found = tuple(d.get("bitwidth") for d in candidates[0].get("runtime_data", []))
            raise _mismatch(f"action '{action.name}' has parameter widths {list(widths)} in the P4Info "
                            f"but {list(found)} in the JSON")
    for table in p4map.tables:
        _check_table(table, p4map, program)
    for register in p4map.registers:
        json_register = program.registers.get(register.name)
        if json_register is None:
            raise _mismatch(f"register '{register.name}' is in the P4Info but not in the JSON")
        if json_register.get("size") != register.size or json_register.get("bitwidth") != register.bitwidth:
            raise _mismatch(f"register '{register.name}' is {register.size} x bit<{register.bitwidth}> in the "
                            f"P4Info but {json_register.get('size')} x bit<{json_register.get('bitwidth')}> in the JSON")
    for counter in p4map.counters:
        json_counter = program.counters.get(counter.name)
        if json_counter is None or json_counter.get("is_direct"):
            raise _mismatch(f"counter '{counter.name}' is in the P4Info but not an indexed counter in the JSON")
        if json_counter.get("size") != counter.size:
            raise _mismatch(f"counter '{counter.name}' has size {counter.size} in the P4Info "
                            f"but {json_counter.get('size')} in the JSON")
    for direct in p4map.direct_counters:
        json_counter = program.counters.get(direct.name)
        table_name = p4map.table(direct.table_id).name
        if json_counter is None or not json_counter.get("is_direct"):
            raise _mismatch(f"direct counter '{direct.name}' is in the P4Info but not a direct counter in the JSON")
        if json_counter.get("binding") != table_name:
            raise _mismatch(f"direct counter '{direct.name}' belongs to table '{table_name}' in the P4Info "
                            f"but to '{json_counter.get('binding')}' in the JSON")
    for value_set in p4map.value_sets:
        json_value_set = program.value_sets.get(value_set.name)
        if json_value_set is None:
            raise _mismatch(f"value set '{value_set.name}' is in the P4Info but not in the JSON")
        width = sum(f.bitwidth for f in value_set.match_fields)
        if json_value_set.get("compressed_bitwidth") != width:
            raise _mismatch(f"value set '{value_set.name}' is {width} bits wide in the P4Info but "
                            f"{json_value_set.get('compressed_bitwidth')} bits in the JSON")
        if json_value_set.get("max_size") != value_set.size:
            raise _mismatch(f"value set '{value_set.name}' holds {value_set.size} members in the P4Info but "
                            f"{json_value_set.get('max_size')} in the JSON")
    units = {p4info_pb2.MeterSpec.PACKETS: "packets", p4info_pb2.MeterSpec.BYTES: "bytes"}
    for meter in p4map.meters:
        json_meter = program.meters.get(meter.name)
        if json_meter is None or json_meter.get("is_direct"):
            raise _mismatch(f"meter '{meter.name}' is in the P4Info but not an indexed meter in the JSON")
        if json_meter.get("size") != meter.size:
            raise _mismatch(f"meter '{meter.name}' has size {meter.size} in the P4Info but {json_meter.get('size')} "
                            f"in the JSON")
        if units.get(meter.unit, json_meter.get("type")) != json_meter.get("type"):
            raise _mismatch(f"meter '{meter.name}' counts {units[meter.unit]} in the P4Info but "
                            f"{json_meter.get('type')} in the JSON")
    for direct in p4map.direct_meters:
        json_meter = program.meters.get(direct.name)
        table_name = p4map.table(direct.table_id).name
        if json_meter is None or not json_meter.get("is_direct"):
            raise _mismatch(f"direct meter '{direct.name}' is in the P4Info but not a direct meter in the JSON")
        if json_meter.get("binding") != table_name:
            raise _mismatch(f"direct meter '{direct.name}' belongs to table '{table_name}' in the P4Info "
                            f"but to '{json_meter.get('binding')}' in the JSON")
        if units.get(direct.unit, json_meter.get("type")) != json_meter.get("type"):
            raise _mismatch(f"direct meter '{direct.name}' counts {units[direct.unit]} in the P4Info but "
                            f"{json_meter.get('type')} in the JSON")
    for profile in p4map.action_profiles:
        json_profile = program.action_profiles.get(profile.name)
        if json_profile is None and not profile.table_ids:
            continue   # p4c-bm2-ss leaves out a profile no table uses (the P4Info keeps it); nothing can use it
        if json_profile is None:
            raise _mismatch(f"action profile '{profile.name}' is in the P4Info but not in the JSON")
        if bool(json_profile.get("selector")) != profile.with_selector:
            raise _mismatch(f"action profile '{profile.name}' {'has' if profile.with_selector else 'has no'} "
                            f"selector in the P4Info but {'not' if profile.with_selector else 'one'} in the JSON")
        if json_profile.get("max_size") != profile.size:
            raise _mismatch(f"action profile '{profile.name}' has size {profile.size} in the P4Info but "
                            f"{json_profile.get('max_size')} in the JSON")
        for table_id in profile.table_ids:
            table_name = p4map.table(table_id).name
            json_table = program.tables.get(table_name, {})
            if json_table.get("action_profile") != profile.name:
                raise _mismatch(f"table '{table_name}' is implemented by action profile '{profile.name}' in the "
                                f"P4Info but not in the JSON")
    shapes = [(d.preamble.id, d.preamble.name, digest_shape(d, p4map.p4info.type_info).widths)
              for d in p4map.p4info.digests]   # INVALID_ARGUMENT/UNIMPLEMENTED as PI for shapes BMv2 has not
    match_learn_lists(shapes, {name: tuple(program.field_widths.get(tuple(e.get("value", ())), 0)
                                           for e in item.get("elements", []))
                               for name, item in program.learn_lists.items()})
