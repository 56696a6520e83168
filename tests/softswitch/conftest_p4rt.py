"""Shared helpers of the P4Runtime server tests (imported by tests/softswitch/test_p4runtime*.py).

- `BASIC_P4INFO`: a hand-written P4Info exercising every match kind, a direct counter, an indexed
  counter, a register and a const default action; `bmv2_json_for()` writes the BMv2 JSON that agrees
  with a P4Info (what p4c-bm2-ss would emit for the parts the server checks).
- `FakeDevice`: an in-memory stand-in for softswitch.device.Device implementing the contract of
  briefs/softswitch_api.md, so the server's translation can be tested on its own.
- `running_server()`: a P4RuntimeServer on 127.0.0.1 port 0, ready when it returns.
- `RawClient`: a raw-protobuf P4Runtime client (stream arbitration, Write, Read) for error cases.
"""

from __future__ import annotations

import contextlib
import json
import queue
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import numpy as np
from google.protobuf import text_format
from p4.config.v1 import p4info_pb2
from p4.v1 import p4runtime_pb2, p4runtime_pb2_grpc

from omnireduce.softswitch import errors
from omnireduce.softswitch.entries import FieldMatch, TableEntry, TableInfo
from omnireduce.softswitch.grpc_rich_status import unpack_batch_errors
from omnireduce.softswitch.p4info_map import P4InfoMap
from omnireduce.softswitch.p4rt_bytes import encode_uint
from omnireduce.softswitch.p4runtime_server import P4RuntimeServer

READY_TIMEOUT_S = 10.0
REPLY_TIMEOUT_S = 5.0

BASIC_P4INFO_TEXT = """
pkg_info { arch: "v1model" }
tables {
  preamble { id: 33554433 name: "MyIngress.exact_t" alias: "exact_t" }
  match_fields { id: 1 name: "hdr.ethernet.dst_addr" bitwidth: 48 match_type: EXACT }
  action_refs { id: 16777217 }
  action_refs { id: 16777219 }
  direct_resource_ids: 318767105
  size: 4
}
tables {
  preamble { id: 33554434 name: "MyIngress.lpm_t" alias: "lpm_t" }
  match_fields { id: 1 name: "hdr.ipv4.dst_addr" bitwidth: 32 match_type: LPM }
  action_refs { id: 16777217 }
  action_refs { id: 16777218 }
  action_refs { id: 16777219 scope: DEFAULT_ONLY }
  size: 64
}
tables {
  preamble { id: 33554435 name: "MyIngress.acl_t" alias: "acl_t" }
  match_fields { id: 1 name: "hdr.ipv4.src_addr" bitwidth: 32 match_type: TERNARY }
  match_fields { id: 2 name: "hdr.tcp.dst_port" bitwidth: 16 match_type: RANGE }
  match_fields { id: 3 name: "hdr.ipv4.protocol" bitwidth: 8 match_type: OPTIONAL }
  action_refs { id: 16777218 }
  action_refs { id: 16777219 }
  size: 64
}
tables {
  preamble { id: 33554436 name: "MyIngress.const_default_t" alias: "const_default_t" }
  match_fields { id: 1 name: "standard_metadata.ingress_port" bitwidth: 9 match_type: EXACT }
  action_refs { id: 16777218 }
  const_default_action_id: 16777218
  size: 16
}
actions {
  preamble { id: 16777217 name: "MyIngress.fwd" alias: "fwd" }
  params { id: 1 name: "port" bitwidth: 9 }
}
actions { preamble { id: 16777218 name: "MyIngress.drop" alias: "drop" } }
actions { preamble { id: 16777219 name: "NoAction" alias: "NoAction" } }
counters {
  preamble { id: 302055425 name: "MyIngress.pkts" alias: "pkts" }
  spec { unit: BOTH }
  size: 4
}
direct_counters {
  preamble { id: 318767105 name: "MyIngress.exact_hits" alias: "exact_hits" }
  spec { unit: BOTH }
  direct_table_id: 33554433
}
registers {
  preamble { id: 369098753 name: "MyIngress.slots" alias: "slots" }
  type_spec { bitstring { bit { bitwidth: 32 } } }
  size: 8
}
"""


def basic_p4info() -> p4info_pb2.P4Info:
    return text_format.Parse(BASIC_P4INFO_TEXT, p4info_pb2.P4Info())


def _field_target(name: str) -> tuple[str, str]:
    parts = name.split(".")
    return (parts[1], parts[2]) if parts[0] == "hdr" else (parts[0], parts[1])


_JSON_KINDS = {p4info_pb2.MatchField.EXACT: "exact", p4info_pb2.MatchField.LPM: "lpm",
               p4info_pb2.MatchField.TERNARY: "ternary", p4info_pb2.MatchField.RANGE: "range",
               p4info_pb2.MatchField.OPTIONAL: "optional"}


def bmv2_json_for(p4info: p4info_pb2.P4Info) -> dict:
    """A BMv2 JSON program agreeing with `p4info` in everything the server cross-checks."""
    actions = {a.preamble.id: a for a in p4info.actions}
    headers: dict[str, list[list]] = {}
    tables = []
    for table in p4info.tables:
        keys = []
        for mf in table.match_fields:
            header, field = _field_target(mf.name)
            fields = headers.setdefault(header, [])
            if [field, mf.bitwidth, False] not in fields:
                fields.append([field, mf.bitwidth, False])
            keys.append({"match_type": _JSON_KINDS[mf.match_type], "name": mf.name,
                         "target": [header, field], "mask": None})
        default_id = table.const_default_action_id or table.action_refs[-1].id
        tables.append({
            "name": table.preamble.name, "id": len(tables), "key": keys, "max_size": table.size,
            "with_counters": bool(table.direct_resource_ids),
            "actions": [actions[ref.id].preamble.name for ref in table.action_refs],
            "action_ids": [ref.id for ref in table.action_refs],
            "default_entry": {"action_id": default_id, "action_const": bool(table.const_default_action_id),
                              "action_data": [], "action_entry_const": False},
        })
    return {
        "header_types": [{"name": f"{h}_t", "id": i, "fields": f} for i, (h, f) in enumerate(headers.items())],
        "headers": [{"name": h, "id": i, "header_type": f"{h}_t", "metadata": False}
                    for i, h in enumerate(headers)],
        "actions": [{"name": a.preamble.name, "id": a.preamble.id,
                     "runtime_data": [{"name": p.name, "bitwidth": p.bitwidth} for p in a.params],
                     "primitives": []} for a in p4info.actions],
        "register_arrays": [{"name": r.preamble.name, "id": i, "size": r.size,
                             "bitwidth": r.type_spec.bitstring.bit.bitwidth} for i, r in enumerate(p4info.registers)],
        "counter_arrays": (
            [{"name": c.preamble.name, "id": i, "is_direct": False, "size": c.size}
             for i, c in enumerate(p4info.counters)]
            + [{"name": c.preamble.name, "id": 100 + i, "is_direct": True,
                "binding": next(t.preamble.name for t in p4info.tables if t.preamble.id == c.direct_table_id)}
               for i, c in enumerate(p4info.direct_counters)]),
        "pipelines": [{"name": "ingress", "init_table": None, "tables": tables}],
    }


def basic_bmv2_json() -> bytes:
    return json.dumps(bmv2_json_for(basic_p4info())).encode()


@dataclass(frozen=True, slots=True)
class FakeCloneSession:
    replicas: tuple[tuple[int, int], ...]
    packet_length_bytes: int


class FakeDevice:
    """In-memory stand-in for softswitch.device.Device (tables, counters, registers, PRE; no packets)."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self.pipeline_json: bytes | None = None
        self._program: dict | None = None

    @property
    def pipeline_loaded(self) -> bool:
        return self._program is not None

    def load_pipeline(self, bmv2_json) -> None:
        raw = bmv2_json if isinstance(bmv2_json, (bytes, str)) else json.dumps(bmv2_json)
        program = json.loads(raw)
        with self._lock:
            self._program = program
            self.pipeline_json = raw.encode() if isinstance(raw, str) else raw
            self._actions = {a["name"]: a for a in program["actions"]}
            self._action_names = {a["id"]: a["name"] for a in program["actions"]}
            self._tables = {t["name"]: t for p in program["pipelines"] for t in p["tables"]}
            self._entries: dict[str, dict[tuple, TableEntry]] = {name: {} for name in self._tables}
            self._direct: dict[tuple, list[int]] = {}
            self._defaults = {name: self._initial_default(name) for name in self._tables}
            self._registers = {r["name"]: np.zeros(r["size"], dtype=np.uint64) for r in program["register_arrays"]}
            self._register_widths = {r["name"]: r["bitwidth"] for r in program["register_arrays"]}
            self._counters = {c["name"]: [[0, 0] for _ in range(c["size"])]
                              for c in program["counter_arrays"] if not c["is_direct"]}
            self._groups: dict[int, list[tuple[int, int]]] = {}
            self._sessions: dict[int, FakeCloneSession] = {}

    def _initial_default(self, table: str) -> TableEntry:
        entry = self._tables[table]["default_entry"]
        return TableEntry(table, (), self._action_names[entry["action_id"]], (), 0, True)

    def _table(self, name: str) -> dict:
        if self._program is None:
            raise errors.FailedPrecondition("no pipeline loaded")
        if name not in self._tables:
            raise errors.NotFound(f"no table named '{name}'")
        return self._tables[name]

    def table_info(self, name: str) -> TableInfo:
        table = self._table(name)
        kinds = tuple(k["match_type"] for k in table["key"])
        return TableInfo(name, kinds, (), tuple(k["name"] for k in table["key"]), tuple(table["actions"]),
                         table["max_size"], None, table["default_entry"]["action_const"], False,
                         any(k in ("ternary", "range", "optional") for k in kinds))

    def table_names(self) -> list[str]:
        return list(self._tables)

    def action_param_bitwidths(self, action: str) -> tuple[int, ...]:
        return tuple(d["bitwidth"] for d in self._actions[action]["runtime_data"])

    def table_insert(self, entry: TableEntry) -> None:
        with self._lock:
            table = self._table(entry.table)
            entries = self._entries[entry.table]
            ident = (entry.key, entry.priority)
            if ident in entries:
                raise errors.AlreadyExists(f"table '{entry.table}' already has this entry")
            if len(entries) >= table["max_size"]:
                raise errors.ResourceExhausted(f"table '{entry.table}' is full ({table['max_size']} entries)")
            entries[ident] = entry
            self._direct[(entry.table, *ident)] = [0, 0]

    def table_modify(self, entry: TableEntry) -> None:
        with self._lock:
            self._table(entry.table)
            ident = (entry.key, entry.priority)
            if ident not in self._entries[entry.table]:
                raise errors.NotFound(f"table '{entry.table}' has no such entry")
            self._entries[entry.table][ident] = entry

    def table_delete(self, entry: TableEntry) -> None:
        with self._lock:
            self._table(entry.table)
            ident = (entry.key, entry.priority)
            if self._entries[entry.table].pop(ident, None) is None:
                raise errors.NotFound(f"table '{entry.table}' has no such entry")
            self._direct.pop((entry.table, *ident), None)

    def table_entries(self, table: str) -> list[TableEntry]:
        with self._lock:
            self._table(table)
            return list(self._entries[table].values())

    def table_set_default(self, table: str, action: str, params) -> None:
        with self._lock:
            self._table(table)
            self._defaults[table] = TableEntry(table, (), action, tuple(params), 0, True)

    def table_reset_default(self, table: str) -> None:
        with self._lock:
            self._table(table)
            self._defaults[table] = self._initial_default(table)

    def table_get_default(self, table: str) -> TableEntry:
        with self._lock:
            self._table(table)
            return self._defaults[table]

    def _direct_cell(self, table: str, key, priority: int) -> list[int]:
        self._table(table)
        try:
            return self._direct[(table, tuple(key), priority)]
        except KeyError:
            raise errors.NotFound(f"table '{table}' has no such entry") from None

    def direct_counter_read(self, table: str, key, priority: int) -> tuple[int, int]:
        with self._lock:
            packets, octets = self._direct_cell(table, key, priority)
            return packets, octets

    def direct_counter_write(self, table: str, key, priority: int, packets: int, octets: int) -> None:
        with self._lock:
            self._direct_cell(table, key, priority)[:] = [packets, octets]

    def _counter_cell(self, name: str, index: int) -> list[int]:
        if name not in self._counters:
            raise errors.NotFound(f"no counter named '{name}'")
        if not 0 <= index < len(self._counters[name]):
            raise errors.OutOfRange(f"counter '{name}' index {index}")
        return self._counters[name][index]

    def counter_names(self) -> list[str]:
        return list(self._counters)

    def counter_size(self, name: str) -> int:
        return len(self._counters[name])

    def counter_read(self, name: str, index: int) -> tuple[int, int]:
        with self._lock:
            packets, octets = self._counter_cell(name, index)
            return packets, octets

    def counter_write(self, name: str, index: int, packets: int, octets: int) -> None:
        with self._lock:
            self._counter_cell(name, index)[:] = [packets, octets]

    def _register(self, name: str, index: int | None = None) -> np.ndarray:
        if name not in self._registers:
            raise errors.NotFound(f"no register named '{name}'")
        if index is not None and not 0 <= index < len(self._registers[name]):
            raise errors.OutOfRange(f"register '{name}' index {index}")
        return self._registers[name]

    def register_names(self) -> list[str]:
        return list(self._registers)

    def register_size(self, name: str) -> int:
        return len(self._register(name))

    def register_bitwidth(self, name: str) -> int:
        return self._register_widths[name]

    def register_read(self, name: str, index: int) -> int:
        with self._lock:
            return int(self._register(name, index)[index])

    def register_write(self, name: str, index: int, value: int) -> None:
        with self._lock:
            self._register(name, index)[index] = value

    def register_read_all(self, name: str) -> np.ndarray:
        with self._lock:
            return self._register(name).copy()

    def register_reset(self, name: str) -> None:
        with self._lock:
            self._register(name)[:] = 0

    def mc_group_insert(self, group_id: int, replicas) -> None:
        with self._lock:
            if group_id in self._groups:
                raise errors.AlreadyExists(f"multicast group {group_id} exists")
            self._groups[group_id] = list(replicas)

    def mc_group_modify(self, group_id: int, replicas) -> None:
        with self._lock:
            if group_id not in self._groups:
                raise errors.NotFound(f"multicast group {group_id} does not exist")
            self._groups[group_id] = list(replicas)

    def mc_group_delete(self, group_id: int) -> None:
        with self._lock:
            if self._groups.pop(group_id, None) is None:
                raise errors.NotFound(f"multicast group {group_id} does not exist")

    def mc_group_read(self, group_id: int | None) -> dict[int, list[tuple[int, int]]]:
        with self._lock:
            if group_id is None:
                return {g: list(r) for g, r in self._groups.items()}
            return {group_id: list(self._groups[group_id])} if group_id in self._groups else {}

    def clone_session_insert(self, session_id: int, replicas, packet_length_bytes: int = 0) -> None:
        with self._lock:
            if session_id in self._sessions:
                raise errors.AlreadyExists(f"clone session {session_id} exists")
            self._sessions[session_id] = FakeCloneSession(tuple(replicas), packet_length_bytes)

    def clone_session_modify(self, session_id: int, replicas, packet_length_bytes: int = 0) -> None:
        with self._lock:
            if session_id not in self._sessions:
                raise errors.NotFound(f"clone session {session_id} does not exist")
            self._sessions[session_id] = FakeCloneSession(tuple(replicas), packet_length_bytes)

    def clone_session_delete(self, session_id: int) -> None:
        with self._lock:
            if self._sessions.pop(session_id, None) is None:
                raise errors.NotFound(f"clone session {session_id} does not exist")

    def clone_session_read(self, session_id: int | None):
        with self._lock:
            if session_id is None:
                return dict(self._sessions)
            return {session_id: self._sessions[session_id]} if session_id in self._sessions else {}


BUILD_DIR = Path(__file__).parent / "p4" / "build"


@dataclass(frozen=True, slots=True)
class PipelineUnderTest:
    """A P4Info + BMv2 JSON pair and the device that runs it."""

    p4info: p4info_pb2.P4Info
    device_config: bytes
    make_device: Callable[[], object]


def pipeline_under_test() -> PipelineUnderTest:
    """The hand-written BASIC program on a FakeDevice."""
    return PipelineUnderTest(basic_p4info(), basic_bmv2_json(), FakeDevice)


def table_entry(p4map: P4InfoMap, table: str, match: dict | None = None, action: str | None = None,
                params: dict | None = None, priority: int = 0, is_default: bool = False) -> p4runtime_pb2.TableEntry:
    """A P4Runtime TableEntry by names. Match values: exact/optional int, lpm (value, prefix_len),
    ternary (value, mask), range (low, high)."""
    info = p4map.table_named(table)
    msg = p4runtime_pb2.TableEntry(table_id=info.id, priority=priority, is_default_action=is_default)
    for name, value in (match or {}).items():
        field = p4map.match_field_named(info, name)
        fm = msg.match.add(field_id=field.id)
        if field.kind == "exact":
            fm.exact.value = encode_uint(value)
        elif field.kind == "optional":
            fm.optional.value = encode_uint(value)
        elif field.kind == "lpm":
            fm.lpm.value, fm.lpm.prefix_len = encode_uint(value[0]), value[1]
        elif field.kind == "ternary":
            fm.ternary.value, fm.ternary.mask = encode_uint(value[0]), encode_uint(value[1])
        else:
            fm.range.low, fm.range.high = encode_uint(value[0]), encode_uint(value[1])
    if action is not None:
        action_info = p4map.action_named(action)
        msg.action.action.action_id = action_info.id
        for name, value in (params or {}).items():
            msg.action.action.params.add(param_id=p4map.param_named(action_info, name).id, value=encode_uint(value))
    return msg


@contextlib.contextmanager
def running_server(device, device_id: int = 1, **kwargs) -> Iterator[P4RuntimeServer]:
    """A P4RuntimeServer on a free loopback port, answering gRPC when this yields."""
    server = P4RuntimeServer(device, "127.0.0.1:0", device_id=device_id, **kwargs)
    server.start()
    try:
        with grpc.insecure_channel(server.bound_address) as channel:
            grpc.channel_ready_future(channel).result(timeout=READY_TIMEOUT_S)
        yield server
    finally:
        server.stop(grace=0)


def uint128(value: int) -> p4runtime_pb2.Uint128:
    return p4runtime_pb2.Uint128(high=value >> 64, low=value & ((1 << 64) - 1))


class Stream:
    """One StreamChannel: send arbitration updates, receive what the server sends back."""

    def __init__(self, stub: p4runtime_pb2_grpc.P4RuntimeStub) -> None:
        self._requests: queue.Queue = queue.Queue()
        self._responses: queue.Queue = queue.Queue()
        self._call = stub.StreamChannel(iter(self._requests.get, None))
        self.error: grpc.RpcError | None = None
        self._thread = threading.Thread(target=self._pump, daemon=True)
        self._thread.start()

    def _pump(self) -> None:
        try:
            for response in self._call:
                self._responses.put(response)
        except grpc.RpcError as error:
            self.error = error
        self._responses.put(None)

    def arbitrate(self, device_id: int, election_id: int | None, role: str | None = None) -> None:
        update = p4runtime_pb2.MasterArbitrationUpdate(device_id=device_id)
        if election_id is not None:
            update.election_id.CopyFrom(uint128(election_id))
        if role is not None:
            update.role.name = role
        self._requests.put(p4runtime_pb2.StreamMessageRequest(arbitration=update))

    def next(self, timeout: float = REPLY_TIMEOUT_S) -> p4runtime_pb2.StreamMessageResponse | None:
        """The next message; None once the stream has ended (then see `error`)."""
        return self._responses.get(timeout=timeout)

    def next_status(self, timeout: float = REPLY_TIMEOUT_S) -> int:
        """The google.rpc code of the next MasterArbitrationUpdate received."""
        message = self.next(timeout)
        assert message is not None, f"stream ended: {self.error}"
        assert message.HasField("arbitration"), message
        return message.arbitration.status.code

    def assert_quiet(self) -> None:
        assert self._responses.empty(), f"unexpected message: {self._responses.queue[0]}"

    def close(self) -> None:
        self._requests.put(None)
        self._call.cancel()
        self._thread.join(REPLY_TIMEOUT_S)


class RawClient:
    """A raw-protobuf P4Runtime client on one channel."""

    def __init__(self, address: str, device_id: int, election_id: int | None = 1) -> None:
        self.device_id = device_id
        self.election_id = election_id
        self.channel = grpc.insecure_channel(address)
        self.stub = p4runtime_pb2_grpc.P4RuntimeStub(self.channel)
        self.streams: list[Stream] = []

    def open_stream(self) -> Stream:
        stream = Stream(self.stub)
        self.streams.append(stream)
        return stream

    def become_primary(self) -> Stream:
        stream = self.open_stream()
        stream.arbitrate(self.device_id, self.election_id)
        assert stream.next_status() == 0, "expected to be primary"
        return stream

    def set_pipeline(self, p4info: p4info_pb2.P4Info, device_config: bytes, cookie: int | None = None,
                     action=p4runtime_pb2.SetForwardingPipelineConfigRequest.VERIFY_AND_COMMIT) -> None:
        request = p4runtime_pb2.SetForwardingPipelineConfigRequest(device_id=self.device_id, action=action)
        if self.election_id is not None:
            request.election_id.CopyFrom(uint128(self.election_id))
        request.config.p4info.CopyFrom(p4info)
        request.config.p4_device_config = device_config
        if cookie is not None:
            request.config.cookie.cookie = cookie
        self.stub.SetForwardingPipelineConfig(request, timeout=REPLY_TIMEOUT_S)

    def write(self, *updates: p4runtime_pb2.Update, election_id: int | None = -1) -> None:
        request = p4runtime_pb2.WriteRequest(device_id=self.device_id, updates=updates)
        election = self.election_id if election_id == -1 else election_id
        if election is not None:
            request.election_id.CopyFrom(uint128(election))
        self.stub.Write(request, timeout=REPLY_TIMEOUT_S)

    def read(self, *entities: p4runtime_pb2.Entity) -> list[p4runtime_pb2.Entity]:
        request = p4runtime_pb2.ReadRequest(device_id=self.device_id, entities=entities)
        return [e for response in self.stub.Read(request, timeout=REPLY_TIMEOUT_S) for e in response.entities]

    def close(self) -> None:
        for stream in self.streams:
            stream.close()
        self.channel.close()


def update(kind: str, **entity) -> p4runtime_pb2.Update:
    """An Update of type `kind` ("INSERT"/"MODIFY"/"DELETE") for the entity given as Entity(**entity)."""
    return p4runtime_pb2.Update(type=p4runtime_pb2.Update.Type.Value(kind), entity=p4runtime_pb2.Entity(**entity))


def batch_codes(error: grpc.RpcError) -> list[int]:
    """google.rpc codes of the per-update p4.v1.Errors carried by a failed batch."""
    return [e.canonical_code for e in unpack_batch_errors(error.trailing_metadata())]


__all__ = ["FieldMatch", "FakeDevice", "PipelineUnderTest", "RawClient", "Stream", "basic_bmv2_json",
           "basic_p4info", "batch_codes", "bmv2_json_for", "pipeline_under_test", "running_server", "table_entry",
           "uint128", "update"]
