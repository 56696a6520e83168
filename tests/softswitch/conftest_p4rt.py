"""Shared helpers of the P4Runtime server tests (imported by tests/softswitch/test_p4runtime*.py).

- `basic_p4info()`, `basic_bmv2_json()`, `pipeline_under_test()`: tests/softswitch/p4/p4rt_basic.p4 as p4c-bm2-ss
  compiled it (committed in tests/softswitch/p4/build/; `make p4-tests` recompiles).
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
import pytest
from google.protobuf import text_format

from omnireduce.p4proto import p4info_pb2, p4runtime_grpc, p4runtime_pb2
from omnireduce.softswitch.device import Device
from omnireduce.softswitch.p4runtime.bytestrings import encode_uint
from omnireduce.softswitch.p4runtime.p4info_map import P4InfoMap
from omnireduce.softswitch.p4runtime.rich_status import unpack_batch_errors
from omnireduce.softswitch.p4runtime.server import P4RuntimeServer

READY_TIMEOUT_S = 10.0
REPLY_TIMEOUT_S = 5.0

# Table order is also the order the BASIC ingress applies them in: the const-default "drop" table first,
# so that a later forwarding action overrides its mark_to_drop.
BUILD_DIR = Path(__file__).parent / "p4" / "build"
BASIC_P4INFO = BUILD_DIR / "p4rt_basic.p4info.txtpb"
BASIC_JSON = BUILD_DIR / "p4rt_basic.json"


def basic_p4info() -> p4info_pb2.P4Info:
    """P4Info of tests/softswitch/p4/p4rt_basic.p4 as p4c-bm2-ss wrote it (every match kind, a direct counter,
    an indexed counter, a register, a const default action)."""
    return text_format.Parse(BASIC_P4INFO.read_text(), p4info_pb2.P4Info())


def basic_bmv2_json() -> bytes:
    """The BMv2 JSON p4c-bm2-ss compiled from p4rt_basic.p4."""
    return BASIC_JSON.read_bytes()


@dataclass(frozen=True, slots=True)
class PipelineUnderTest:
    """A P4Info + BMv2 JSON pair and the device that runs it."""

    p4info: p4info_pb2.P4Info
    device_config: bytes
    make_device: Callable[[], object]


def pipeline_under_test() -> PipelineUnderTest:
    """The BASIC program, as p4c compiled it, on the softswitch Device."""
    return PipelineUnderTest(basic_p4info(), basic_bmv2_json(), Device)


def program_pipeline(name: str) -> PipelineUnderTest:
    """tests/softswitch/p4/<name>.p4 as p4c compiled it (P4Info and JSON), on the softswitch Device."""
    p4info = text_format.Parse((BUILD_DIR / f"{name}.p4info.txtpb").read_text(), p4info_pb2.P4Info())
    return PipelineUnderTest(p4info, (BUILD_DIR / f"{name}.json").read_bytes(), Device)


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


@dataclass
class Served:
    """A Device running a test program, served over P4Runtime; `client` is primary and pushed the pipeline."""

    device: Device
    server: P4RuntimeServer
    client: RawClient
    p4map: P4InfoMap
    pipeline: PipelineUnderTest

    def id(self, kind: str, name: str) -> int:
        """The P4Info id of the object `name` of `kind` ("table", "action", "value_set", "meter", ...)."""
        for item in getattr(self.p4map.p4info, kind + "s"):
            if item.preamble.name == name:
                return item.preamble.id
        raise KeyError(f"no {kind} named {name} in the P4Info")


@contextlib.contextmanager
def serving(name: str, device_id: int = 1, election_id: int = 10) -> Iterator[Served]:
    """tests/softswitch/p4/<name>.p4 on a fresh Device behind a P4Runtime server, with a primary client that pushed
    it."""
    pipeline = program_pipeline(name)
    device = Device(name=name)
    with running_server(device, device_id=device_id) as server:
        client = RawClient(server.bound_address, device_id, election_id=election_id)
        try:
            client.become_primary()
            client.set_pipeline(pipeline.p4info, pipeline.device_config)
            yield Served(device, server, client, P4InfoMap(pipeline.p4info), pipeline)
        finally:
            client.close()


@contextlib.contextmanager
def rpc_error(code: grpc.StatusCode, fragment: str = "") -> Iterator:
    """The block fails with gRPC status `code` whose details contain `fragment`."""
    with pytest.raises(grpc.RpcError) as info:
        yield info
    assert info.value.code() == code, info.value.details()
    assert fragment in info.value.details(), info.value.details()


def uint128(value: int) -> p4runtime_pb2.Uint128:
    return p4runtime_pb2.Uint128(high=value >> 64, low=value & ((1 << 64) - 1))


class Stream:
    """One StreamChannel: send arbitration updates, receive what the server sends back."""

    def __init__(self, stub: p4runtime_grpc.P4RuntimeStub) -> None:
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
        self.stub = p4runtime_grpc.P4RuntimeStub(self.channel)
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

    def __enter__(self) -> RawClient:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

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


__all__ = ["PipelineUnderTest", "RawClient", "Served", "Stream", "basic_bmv2_json",
           "basic_p4info", "batch_codes", "pipeline_under_test", "program_pipeline", "rpc_error", "running_server",
           "serving", "table_entry", "uint128", "update"]
