"""Shared helpers of the P4Runtime server tests (imported by tests/softswitch/test_p4runtime*.py).

- `BASIC_P4INFO_TEXT`: a hand-written P4Info of tests/softswitch/p4/p4rt_basic.p4 (every match kind, a
  direct counter, an indexed counter, a register, a const default action); `bmv2_json_for()` writes a
  runnable BMv2 JSON agreeing with it, so the tests need no p4c. Once p4c has compiled p4rt_basic.p4
  into tests/softswitch/p4/build/, `pipeline_under_test()` uses that output instead.
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
from google.protobuf import text_format
from p4.config.v1 import p4info_pb2
from p4.v1 import p4runtime_pb2, p4runtime_pb2_grpc

from omnireduce.softswitch.device import Device
from omnireduce.softswitch.grpc_rich_status import unpack_batch_errors
from omnireduce.softswitch.p4info_map import P4InfoMap
from omnireduce.softswitch.p4rt_bytes import encode_uint
from omnireduce.softswitch.p4runtime_server import P4RuntimeServer

READY_TIMEOUT_S = 10.0
REPLY_TIMEOUT_S = 5.0

# Table order is also the order the BASIC ingress applies them in: the const-default "drop" table first,
# so that a later forwarding action overrides its mark_to_drop.
BASIC_P4INFO_TEXT = """
pkg_info { arch: "v1model" }
tables {
  preamble { id: 33554436 name: "MyIngress.const_default_t" alias: "const_default_t" }
  match_fields { id: 1 name: "standard_metadata.ingress_port" bitwidth: 9 match_type: EXACT }
  action_refs { id: 16777218 }
  const_default_action_id: 16777218
  size: 16
}
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


# Header types of the BASIC program (what p4c-bm2-ss emits for tests/softswitch/p4/p4rt_basic.p4).
_HEADER_TYPES = {
    "ethernet_t": [["dst_addr", 48, False], ["src_addr", 48, False], ["ether_type", 16, False]],
    "ipv4_t": [["version", 4, False], ["ihl", 4, False], ["diffserv", 8, False], ["total_len", 16, False],
               ["identification", 16, False], ["flags", 3, False], ["frag_offset", 13, False], ["ttl", 8, False],
               ["protocol", 8, False], ["hdr_checksum", 16, False], ["src_addr", 32, False], ["dst_addr", 32, False]],
    "tcp_t": [["src_port", 16, False], ["dst_port", 16, False], ["seq_no", 32, False], ["ack_no", 32, False],
              ["data_offset", 4, False], ["res", 4, False], ["flags", 8, False], ["window", 16, False],
              ["checksum", 16, False], ["urgent_ptr", 16, False]],
    "standard_metadata": [["ingress_port", 9, False], ["egress_spec", 9, False], ["egress_port", 9, False],
                          ["instance_type", 32, False], ["packet_length", 32, False], ["enq_timestamp", 32, False],
                          ["enq_qdepth", 19, False], ["deq_timedelta", 32, False], ["deq_qdepth", 19, False],
                          ["ingress_global_timestamp", 48, False], ["egress_global_timestamp", 48, False],
                          ["mcast_grp", 16, False], ["egress_rid", 16, False], ["checksum_error", 1, False],
                          ["parser_error", 32, False], ["priority", 3, False], ["_padding_0", 3, False]],
    "scalars_0": [],
}
_HEADERS = {"ethernet": "ethernet_t", "ipv4": "ipv4_t", "tcp": "tcp_t", "standard_metadata": "standard_metadata",
            "scalars": "scalars_0"}
# p4c-bm2-ss writes P4Info OPTIONAL fields as JSON "ternary" keys (matched with a full or zero mask).
_JSON_KINDS = {p4info_pb2.MatchField.EXACT: "exact", p4info_pb2.MatchField.LPM: "lpm",
               p4info_pb2.MatchField.TERNARY: "ternary", p4info_pb2.MatchField.RANGE: "range",
               p4info_pb2.MatchField.OPTIONAL: "ternary"}


def _field_target(name: str) -> list[str]:
    parts = name.split(".")
    return [parts[1], parts[2]] if parts[0] == "hdr" else [parts[0], parts[1]]


def _table_match_type(kinds: list[str]) -> str:
    for kind in ("range", "ternary", "optional", "lpm"):
        if kind in kinds:
            return "ternary" if kind == "optional" else kind
    return "exact"


def _primitives(action: p4info_pb2.Action) -> list[dict]:
    """fwd-like actions set egress_spec from their first parameter; drop-like ones mark_to_drop."""
    if action.params:
        return [{"op": "assign", "parameters": [{"type": "field", "value": ["standard_metadata", "egress_spec"]},
                                                {"type": "runtime_data", "value": 0}]}]
    if action.preamble.name.endswith("drop"):
        return [{"op": "mark_to_drop", "parameters": [{"type": "header", "value": "standard_metadata"}]}]
    return []


def bmv2_json_for(p4info: p4info_pb2.P4Info) -> dict:
    """The BMv2 JSON (format 2.x, as p4c-bm2-ss writes it) of a program with `p4info`'s objects over the
    BASIC program's headers: a parser for ethernet/ipv4/tcp and an ingress that applies every table in turn."""
    json_ids = {a.preamble.id: i for i, a in enumerate(p4info.actions)}
    names = {a.preamble.id: a.preamble.name for a in p4info.actions}
    tables = []
    for index, table in enumerate(p4info.tables):
        kinds = [_JSON_KINDS[mf.match_type] for mf in table.match_fields]
        keys = [{"match_type": kind, "name": mf.name, "target": _field_target(mf.name), "mask": None}
                for kind, mf in zip(kinds, table.match_fields)]
        following = p4info.tables[index + 1].preamble.name if index + 1 < len(p4info.tables) else None
        default_id = table.const_default_action_id or table.action_refs[-1].id
        refs = [ref.id for ref in table.action_refs]
        tables.append({
            "name": table.preamble.name, "id": index, "key": keys, "match_type": _table_match_type(kinds),
            "type": "simple", "max_size": table.size, "with_counters": bool(table.direct_resource_ids),
            "support_timeout": False, "direct_meters": None,
            "action_ids": [json_ids[r] for r in refs], "actions": [names[r] for r in refs],
            "base_default_next": following, "next_tables": {names[r]: following for r in refs},
            "default_entry": {"action_id": json_ids[default_id], "action_const": bool(table.const_default_action_id),
                              "action_data": [], "action_entry_const": bool(table.const_default_action_id)},
        })
    tables_by_id = {t.preamble.id: t.preamble.name for t in p4info.tables}
    return {
        "header_types": [{"name": n, "id": i, "fields": f} for i, (n, f) in enumerate(_HEADER_TYPES.items())],
        "headers": [{"name": n, "id": i, "header_type": t, "metadata": n in ("standard_metadata", "scalars"),
                     "pi_omit": True} for i, (n, t) in enumerate(_HEADERS.items())],
        "header_stacks": [], "header_union_types": [], "header_unions": [], "header_union_stacks": [],
        "field_lists": [], "enums": [], "parse_vsets": [], "meter_arrays": [], "learn_lists": [],
        "calculations": [], "checksums": [], "force_arith": [], "extern_instances": [], "field_aliases": [],
        "errors": [["NoError", 0], ["PacketTooShort", 1], ["NoMatch", 2], ["StackOutOfBounds", 3],
                   ["HeaderTooShort", 4], ["ParserTimeout", 5], ["ParserInvalidArgument", 6]],
        "parsers": [{"name": "parser", "id": 0, "init_state": "start", "parse_states": [
            {"name": "start", "id": 0,
             "parser_ops": [{"parameters": [{"type": "regular", "value": "ethernet"}], "op": "extract"}],
             "transition_key": [{"type": "field", "value": ["ethernet", "ether_type"]}],
             "transitions": [{"type": "hexstr", "value": "0x0800", "mask": None, "next_state": "parse_ipv4"},
                             {"type": "default", "value": None, "mask": None, "next_state": None}]},
            {"name": "parse_ipv4", "id": 1,
             "parser_ops": [{"parameters": [{"type": "regular", "value": "ipv4"}], "op": "extract"}],
             "transition_key": [{"type": "field", "value": ["ipv4", "protocol"]}],
             "transitions": [{"type": "hexstr", "value": "0x06", "mask": None, "next_state": "parse_tcp"},
                             {"type": "default", "value": None, "mask": None, "next_state": None}]},
            {"name": "parse_tcp", "id": 2,
             "parser_ops": [{"parameters": [{"type": "regular", "value": "tcp"}], "op": "extract"}],
             "transition_key": [],
             "transitions": [{"type": "default", "value": None, "mask": None, "next_state": None}]},
        ]}],
        "deparsers": [{"name": "deparser", "id": 0, "order": ["ethernet", "ipv4", "tcp"], "primitives": []}],
        "actions": [{"name": a.preamble.name, "id": json_ids[a.preamble.id],
                     "runtime_data": [{"name": p.name, "bitwidth": p.bitwidth} for p in a.params],
                     "primitives": _primitives(a)} for a in p4info.actions],
        "register_arrays": [{"name": r.preamble.name, "id": i, "size": r.size,
                             "bitwidth": r.type_spec.bitstring.bit.bitwidth} for i, r in enumerate(p4info.registers)],
        "counter_arrays": (
            [{"name": c.preamble.name, "id": i, "is_direct": False, "size": c.size}
             for i, c in enumerate(p4info.counters)]
            + [{"name": c.preamble.name, "id": len(p4info.counters) + i, "is_direct": True,
                "binding": tables_by_id[c.direct_table_id]} for i, c in enumerate(p4info.direct_counters)]),
        "pipelines": [
            {"name": "ingress", "id": 0, "init_table": tables[0]["name"] if tables else None, "tables": tables,
             "action_profiles": [], "conditionals": []},
            {"name": "egress", "id": 1, "init_table": None, "tables": [], "action_profiles": [], "conditionals": []},
        ],
        "program": "p4rt_basic.p4",
        "__meta__": {"version": [2, 23], "compiler": "hand-written in tests/softswitch/conftest_p4rt.py"},
    }


def basic_bmv2_json() -> bytes:
    return json.dumps(bmv2_json_for(basic_p4info())).encode()


BUILD_DIR = Path(__file__).parent / "p4" / "build"


@dataclass(frozen=True, slots=True)
class PipelineUnderTest:
    """A P4Info + BMv2 JSON pair and the device that runs it."""

    p4info: p4info_pb2.P4Info
    device_config: bytes
    make_device: Callable[[], object]


def pipeline_under_test() -> PipelineUnderTest:
    """The BASIC program (p4c's build when committed, else the hand-written pair) on the softswitch Device."""
    p4info_path, json_path = BUILD_DIR / "p4rt_basic.p4info.txtpb", BUILD_DIR / "p4rt_basic.json"
    if p4info_path.exists() and json_path.exists():
        p4info = text_format.Parse(p4info_path.read_text(), p4info_pb2.P4Info(), allow_unknown_field=True)
        return PipelineUnderTest(p4info, json_path.read_bytes(), Device)
    return PipelineUnderTest(basic_p4info(), basic_bmv2_json(), Device)


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


__all__ = ["PipelineUnderTest", "RawClient", "Stream", "basic_bmv2_json",
           "basic_p4info", "batch_codes", "bmv2_json_for", "pipeline_under_test", "running_server", "table_entry",
           "uint128", "update"]
