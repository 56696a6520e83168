# Run: .venv/bin/pytest tests/softswitch/test_p4runtime_limits.py
"""The P4Runtime server under what a careless or hostile client can send: deeply nested configs, entity kinds the
program does not have, thousands of streams, batches of thousands of failing updates, reads of every register.
Each case checks that the client gets a clear, parseable answer and that the server keeps serving others."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import json
import logging
import threading
from collections.abc import Iterator
from dataclasses import dataclass

import grpc
import pytest
from google.rpc import code_pb2

from conftest_p4rt import REPLY_TIMEOUT_S, RawClient, batch_codes, pipeline_under_test, running_server
from omnireduce.p4proto import p4runtime_pb2
from omnireduce.p4proto.p4runtime_grpc import P4RuntimeStub
from omnireduce.p4src import artifacts
from omnireduce.softswitch.device import Device
from omnireduce.softswitch.p4runtime.p4info_map import load_p4info
from omnireduce.softswitch.p4runtime.server import MAX_STREAMS, P4RuntimeServer
from omnireduce.softswitch.p4runtime.service import READ_RESPONSE_BYTES
from tests.polling import wait_until

DEVICE_ID = 1
Entity = p4runtime_pb2.Entity


@dataclass
class Served:
    server: P4RuntimeServer
    client: RawClient          # primary, election id 10, test pipeline pushed


@pytest.fixture
def served() -> Iterator[Served]:
    pipeline = pipeline_under_test()
    with running_server(pipeline.make_device(), device_id=DEVICE_ID) as server:
        client = RawClient(server.bound_address, DEVICE_ID, election_id=10)
        try:
            client.become_primary()
            client.set_pipeline(pipeline.p4info, pipeline.device_config)
            yield Served(server, client)
        finally:
            client.close()


@contextlib.contextmanager
def rpc_error(code: grpc.StatusCode, fragment: str = "") -> Iterator[pytest.ExceptionInfo]:
    with pytest.raises(grpc.RpcError) as info:
        yield info
    assert info.value.code() == code, info.value.details()
    assert fragment in info.value.details(), info.value.details()


# --- deeply nested device configs ---------------------------------------------------------------------------
def nested_expression(depth: int) -> dict:
    """`egress_spec + 1 + 1 ...`, `depth` additions deep, as BMv2 JSON."""
    expression: dict = {"type": "field", "value": ["standard_metadata", "egress_spec"]}
    for _ in range(depth):
        expression = {"type": "expression",
                      "value": {"op": "+", "left": expression, "right": {"type": "hexstr", "value": "0x1"}}}
    return expression


def config_with_nested_action(depth: int) -> bytes:
    """The test program with MyIngress.fwd assigning a `depth`-deep expression: valid JSON, valid BMv2."""
    program = json.loads(pipeline_under_test().device_config)
    for action in program["actions"]:
        if action["name"] == "MyIngress.fwd":
            action["primitives"][0]["parameters"][1] = nested_expression(depth)
    return json.dumps(program).encode()


@pytest.mark.parametrize("device_config", [
    pytest.param(b"[" * 100_000 + b"]" * 100_000, id="json-deeper-than-the-parser"),
    pytest.param(config_with_nested_action(300), id="expression-deeper-than-python-source"),
    pytest.param(config_with_nested_action(450), id="expression-deeper-than-the-recursion-limit"),
])
def test_a_deeply_nested_device_config_is_an_invalid_argument(served: Served, device_config: bytes) -> None:
    pipeline = pipeline_under_test()
    with rpc_error(grpc.StatusCode.INVALID_ARGUMENT, "nested too deeply"):
        served.client.set_pipeline(pipeline.p4info, device_config)
    # The pipeline that was there still serves.
    assert served.client.read(Entity(table_entry=p4runtime_pb2.TableEntry())) == []


# --- entity kinds the program has none of -------------------------------------------------------------------
ABSENT_KIND_WILDCARDS = {
    "action_profile_member": p4runtime_pb2.ActionProfileMember(),
    "action_profile_group": p4runtime_pb2.ActionProfileGroup(),
    "meter_entry": p4runtime_pb2.MeterEntry(),
    "direct_meter_entry": p4runtime_pb2.DirectMeterEntry(),
    "value_set_entry": p4runtime_pb2.ValueSetEntry(),
    "digest_entry": p4runtime_pb2.DigestEntry(),
    "extern_entry": p4runtime_pb2.ExternEntry(),
}


@pytest.mark.parametrize("kind", sorted(ABSENT_KIND_WILDCARDS))
def test_a_wildcard_read_of_a_kind_the_program_has_none_of_is_empty(served: Served, kind: str) -> None:
    # finsy's delete_all() reads action profile members and groups of every program.
    assert served.client.read(Entity(**{kind: ABSENT_KIND_WILDCARDS[kind]})) == []


ABSENT_IDS = {
    "action_profile_member": p4runtime_pb2.ActionProfileMember(action_profile_id=0x1100FFFF),
    "action_profile_group": p4runtime_pb2.ActionProfileGroup(action_profile_id=0x1100FFFF),
    "meter_entry": p4runtime_pb2.MeterEntry(meter_id=0x1500FFFF),
    "value_set_entry": p4runtime_pb2.ValueSetEntry(value_set_id=0x0300FFFF),
    "digest_entry": p4runtime_pb2.DigestEntry(digest_id=0x1800FFFF),
    "extern_entry": p4runtime_pb2.ExternEntry(extern_type_id=0x81, extern_id=1),
}


@pytest.mark.parametrize("kind", sorted(ABSENT_IDS))
def test_a_read_naming_an_object_the_p4info_lacks_is_an_invalid_argument(served: Served, kind: str) -> None:
    # As for tables and registers: an id the P4Info does not define is a malformed request.
    with rpc_error(grpc.StatusCode.INVALID_ARGUMENT, "in the P4Info"):
        served.client.read(Entity(**{kind: ABSENT_IDS[kind]}))


def test_direct_meters_of_a_table_without_one(served: Served) -> None:
    p4map_table = next(t for t in pipeline_under_test().p4info.tables if t.preamble.name == "MyIngress.exact_t")
    query = p4runtime_pb2.DirectMeterEntry(table_entry=p4runtime_pb2.TableEntry(table_id=p4map_table.preamble.id))
    with rpc_error(grpc.StatusCode.INVALID_ARGUMENT, "no direct meter"):
        served.client.read(Entity(direct_meter_entry=query))


# --- batches with thousands of failing updates ---------------------------------------------------------------
BIG_BATCH = 10_000
# A deadline for requests of thousands of updates on a shared, slow machine (not a speed requirement).
BIG_REQUEST_TIMEOUT_S = 120.0


def exact_entries(p4info, count: int, first: int = 0) -> list[p4runtime_pb2.TableEntry]:
    """`count` distinct entries of MyIngress.exact_t (dst_addr first, first+1, ...) running NoAction."""
    table = next(t for t in p4info.tables if t.preamble.name == "MyIngress.exact_t")
    no_action = next(a for a in p4info.actions if a.preamble.name == "NoAction")
    entries = []
    for value in range(first, first + count):
        entry = p4runtime_pb2.TableEntry(table_id=table.preamble.id)
        field = entry.match.add(field_id=table.match_fields[0].id)
        field.exact.value = value.to_bytes(6, "big").lstrip(b"\0") or b"\0"
        entry.action.action.action_id = no_action.preamble.id
        entries.append(entry)
    return entries


def write_batch(client: RawClient, kind: str, entries: list[p4runtime_pb2.TableEntry]) -> grpc.RpcError | None:
    updates = [p4runtime_pb2.Update(type=p4runtime_pb2.Update.Type.Value(kind), entity=Entity(table_entry=e))
               for e in entries]
    request = p4runtime_pb2.WriteRequest(device_id=DEVICE_ID, updates=updates)
    request.election_id.low = client.election_id
    try:
        client.stub.Write(request, timeout=BIG_REQUEST_TIMEOUT_S)   # a default client: no metadata size option
    except grpc.RpcError as error:
        return error
    return None


def test_a_batch_of_ten_thousand_failing_updates_is_reported_to_a_default_client(served: Served, caplog) -> None:
    p4info = pipeline_under_test().p4info
    answered_meanwhile: list[str] = []
    with concurrent.futures.ThreadPoolExecutor(1) as pool, caplog.at_level(logging.INFO):
        batch = pool.submit(write_batch, served.client, "DELETE", exact_entries(p4info, BIG_BATCH))
        with RawClient(served.server.bound_address, DEVICE_ID) as other:   # another client keeps being served
            while not batch.done():
                answered_meanwhile.append(other.stub.Capabilities(p4runtime_pb2.CapabilitiesRequest(),
                                                                   timeout=REPLY_TIMEOUT_S).p4runtime_api_version)
        error = batch.result()
    assert error is not None and error.code() == grpc.StatusCode.UNKNOWN, error
    assert f"{BIG_BATCH} of {BIG_BATCH} updates failed, 0 applied" in error.details()
    assert "first failures: update 0: NOT_FOUND" in error.details()
    codes = batch_codes(error)
    assert 0 < len(codes) < BIG_BATCH and set(codes) == {code_pb2.NOT_FOUND}
    assert f"status details list updates 0..{len(codes) - 1}" in error.details()
    assert all(answered_meanwhile)
    refusals = [r for r in caplog.records if r.name.endswith("p4runtime.service") and r.levelno >= logging.INFO]
    assert len(refusals) == 1, [r.getMessage()[:100] for r in refusals[:3]]   # one line per batch, not per update


def test_the_first_failure_is_named_even_after_thousands_of_applied_updates(served: Served) -> None:
    pkts = next(c for c in pipeline_under_test().p4info.counters if c.preamble.name == "MyIngress.pkts")

    def counter_write(index: int) -> p4runtime_pb2.Update:
        entry = p4runtime_pb2.CounterEntry(counter_id=pkts.preamble.id)
        entry.index.index, entry.data.packet_count = index, 1
        return p4runtime_pb2.Update(type=p4runtime_pb2.Update.MODIFY, entity=Entity(counter_entry=entry))

    updates = [counter_write(0) for _ in range(5000)] + [counter_write(pkts.size + i) for i in range(5000)]
    request = p4runtime_pb2.WriteRequest(device_id=DEVICE_ID, updates=updates)
    request.election_id.low = served.client.election_id
    with rpc_error(grpc.StatusCode.UNKNOWN, "5000 of 10000 updates failed, 5000 applied") as info:
        served.client.stub.Write(request, timeout=BIG_REQUEST_TIMEOUT_S)
    assert "first failures: update 5000: OUT_OF_RANGE" in info.value.details()
    assert set(batch_codes(info.value)) == {code_pb2.OK}   # the details cannot reach that far; the message does


# --- thousands of streams ----------------------------------------------------------------------------------------
FLOOD_STREAMS = 1000
FLOOD_SETTLE_S = 120.0


class StreamFlood:
    """`count` StreamChannel calls that never send a message (never arbitrate), held on one asyncio loop in a
    thread of their own (grpc.aio needs no thread per call). `ended` collects how the server ended each one."""

    def __init__(self, address: str, count: int) -> None:
        self.address = address
        self.count = count
        self.ended: list[tuple[grpc.StatusCode, str]] = []
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="stream-flood", daemon=True)
        self._channel: grpc.aio.Channel | None = None

    def __enter__(self) -> StreamFlood:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._open(), self._loop).result(REPLY_TIMEOUT_S)
        return self

    async def _open(self) -> None:
        self._channel = grpc.aio.insecure_channel(self.address)
        stub = P4RuntimeStub(self._channel)
        for _ in range(self.count):
            asyncio.ensure_future(self._watch(stub.StreamChannel()))

    async def _watch(self, call) -> None:
        code = await call.code()
        self.ended.append((code, await call.details()))

    def __exit__(self, *exc_info) -> None:
        if self._channel is not None:
            asyncio.run_coroutine_threadsafe(self._channel.close(), self._loop).result(REPLY_TIMEOUT_S)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(REPLY_TIMEOUT_S)


def test_a_thousand_streams_do_not_lock_other_clients_out(served: Served) -> None:
    server, primary = served.server, served.client
    entry = p4runtime_pb2.Update(type=p4runtime_pb2.Update.INSERT,
                                 entity=Entity(table_entry=exact_entries(pipeline_under_test().p4info, 1)[0]))
    with StreamFlood(server.bound_address, FLOOD_STREAMS) as flood:
        # Every stream is either held by the server or refused.
        wait_until(lambda: server.open_streams + len(flood.ended) == FLOOD_STREAMS + 1, FLOOD_SETTLE_S,
                   "the server holding or refusing every stream")
        with RawClient(server.bound_address, DEVICE_ID) as other:
            assert other.stub.Capabilities(p4runtime_pb2.CapabilitiesRequest(), timeout=REPLY_TIMEOUT_S)
            assert other.read(Entity(table_entry=p4runtime_pb2.TableEntry())) == []
        primary.write(entry)
        assert len(primary.read(Entity(table_entry=p4runtime_pb2.TableEntry()))) == 1
        assert server.open_streams == MAX_STREAMS
        assert {code for code, _ in flood.ended} == {grpc.StatusCode.RESOURCE_EXHAUSTED}
        assert f"at most {MAX_STREAMS} streams" in flood.ended[0][1]
    wait_until(lambda: server.open_streams == 1, FLOOD_SETTLE_S, "the flood's streams closing")


# --- reads of every register --------------------------------------------------------------------------------
@pytest.mark.skipif(not (artifacts.BMV2_JSON.exists() and artifacts.P4INFO.exists()),
                    reason="p4src/build/ has no compiled omnireduce program yet (run `make p4`, needs p4c)")
def test_reading_every_register_of_the_omnireduce_program_streams_bounded_messages() -> None:
    p4info = load_p4info(artifacts.P4INFO)
    registers = {r.preamble.id: r for r in p4info.registers}
    written = {}   # (register id, index) -> value: the first, last and a middle cell of each, at its width's top
    for register in p4info.registers:
        width = register.type_spec.bitstring.bit.bitwidth or register.type_spec.bitstring.int.bitwidth
        for index in (0, register.size // 2, register.size - 1):
            written[(register.preamble.id, index)] = (1 << width) - 1 - index % 7
    with running_server(Device(), device_id=DEVICE_ID) as server, \
            RawClient(server.bound_address, DEVICE_ID, election_id=None) as client:
        client.set_pipeline(p4info, artifacts.BMV2_JSON.read_bytes())
        updates = []
        for (register_id, index), value in written.items():
            entry = p4runtime_pb2.RegisterEntry(register_id=register_id)
            entry.index.index = index
            entry.data.bitstring = value.to_bytes((value.bit_length() + 7) // 8 or 1, "big")
            updates.append(p4runtime_pb2.Update(type=p4runtime_pb2.Update.MODIFY,
                                                entity=Entity(register_entry=entry)))
        client.write(*updates, election_id=None)
        request = p4runtime_pb2.ReadRequest(device_id=DEVICE_ID,
                                            entities=[Entity(register_entry=p4runtime_pb2.RegisterEntry())])
        responses = list(client.stub.Read(request, timeout=BIG_REQUEST_TIMEOUT_S))   # a default client
    assert len(responses) > 1
    assert all(response.ByteSize() <= READ_RESPONSE_BYTES + 16 for response in responses)
    cells = {}
    for response in responses:
        for entity in response.entities:
            entry = entity.register_entry
            key = (entry.register_id, entry.index.index)
            assert key not in cells, key
            cells[key] = entry.data.bitstring
    assert len(cells) == sum(r.size for r in registers.values())
    for key, bitstring in cells.items():
        value = written.get(key, 0)
        assert bitstring == value.to_bytes((value.bit_length() + 7) // 8 or 1, "big"), key   # canonical form
