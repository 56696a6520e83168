# Run: .venv/bin/pytest tests/softswitch/test_action_profiles.py -q
"""Action profiles and action selectors with tests/softswitch/p4/selector_test.p4, on both packet pipelines and,
where simple_switch_grpc is installed, side by side with BMv2 over P4Runtime.

A selector group picks, for a packet, the (crc16 of the selector fields mod n)-th of its n BMv2 member handles in
handle order; simple_switch_grpc gives a member of weight w w - 1 extra handles (softswitch/profiles.py). The tests
compute the crc16 themselves (a bitwise CRC-16/ARC) and write the handle order out.
"""

from __future__ import annotations

import random
import struct
import zlib

import grpc
import pytest
from bmv2_files import SIMPLE_SWITCH_GRPC, simple_switch_grpc, skip_without
from google.rpc import code_pb2
from switch_helpers import crc16_arc_bitwise, device_for, ethernet, only_output, program_json

from conftest_p4rt import RawClient, batch_codes, program_pipeline, serving, update
from omnireduce.p4proto import p4runtime_pb2
from omnireduce.softswitch.device import Device
from omnireduce.softswitch.entries import FieldMatch, TableEntry
from omnireduce.softswitch.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound, ResourceExhausted

pytestmark = pytest.mark.usefixtures("backend")

I = "SelIngress."
PROBE = struct.Struct(">BIHBBBBH")
ANY = (FieldMatch("ternary", 0, mask=0),)


def probe(key: int = 0, flow: int = 0, port: int = 0) -> bytes:
    return ethernet(0x88B9) + PROBE.pack(key, flow, port, 0, 0, 0, 0, 0)


def results(device, **fields) -> dict[str, int]:
    sent = probe(**fields)
    port, out = only_output(device.process_packet(1, sent))
    assert port == 1 and len(out) == len(sent)
    _, _, _, r_prof, r_sel, r_sel2, r_after, r_param = PROBE.unpack(out[14:])
    return {"prof": r_prof, "sel": r_sel, "sel2": r_sel2, "after": r_after, "param": r_param}


def selector_hash(flow: int, port: int) -> int:
    return crc16_arc_bitwise(struct.pack(">IH", flow, port))


@pytest.fixture
def device() -> Device:
    return device_for("selector_test")


def selector_members(device: Device, *values: int) -> None:
    """Members 1.. of the selector, each running set_sel(value)."""
    for member_id, value in enumerate(values, start=1):
        device.profile_member_insert(I + "sel", member_id, I + "set_sel", (value,))


def test_a_table_entry_runs_its_members_action(device):
    device.profile_member_insert(I + "prof", 1, I + "set_prof", (7, 0x1234))
    device.profile_member_insert(I + "prof", 2, "NoAction", ())
    device.table_insert(TableEntry(I + "t_prof", (FieldMatch("exact", 3),), "", (), member_id=1))
    device.table_insert(TableEntry(I + "t_prof", (FieldMatch("exact", 4),), "", (), member_id=1))
    device.table_insert(TableEntry(I + "t_prof", (FieldMatch("exact", 5),), "", (), member_id=2))
    assert results(device, key=3) == {"prof": 7, "sel": 0, "sel2": 0, "after": 0, "param": 0x1234}
    assert results(device, key=5)["prof"] == 0 and results(device, key=9)["prof"] == 0   # NoAction; a miss
    device.profile_member_modify(I + "prof", 1, I + "set_prof", (8, 1))                   # both entries follow
    assert results(device, key=3)["prof"] == results(device, key=4)["prof"] == 8
    device.table_modify(TableEntry(I + "t_prof", (FieldMatch("exact", 4),), "", (), member_id=2))
    assert results(device, key=4)["prof"] == 0
    assert device.table_entries(I + "t_prof")[0].member_id == 1


def test_a_group_picks_a_member_by_the_selector_hash_and_weights(device):
    selector_members(device, 10, 20, 30)
    # Weights 1, 1, 2: BMv2 handles 0 (member 1), 1 (member 2), 2 (member 3) and 3 (member 3's copy).
    device.profile_group_insert(I + "sel", 100, [(1, 1), (2, 1), (3, 2)])
    device.table_insert(TableEntry(I + "t_sel", ANY, "", (), priority=1, group_id=100))
    picks = [10, 20, 30, 30]
    rng = random.Random(3)
    for _ in range(200):
        flow, port = rng.randrange(1 << 32), rng.randrange(1 << 16)
        assert results(device, flow=flow, port=port)["sel"] == picks[selector_hash(flow, port) % 4]


def test_weight_copies_follow_simple_switch_grpc(device):
    selector_members(device, 10, 20, 30)
    device.profile_group_insert(I + "sel", 100, [(1, 1), (2, 1), (3, 2)])
    profile = device._p().profiles[I + "sel"]
    assert profile.group_handles(100) == [(0, 1), (1, 2), (2, 3), (3, 3)]
    # Member 2 goes to weight 3: its copies are made (handles 4 and 5) before member 3's copy (3) is freed.
    device.profile_group_modify(I + "sel", 100, [(1, 1), (2, 3)])
    assert profile.group_handles(100) == [(0, 1), (1, 2), (4, 2), (5, 2)]
    device.table_insert(TableEntry(I + "t_sel", ANY, "", (), priority=1, group_id=100))
    picks = [10, 20, 20, 20]
    for flow in range(0, 4000, 37):
        assert results(device, flow=flow, port=flow)["sel"] == picks[selector_hash(flow, flow) % 4]
    # A new member takes the lowest free handle (3, freed above).
    device.profile_member_insert(I + "sel", 4, I + "set_sel", (40,))
    device.profile_group_modify(I + "sel", 100, [(4, 1), (1, 1)])
    assert profile.group_handles(100) == [(0, 1), (3, 4)]


def test_the_action_a_member_runs_steers_the_control_flow(device):
    selector_members(device, 10)
    device.profile_member_insert(I + "sel", 9, I + "set_sel2", (99,))
    device.profile_group_insert(I + "sel", 100, [(1, 1)])
    device.table_insert(TableEntry(I + "t_sel", ANY, "", (), priority=1, group_id=100))
    assert results(device) == {"prof": 0, "sel": 10, "sel2": 0, "after": 0, "param": 0}
    device.profile_group_modify(I + "sel", 100, [(9, 1)])    # now set_sel2 runs, and t_after after it
    assert results(device) == {"prof": 0, "sel": 0, "sel2": 99, "after": 1, "param": 0}
    assert device.profile_members(I + "sel")[1].action == I + "set_sel2"


def shared_results(device, key: int, port: int) -> tuple[int, int]:
    sent = ethernet(0x88BD) + struct.pack(">BHBBB", key, port, 0, 0, 0)
    out = only_output(device.process_packet(1, sent))[1]
    return out[-2], out[-1]


def test_two_tables_share_a_selectors_members_and_groups():
    device = device_for("shared_profile_test")
    s = "SharedIngress."
    for member_id in (1, 2, 3):
        device.profile_member_insert(s + "sel", member_id, s + "set", (member_id * 10,))
    device.profile_group_insert(s + "sel", 7, [(1, 1), (2, 1)])
    device.table_insert(TableEntry(s + "t_first", ANY, "", (), priority=1, group_id=7))
    device.table_insert(TableEntry(s + "t_second", (FieldMatch("exact", 80),), "", (), member_id=3))
    device.table_insert(TableEntry(s + "t_second", (FieldMatch("exact", 81),), "", (), group_id=7))
    assert shared_results(device, 0, 80)[1] == 30
    seen = {shared_results(device, 0, port) for port in range(81, 82)} | {shared_results(device, 0, 80)}
    assert all(first in (10, 20) for first, _ in seen)
    # crc32 of the port picks the member: the same one in both tables for the same port.
    first, second = shared_results(device, 0, 81)
    assert first == second == [10, 20][zlib.crc32(struct.pack(">H", 81)) % 2]
    device.profile_member_modify(s + "sel", 3, s + "set", (33,))
    assert shared_results(device, 0, 80)[1] == 33


def test_a_group_emptied_under_an_entry_is_a_hit_that_runs_nothing(device):
    selector_members(device, 10)
    device.profile_group_insert(I + "sel", 100, [(1, 1)])
    device.profile_group_insert(I + "sel", 101, [])
    with pytest.raises(InvalidArgument, match="empty"):   # as BMv2: no entry may point at an empty group
        device.table_insert(TableEntry(I + "t_sel", ANY, "", (), priority=1, group_id=101))
    device.table_insert(TableEntry(I + "t_sel", ANY, "", (), priority=1, group_id=100))
    device.profile_group_modify(I + "sel", 100, [])
    assert results(device, port=80)["sel"] == 0


def test_references_keep_members_and_groups_alive(device):
    selector_members(device, 10, 20)
    device.profile_group_insert(I + "sel", 100, [(1, 1)])
    device.table_insert(TableEntry(I + "t_sel", ANY, "", (), priority=1, group_id=100))
    device.table_insert(TableEntry(I + "t_sel", (FieldMatch("ternary", 1, mask=0xFF),), "", (), priority=2,
                                   member_id=2))
    for action in (lambda: device.profile_member_delete(I + "sel", 1),     # in a group
                   lambda: device.profile_member_delete(I + "sel", 2),     # used by an entry
                   lambda: device.profile_group_delete(I + "sel", 100)):   # used by an entry
        with pytest.raises(FailedPrecondition):
            action()
    device.table_delete(TableEntry(I + "t_sel", ANY, "", (), priority=1))
    device.profile_group_delete(I + "sel", 100)
    device.profile_member_delete(I + "sel", 1)
    device.table_clear(I + "t_sel")
    device.profile_member_delete(I + "sel", 2)
    assert device.profile_members(I + "sel") == [] and device.profile_groups(I + "sel") == []


def test_refused_writes(device):
    selector_members(device, 10)
    with pytest.raises(AlreadyExists):
        device.profile_member_insert(I + "sel", 1, I + "set_sel", (1,))
    with pytest.raises(InvalidArgument, match="no action"):
        device.profile_member_insert(I + "sel", 2, I + "set_prof", (1, 2))
    with pytest.raises(InvalidArgument, match="cannot hold"):
        device.profile_member_insert(I + "sel", 2, I + "set_sel", (256,))
    with pytest.raises(NotFound):
        device.profile_group_insert(I + "sel", 100, [(7, 1)])
    with pytest.raises(InvalidArgument, match="weight"):
        device.profile_group_insert(I + "sel", 100, [(1, 0)])
    with pytest.raises(InvalidArgument, match="twice"):
        device.profile_group_insert(I + "sel", 100, [(1, 1), (1, 2)])
    with pytest.raises(ResourceExhausted):
        device.profile_group_insert(I + "sel", 100, [(1, 5)], max_size=4)
    with pytest.raises(InvalidArgument, match="no selector"):
        device.profile_group_insert(I + "prof", 100, [])
    with pytest.raises(InvalidArgument, match="gives a member or a group"):
        device.table_insert(TableEntry(I + "t_sel", ANY, I + "set_sel", (1,), priority=1))
    with pytest.raises(InvalidArgument, match="no selector"):
        device.table_insert(TableEntry(I + "t_prof", (FieldMatch("exact", 1),), "", (), group_id=1))
    with pytest.raises(InvalidArgument, match="no default action"):
        device.table_set_default(I + "t_prof", "NoAction", ())
    with pytest.raises(NotFound, match="Did you mean"):
        device.profile_members(I + "sels")
    for member_id in range(2, 33):
        device.profile_member_insert(I + "sel", member_id, I + "set_sel", (1,))
    with pytest.raises(ResourceExhausted):
        device.profile_member_insert(I + "sel", 99, I + "set_sel", (1,))


def test_a_new_pipeline_starts_with_empty_profiles(device):
    selector_members(device, 10)
    device.load_pipeline(program_json("selector_test").read_bytes())
    assert device.profile_members(I + "sel") == []


# --- the same P4Runtime writes on the softswitch and on simple_switch_grpc --------------------------------------
def profile_writes(p4info) -> list[list[p4runtime_pb2.Update]]:
    """Batches of writes: members, weighted groups (their copies made and freed), entries pointing at both."""
    ids = {o.preamble.name: o.preamble.id for kind in (p4info.action_profiles, p4info.tables, p4info.actions)
           for o in kind}

    def member(profile: str, member_id: int, action: str, *values: bytes) -> p4runtime_pb2.Update:
        msg = p4runtime_pb2.ActionProfileMember(action_profile_id=ids[I + profile], member_id=member_id)
        msg.action.action_id = ids[action]
        for param_id, value in enumerate(values, start=1):
            msg.action.params.add(param_id=param_id, value=value)
        return update("INSERT", action_profile_member=msg)

    def group(kind: str, group_id: int, *members: tuple[int, int]) -> p4runtime_pb2.Update:
        msg = p4runtime_pb2.ActionProfileGroup(action_profile_id=ids[I + "sel"], group_id=group_id)
        for member_id, weight in members:
            msg.members.add(member_id=member_id, weight=weight)
        return update(kind, action_profile_group=msg)

    def entry(table: str, match: p4runtime_pb2.FieldMatch | None, priority: int = 0, **action) -> p4runtime_pb2.Update:
        msg = p4runtime_pb2.TableEntry(table_id=ids[I + table], priority=priority)
        if match is not None:
            msg.match.append(match)
        for kind, value in action.items():
            setattr(msg.action, kind, value)
        return update("INSERT", table_entry=msg)

    def exact(value: bytes) -> p4runtime_pb2.FieldMatch:
        return p4runtime_pb2.FieldMatch(field_id=1, exact=p4runtime_pb2.FieldMatch.Exact(value=value))

    def ternary(value: bytes, mask: bytes) -> p4runtime_pb2.FieldMatch:
        return p4runtime_pb2.FieldMatch(field_id=1, ternary=p4runtime_pb2.FieldMatch.Ternary(value=value, mask=mask))

    return [
        [member("prof", 1, I + "set_prof", b"\x07", b"\x12\x34"), member("prof", 2, "NoAction")]
        + [member("sel", m, I + "set_sel", bytes([m * 10])) for m in range(1, 6)]
        + [member("sel", 9, I + "set_sel2", b"\x63")],
        [group("INSERT", 100, (1, 1), (2, 1), (3, 2)), group("INSERT", 200, (4, 3), (5, 1)),
         group("MODIFY", 100, (1, 1), (2, 3)), group("INSERT", 300, (3, 1), (9, 2))],
        [entry("t_prof", exact(b"\x03"), action_profile_member_id=1),
         entry("t_prof", exact(b"\x04"), action_profile_member_id=2),
         entry("t_sel", ternary(b"\x01", b"\x0f"), priority=2, action_profile_group_id=100),
         entry("t_sel", ternary(b"\x02", b"\x0f"), priority=2, action_profile_group_id=200),
         entry("t_sel", ternary(b"\x03", b"\x0f"), priority=2, action_profile_group_id=300),
         entry("t_sel", None, priority=1, action_profile_member_id=5)],  # the key omitted: matches anything
    ]


def profile_frames() -> list[bytes]:
    rng = random.Random(9)
    return [probe(rng.choice([1, 2, 3, 4, 0x13, 7]), rng.randrange(1 << 32), rng.choice([80, rng.randrange(1 << 16)]))
            for _ in range(120)]


@pytest.mark.bmv2
@skip_without(SIMPLE_SWITCH_GRPC, names="simple_switch_grpc")
def test_bmv2_picks_the_same_members(backend):
    frames = profile_frames()
    with serving("selector_test") as served:
        for batch in profile_writes(served.pipeline.p4info):
            served.client.write(*batch)
        ours = [only_output(served.device.process_packet(1, f))[1] for f in frames]
        our_groups = served.client.read(p4runtime_pb2.Entity(action_profile_group=p4runtime_pb2.ActionProfileGroup()))
        our_refusal = delete_member_in_use(served.client, served.pipeline.p4info)
    assert len({out[-5:-3] for out in ours}) >= 6   # the groups' members all show up
    pipeline = program_pipeline("selector_test")
    with simple_switch_grpc(frames) as (switch, address):
        client = RawClient(address, 0, election_id=1)
        try:
            client.become_primary()
            client.set_pipeline(pipeline.p4info, pipeline.device_config)
            for batch in profile_writes(pipeline.p4info):
                client.write(*batch)
            switch.check_in_time()
            theirs = switch.collect(len(frames)).outputs
            their_groups = client.read(p4runtime_pb2.Entity(action_profile_group=p4runtime_pb2.ActionProfileGroup()))
            their_refusal = delete_member_in_use(client, pipeline.p4info)
        finally:
            client.close()
    assert theirs == ours
    assert sorted(g.SerializeToString() for g in our_groups) == sorted(g.SerializeToString() for g in their_groups)
    # Both refuse to delete a member a group holds; the spec's code is FAILED_PRECONDITION, PI passes on BMv2's
    # error as UNKNOWN.
    assert (our_refusal, their_refusal) == (code_pb2.FAILED_PRECONDITION, code_pb2.UNKNOWN)


def delete_member_in_use(client: RawClient, p4info) -> int:
    """The google.rpc code of the refusal to delete member 1 of the selector (held by group 100)."""
    profile_id = next(p.preamble.id for p in p4info.action_profiles if p.preamble.name == I + "sel")
    with pytest.raises(grpc.RpcError) as info:
        client.write(update("DELETE", action_profile_member=p4runtime_pb2.ActionProfileMember(
            action_profile_id=profile_id, member_id=1)))
    (code,) = batch_codes(info.value)
    return code


@pytest.mark.bmv2
@skip_without(SIMPLE_SWITCH_GRPC, names="simple_switch_grpc")
def test_bmv2_aborts_on_a_shared_profile_where_the_softswitch_runs_it(backend):
    """BMv2 1.15 (through simple_switch_grpc, as through simple_switch_CLI) runs a member under one table's copy of
    its action and aborts with std::out_of_range on a hit of the other table: see shared_profile_test.p4."""
    pipeline = program_pipeline("shared_profile_test")
    ids = {o.preamble.name: o.preamble.id for kind in (pipeline.p4info.action_profiles, pipeline.p4info.tables,
                                                        pipeline.p4info.actions) for o in kind}
    member = p4runtime_pb2.ActionProfileMember(action_profile_id=ids["SharedIngress.sel"], member_id=1)
    member.action.action_id = ids["SharedIngress.set"]
    member.action.params.add(param_id=1, value=b"\x0a")
    entries = []
    for table in ("t_first", "t_second"):
        entry = p4runtime_pb2.TableEntry(table_id=ids["SharedIngress." + table], priority=1 if table == "t_first" else 0)
        if table == "t_second":
            entry.match.add(field_id=1).exact.value = b"\x00\x50"
        entry.action.action_profile_member_id = 1
        entries.append(update("INSERT", table_entry=entry))
    frame = ethernet(0x88BD) + struct.pack(">BHBBB", 0, 80, 0, 0, 0)
    with serving("shared_profile_test") as served:
        served.client.write(update("INSERT", action_profile_member=member), *entries)
        assert only_output(served.device.process_packet(1, frame))[1][-2:] == b"\x0a\x0a"
    with simple_switch_grpc([frame]) as (switch, address):
        client = RawClient(address, 0, election_id=1)
        try:
            client.become_primary()
            client.set_pipeline(pipeline.p4info, pipeline.device_config)
            client.write(update("INSERT", action_profile_member=member), *entries)
            switch.check_in_time()
            theirs = switch.collect(1, until=lambda r: r.returncode is not None)
        finally:
            client.close()
    assert theirs.outputs == [] and theirs.returncode not in (None, 0)
    assert "out_of_range" in theirs.log
