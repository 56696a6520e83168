# Run: .venv/bin/pytest tests/softswitch/test_p4runtime_profiles.py -q
"""P4Runtime ActionProfileMember, ActionProfileGroup and table entries pointing at them, on the softswitch server
with tests/softswitch/p4/selector_test.p4: the spec's rules for ids, references, weights and max_size, and reads
that give back what was written."""

from __future__ import annotations

import grpc
import pytest
from google.rpc import code_pb2

from conftest_p4rt import Served, batch_codes, rpc_error, serving, update
from omnireduce.p4proto import p4runtime_pb2

pytestmark = pytest.mark.usefixtures("backend")

Entity = p4runtime_pb2.Entity
I = "SelIngress."


@pytest.fixture
def served():
    with serving("selector_test") as served:
        yield served


def member(s: Served, member_id: int, value: int = 10, profile: str = "sel", action: str = "set_sel"):
    msg = p4runtime_pb2.ActionProfileMember(action_profile_id=s.id("action_profile", I + profile), member_id=member_id)
    msg.action.action_id = s.id("action", I + action)
    msg.action.params.add(param_id=1, value=bytes([value]))
    if action == "set_prof":
        msg.action.params.add(param_id=2, value=b"\x01")
    return msg


def group(s: Served, group_id: int, *members: tuple[int, int], max_size: int = 0, watch_port: bytes = b""):
    msg = p4runtime_pb2.ActionProfileGroup(action_profile_id=s.id("action_profile", I + "sel"), group_id=group_id,
                                           max_size=max_size)
    for member_id, weight in members:
        m = msg.members.add(member_id=member_id, weight=weight)
        if watch_port:
            m.watch_port = watch_port
    return msg


def sel_entry(s: Served, key: int | None = None, **action) -> p4runtime_pb2.TableEntry:
    msg = p4runtime_pb2.TableEntry(table_id=s.id("table", I + "t_sel"), priority=1)
    if key is not None:
        fm = msg.match.add(field_id=1)
        fm.ternary.value, fm.ternary.mask = bytes([key]), b"\xff"
    for kind, value in action.items():
        if isinstance(value, int):
            setattr(msg.action, kind, value)
        else:
            getattr(msg.action, kind).CopyFrom(value)
    return msg


def test_members_groups_and_entries_read_back_as_written(served):
    served.client.write(*[update("INSERT", action_profile_member=member(served, m, m * 10)) for m in (1, 2, 3)])
    served.client.write(update("INSERT", action_profile_group=group(served, 100, (1, 1), (3, 2), max_size=8,
                                                                   watch_port=b"\x07")))
    served.client.write(update("INSERT", table_entry=sel_entry(served, action_profile_group_id=100)),
                        update("INSERT", table_entry=sel_entry(served, 5, action_profile_member_id=2)))
    members = served.client.read(Entity(action_profile_member=p4runtime_pb2.ActionProfileMember()))
    assert [(e.action_profile_member.member_id, e.action_profile_member.action.params[0].value) for e in members] == [
        (1, b"\x0a"), (2, b"\x14"), (3, b"\x1e")]
    (read_group,) = served.client.read(Entity(action_profile_group=p4runtime_pb2.ActionProfileGroup()))
    assert read_group.action_profile_group == group(served, 100, (1, 1), (3, 2), max_size=8, watch_port=b"\x07")
    entries = served.client.read(Entity(table_entry=p4runtime_pb2.TableEntry(table_id=sel_entry(served).table_id)))
    assert sorted(e.table_entry.action.WhichOneof("type") for e in entries) == [
        "action_profile_group_id", "action_profile_member_id"]
    one = served.client.read(Entity(action_profile_member=p4runtime_pb2.ActionProfileMember(
        action_profile_id=served.id("action_profile", I + "sel"), member_id=2)))
    assert [e.action_profile_member.member_id for e in one] == [2]


def test_modify_and_delete(served):
    served.client.write(*[update("INSERT", action_profile_member=member(served, m)) for m in (1, 2)])
    served.client.write(update("INSERT", action_profile_group=group(served, 100, (1, 1))))
    served.client.write(update("MODIFY", action_profile_member=member(served, 1, 77)),
                        update("MODIFY", action_profile_group=group(served, 100, (2, 4))))
    (read_group,) = served.client.read(Entity(action_profile_group=p4runtime_pb2.ActionProfileGroup()))
    assert [(m.member_id, m.weight) for m in read_group.action_profile_group.members] == [(2, 4)]
    served.client.write(update("DELETE", action_profile_group=p4runtime_pb2.ActionProfileGroup(
                            action_profile_id=served.id("action_profile", I + "sel"), group_id=100)),
                        update("DELETE", action_profile_member=member(served, 1)),
                        update("DELETE", action_profile_member=member(served, 2)))
    assert served.client.read(Entity(action_profile_member=p4runtime_pb2.ActionProfileMember())) == []


BAD = {
    "member id 0": ("INSERT", lambda s: {"action_profile_member": member(s, 0)}, code_pb2.INVALID_ARGUMENT),
    "a duplicate member": ("INSERT", lambda s: {"action_profile_member": member(s, 1)}, code_pb2.ALREADY_EXISTS),
    "a member without action": ("INSERT", lambda s: {"action_profile_member": p4runtime_pb2.ActionProfileMember(
        action_profile_id=s.id("action_profile", I + "sel"), member_id=5)}, code_pb2.INVALID_ARGUMENT),
    "an action of other tables": ("INSERT", lambda s: {"action_profile_member": member(s, 5, action="set_prof")},
                                  code_pb2.INVALID_ARGUMENT),
    "modify of a missing member": ("MODIFY", lambda s: {"action_profile_member": member(s, 9)}, code_pb2.NOT_FOUND),
    "delete of a member in a group": ("DELETE", lambda s: {"action_profile_member": member(s, 1)},
                                      code_pb2.FAILED_PRECONDITION),
    "delete of a member an entry uses": ("DELETE", lambda s: {"action_profile_member": member(s, 2)},
                                         code_pb2.FAILED_PRECONDITION),
    "a group of missing members": ("INSERT", lambda s: {"action_profile_group": group(s, 101, (9, 1))},
                                   code_pb2.NOT_FOUND),
    "a zero weight": ("INSERT", lambda s: {"action_profile_group": group(s, 101, (1, 0))}, code_pb2.INVALID_ARGUMENT),
    "a repeated member": ("INSERT", lambda s: {"action_profile_group": group(s, 101, (1, 1), (1, 1))},
                          code_pb2.INVALID_ARGUMENT),
    "weights past max_size": ("INSERT", lambda s: {"action_profile_group": group(s, 101, (1, 3), max_size=2)},
                              code_pb2.RESOURCE_EXHAUSTED),
    "a negative max_size": ("INSERT", lambda s: {"action_profile_group": group(s, 101, max_size=-1)},
                            code_pb2.INVALID_ARGUMENT),
    "a changed max_size": ("MODIFY", lambda s: {"action_profile_group": group(s, 100, (1, 1), max_size=3)},
                           code_pb2.INVALID_ARGUMENT),
    "group id 0": ("INSERT", lambda s: {"action_profile_group": group(s, 0)}, code_pb2.INVALID_ARGUMENT),
    "a group of a profile without selector": ("INSERT", lambda s: {"action_profile_group": p4runtime_pb2.ActionProfileGroup(
        action_profile_id=s.id("action_profile", I + "prof"), group_id=1)}, code_pb2.INVALID_ARGUMENT),
    "delete of a group an entry uses": ("DELETE", lambda s: {"action_profile_group": group(s, 100)},
                                        code_pb2.FAILED_PRECONDITION),
    "delete of a missing group": ("DELETE", lambda s: {"action_profile_group": group(s, 555)}, code_pb2.NOT_FOUND),
    "an entry with an action": ("INSERT", lambda s: {"table_entry": sel_entry(s, 9, action=p4runtime_pb2.Action(
        action_id=s.id("action", I + "set_sel")))}, code_pb2.INVALID_ARGUMENT),
    "an entry of a missing group": ("INSERT", lambda s: {"table_entry": sel_entry(s, 9, action_profile_group_id=555)},
                                    code_pb2.NOT_FOUND),
    "one-shot programming": ("INSERT", lambda s: {"table_entry": sel_entry(
        s, 9, action_profile_action_set=p4runtime_pb2.ActionProfileActionSet(
            action_profile_actions=[p4runtime_pb2.ActionProfileAction(weight=1)]))}, code_pb2.UNIMPLEMENTED),
    "a default entry": ("MODIFY", lambda s: {"table_entry": p4runtime_pb2.TableEntry(
        table_id=s.id("table", I + "t_sel"), is_default_action=True)}, code_pb2.INVALID_ARGUMENT),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_writes_get_the_spec_code(served, case):
    served.client.write(*[update("INSERT", action_profile_member=member(served, m)) for m in (1, 2)])
    served.client.write(update("INSERT", action_profile_group=group(served, 100, (1, 1))))
    served.client.write(update("INSERT", table_entry=sel_entry(served, action_profile_group_id=100)),
                        update("INSERT", table_entry=sel_entry(served, 5, action_profile_member_id=2)))
    kind, make, code = BAD[case]
    with rpc_error(grpc.StatusCode.UNKNOWN) as info:
        served.client.write(update(kind, **make(served)))
    assert batch_codes(info.value) == [code]


def test_reads_of_unknown_profiles(served):
    with rpc_error(grpc.StatusCode.INVALID_ARGUMENT, "no action profile with id"):
        served.client.read(Entity(action_profile_member=p4runtime_pb2.ActionProfileMember(action_profile_id=0x11FFFFFF)))


def test_a_p4info_profile_no_table_uses_may_be_missing_from_the_json(served):
    """p4c-bm2-ss leaves an unused action selector out of the JSON and keeps it in the P4Info
    (action_selector_unused-bmv2.p4): the pipeline is taken, the profile holds nothing and takes nothing."""
    p4info = type(served.pipeline.p4info)()
    p4info.CopyFrom(served.pipeline.p4info)
    unused = p4info.action_profiles.add(with_selector=True, size=4)
    unused.preamble.id, unused.preamble.name = 0x11ABCDEF, "SelIngress.unused"
    served.client.set_pipeline(p4info, served.pipeline.device_config)
    assert served.client.read(Entity(action_profile_member=p4runtime_pb2.ActionProfileMember())) == []
    with rpc_error(grpc.StatusCode.UNKNOWN) as info:
        served.client.write(update("INSERT", action_profile_group=p4runtime_pb2.ActionProfileGroup(
            action_profile_id=0x11ABCDEF, group_id=1)))
    assert batch_codes(info.value) == [code_pb2.INVALID_ARGUMENT]
