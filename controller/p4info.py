"""The P4Info index: every name the controller uses resolves here, to an id and a schema (bitwidths, match kinds).

A name may be given fully qualified (`IngressPipe.identity.workers`) or by its P4Info alias (`workers`). A miss is a
`NameLookupError` that suggests the closest existing name, so a typo in a config or a renamed table in the P4
program is a one-line diagnosis instead of an opaque INVALID_ARGUMENT from the switch.
"""

from __future__ import annotations

import difflib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Generic, Iterable, TypeVar

from google.protobuf import text_format

from omnireduce.controller.errors import BadInputError, NameLookupError
from omnireduce.p4proto import p4info_pb2

log = logging.getLogger(__name__)

MATCH_KINDS = {
    p4info_pb2.MatchField.EXACT: "exact",
    p4info_pb2.MatchField.LPM: "lpm",
    p4info_pb2.MatchField.TERNARY: "ternary",
    p4info_pb2.MatchField.RANGE: "range",
    p4info_pb2.MatchField.OPTIONAL: "optional",
}


@dataclass(frozen=True, slots=True)
class MatchFieldInfo:
    id: int
    name: str
    bitwidth: int
    kind: str  # one of MATCH_KINDS' values


@dataclass(frozen=True, slots=True)
class ParamInfo:
    id: int
    name: str
    bitwidth: int


@dataclass(frozen=True, slots=True)
class ActionInfo:
    id: int
    name: str
    alias: str
    params: tuple[ParamInfo, ...]

    def param(self, name: str) -> ParamInfo:
        return _find(self.params, name, f"parameter of action '{self.name}'")

    def param_by_id(self, param_id: int) -> ParamInfo:
        return _find_id(self.params, param_id, f"parameter of action '{self.name}'")


@dataclass(frozen=True, slots=True)
class TableInfo:
    id: int
    name: str
    alias: str
    match_fields: tuple[MatchFieldInfo, ...]
    action_ids: tuple[int, ...]
    size: int

    def match_field(self, name: str) -> MatchFieldInfo:
        return _find(self.match_fields, name, f"match field of table '{self.name}'")

    def match_field_by_id(self, field_id: int) -> MatchFieldInfo:
        return _find_id(self.match_fields, field_id, f"match field of table '{self.name}'")

    @property
    def needs_priority(self) -> bool:
        """Tables with ternary/range/optional keys order their entries by priority (P4Runtime spec 9.1)."""
        return any(field.kind in ("ternary", "range", "optional") for field in self.match_fields)


@dataclass(frozen=True, slots=True)
class CounterInfo:
    id: int
    name: str
    alias: str
    size: int
    unit: str  # "packets", "bytes", "both"


@dataclass(frozen=True, slots=True)
class RegisterInfo:
    id: int
    name: str
    alias: str
    size: int
    bitwidth: int


_Info = TypeVar("_Info", TableInfo, ActionInfo, CounterInfo, RegisterInfo)


def _find(items: Iterable, name: str, kind: str):
    items = tuple(items)
    for item in items:
        if item.name == name:
            return item
    raise NameLookupError(_miss_message(kind, name, [item.name for item in items]))


def _find_id(items: Iterable, item_id: int, kind: str):
    for item in items:
        if item.id == item_id:
            return item
    raise NameLookupError(f"no {kind} with id {item_id}")


def _miss_message(kind: str, name: str, candidates: list[str]) -> str:
    close = difflib.get_close_matches(name, candidates, n=1, cutoff=0.5)
    if not close:
        # A bare suffix (`workers` for `IngressPipe.identity.workers`) that is not an alias still deserves a hint.
        close = [candidate for candidate in candidates if candidate.endswith("." + name.rsplit(".", 1)[-1])][:1]
    message = f"no {kind} named {name!r}."
    if close:
        message += f" Did you mean {close[0]!r}?"
    elif candidates:
        message += f" Known: {', '.join(sorted(candidates)[:8])}{', ...' if len(candidates) > 8 else ''}."
    return message


class _Namespace(Generic[_Info]):
    """The objects of one kind (tables, actions, ...), looked up by full name, alias or id."""

    def __init__(self, kind: str, infos: Iterable[_Info]) -> None:
        self.kind = kind
        self._by_name: dict[str, _Info] = {}
        self._by_id: dict[int, _Info] = {}
        for info in infos:
            self._by_name[info.name] = info
            self._by_id[info.id] = info
        # Aliases are unique within P4Info by construction; never let one shadow a full name.
        for info in self._by_id.values():
            self._by_name.setdefault(info.alias, info)

    def __call__(self, name: str) -> _Info:
        try:
            return self._by_name[name]
        except KeyError:
            pass
        # Suggest by full name or alias (`worker` is close to the alias `workers`), always naming the full name.
        close = difflib.get_close_matches(name, list(self._by_name), n=1, cutoff=0.6)
        if close:
            raise NameLookupError(f"no {self.kind} named {name!r}. Did you mean {self._by_name[close[0]].name!r}?")
        raise NameLookupError(_miss_message(self.kind, name, [info.name for info in self._by_id.values()]))

    def by_id(self, object_id: int) -> _Info:
        try:
            return self._by_id[object_id]
        except KeyError:
            raise NameLookupError(f"no {self.kind} with id {object_id} in this P4Info") from None

    def __iter__(self):
        return iter(self._by_id.values())

    def __contains__(self, name: str) -> bool:
        return name in self._by_name


class P4InfoIndex:
    """Names, ids and schemas of one P4Info; the only place the controller turns a name into an id."""

    def __init__(self, p4info: p4info_pb2.P4Info) -> None:
        self.p4info = p4info
        self.tables: _Namespace[TableInfo] = _Namespace("table", (_table(table) for table in p4info.tables))
        self.actions: _Namespace[ActionInfo] = _Namespace("action", (_action(action) for action in p4info.actions))
        self.counters: _Namespace[CounterInfo] = _Namespace("counter", (_counter(c) for c in p4info.counters))
        self.registers: _Namespace[RegisterInfo] = _Namespace("register", (_register(r) for r in p4info.registers))

    def table(self, name: str) -> TableInfo:
        return self.tables(name)

    def action(self, name: str) -> ActionInfo:
        return self.actions(name)

    def counter(self, name: str) -> CounterInfo:
        return self.counters(name)

    def register(self, name: str) -> RegisterInfo:
        return self.registers(name)

    def table_action(self, table: TableInfo, action_name: str) -> ActionInfo:
        """The action `action_name`, checked to be one that `table` may run."""
        action = self.action(action_name)
        if action.id not in table.action_ids:
            allowed = [self.actions.by_id(action_id).name for action_id in table.action_ids]
            raise NameLookupError(_miss_message(f"action of table '{table.name}'", action_name, allowed))
        return action

    @classmethod
    def from_file(cls, path: Path) -> "P4InfoIndex":
        return cls(load_p4info(path))


def load_p4info(path: Path) -> p4info_pb2.P4Info:
    """Read a P4Info from text format (`.txt`, `.txtpb`, `.pb.txt`) or binary (`.bin`, `.pb`)."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as error:
        raise BadInputError(f"cannot read P4Info {path}: {error.strerror}") from None
    p4info = p4info_pb2.P4Info()
    try:
        if path.suffix in (".bin", ".pb") and not path.name.endswith(".pb.txt"):
            p4info.ParseFromString(data)
        else:
            text_format.Parse(data.decode("utf-8"), p4info)
    except (text_format.ParseError, UnicodeDecodeError, ValueError) as error:
        raise BadInputError(f"{path} is not a P4Info: {error}") from None
    if not p4info.tables and not p4info.actions:
        raise BadInputError(f"{path} holds an empty P4Info (no tables, no actions)")
    log.debug("loaded P4Info %s: %d tables, %d actions", path, len(p4info.tables), len(p4info.actions))
    return p4info


def _table(table: p4info_pb2.Table) -> TableInfo:
    fields = tuple(
        MatchFieldInfo(field.id, field.name, field.bitwidth, MATCH_KINDS.get(field.match_type, "unspecified"))
        for field in table.match_fields
    )
    return TableInfo(
        id=table.preamble.id,
        name=table.preamble.name,
        alias=table.preamble.alias or table.preamble.name,
        match_fields=fields,
        action_ids=tuple(ref.id for ref in table.action_refs),
        size=table.size,
    )


def _action(action: p4info_pb2.Action) -> ActionInfo:
    return ActionInfo(
        id=action.preamble.id,
        name=action.preamble.name,
        alias=action.preamble.alias or action.preamble.name,
        params=tuple(ParamInfo(param.id, param.name, param.bitwidth) for param in action.params),
    )


def _counter(counter: p4info_pb2.Counter) -> CounterInfo:
    unit = {p4info_pb2.CounterSpec.BYTES: "bytes", p4info_pb2.CounterSpec.PACKETS: "packets"}.get(
        counter.spec.unit, "both"
    )
    return CounterInfo(counter.preamble.id, counter.preamble.name, counter.preamble.alias or counter.preamble.name,
                       counter.size, unit)


def _register(register: p4info_pb2.Register) -> RegisterInfo:
    bitwidth = register.type_spec.bitstring.bit.bitwidth or register.type_spec.bitstring.int.bitwidth
    return RegisterInfo(register.preamble.id, register.preamble.name,
                        register.preamble.alias or register.preamble.name, register.size, bitwidth)


def p4info_differences(ours: p4info_pb2.P4Info, theirs: p4info_pb2.P4Info, limit: int = 10) -> list[str]:
    """How `theirs` (what the switch runs) differs from `ours`, by object names and ids; empty when they agree.

    Compares tables (id, match fields, allowed actions), actions (id, parameters), counters and registers (id,
    width): everything the controller encodes by id. Sizes and annotations may differ without harm.
    """
    differences: list[str] = []
    for kind, mine, other in _comparable(ours, theirs):
        for name in sorted(mine.keys() - other.keys()):
            differences.append(f"{kind} {name!r} is missing on the switch")
        for name in sorted(other.keys() - mine.keys()):
            differences.append(f"the switch has a {kind} {name!r} that our P4Info lacks")
        for name in sorted(mine.keys() & other.keys()):
            for aspect, (our_value, their_value) in _aspects(mine[name], other[name]):
                differences.append(f"{kind} {name!r} differs in {aspect}: ours {our_value}, the switch's "
                                   f"{their_value}")
    if len(differences) > limit:
        differences = differences[:limit] + [f"... and {len(differences) - limit} more"]
    return differences


def _aspects(mine: dict[str, object], other: dict[str, object]):
    return [(aspect, (mine[aspect], other[aspect])) for aspect in mine if mine[aspect] != other[aspect]]


def _comparable(ours: p4info_pb2.P4Info, theirs: p4info_pb2.P4Info):
    def tables(p4info):
        return {t.preamble.name: {
            "id": t.preamble.id,
            "match fields": [(f.id, f.name, f.bitwidth, MATCH_KINDS.get(f.match_type, "?")) for f in t.match_fields],
            "action ids": sorted(ref.id for ref in t.action_refs)} for t in p4info.tables}

    def actions(p4info):
        return {a.preamble.name: {"id": a.preamble.id, "parameters": [(p.id, p.name, p.bitwidth) for p in a.params]}
                for a in p4info.actions}

    def counters(p4info):
        return {c.preamble.name: {"id": c.preamble.id} for c in p4info.counters}

    def registers(p4info):
        return {r.preamble.name: {"id": r.preamble.id, "width": r.type_spec.bitstring.bit.bitwidth}
                for r in p4info.registers}

    for kind, extract in (("table", tables), ("action", actions), ("counter", counters), ("register", registers)):
        yield kind, extract(ours), extract(theirs)
