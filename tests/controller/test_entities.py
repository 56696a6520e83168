# Run: /work/main/.venv/bin/pytest tests/controller/test_entities.py
"""Entities: encode(schema) produces the P4Runtime message a server expects (ids, canonical bytes), decode() gives
back the same entity, and malformed entities are refused with a message naming table, key or parameter."""

from __future__ import annotations

import pytest

from omnireduce.controller import program
from omnireduce.controller.entities import (
    ActionCall,
    CloneSessionEntry,
    CounterEntry,
    Exact,
    Lpm,
    MulticastGroupEntry,
    RegisterEntry,
    Replica,
    TableEntry,
    Ternary,
    describe,
    entity_from_message,
    entity_message,
)
from omnireduce.controller.errors import BadInputError, NameLookupError
from omnireduce.controller.p4info import P4InfoIndex
from omnireduce.p4proto import p4runtime_pb2

from tests.controller.synthetic import synthetic_p4info


@pytest.fixture
def schema() -> P4InfoIndex:
    return P4InfoIndex(synthetic_p4info())


def worker(port: int = 3, ip: int = 0x0A000003, udp: int = 20306, job: int = 1, worker_id: int = 2) -> TableEntry:
    return TableEntry(program.WORKERS_TABLE,
                      {"ingress_port": Exact(port), "src_addr": Exact(ip), "udp_src_port": Exact(udp)},
                      ActionCall(program.SET_WORKER, {"job_id": job, "worker_id": worker_id}))


def test_table_entry_encodes_ids_and_canonical_bytes(schema: P4InfoIndex) -> None:
    message = worker().encode(schema)
    table = schema.table(program.WORKERS_TABLE)
    assert message.table_id == table.id
    assert [(m.field_id, m.exact.value) for m in message.match] == [(1, b"\x03"), (2, b"\x0a\x00\x00\x03"),
                                                                    (3, b"\x4f\x52")]
    action = message.action.action
    assert action.action_id == schema.action(program.SET_WORKER).id
    assert [(p.param_id, p.value) for p in action.params] == [(1, b"\x01"), (2, b"\x02")]


@pytest.mark.parametrize("entry", [
    worker(),
    worker(port=0, ip=0, udp=1, job=0, worker_id=0),
    TableEntry(program.IPV4_ROUTES_TABLE, {"dst_addr": Lpm(0x0A000000, 8)},
               ActionCall(program.ROUTE, {"port": 511 - 1, "src_mac": 0x020000000001, "dst_mac": (1 << 48) - 1})),
])
def test_table_entry_round_trip(schema: P4InfoIndex, entry: TableEntry) -> None:
    message = entity_message(entry, schema)
    assert message.WhichOneof("entity") == "table_entry"
    again = p4runtime_pb2.Entity.FromString(message.SerializeToString())
    assert entity_from_message(again, schema) == entry


def test_table_entry_errors_name_what_is_wrong(schema: P4InfoIndex) -> None:
    with pytest.raises(BadInputError, match="ingress_port: 512 does not fit in 9 bits"):
        worker(port=512).encode(schema)
    with pytest.raises(BadInputError, match="exact key udp_src_port needs a value"):
        TableEntry(program.WORKERS_TABLE, {"ingress_port": Exact(1), "src_addr": Exact(1)}).encode(schema)
    with pytest.raises(NameLookupError, match="Did you mean 'src_addr'"):
        TableEntry(program.WORKERS_TABLE, {"src_address": Exact(1)}).encode(schema)
    with pytest.raises(BadInputError, match="is a lpm match, got a exact value"):
        TableEntry(program.IPV4_ROUTES_TABLE, {"dst_addr": Exact(1)}).encode(schema)
    with pytest.raises(BadInputError, match="is a exact match, got a ternary value"):
        TableEntry(program.JOBS_TABLE, {"job_id": Ternary(1, 1)}).encode(schema)
    with pytest.raises(BadInputError, match="bits set beyond its /8 prefix"):
        TableEntry(program.IPV4_ROUTES_TABLE, {"dst_addr": Lpm(0x0A000001, 8)}).encode(schema)
    with pytest.raises(BadInputError, match="prefix length 33"):
        TableEntry(program.IPV4_ROUTES_TABLE, {"dst_addr": Lpm(0, 33)}).encode(schema)
    with pytest.raises(BadInputError, match=r"missing parameters \['worker_id'\]"):
        TableEntry(program.WORKERS_TABLE, worker().match, ActionCall(program.SET_WORKER, {"job_id": 1})).encode(schema)
    with pytest.raises(BadInputError, match=r"unknown parameters \['extra'\]"):
        TableEntry(program.WORKERS_TABLE, worker().match,
                   ActionCall(program.SET_WORKER, {"job_id": 1, "worker_id": 0, "extra": 1})).encode(schema)
    with pytest.raises(NameLookupError, match="no action of table"):
        TableEntry(program.WORKERS_TABLE, worker().match, ActionCall(program.ROUTE, {})).encode(schema)


def test_wildcard_read_of_a_table_has_no_match(schema: P4InfoIndex) -> None:
    message = TableEntry(program.JOBS_TABLE).encode(schema)
    assert message.table_id == schema.table(program.JOBS_TABLE).id and not message.match


def test_register_entry(schema: P4InfoIndex) -> None:
    entry = RegisterEntry(program.ROUND_EXPONENT, 7, 2)
    message = entry.encode(schema)
    assert message.index.index == 7 and message.data.bitstring == b"\x02"
    assert RegisterEntry.decode(message, schema) == entry
    wildcard = RegisterEntry(program.ROUND_EXPONENT).encode(schema)
    assert not wildcard.HasField("index") and not wildcard.HasField("data")
    with pytest.raises(BadInputError, match="does not fit in 8 bits"):
        RegisterEntry(program.ROUND_EXPONENT, 0, 256).encode(schema)
    with pytest.raises(BadInputError, match=r"index 2048 outside 0..2047"):
        RegisterEntry(program.ROUND_EXPONENT, 2048, 0).encode(schema)


def test_counter_entry(schema: P4InfoIndex) -> None:
    entry = CounterEntry(program.INGRESS_DROPS, 6, packets=3, bytes=186)
    assert CounterEntry.decode(entry.encode(schema), schema) == entry
    assert not CounterEntry(program.PORT_RX).encode(schema).HasField("index")


def test_pre_entries_round_trip(schema: P4InfoIndex) -> None:
    group = MulticastGroupEntry(5, (Replica(1, 0), Replica(2, 1)))
    message = entity_message(group, schema)
    assert [(r.egress_port, r.instance) for r in
            message.packet_replication_engine_entry.multicast_group_entry.replicas] == [(1, 0), (2, 1)]
    assert entity_from_message(message, schema) == group
    session = CloneSessionEntry(9, (Replica(3, 0),), class_of_service=1, packet_length_bytes=128)
    assert entity_from_message(entity_message(session, schema), schema) == session


def test_replica_in_the_newer_bytes_form_is_understood() -> None:
    assert Replica.decode(p4runtime_pb2.Replica(port=b"\x01\x02", instance=4)) == Replica(0x0102, 4)


def test_describe_names_the_entity() -> None:
    assert describe(worker()) == (f"{program.WORKERS_TABLE}[ingress_port=3, src_addr=167772163, "
                                  f"udp_src_port=20306] -> {program.SET_WORKER}")
    assert describe(RegisterEntry(program.SLOT_TENSOR, 4, 0)) == f"register {program.SLOT_TENSOR}[4] = 0"
    assert describe(MulticastGroupEntry(2, (Replica(1, 0),))) == "multicast group 2 (1 replicas)"
