"""P4Runtime ActionProfileMember and ActionProfileGroup writes and reads on the softswitch Device.

Per the spec ("Action Profile Member Programming", "Action Profile Group Programming"):
- member and group ids are non-zero (0 is INVALID_ARGUMENT in a write, a wildcard in a read, as is an
  action_profile_id of 0); INSERT of an existing id is ALREADY_EXISTS, MODIFY/DELETE of a missing one NOT_FOUND;
- a member needs an action of the tables the profile implements (INVALID_ARGUMENT otherwise), and cannot be deleted
  while a group or a table entry holds it (FAILED_PRECONDITION); a group cannot be deleted while a table entry
  points at it (FAILED_PRECONDITION);
- a group's members exist (NOT_FOUND), appear once (INVALID_ARGUMENT: use the weight) with a weight > 0
  (INVALID_ARGUMENT); max_size is >= 0, at most the P4Info's max_group_size when that is set (INVALID_ARGUMENT),
  unchangeable by MODIFY (INVALID_ARGUMENT); a sum of weights above max_size, or above max_group_size when
  max_size is 0, is RESOURCE_EXHAUSTED; groups exist only in selectors (INVALID_ARGUMENT).
A member's `watch`/`watch_port` is kept and read back; softswitch ports never go down, so it excludes nothing.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from omnireduce.p4proto import p4runtime_pb2
from omnireduce.softswitch.p4runtime.entry_codec import decode_action, encode_action
from omnireduce.softswitch.p4runtime.errors import P4RuntimeError, device_errors
from omnireduce.softswitch.p4runtime.p4info_map import ActionProfileInfo, P4InfoMap

if TYPE_CHECKING:   # only for annotations: the Device module needs nothing from the server
    from omnireduce.softswitch.device import Device

Update = p4runtime_pb2.Update
Member = p4runtime_pb2.ActionProfileGroup.Member


class ProfileOps:
    """Action profile members and groups of one Device under one P4Info."""

    def __init__(self, device: Device, p4map: P4InfoMap) -> None:
        self.device = device
        self.p4map = p4map
        # (profile id, group id, member id) -> the member's watch port as written (the oneof, for read-back)
        self._watch: dict[tuple[int, int, int], Member] = {}

    def _profiles(self, profile_id: int) -> list[ActionProfileInfo]:
        """The profiles a read names; a profile no table uses (p4c leaves it out of the JSON) holds nothing."""
        profiles = (list(self.p4map.action_profiles) if profile_id == 0
                    else [self.p4map.action_profiles.get(profile_id)])
        return [p for p in profiles if p.table_ids]

    # --- members ---------------------------------------------------------------------------------------
    def write_member(self, update_type: int, msg: p4runtime_pb2.ActionProfileMember) -> None:
        profile = self.p4map.action_profiles.get(msg.action_profile_id)
        if msg.member_id == 0:
            raise P4RuntimeError.invalid_argument(f"action profile '{profile.name}': member_id 0 is reserved")
        if not profile.table_ids:
            raise P4RuntimeError.invalid_argument(f"action profile '{profile.name}' implements no table")
        if update_type == Update.DELETE:
            with device_errors():
                self.device.profile_member_delete(profile.name, msg.member_id)
            return
        if update_type not in (Update.INSERT, Update.MODIFY):
            raise P4RuntimeError.invalid_argument(f"update type {update_type} is not INSERT, MODIFY or DELETE")
        if not msg.HasField("action"):
            raise P4RuntimeError.invalid_argument(
                f"action profile '{profile.name}' member {msg.member_id}: the member has no action")
        table = self.p4map.table(profile.table_ids[0])   # the tables of a profile share their actions
        action, params = decode_action(self.p4map, table, p4runtime_pb2.TableAction(action=msg.action),
                                       is_default=False)
        with device_errors():
            if update_type == Update.INSERT:
                self.device.profile_member_insert(profile.name, msg.member_id, action.name, params)
            else:
                self.device.profile_member_modify(profile.name, msg.member_id, action.name, params)

    def read_members(self, query: p4runtime_pb2.ActionProfileMember) -> Iterator[p4runtime_pb2.Entity]:
        for profile in self._profiles(query.action_profile_id):
            with device_errors():
                members = self.device.profile_members(profile.name)
            for member in members:
                if query.member_id and member.member_id != query.member_id:
                    continue
                entity = p4runtime_pb2.Entity()
                msg = entity.action_profile_member
                msg.action_profile_id, msg.member_id = profile.id, member.member_id
                msg.action.CopyFrom(encode_action(self.p4map, member.action, member.params).action)
                yield entity

    # --- groups ----------------------------------------------------------------------------------------
    def _membership(self, profile: ActionProfileInfo, msg: p4runtime_pb2.ActionProfileGroup) -> list[tuple[int, int]]:
        where = f"action profile '{profile.name}' group {msg.group_id}"
        members: list[tuple[int, int]] = []
        seen: set[int] = set()
        for m in msg.members:
            if m.weight <= 0:
                raise P4RuntimeError.invalid_argument(f"{where}: member {m.member_id} has weight {m.weight}; "
                                                      "weights are positive")
            if m.member_id in seen:
                raise P4RuntimeError.invalid_argument(f"{where}: member {m.member_id} is given twice; "
                                                      "give it a weight instead")
            seen.add(m.member_id)
            members.append((m.member_id, m.weight))
        if msg.max_size < 0:
            raise P4RuntimeError.invalid_argument(f"{where}: max_size {msg.max_size} is negative")
        if profile.max_group_size and msg.max_size > profile.max_group_size:
            raise P4RuntimeError.invalid_argument(f"{where}: max_size {msg.max_size} exceeds the P4Info's "
                                                  f"max_group_size {profile.max_group_size}")
        bound = msg.max_size or profile.max_group_size
        total = sum(weight for _, weight in members)
        if bound and total > bound:
            raise P4RuntimeError.resource_exhausted(f"{where}: the members' weights add up to {total}, more than {bound}")
        return members

    def write_group(self, update_type: int, msg: p4runtime_pb2.ActionProfileGroup) -> None:
        profile = self.p4map.action_profiles.get(msg.action_profile_id)
        if not profile.with_selector:
            raise P4RuntimeError.invalid_argument(f"action profile '{profile.name}' has no selector: it holds "
                                                  "no groups")
        if msg.group_id == 0:
            raise P4RuntimeError.invalid_argument(f"action profile '{profile.name}': group_id 0 is reserved")
        if not profile.table_ids:
            raise P4RuntimeError.invalid_argument(f"action profile '{profile.name}' implements no table")
        if update_type == Update.DELETE:
            with device_errors():
                self.device.profile_group_delete(profile.name, msg.group_id)
            self._forget_watches(profile.id, msg.group_id)
            return
        if update_type not in (Update.INSERT, Update.MODIFY):
            raise P4RuntimeError.invalid_argument(f"update type {update_type} is not INSERT, MODIFY or DELETE")
        members = self._membership(profile, msg)
        with device_errors():
            if update_type == Update.INSERT:
                self.device.profile_group_insert(profile.name, msg.group_id, members, msg.max_size)
            else:
                self.device.profile_group_modify(profile.name, msg.group_id, members, msg.max_size)
        self._forget_watches(profile.id, msg.group_id)
        for m in msg.members:
            if m.WhichOneof("watch_kind") is not None:
                self._watch[(profile.id, msg.group_id, m.member_id)] = m

    def _forget_watches(self, profile_id: int, group_id: int) -> None:
        for key in [k for k in self._watch if k[:2] == (profile_id, group_id)]:
            del self._watch[key]

    def read_groups(self, query: p4runtime_pb2.ActionProfileGroup) -> Iterator[p4runtime_pb2.Entity]:
        for profile in self._profiles(query.action_profile_id):
            if not profile.with_selector:
                continue
            with device_errors():
                groups = self.device.profile_groups(profile.name)
            for group in groups:
                if query.group_id and group.group_id != query.group_id:
                    continue
                entity = p4runtime_pb2.Entity()
                msg = entity.action_profile_group
                msg.action_profile_id, msg.group_id, msg.max_size = profile.id, group.group_id, group.max_size
                for member_id, weight in group.members:
                    member = msg.members.add(member_id=member_id, weight=weight)
                    watched = self._watch.get((profile.id, group.group_id, member_id))
                    if watched is not None:
                        kind = watched.WhichOneof("watch_kind")
                        setattr(member, kind, getattr(watched, kind))
                yield entity
