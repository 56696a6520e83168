"""P4Runtime entities as typed, frozen dataclasses, each with `encode(schema)` and `decode(msg, schema)`.

Entities speak names and integers; the P4Info index (`schema`) turns names into ids and integers into canonical
bytestrings on the way out, and back on the way in. Code above this module never builds a protobuf by hand.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Union


from omnireduce.controller.encoding import decode_int, encode_int, prefix_mask
from omnireduce.controller.errors import BadInputError
from omnireduce.controller.p4info import MatchFieldInfo, P4InfoIndex
from omnireduce.p4proto import p4data_pb2, p4runtime_pb2


# --- match values --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Exact:
    value: int


@dataclass(frozen=True, slots=True)
class Lpm:
    value: int
    prefix_len: int


@dataclass(frozen=True, slots=True)
class Ternary:
    value: int
    mask: int


@dataclass(frozen=True, slots=True)
class Range:
    low: int
    high: int


@dataclass(frozen=True, slots=True)
class OptionalMatch:
    value: int


Match = Union[Exact, Lpm, Ternary, Range, OptionalMatch]
_MATCH_KIND = {Exact: "exact", Lpm: "lpm", Ternary: "ternary", Range: "range", OptionalMatch: "optional"}


def _encode_match(match: Match, info: MatchFieldInfo, table: str) -> p4runtime_pb2.FieldMatch:
    what = f"{table}: key {info.name}"
    kind = _MATCH_KIND[type(match)]
    if kind != info.kind:
        raise BadInputError(f"{what} is a {info.kind} match, got a {kind} value")
    message = p4runtime_pb2.FieldMatch(field_id=info.id)
    width = info.bitwidth
    if isinstance(match, Exact):
        message.exact.value = encode_int(match.value, width, what=what)
    elif isinstance(match, Lpm):
        if not 0 < match.prefix_len <= width:
            raise BadInputError(f"{what}: prefix length {match.prefix_len} outside 1..{width}")
        if match.value & ~prefix_mask(match.prefix_len, width):
            raise BadInputError(f"{what}: value has bits set beyond its /{match.prefix_len} prefix")
        message.lpm.value = encode_int(match.value, width, what=what)
        message.lpm.prefix_len = match.prefix_len
    elif isinstance(match, Ternary):
        if match.value & ~match.mask:
            raise BadInputError(f"{what}: value has bits set outside its mask")
        message.ternary.value = encode_int(match.value, width, what=what)
        message.ternary.mask = encode_int(match.mask, width, what=what)
    elif isinstance(match, Range):
        if match.low > match.high:
            raise BadInputError(f"{what}: range low {match.low} > high {match.high}")
        message.range.low = encode_int(match.low, width, what=what)
        message.range.high = encode_int(match.high, width, what=what)
    else:
        message.optional.value = encode_int(match.value, width, what=what)
    return message


def _decode_match(message: p4runtime_pb2.FieldMatch, info: MatchFieldInfo, table: str) -> Match:
    what = f"{table}: key {info.name}"
    width = info.bitwidth
    kind = message.WhichOneof("field_match_type")
    if kind == "exact":
        return Exact(decode_int(message.exact.value, width, what=what))
    if kind == "lpm":
        return Lpm(decode_int(message.lpm.value, width, what=what), message.lpm.prefix_len)
    if kind == "ternary":
        return Ternary(decode_int(message.ternary.value, width, what=what),
                       decode_int(message.ternary.mask, width, what=what))
    if kind == "range":
        return Range(decode_int(message.range.low, width, what=what), decode_int(message.range.high, width, what=what))
    if kind == "optional":
        return OptionalMatch(decode_int(message.optional.value, width, what=what))
    raise BadInputError(f"{what}: the switch sent a field match of unknown kind {kind!r}")


# --- table entries -------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ActionCall:
    """An action by name with its parameters by name (all of them: P4Runtime has no default parameter values)."""

    name: str
    params: Mapping[str, int] = field(default_factory=dict)

    def encode(self, schema: P4InfoIndex, table: str | None = None) -> p4runtime_pb2.Action:
        info = schema.table_action(schema.table(table), self.name) if table else schema.action(self.name)
        given = set(self.params)
        expected = {param.name for param in info.params}
        if given != expected:
            missing, extra = sorted(expected - given), sorted(given - expected)
            raise BadInputError(f"action {info.name}: missing parameters {missing}, unknown parameters {extra}"
                                if extra else f"action {info.name}: missing parameters {missing}")
        message = p4runtime_pb2.Action(action_id=info.id)
        for param in info.params:
            message.params.add(param_id=param.id,
                               value=encode_int(self.params[param.name], param.bitwidth,
                                                what=f"{info.name}: parameter {param.name}"))
        return message

    @classmethod
    def decode(cls, message: p4runtime_pb2.Action, schema: P4InfoIndex) -> "ActionCall":
        info = schema.actions.by_id(message.action_id)
        params = {}
        for param in message.params:
            param_info = info.param_by_id(param.param_id)
            params[param_info.name] = decode_int(param.value, param_info.bitwidth,
                                                 what=f"{info.name}: parameter {param_info.name}")
        return cls(info.name, params)


@dataclass(frozen=True, slots=True)
class TableEntry:
    """A table entry: `match` maps key field names to match values; an empty match with `is_default` is the default."""

    table: str
    match: Mapping[str, Match] = field(default_factory=dict)
    action: ActionCall | None = None
    priority: int = 0
    is_default: bool = False

    def encode(self, schema: P4InfoIndex) -> p4runtime_pb2.TableEntry:
        info = schema.table(self.table)
        message = p4runtime_pb2.TableEntry(table_id=info.id, priority=self.priority,
                                           is_default_action=self.is_default)
        for name in self.match:
            info.match_field(name)  # a name that is no key of the table fails here, with a suggestion
        for field_info in info.match_fields:  # key order as in P4Info, as the spec recommends
            if field_info.name in self.match:
                message.match.append(_encode_match(self.match[field_info.name], field_info, info.name))
            elif field_info.kind == "exact" and self.match:
                # No match at all is a wildcard (a read of the whole table, or the default entry); a partial
                # one is a mistake that the switch would refuse less clearly.
                raise BadInputError(f"{info.name}: exact key {field_info.name} needs a value")
        if self.action is not None:
            message.action.action.CopyFrom(self.action.encode(schema, info.name))
        return message

    @classmethod
    def decode(cls, message: p4runtime_pb2.TableEntry, schema: P4InfoIndex) -> "TableEntry":
        info = schema.tables.by_id(message.table_id)
        match = {}
        for field_match in message.match:
            field_info = info.match_field_by_id(field_match.field_id)
            match[field_info.name] = _decode_match(field_match, field_info, info.name)
        action = None
        if message.action.WhichOneof("type") == "action":
            action = ActionCall.decode(message.action.action, schema)
        return cls(info.name, match, action, message.priority, message.is_default_action)

    def key(self) -> tuple:
        """What identifies the entry within its table (for comparing read-back entries with written ones)."""
        return (self.table, tuple(sorted(self.match.items(), key=lambda item: item[0])), self.priority)


# --- counters and registers ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CounterEntry:
    """One cell (or, with index None in a read, every cell) of an indirect counter."""

    counter: str
    index: int | None = None
    packets: int = 0
    bytes: int = 0

    def encode(self, schema: P4InfoIndex) -> p4runtime_pb2.CounterEntry:
        info = schema.counter(self.counter)
        message = p4runtime_pb2.CounterEntry(counter_id=info.id)
        if self.index is not None:
            _check_index(self.index, info.size, info.name)
            message.index.index = self.index
        message.data.packet_count = self.packets
        message.data.byte_count = self.bytes
        return message

    @classmethod
    def decode(cls, message: p4runtime_pb2.CounterEntry, schema: P4InfoIndex) -> "CounterEntry":
        info = schema.counters.by_id(message.counter_id)
        index = message.index.index if message.HasField("index") else None
        return cls(info.name, index, message.data.packet_count, message.data.byte_count)


@dataclass(frozen=True, slots=True)
class RegisterEntry:
    """One cell of a register; `index` None reads every cell. `value` None in a read request."""

    register: str
    index: int | None = None
    value: int | None = None

    def encode(self, schema: P4InfoIndex) -> p4runtime_pb2.RegisterEntry:
        info = schema.register(self.register)
        message = p4runtime_pb2.RegisterEntry(register_id=info.id)
        if self.index is not None:
            _check_index(self.index, info.size, info.name)
            message.index.index = self.index
        if self.value is not None:
            message.data.CopyFrom(p4data_pb2.P4Data(
                bitstring=encode_int(self.value, info.bitwidth, what=f"{info.name}[{self.index}]")))
        return message

    @classmethod
    def decode(cls, message: p4runtime_pb2.RegisterEntry, schema: P4InfoIndex) -> "RegisterEntry":
        info = schema.registers.by_id(message.register_id)
        index = message.index.index if message.HasField("index") else None
        value = None
        if message.HasField("data"):
            kind = message.data.WhichOneof("data")
            if kind != "bitstring":
                raise BadInputError(f"{info.name}[{index}]: the switch sent a {kind} instead of a bitstring")
            value = decode_int(message.data.bitstring, info.bitwidth, what=f"{info.name}[{index}]")
        return cls(info.name, index, value)


def _check_index(index: int, size: int, name: str) -> None:
    if not 0 <= index < size:
        raise BadInputError(f"{name}: index {index} outside 0..{size - 1}")


# --- packet replication engine -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, order=True)
class Replica:
    """One copy made by the PRE: out of `port`, tagged with `instance` (v1model's egress_rid)."""

    port: int
    instance: int

    def encode(self) -> p4runtime_pb2.Replica:
        # egress_port (a uint32) is what BMv2/PI and most servers understand; `port` (bytes) is 1.4's newer form.
        return p4runtime_pb2.Replica(egress_port=self.port, instance=self.instance)

    @classmethod
    def decode(cls, message: p4runtime_pb2.Replica) -> "Replica":
        if message.WhichOneof("port_kind") == "port":
            return cls(int.from_bytes(message.port, "big"), message.instance)
        return cls(message.egress_port, message.instance)


@dataclass(frozen=True, slots=True)
class MulticastGroupEntry:
    group_id: int
    replicas: tuple[Replica, ...] = ()

    def encode(self, schema: P4InfoIndex | None = None) -> p4runtime_pb2.PacketReplicationEngineEntry:
        message = p4runtime_pb2.PacketReplicationEngineEntry()
        message.multicast_group_entry.multicast_group_id = self.group_id
        message.multicast_group_entry.replicas.extend(replica.encode() for replica in self.replicas)
        return message

    @classmethod
    def decode(cls, message: p4runtime_pb2.MulticastGroupEntry, schema: P4InfoIndex | None = None) -> "MulticastGroupEntry":
        return cls(message.multicast_group_id, tuple(Replica.decode(replica) for replica in message.replicas))


@dataclass(frozen=True, slots=True)
class CloneSessionEntry:
    session_id: int
    replicas: tuple[Replica, ...] = ()
    class_of_service: int = 0
    packet_length_bytes: int = 0

    def encode(self, schema: P4InfoIndex | None = None) -> p4runtime_pb2.PacketReplicationEngineEntry:
        message = p4runtime_pb2.PacketReplicationEngineEntry()
        session = message.clone_session_entry
        session.session_id = self.session_id
        session.replicas.extend(replica.encode() for replica in self.replicas)
        session.class_of_service = self.class_of_service
        session.packet_length_bytes = self.packet_length_bytes
        return message

    @classmethod
    def decode(cls, message: p4runtime_pb2.CloneSessionEntry, schema: P4InfoIndex | None = None) -> "CloneSessionEntry":
        return cls(message.session_id, tuple(Replica.decode(replica) for replica in message.replicas),
                   message.class_of_service, message.packet_length_bytes)


Entity = Union[TableEntry, CounterEntry, RegisterEntry, MulticastGroupEntry, CloneSessionEntry]


def entity_message(entity: Entity, schema: P4InfoIndex) -> p4runtime_pb2.Entity:
    """Wrap an entity into the `p4.v1.Entity` oneof."""
    message = p4runtime_pb2.Entity()
    if isinstance(entity, TableEntry):
        message.table_entry.CopyFrom(entity.encode(schema))
    elif isinstance(entity, CounterEntry):
        message.counter_entry.CopyFrom(entity.encode(schema))
    elif isinstance(entity, RegisterEntry):
        message.register_entry.CopyFrom(entity.encode(schema))
    elif isinstance(entity, (MulticastGroupEntry, CloneSessionEntry)):
        message.packet_replication_engine_entry.CopyFrom(entity.encode(schema))
    else:
        raise TypeError(f"not a P4Runtime entity: {entity!r}")
    return message


def entity_from_message(message: p4runtime_pb2.Entity, schema: P4InfoIndex) -> Entity:
    """Unwrap a `p4.v1.Entity` read from the switch."""
    kind = message.WhichOneof("entity")
    if kind == "table_entry":
        return TableEntry.decode(message.table_entry, schema)
    if kind == "counter_entry":
        return CounterEntry.decode(message.counter_entry, schema)
    if kind == "register_entry":
        return RegisterEntry.decode(message.register_entry, schema)
    if kind == "packet_replication_engine_entry":
        pre = message.packet_replication_engine_entry
        if pre.WhichOneof("type") == "multicast_group_entry":
            return MulticastGroupEntry.decode(pre.multicast_group_entry)
        return CloneSessionEntry.decode(pre.clone_session_entry)
    raise BadInputError(f"the switch sent an entity of a kind the controller does not handle: {kind!r}")


def describe(entity: Entity) -> str:
    """A one-line human description (used to name the failed update of a batch)."""
    if isinstance(entity, TableEntry):
        keys = ", ".join(f"{name}={_match_text(match)}" for name, match in entity.match.items())
        action = f" -> {entity.action.name}" if entity.action else ""
        return f"{entity.table}[{keys}]{action}"
    if isinstance(entity, RegisterEntry):
        return f"register {entity.register}[{entity.index}] = {entity.value}"
    if isinstance(entity, CounterEntry):
        return f"counter {entity.counter}[{entity.index}]"
    if isinstance(entity, MulticastGroupEntry):
        return f"multicast group {entity.group_id} ({len(entity.replicas)} replicas)"
    return f"clone session {entity.session_id}"


def _match_text(match: Match) -> str:
    if isinstance(match, Exact):
        return str(match.value)
    if isinstance(match, Lpm):
        return f"{match.value:#x}/{match.prefix_len}"
    if isinstance(match, Ternary):
        return f"{match.value:#x}&&&{match.mask:#x}"
    if isinstance(match, Range):
        return f"{match.low}..{match.high}"
    return f"{match.value}?"
