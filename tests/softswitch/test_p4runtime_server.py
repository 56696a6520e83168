# Run: .venv/bin/pytest tests/softswitch/test_p4runtime_server.py
"""The softswitch P4Runtime server over gRPC, driven by a raw-protobuf client: arbitration, pipeline
config, every entity kind, and the error codes and batch error details the spec asks for."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import grpc
import pytest
from google.protobuf import text_format
from google.rpc import code_pb2

from conftest_p4rt import (
    RawClient,
    batch_codes,
    pipeline_under_test,
    running_server,
    table_entry,
    update,
)
from omnireduce.p4proto import p4data_pb2, p4runtime_pb2
from omnireduce.softswitch.p4runtime.p4info_map import P4InfoMap, load_p4info
from omnireduce.softswitch.p4runtime.server import P4RuntimeServer, P4RuntimeServerError

# Every test runs on the native and on the Python packet pipeline (conftest.py).
pytestmark = pytest.mark.usefixtures("backend")

DEVICE_ID = 1
SetConfig = p4runtime_pb2.SetForwardingPipelineConfigRequest
GetConfig = p4runtime_pb2.GetForwardingPipelineConfigRequest
Entity = p4runtime_pb2.Entity


@dataclass
class Switch:
    server: P4RuntimeServer
    client: RawClient          # primary, election id 10, pipeline pushed
    p4map: P4InfoMap

    def entry(self, table: str, **kwargs) -> p4runtime_pb2.TableEntry:
        return table_entry(self.p4map, table, **kwargs)

    def ids(self, kind: str, name: str) -> int:
        return getattr(self.p4map, f"{kind}_named")(name).id


@pytest.fixture
def bare_server():
    pipeline = pipeline_under_test()
    with running_server(pipeline.make_device(), device_id=DEVICE_ID) as server:
        yield server, pipeline


@pytest.fixture
def switch(bare_server):
    server, pipeline = bare_server
    client = RawClient(server.bound_address, DEVICE_ID, election_id=10)
    try:
        client.become_primary()
        client.set_pipeline(pipeline.p4info, pipeline.device_config, cookie=0xC0FFEE)
        yield Switch(server, client, P4InfoMap(pipeline.p4info))
    finally:
        client.close()


@contextlib.contextmanager
def rpc_error(code: grpc.StatusCode, fragment: str = ""):
    """The block fails with gRPC status `code` whose details contain `fragment`."""
    with pytest.raises(grpc.RpcError) as info:
        yield info
    assert info.value.code() == code, info.value.details()
    assert fragment in info.value.details(), info.value.details()


# --- Capabilities, arbitration --------------------------------------------------------------------------
def test_capabilities_reports_the_api_version(bare_server):
    server, _ = bare_server
    client = RawClient(server.bound_address, DEVICE_ID)
    try:
        reply = client.stub.Capabilities(p4runtime_pb2.CapabilitiesRequest(), timeout=5)
        assert reply.p4runtime_api_version.startswith("1.")
    finally:
        client.close()


def test_arbitration_notifies_primary_and_backups(bare_server):
    server, _ = bare_server
    client = RawClient(server.bound_address, DEVICE_ID)
    try:
        first, second = client.open_stream(), client.open_stream()
        first.arbitrate(DEVICE_ID, 5)
        assert first.next_status() == code_pb2.OK
        second.arbitrate(DEVICE_ID, 3)
        assert second.next_status() == code_pb2.ALREADY_EXISTS
        first.assert_quiet()
        second.arbitrate(DEVICE_ID, 7)      # the backup raises its id: it takes over, both are told
        assert second.next_status() == code_pb2.OK
        message = first.next()
        assert message.arbitration.status.code == code_pb2.ALREADY_EXISTS
        assert message.arbitration.election_id.low == 7
        second.close()                      # the primary leaves: the other hears there is none
        assert first.next_status() == code_pb2.NOT_FOUND
    finally:
        client.close()


def test_stream_errors_end_the_stream(bare_server):
    server, _ = bare_server
    client = RawClient(server.bound_address, DEVICE_ID)
    try:
        wrong_device = client.open_stream()
        wrong_device.arbitrate(DEVICE_ID + 1, 1)
        assert wrong_device.next() is None
        assert wrong_device.error.code() == grpc.StatusCode.NOT_FOUND
        owner, duplicate = client.open_stream(), client.open_stream()
        owner.arbitrate(DEVICE_ID, 4)
        assert owner.next_status() == code_pb2.OK
        duplicate.arbitrate(DEVICE_ID, 4)
        assert duplicate.next() is None
        assert duplicate.error.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "already used" in duplicate.error.details()
    finally:
        client.close()


def test_only_the_primary_may_change_state(switch):
    backup = RawClient(switch.server.bound_address, DEVICE_ID, election_id=2)
    try:
        stream = backup.open_stream()
        stream.arbitrate(DEVICE_ID, 2)
        assert stream.next_status() == code_pb2.ALREADY_EXISTS
        entry = switch.entry("MyIngress.exact_t", match={"hdr.ethernet.dst_addr": 1}, action="NoAction")
        with rpc_error(grpc.StatusCode.PERMISSION_DENIED, "not primary"):
            backup.write(update("INSERT", table_entry=entry))
        with rpc_error(grpc.StatusCode.PERMISSION_DENIED):
            backup.write(update("INSERT", table_entry=entry), election_id=None)
        pipeline = pipeline_under_test()
        with rpc_error(grpc.StatusCode.PERMISSION_DENIED):
            backup.set_pipeline(pipeline.p4info, pipeline.device_config)
        # Reads need no arbitration at all.
        assert backup.read(Entity(table_entry=p4runtime_pb2.TableEntry())) == []
    finally:
        backup.close()


def test_wrong_device_id_is_not_found(switch):
    other = RawClient(switch.server.bound_address, DEVICE_ID + 1, election_id=10)
    try:
        with rpc_error(grpc.StatusCode.NOT_FOUND, "unknown device id"):
            other.read(Entity(table_entry=p4runtime_pb2.TableEntry()))
        with rpc_error(grpc.StatusCode.NOT_FOUND):
            other.write()
    finally:
        other.close()


# --- pipeline config ------------------------------------------------------------------------------------
def test_nothing_works_before_a_pipeline_is_set(bare_server):
    server, _ = bare_server
    client = RawClient(server.bound_address, DEVICE_ID, election_id=1)
    try:
        client.become_primary()
        with rpc_error(grpc.StatusCode.FAILED_PRECONDITION, "no forwarding pipeline"):
            client.write(update("MODIFY", register_entry=p4runtime_pb2.RegisterEntry(register_id=1)))
        with rpc_error(grpc.StatusCode.FAILED_PRECONDITION):
            client.read(Entity(table_entry=p4runtime_pb2.TableEntry()))
        reply = client.stub.GetForwardingPipelineConfig(GetConfig(device_id=DEVICE_ID), timeout=5)
        assert not reply.HasField("config")
    finally:
        client.close()


def test_get_pipeline_config_response_types(switch):
    pipeline = pipeline_under_test()

    def get(kind):
        return switch.client.stub.GetForwardingPipelineConfig(
            GetConfig(device_id=DEVICE_ID, response_type=kind), timeout=5).config

    every = get(GetConfig.ALL)
    assert every.p4info == pipeline.p4info and every.p4_device_config == pipeline.device_config
    assert every.cookie.cookie == 0xC0FFEE
    cookie = get(GetConfig.COOKIE_ONLY)
    assert cookie.cookie.cookie == 0xC0FFEE and not cookie.HasField("p4info") and not cookie.p4_device_config
    p4info = get(GetConfig.P4INFO_AND_COOKIE)
    assert p4info.p4info == pipeline.p4info and not p4info.p4_device_config
    device = get(GetConfig.DEVICE_CONFIG_AND_COOKIE)
    assert device.p4_device_config == pipeline.device_config and not device.HasField("p4info")


def test_mismatched_p4info_and_json_are_refused_and_the_old_pipeline_stays(switch):
    pipeline = pipeline_under_test()
    entry = switch.entry("MyIngress.exact_t", match={"hdr.ethernet.dst_addr": 1}, action="NoAction")
    switch.client.write(update("INSERT", table_entry=entry))
    wrong = p4runtime_pb2.ForwardingPipelineConfig().p4info.__class__()
    wrong.CopyFrom(pipeline.p4info)
    fwd = next(a for a in wrong.actions if a.preamble.name == "MyIngress.fwd")
    fwd.params[0].bitwidth = 16
    with rpc_error(grpc.StatusCode.INVALID_ARGUMENT, "action 'MyIngress.fwd' has parameter widths [16]"):
        switch.client.set_pipeline(wrong, pipeline.device_config)
    with rpc_error(grpc.StatusCode.INVALID_ARGUMENT, "not BMv2 JSON"):
        switch.client.set_pipeline(pipeline.p4info, b"\x00garbage")
    assert len(switch.client.read(Entity(table_entry=p4runtime_pb2.TableEntry()))) == 1


def test_verify_save_and_commit_actions(switch):
    pipeline = pipeline_under_test()
    entry = switch.entry("MyIngress.exact_t", match={"hdr.ethernet.dst_addr": 1}, action="NoAction")
    switch.client.write(update("INSERT", table_entry=entry))
    everything = Entity(table_entry=p4runtime_pb2.TableEntry())
    switch.client.set_pipeline(pipeline.p4info, pipeline.device_config, action=SetConfig.VERIFY)
    assert len(switch.client.read(everything)) == 1
    switch.client.set_pipeline(pipeline.p4info, pipeline.device_config, cookie=2, action=SetConfig.VERIFY_AND_SAVE)
    assert len(switch.client.read(everything)) == 1
    commit = SetConfig(device_id=DEVICE_ID, action=SetConfig.COMMIT)
    commit.election_id.low = 10
    switch.client.stub.SetForwardingPipelineConfig(commit, timeout=5)
    assert switch.client.read(everything) == []       # a commit starts from empty state
    cookie = switch.client.stub.GetForwardingPipelineConfig(
        GetConfig(device_id=DEVICE_ID, response_type=GetConfig.COOKIE_ONLY), timeout=5)
    assert cookie.config.cookie.cookie == 2
    with rpc_error(grpc.StatusCode.NOT_FOUND, "no config was saved"):
        switch.client.stub.SetForwardingPipelineConfig(commit, timeout=5)


# --- table entries --------------------------------------------------------------------------------------
def test_table_entry_lifecycle_with_canonical_reads(switch):
    entry = switch.entry("MyIngress.lpm_t", match={"hdr.ipv4.dst_addr": (0x0A000000, 8)},
                         action="MyIngress.fwd", params={"port": 3})
    # Non-canonical (padded) values are accepted ...
    entry.action.action.params[0].value = b"\x00\x03"
    entry.controller_metadata, entry.metadata = 77, b"note"
    switch.client.write(update("INSERT", table_entry=entry))
    (read,) = switch.client.read(Entity(table_entry=p4runtime_pb2.TableEntry(table_id=entry.table_id)))
    # ... and read back in canonical form, with the opaque fields kept.
    assert read.table_entry.action.action.params[0].value == b"\x03"
    assert read.table_entry.match == entry.match
    assert (read.table_entry.controller_metadata, read.table_entry.metadata) == (77, b"note")

    modified = switch.entry("MyIngress.lpm_t", match={"hdr.ipv4.dst_addr": (0x0A000000, 8)}, action="MyIngress.drop")
    switch.client.write(update("MODIFY", table_entry=modified))
    query = switch.entry("MyIngress.lpm_t", match={"hdr.ipv4.dst_addr": (0x0A000000, 8)})
    (read,) = switch.client.read(Entity(table_entry=query))
    assert read.table_entry.action.action.action_id == switch.ids("action", "MyIngress.drop")

    switch.client.write(update("DELETE", table_entry=query))
    assert switch.client.read(Entity(table_entry=query)) == []
    with rpc_error(grpc.StatusCode.UNKNOWN) as info:
        switch.client.write(update("DELETE", table_entry=query))
    assert batch_codes(info.value) == [code_pb2.NOT_FOUND]


def test_priorities_and_wildcard_reads(switch):
    for priority, low in ((10, 80), (20, 443)):
        entry = switch.entry("MyIngress.acl_t", match={"hdr.tcp.dst_port": (low, low)}, action="MyIngress.drop",
                             priority=priority)
        switch.client.write(update("INSERT", table_entry=entry))
    lpm = switch.entry("MyIngress.lpm_t", match={"hdr.ipv4.dst_addr": (0x0B000000, 8)}, action="MyIngress.drop")
    switch.client.write(update("INSERT", table_entry=lpm))
    all_tables = switch.client.read(Entity(table_entry=p4runtime_pb2.TableEntry()))
    assert len(all_tables) == 3
    acl_id = switch.ids("table", "MyIngress.acl_t")
    by_priority = switch.client.read(Entity(table_entry=p4runtime_pb2.TableEntry(table_id=acl_id, priority=20)))
    assert [e.table_entry.priority for e in by_priority] == [20]
    assert by_priority[0].table_entry.match[0].range.low == (443).to_bytes(2, "big")
    # An optional match: p4c-bm2-ss lowers it to a JSON ternary key; it still reads back as optional.
    tcp_only = switch.entry("MyIngress.acl_t", match={"hdr.ipv4.protocol": 6}, action="NoAction", priority=30)
    switch.client.write(update("INSERT", table_entry=tcp_only))
    (read,) = switch.client.read(Entity(table_entry=p4runtime_pb2.TableEntry(table_id=acl_id, priority=30)))
    assert read.table_entry.match == tcp_only.match and read.table_entry.match[0].optional.value == b"\x06"
    same_key_other_priority = switch.entry("MyIngress.acl_t", match={"hdr.tcp.dst_port": (80, 80)},
                                           action="MyIngress.drop", priority=11)
    switch.client.write(update("INSERT", table_entry=same_key_other_priority))   # a distinct entry


def test_default_entry_rules(switch):
    lpm_id = switch.ids("table", "MyIngress.lpm_t")
    default = p4runtime_pb2.TableEntry(table_id=lpm_id, is_default_action=True)
    (read,) = switch.client.read(Entity(table_entry=default))
    assert read.table_entry.is_default_action
    assert read.table_entry.action.action.action_id == switch.ids("action", "NoAction")

    new_default = switch.entry("MyIngress.lpm_t", action="MyIngress.fwd", params={"port": 9}, is_default=True)
    switch.client.write(update("MODIFY", table_entry=new_default))
    (read,) = switch.client.read(Entity(table_entry=default))
    assert read.table_entry.action == new_default.action
    switch.client.write(update("MODIFY", table_entry=default))      # no action: back to the program's default
    (read,) = switch.client.read(Entity(table_entry=default))
    assert read.table_entry.action.action.action_id == switch.ids("action", "NoAction")

    const = switch.entry("MyIngress.const_default_t", action="MyIngress.drop", is_default=True)
    with rpc_error(grpc.StatusCode.UNKNOWN) as info:
        switch.client.write(update("INSERT", table_entry=new_default), update("DELETE", table_entry=new_default),
                            update("MODIFY", table_entry=const))
    assert batch_codes(info.value) == [code_pb2.INVALID_ARGUMENT, code_pb2.INVALID_ARGUMENT,
                                       code_pb2.PERMISSION_DENIED]


def test_batch_reports_each_update_and_applies_the_good_ones(switch):
    good = switch.entry("MyIngress.exact_t", match={"hdr.ethernet.dst_addr": 0xAA}, action="NoAction")
    too_wide = switch.entry("MyIngress.exact_t", match={"hdr.ethernet.dst_addr": 0xBB}, action="MyIngress.fwd",
                            params={"port": 1})
    too_wide.action.action.params[0].value = b"\x02\x00"          # 512 does not fit bit<9>
    bad_mask = switch.entry("MyIngress.acl_t", match={"hdr.ipv4.src_addr": (0x0A000001, 0xFF000000)},
                            action="MyIngress.drop", priority=1)
    unknown_table = p4runtime_pb2.TableEntry(table_id=0x0200FFFF)
    with rpc_error(grpc.StatusCode.UNKNOWN) as info:
        switch.client.write(update("INSERT", table_entry=good), update("INSERT", table_entry=good),
                            update("INSERT", table_entry=too_wide), update("INSERT", table_entry=bad_mask),
                            update("INSERT", table_entry=unknown_table))
    assert batch_codes(info.value) == [code_pb2.OK, code_pb2.ALREADY_EXISTS, code_pb2.INVALID_ARGUMENT,
                                       code_pb2.INVALID_ARGUMENT, code_pb2.INVALID_ARGUMENT]
    assert len(switch.client.read(Entity(table_entry=p4runtime_pb2.TableEntry()))) == 1


def test_a_full_table_is_resource_exhausted(switch):
    size = switch.p4map.table_named("MyIngress.exact_t").size
    for mac in range(size):
        entry = switch.entry("MyIngress.exact_t", match={"hdr.ethernet.dst_addr": mac + 1}, action="NoAction")
        switch.client.write(update("INSERT", table_entry=entry))
    extra = switch.entry("MyIngress.exact_t", match={"hdr.ethernet.dst_addr": 0xFFFF}, action="NoAction")
    with rpc_error(grpc.StatusCode.UNKNOWN) as info:
        switch.client.write(update("INSERT", table_entry=extra))
    assert batch_codes(info.value) == [code_pb2.RESOURCE_EXHAUSTED]


def test_direct_counters(switch):
    entry = switch.entry("MyIngress.exact_t", match={"hdr.ethernet.dst_addr": 5}, action="NoAction")
    entry.counter_data.packet_count, entry.counter_data.byte_count = 3, 300
    switch.client.write(update("INSERT", table_entry=entry))
    query = switch.entry("MyIngress.exact_t", match={"hdr.ethernet.dst_addr": 5})
    query.counter_data.SetInParent()
    (read,) = switch.client.read(Entity(table_entry=query))
    assert (read.table_entry.counter_data.packet_count, read.table_entry.counter_data.byte_count) == (3, 300)

    direct = p4runtime_pb2.DirectCounterEntry()
    direct.table_entry.CopyFrom(switch.entry("MyIngress.exact_t", match={"hdr.ethernet.dst_addr": 5}))
    direct.data.packet_count, direct.data.byte_count = 7, 700
    switch.client.write(update("MODIFY", direct_counter_entry=direct))
    wildcard = p4runtime_pb2.DirectCounterEntry()
    wildcard.table_entry.table_id = entry.table_id
    (read,) = switch.client.read(Entity(direct_counter_entry=wildcard))
    assert (read.direct_counter_entry.data.packet_count, read.direct_counter_entry.data.byte_count) == (7, 700)

    missing = p4runtime_pb2.DirectCounterEntry()
    missing.table_entry.CopyFrom(switch.entry("MyIngress.exact_t", match={"hdr.ethernet.dst_addr": 6}))
    with rpc_error(grpc.StatusCode.NOT_FOUND):
        switch.client.read(Entity(direct_counter_entry=missing))
    with rpc_error(grpc.StatusCode.UNKNOWN) as info:
        switch.client.write(update("INSERT", direct_counter_entry=direct))
    assert batch_codes(info.value) == [code_pb2.INVALID_ARGUMENT]
    no_counter = switch.entry("MyIngress.lpm_t", match={"hdr.ipv4.dst_addr": (0x0A000000, 8)},
                              action="MyIngress.drop")
    no_counter.counter_data.packet_count = 1
    with rpc_error(grpc.StatusCode.UNKNOWN) as info:
        switch.client.write(update("INSERT", table_entry=no_counter))
    assert batch_codes(info.value) == [code_pb2.INVALID_ARGUMENT]


# --- registers and counters -----------------------------------------------------------------------------
def register_entry(register_id: int, value: int | None = None, index: int | None = None) -> p4runtime_pb2.RegisterEntry:
    entry = p4runtime_pb2.RegisterEntry(register_id=register_id)
    if index is not None:
        entry.index.index = index
    if value is not None:
        entry.data.CopyFrom(p4data_pb2.P4Data(bitstring=value.to_bytes(max(1, (value.bit_length() + 7) // 8), "big")))
    return entry


def test_registers(switch):
    slots = switch.p4map.register_named("MyIngress.slots")
    switch.client.write(update("MODIFY", register_entry=register_entry(slots.id, 0x1234, index=2)))
    (cell,) = switch.client.read(Entity(register_entry=register_entry(slots.id, index=2)))
    assert cell.register_entry.data.bitstring == b"\x12\x34" and cell.register_entry.index.index == 2
    switch.client.write(update("MODIFY", register_entry=register_entry(slots.id, 7)))   # no index: every cell
    cells = switch.client.read(Entity(register_entry=register_entry(slots.id)))
    assert [c.register_entry.index.index for c in cells] == list(range(slots.size))
    assert {c.register_entry.data.bitstring for c in cells} == {b"\x07"}
    assert len(switch.client.read(Entity(register_entry=p4runtime_pb2.RegisterEntry()))) >= slots.size

    with rpc_error(grpc.StatusCode.OUT_OF_RANGE, f"past its {slots.size} cells"):
        switch.client.read(Entity(register_entry=register_entry(slots.id, index=slots.size)))
    with rpc_error(grpc.StatusCode.UNKNOWN) as info:
        switch.client.write(update("MODIFY", register_entry=register_entry(slots.id, 1, index=slots.size)),
                            update("MODIFY", register_entry=register_entry(slots.id, 1, index=-1)),
                            update("MODIFY", register_entry=register_entry(slots.id, 1 << 32, index=0)),
                            update("INSERT", register_entry=register_entry(slots.id, 1, index=0)),
                            update("MODIFY", register_entry=register_entry(slots.id, 5, index=1)))
    assert batch_codes(info.value) == [code_pb2.OUT_OF_RANGE, code_pb2.INVALID_ARGUMENT, code_pb2.INVALID_ARGUMENT,
                                       code_pb2.INVALID_ARGUMENT, code_pb2.OK]


def test_counters(switch):
    pkts = switch.p4map.counter_named("MyIngress.pkts")
    entry = p4runtime_pb2.CounterEntry(counter_id=pkts.id)
    entry.index.index = 1
    entry.data.packet_count, entry.data.byte_count = 4, 400
    switch.client.write(update("MODIFY", counter_entry=entry))
    cells = switch.client.read(Entity(counter_entry=p4runtime_pb2.CounterEntry(counter_id=pkts.id)))
    assert [(c.counter_entry.index.index, c.counter_entry.data.packet_count) for c in cells] == [
        (i, 4 if i == 1 else 0) for i in range(pkts.size)]
    reset_all = p4runtime_pb2.CounterEntry(counter_id=pkts.id)
    reset_all.data.SetInParent()
    switch.client.write(update("MODIFY", counter_entry=reset_all))
    cells = switch.client.read(Entity(counter_entry=p4runtime_pb2.CounterEntry()))
    assert all(c.counter_entry.data.packet_count == 0 for c in cells if c.counter_entry.counter_id == pkts.id)
    past_end = p4runtime_pb2.CounterEntry(counter_id=pkts.id)
    past_end.index.index = pkts.size
    with rpc_error(grpc.StatusCode.OUT_OF_RANGE):
        switch.client.read(Entity(counter_entry=past_end))


# --- packet replication engine --------------------------------------------------------------------------
def mc_group(group_id: int, *replicas: tuple[int, int], as_bytes: bool = False) -> p4runtime_pb2.PacketReplicationEngineEntry:
    pre = p4runtime_pb2.PacketReplicationEngineEntry()
    pre.multicast_group_entry.multicast_group_id = group_id
    for port, instance in replicas:
        if as_bytes:
            pre.multicast_group_entry.replicas.add(port=port.to_bytes(2, "big"), instance=instance)
        else:
            pre.multicast_group_entry.replicas.add(egress_port=port, instance=instance)
    return pre


def test_multicast_groups(switch):
    client = switch.client
    client.write(update("INSERT", packet_replication_engine_entry=mc_group(1, (1, 0), (2, 0))))
    client.write(update("INSERT", packet_replication_engine_entry=mc_group(2, (3, 1), as_bytes=True)))
    every = client.read(Entity(packet_replication_engine_entry=mc_group(0)))
    assert [e.packet_replication_engine_entry.multicast_group_entry.multicast_group_id for e in every] == [1, 2]
    (two,) = client.read(Entity(packet_replication_engine_entry=mc_group(2)))
    assert two.packet_replication_engine_entry == mc_group(2, (3, 1), as_bytes=True)   # same port form back
    client.write(update("MODIFY", packet_replication_engine_entry=mc_group(1, (4, 2))))
    (one,) = client.read(Entity(packet_replication_engine_entry=mc_group(1)))
    assert one.packet_replication_engine_entry == mc_group(1, (4, 2))
    client.write(update("DELETE", packet_replication_engine_entry=mc_group(1)))
    with rpc_error(grpc.StatusCode.NOT_FOUND, "multicast group 1"):
        client.read(Entity(packet_replication_engine_entry=mc_group(1)))
    with rpc_error(grpc.StatusCode.UNKNOWN) as info:
        client.write(update("INSERT", packet_replication_engine_entry=mc_group(2, (1, 0))),
                     update("INSERT", packet_replication_engine_entry=mc_group(0, (1, 0))),
                     update("INSERT", packet_replication_engine_entry=mc_group(3, (1, 0), (1, 0))),
                     update("MODIFY", packet_replication_engine_entry=mc_group(9, (1, 0))))
    assert batch_codes(info.value) == [code_pb2.ALREADY_EXISTS, code_pb2.INVALID_ARGUMENT,
                                       code_pb2.INVALID_ARGUMENT, code_pb2.NOT_FOUND]


def test_clone_sessions(switch):
    session = p4runtime_pb2.PacketReplicationEngineEntry()
    session.clone_session_entry.session_id = 5
    session.clone_session_entry.replicas.add(egress_port=7, instance=1)
    session.clone_session_entry.packet_length_bytes = 128
    switch.client.write(update("INSERT", packet_replication_engine_entry=session))
    query = p4runtime_pb2.PacketReplicationEngineEntry()
    query.clone_session_entry.session_id = 5
    (read,) = switch.client.read(Entity(packet_replication_engine_entry=query))
    assert read.packet_replication_engine_entry == session
    switch.client.write(update("DELETE", packet_replication_engine_entry=query))
    query.clone_session_entry.session_id = 0
    assert switch.client.read(Entity(packet_replication_engine_entry=query)) == []


# --- malformed and unknown ------------------------------------------------------------------------------
def test_reads_of_unknown_ids_and_partial_batch_failures(switch):
    with rpc_error(grpc.StatusCode.INVALID_ARGUMENT, "no table with id 33619967"):
        switch.client.read(Entity(table_entry=p4runtime_pb2.TableEntry(table_id=0x0200FFFF)))
    with rpc_error(grpc.StatusCode.INVALID_ARGUMENT, "no register with id"):
        switch.client.read(Entity(register_entry=p4runtime_pb2.RegisterEntry(register_id=0x1300FFFF)))
    pkts = switch.ids("counter", "MyIngress.pkts")
    request = p4runtime_pb2.ReadRequest(device_id=DEVICE_ID, entities=[
        Entity(counter_entry=p4runtime_pb2.CounterEntry(counter_id=pkts)),
        Entity(counter_entry=p4runtime_pb2.CounterEntry(counter_id=0x1200FFFF))])
    received = []
    with rpc_error(grpc.StatusCode.UNKNOWN, "1 of 2 reads failed") as info:
        for response in switch.client.stub.Read(request, timeout=5):
            received.extend(response.entities)
    assert len(received) == switch.p4map.counter(pkts).size        # the good request was answered
    assert batch_codes(info.value) == [code_pb2.OK, code_pb2.INVALID_ARGUMENT]


def test_malformed_requests_get_errors_and_the_server_keeps_serving(switch):
    with rpc_error(grpc.StatusCode.UNKNOWN) as info:
        switch.client.write(p4runtime_pb2.Update(),                                    # nothing set
                            p4runtime_pb2.Update(type=p4runtime_pb2.Update.INSERT),    # no entity
                            update("INSERT", extern_entry=p4runtime_pb2.ExternEntry(extern_type_id=1)))
    assert batch_codes(info.value) == [code_pb2.INVALID_ARGUMENT, code_pb2.INVALID_ARGUMENT,
                                       code_pb2.UNIMPLEMENTED]
    with rpc_error(grpc.StatusCode.INVALID_ARGUMENT, "no type set"):
        switch.client.read(Entity())
    atomic = p4runtime_pb2.WriteRequest(device_id=DEVICE_ID, atomicity=p4runtime_pb2.WriteRequest.DATAPLANE_ATOMIC)
    atomic.election_id.low = 10
    with rpc_error(grpc.StatusCode.UNIMPLEMENTED):
        switch.client.stub.Write(atomic, timeout=5)
    assert switch.client.stub.Capabilities(p4runtime_pb2.CapabilitiesRequest(), timeout=5).p4runtime_api_version


def test_a_taken_port_is_a_clear_error(switch):
    second = P4RuntimeServer(object(), switch.server.bound_address, device_id=DEVICE_ID)
    with pytest.raises(P4RuntimeServerError, match="cannot bind"):
        second.start()


def test_undecodable_bytes_do_not_hurt_the_server(switch):
    garbage = switch.client.channel.unary_unary("/p4.v1.P4Runtime/Write")
    with pytest.raises(grpc.RpcError) as info:
        garbage(b"\xff\xff\xff\x07", timeout=5)
    assert info.value.code() != grpc.StatusCode.OK
    entry = switch.entry("MyIngress.exact_t", match={"hdr.ethernet.dst_addr": 1}, action="NoAction")
    switch.client.write(update("INSERT", table_entry=entry))
    assert len(switch.client.read(Entity(table_entry=p4runtime_pb2.TableEntry()))) == 1


def test_entries_written_over_p4runtime_steer_the_devices_packets(switch):
    from scapy.layers.inet import IP, TCP
    from scapy.layers.l2 import Ether

    device = switch.server.device
    frame = bytes(Ether(dst="00:00:00:00:00:01") / IP(src="192.168.0.1", dst="10.1.2.3") / TCP(dport=80))
    assert device.process_packet(1, frame) == []                # the const default action drops it
    route = switch.entry("MyIngress.lpm_t", match={"hdr.ipv4.dst_addr": (0x0A000000, 8)}, action="MyIngress.fwd",
                         params={"port": 3})
    switch.client.write(update("INSERT", table_entry=route))
    assert [port for port, _ in device.process_packet(1, frame)] == [3]
    acl = switch.entry("MyIngress.acl_t", match={"hdr.ipv4.src_addr": (0xC0A80000, 0xFFFF0000),
                                                 "hdr.tcp.dst_port": (80, 80)}, action="MyIngress.drop", priority=1)
    switch.client.write(update("INSERT", table_entry=acl))
    assert device.process_packet(1, frame) == []
    switch.client.write(update("DELETE", table_entry=acl))
    assert [port for port, _ in device.process_packet(1, frame)] == [3]


def test_a_server_can_serve_a_pipeline_loaded_before_it_started(tmp_path):
    pipeline = pipeline_under_test()
    device = pipeline.make_device()
    device.load_pipeline(pipeline.device_config)
    p4info_path = tmp_path / "program.p4info.txtpb"
    p4info_path.write_text(text_format.MessageToString(pipeline.p4info))
    (tmp_path / "program.p4info.bin").write_bytes(pipeline.p4info.SerializeToString())
    assert load_p4info(tmp_path / "program.p4info.bin") == load_p4info(p4info_path) == pipeline.p4info
    with running_server(device, device_id=DEVICE_ID, p4info=load_p4info(p4info_path)) as server:
        client = RawClient(server.bound_address, DEVICE_ID)
        try:
            reply = client.stub.GetForwardingPipelineConfig(GetConfig(device_id=DEVICE_ID), timeout=5)
            assert reply.config.p4info == pipeline.p4info and not reply.config.HasField("cookie")
            assert client.read(Entity(table_entry=p4runtime_pb2.TableEntry())) == []
        finally:
            client.close()
    wrong = load_p4info(p4info_path)
    wrong.registers[0].size += 1
    with pytest.raises(P4RuntimeServerError, match="register 'MyIngress.slots'"):
        P4RuntimeServer(device, "127.0.0.1:0", device_id=DEVICE_ID, p4info=wrong)
    with pytest.raises(P4RuntimeServerError, match="no pipeline loaded"):
        P4RuntimeServer(pipeline.make_device(), "127.0.0.1:0", device_id=DEVICE_ID, p4info=pipeline.p4info)
