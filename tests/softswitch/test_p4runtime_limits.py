# Run: .venv/bin/pytest tests/softswitch/test_p4runtime_limits.py
"""The P4Runtime server under what a careless or hostile client can send: deeply nested configs, entity kinds the
program does not have, thousands of streams, batches of thousands of failing updates, reads of every register.
Each case checks that the client gets a clear, parseable answer and that the server keeps serving others."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from dataclasses import dataclass

import grpc
import pytest

from conftest_p4rt import RawClient, pipeline_under_test, running_server
from omnireduce.p4proto import p4runtime_pb2
from omnireduce.softswitch.p4runtime.server import P4RuntimeServer

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
