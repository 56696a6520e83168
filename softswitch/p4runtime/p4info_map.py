"""One index over a P4Info: ids <-> names for every object the softswitch serves, with their shapes.

The P4Runtime server resolves every id of a request through a `P4InfoMap`; a miss is answered with a
`P4RuntimeError` naming the kind of object and the id (or, for names, the closest existing names),
so a client learns what it got wrong. Names are those of P4Info, which p4c-bm2-ss makes identical to
the BMv2 JSON names the softswitch Device uses.
"""

from __future__ import annotations

import difflib
import logging
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Generic, TypeVar

from google.protobuf import text_format

from omnireduce.p4proto import p4info_pb2
from omnireduce.softswitch.p4runtime.errors import P4RuntimeError

log = logging.getLogger(__name__)

# P4Info MatchType enum -> the match kind names of BMv2 JSON and softswitch.entries.FieldMatch.
MATCH_KINDS: Mapping[int, str] = {
    p4info_pb2.MatchField.EXACT: "exact",
    p4info_pb2.MatchField.LPM: "lpm",
    p4info_pb2.MatchField.TERNARY: "ternary",
    p4info_pb2.MatchField.RANGE: "range",
    p4info_pb2.MatchField.OPTIONAL: "optional",
}
# Match kinds for which an entry needs a priority and a field may be omitted ("don't care").
PRIORITY_KINDS = frozenset({"ternary", "range", "optional"})
WILDCARD_KINDS = frozenset({"lpm", "ternary", "range", "optional"})


@dataclass(frozen=True, slots=True)
class MatchFieldInfo:
    id: int
    name: str
    bitwidth: int
    kind: str          # one of MATCH_KINDS' values
    position: int      # index in the table key (P4Info order = P4 key order = BMv2 JSON key order)


@dataclass(frozen=True, slots=True)
class ParamInfo:
    id: int
    name: str
    bitwidth: int
    position: int      # index in the action's parameter list (= BMv2 runtime_data order)


@dataclass(frozen=True, slots=True)
class ActionInfo:
    id: int
    name: str
    params: tuple[ParamInfo, ...]
    params_by_id: Mapping[int, ParamInfo] = field(repr=False)


@dataclass(frozen=True, slots=True)
class TableInfo:
    id: int
    name: str
    match_fields: tuple[MatchFieldInfo, ...]
    fields_by_id: Mapping[int, MatchFieldInfo] = field(repr=False)
    action_scopes: Mapping[int, int]          # action id -> p4info ActionRef.Scope
    const_default_action_id: int              # 0 when the default action may be changed
    size: int
    direct_counter_id: int                    # 0 when the table has no direct counter
    is_const: bool
    has_action_profile: bool

    @property
    def needs_priority(self) -> bool:
        return any(f.kind in PRIORITY_KINDS for f in self.match_fields)


@dataclass(frozen=True, slots=True)
class RegisterInfo:
    id: int
    name: str
    size: int
    bitwidth: int


@dataclass(frozen=True, slots=True)
class CounterInfo:
    id: int
    name: str
    size: int
    unit: int          # p4info CounterSpec.Unit


@dataclass(frozen=True, slots=True)
class DirectCounterInfo:
    id: int
    name: str
    table_id: int
    unit: int


@dataclass(frozen=True, slots=True)
class MeterInfo:
    id: int
    name: str
    size: int
    unit: int          # p4info MeterSpec.Unit


@dataclass(frozen=True, slots=True)
class DirectMeterInfo:
    id: int
    name: str
    table_id: int
    unit: int


@dataclass(frozen=True, slots=True)
class ActionProfileInfo:
    id: int
    name: str
    table_ids: tuple[int, ...]
    with_selector: bool
    size: int
    max_group_size: int        # 0: no static bound on a group's sum of weights


@dataclass(frozen=True, slots=True)
class ValueSetInfo:
    """A parser value set: its members match like table entries (`match_fields`), without priorities."""

    id: int
    name: str
    match_fields: tuple[MatchFieldInfo, ...]
    fields_by_id: Mapping[int, MatchFieldInfo] = field(repr=False)
    size: int


T = TypeVar("T", TableInfo, ActionInfo, RegisterInfo, CounterInfo, DirectCounterInfo, ValueSetInfo, MeterInfo,
            DirectMeterInfo, ActionProfileInfo)


class _Catalog(Generic[T]):
    """ids and names of one kind of P4Info object."""

    def __init__(self, kind: str, items: Iterable[T]) -> None:
        self.kind = kind
        self.by_id: dict[int, T] = {}
        self.by_name: dict[str, T] = {}
        for item in items:
            if item.id == 0:
                raise P4RuntimeError.invalid_argument(f"P4Info {kind} '{item.name}' has id 0, which is reserved")
            if item.id in self.by_id:
                raise P4RuntimeError.invalid_argument(
                    f"P4Info {kind} id 0x{item.id:08x} is used by both '{self.by_id[item.id].name}' and '{item.name}'")
            if item.name in self.by_name:
                raise P4RuntimeError.invalid_argument(f"P4Info has two {kind}s named '{item.name}'")
            self.by_id[item.id] = item
            self.by_name[item.name] = item

    def get(self, object_id: int) -> T:
        try:
            return self.by_id[object_id]
        except KeyError:
            raise P4RuntimeError.invalid_argument(
                f"no {self.kind} with id {object_id} (0x{object_id:08x}) in the P4Info") from None

    def named(self, name: str) -> T:
        try:
            return self.by_name[name]
        except KeyError:
            message = f"no {self.kind} named '{name}' in the P4Info"
            close = difflib.get_close_matches(name, self.by_name, n=1)
            if close:
                message += f". Did you mean '{close[0]}'?"
            raise P4RuntimeError.not_found(message) from None

    def __iter__(self):
        return iter(self.by_id.values())

    def __len__(self) -> int:
        return len(self.by_id)


def _match_field(table_name: str, position: int, mf: p4info_pb2.MatchField) -> MatchFieldInfo:
    if mf.WhichOneof("match") != "match_type" or mf.match_type not in MATCH_KINDS:
        other = mf.other_match_type or p4info_pb2.MatchField.MatchType.Name(mf.match_type)
        raise P4RuntimeError.invalid_argument(
            f"table '{table_name}' field '{mf.name}': match type '{other}' is not supported")
    if mf.bitwidth < 0:
        raise P4RuntimeError.invalid_argument(f"table '{table_name}' field '{mf.name}': negative bitwidth")
    # bitwidth 0: a type P4Runtime translates (an `error` key, say), whose width P4Info does not state; BMv2
    # accepts such a program, and so does this server (only the value 0 fits such a field in a write).
    return MatchFieldInfo(mf.id, mf.name, mf.bitwidth, MATCH_KINDS[mf.match_type], position)


def _table(table: p4info_pb2.Table, direct_counters: Mapping[int, int]) -> TableInfo:
    name = table.preamble.name
    fields = tuple(_match_field(name, i, mf) for i, mf in enumerate(table.match_fields))
    by_id = {f.id: f for f in fields}
    if len(by_id) != len(fields):
        raise P4RuntimeError.invalid_argument(f"table '{name}' has duplicate match field ids")
    return TableInfo(
        id=table.preamble.id,
        name=name,
        match_fields=fields,
        fields_by_id=by_id,
        action_scopes={ref.id: ref.scope for ref in table.action_refs},
        const_default_action_id=table.const_default_action_id,
        size=table.size,
        direct_counter_id=direct_counters.get(table.preamble.id, 0),
        is_const=table.is_const_table,
        has_action_profile=table.implementation_id != 0,
    )


def _value_set(value_set: p4info_pb2.ValueSet) -> ValueSetInfo:
    name = value_set.preamble.name
    fields = tuple(_match_field(f"value set {name}", i, mf) for i, mf in enumerate(value_set.match))
    by_id = {f.id: f for f in fields}
    if len(by_id) != len(fields):
        raise P4RuntimeError.invalid_argument(f"value set '{name}' has duplicate match field ids")
    return ValueSetInfo(value_set.preamble.id, name, fields, by_id, value_set.size)


def _action(action: p4info_pb2.Action) -> ActionInfo:
    params = tuple(ParamInfo(p.id, p.name, p.bitwidth, i) for i, p in enumerate(action.params))
    by_id = {p.id: p for p in params}
    if len(by_id) != len(params):
        raise P4RuntimeError.invalid_argument(f"action '{action.preamble.name}' has duplicate param ids")
    return ActionInfo(action.preamble.id, action.preamble.name, params, by_id)


def _registers(registers: Iterable[p4info_pb2.Register]) -> Iterator[RegisterInfo]:
    """The registers the server can serve; others (struct cells) are left out with a warning."""
    for register in registers:
        name = register.preamble.name
        spec = register.type_spec
        if spec.WhichOneof("type_spec") != "bitstring" or spec.bitstring.WhichOneof("type_spec") not in ("bit", "int"):
            log.warning("register '%s' is not served over P4Runtime: only bit<W>/int<W> cells are supported", name)
            continue
        bits = spec.bitstring.bit if spec.bitstring.HasField("bit") else spec.bitstring.int
        yield RegisterInfo(register.preamble.id, name, register.size, bits.bitwidth)


@dataclass(frozen=True, slots=True)
class _Implemented:
    id: int
    implementation_id: int


def _tables_with_implementation(p4info: p4info_pb2.P4Info) -> Iterator[_Implemented]:
    for table in p4info.tables:
        if table.implementation_id:
            yield _Implemented(table.preamble.id, table.implementation_id)


class P4InfoMap:
    """Lookups over one P4Info message (immutable once built)."""

    def __init__(self, p4info: p4info_pb2.P4Info) -> None:
        self.p4info = p4info
        self.direct_counters = _Catalog("direct counter", (
            DirectCounterInfo(c.preamble.id, c.preamble.name, c.direct_table_id, c.spec.unit)
            for c in p4info.direct_counters))
        table_counter = {c.table_id: c.id for c in self.direct_counters}
        self.tables = _Catalog("table", (_table(t, table_counter) for t in p4info.tables))
        self.actions = _Catalog("action", (_action(a) for a in p4info.actions))
        self.registers = _Catalog("register", _registers(p4info.registers))
        self.counters = _Catalog("counter", (
            CounterInfo(c.preamble.id, c.preamble.name, c.size, c.spec.unit) for c in p4info.counters))
        self.value_sets = _Catalog("value set", (_value_set(v) for v in p4info.value_sets))
        self.meters = _Catalog("meter", (MeterInfo(m.preamble.id, m.preamble.name, m.size, m.spec.unit)
                                         for m in p4info.meters))
        self.direct_meters = _Catalog("direct meter", (
            DirectMeterInfo(m.preamble.id, m.preamble.name, m.direct_table_id, m.spec.unit)
            for m in p4info.direct_meters))
        # table id -> its direct meter
        self.table_direct_meter: dict[int, DirectMeterInfo] = {m.table_id: m for m in self.direct_meters}
        self.action_profiles = _Catalog("action profile", (
            ActionProfileInfo(a.preamble.id, a.preamble.name, tuple(a.table_ids), a.with_selector, a.size,
                              a.max_group_size) for a in p4info.action_profiles))
        # table id -> the action profile implementing it
        self.table_profile: dict[int, ActionProfileInfo] = {
            t.id: self.action_profiles.by_id[t.implementation_id]
            for t in _tables_with_implementation(p4info) if t.implementation_id in self.action_profiles.by_id}
        self._check_references()

    def _check_references(self) -> None:
        for table in self.tables:
            for action_id in table.action_scopes:
                if action_id not in self.actions.by_id:
                    raise P4RuntimeError.invalid_argument(
                        f"table '{table.name}' refers to action id {action_id}, which the P4Info lacks")
        for table in _tables_with_implementation(self.p4info):
            if table.implementation_id not in self.action_profiles.by_id:
                raise P4RuntimeError.invalid_argument(
                    f"table id {table.id} is implemented by action profile id {table.implementation_id}, which the "
                    "P4Info lacks")
        for meter in self.direct_meters:
            if meter.table_id not in self.tables.by_id:
                raise P4RuntimeError.invalid_argument(
                    f"direct meter '{meter.name}' is bound to table id {meter.table_id}, which the P4Info lacks")
        for counter in self.direct_counters:
            if counter.table_id not in self.tables.by_id:
                raise P4RuntimeError.invalid_argument(
                    f"direct counter '{counter.name}' is bound to table id {counter.table_id}, which the P4Info lacks")

    # --- lookups by id (requests carry ids); misses are INVALID_ARGUMENT as in PI/BMv2 -------------------
    def table(self, table_id: int) -> TableInfo:
        return self.tables.get(table_id)

    def action(self, action_id: int) -> ActionInfo:
        return self.actions.get(action_id)

    def register(self, register_id: int) -> RegisterInfo:
        return self.registers.get(register_id)

    def counter(self, counter_id: int) -> CounterInfo:
        return self.counters.get(counter_id)

    def direct_counter(self, counter_id: int) -> DirectCounterInfo:
        return self.direct_counters.get(counter_id)

    def match_field(self, table: TableInfo, field_id: int) -> MatchFieldInfo:
        try:
            return table.fields_by_id[field_id]
        except KeyError:
            raise P4RuntimeError.invalid_argument(
                f"table '{table.name}' has no match field with id {field_id}") from None

    def param(self, action: ActionInfo, param_id: int) -> ParamInfo:
        try:
            return action.params_by_id[param_id]
        except KeyError:
            raise P4RuntimeError.invalid_argument(
                f"action '{action.name}' has no parameter with id {param_id}") from None

    # --- lookups by name (tests, CLIs); misses are NOT_FOUND with a suggestion -----------------------------
    def table_named(self, name: str) -> TableInfo:
        return self.tables.named(name)

    def action_named(self, name: str) -> ActionInfo:
        return self.actions.named(name)

    def register_named(self, name: str) -> RegisterInfo:
        return self.registers.named(name)

    def counter_named(self, name: str) -> CounterInfo:
        return self.counters.named(name)

    def direct_counter_named(self, name: str) -> DirectCounterInfo:
        return self.direct_counters.named(name)

    def match_field_named(self, table: TableInfo, name: str) -> MatchFieldInfo:
        for mf in table.match_fields:
            if mf.name == name:
                return mf
        message = f"table '{table.name}' has no match field named '{name}'"
        close = difflib.get_close_matches(name, [mf.name for mf in table.match_fields], n=1)
        raise P4RuntimeError.not_found(message + (f". Did you mean '{close[0]}'?" if close else ""))

    def param_named(self, action: ActionInfo, name: str) -> ParamInfo:
        for param in action.params:
            if param.name == name:
                return param
        message = f"action '{action.name}' has no parameter named '{name}'"
        close = difflib.get_close_matches(name, [p.name for p in action.params], n=1)
        raise P4RuntimeError.not_found(message + (f". Did you mean '{close[0]}'?" if close else ""))


def load_p4info(path: Path) -> p4info_pb2.P4Info:
    """Read a P4Info file: protobuf text format (.txt/.txtpb/.pb.txt) or binary (.bin/.pb)."""
    path = Path(path)
    data = path.read_bytes()
    p4info = p4info_pb2.P4Info()
    if path.suffix in (".bin", ".pb") and not str(path).endswith(".pb.txt"):
        p4info.ParseFromString(data)
    else:
        text_format.Parse(data.decode(), p4info, allow_unknown_field=True)
    return p4info
