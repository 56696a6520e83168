"""Action profiles and action selectors at run time: members (an action and its parameters), groups of weighted
members, and the choice of a group's member per packet as simple_switch_grpc makes it.

Tables implemented with a profile hold, per entry, a member or (selectors) a group instead of an action. A hit on a
member runs its action; a hit on a group runs the action of one of its members, picked by the selector's hash of
the packet. BMv2 picks the `hash % n`-th of the group's n member *handles* in increasing handle order (the hash
truncated to 32 bits, its `hash_t`); a handle is BMv2's own number for a member, the lowest free one when it is
created. simple_switch_grpc (PI) turns a member of weight w into w BMv2 members, the member and w - 1 copies created
on demand, and frees the copies no group needs any more. This module keeps the same handles, so that for the same
sequence of P4Runtime writes every packet picks the member BMv2 picks.

An empty group (emptied after a table entry pointed at it) is a hit that runs no action; BMv2 refuses a table entry
that points at an empty group, and so does this target.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from .entries import ProfileGroupInfo, ProfileInfo, ProfileMemberInfo
from .errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound, ResourceExhausted
from .program import ActionProfile

ActionTuple = tuple[Callable, tuple, str]   # what a table entry runs: (action function, parameters, action name)
HASH_MASK = 0xFFFFFFFF                      # BMv2's ActionProfile::hash_t is an unsigned int


class _LowestFree:
    """Numbers handed out lowest free first (BMv2's HandleMgr; also the slots of the native arrays)."""

    def __init__(self) -> None:
        self._free: list[int] = []
        self._next = 0

    def take(self) -> int:
        if self._free:
            return heapq.heappop(self._free)
        self._next += 1
        return self._next - 1

    def give(self, number: int) -> None:
        heapq.heappush(self._free, number)

    @property
    def span(self) -> int:
        """One more than the largest number ever handed out (the size native arrays need)."""
        return self._next


@dataclass(eq=False, slots=True)
class ProfileMember:
    member_id: int
    action: str
    params: tuple[int, ...]
    slot: int
    runs: ActionTuple
    handles: list[int] = field(default_factory=list)        # BMv2 handles: the member, then its weight copies
    weight_counts: dict[int, int] = field(default_factory=dict)   # PI's: weight -> groups using it (1 counts itself)
    entries: int = 0                                        # table entries pointing at it
    groups: int = 0                                         # groups holding it

    def pick(self, F: list) -> ActionTuple:
        return self.runs


@dataclass(eq=False, slots=True)
class ProfileGroup:
    group_id: int
    slot: int
    max_size: int
    profile: ActionProfileRuntime
    members: dict[int, int] = field(default_factory=dict)   # member id -> weight
    picks: list[ProfileMember] = field(default_factory=list)   # one per BMv2 handle, in handle order
    entries: int = 0

    def pick(self, F: list) -> ActionTuple | None:
        picks = self.picks
        if not picks:
            return None
        return picks[(self.profile.hash_fn(F, b"") & HASH_MASK) % len(picks)].runs


class ActionProfileRuntime:
    def __init__(self, spec: ActionProfile, action_fns: dict[str, Callable],
                 action_widths: dict[str, tuple[int, ...]]) -> None:
        self.spec = spec
        self.name = spec.name
        self.action_fns = action_fns
        self.action_widths = action_widths
        self.info = ProfileInfo(spec.name, spec.size, spec.selector is not None, tuple(action_fns), spec.tables)
        # The selector's hash f(F, payload) -> int; set once the calculation is generated.
        self.hash_fn: Callable[[list, bytes], int] = lambda F, payload: 0
        self.members: dict[int, ProfileMember] = {}
        self.groups: dict[int, ProfileGroup] = {}
        self._handles = _LowestFree()
        self._handle_owner: dict[int, ProfileMember] = {}
        self._member_slots = _LowestFree()
        self._group_slots = _LowestFree()
        # Bumped by every change, so that a native pipeline knows when to reload its copy.
        self.version = 0

    # -- members ------------------------------------------------------------------------------------------
    def _runs(self, action: str, params: tuple[int, ...]) -> ActionTuple:
        if action not in self.action_fns:
            raise InvalidArgument(f"action profile '{self.name}' has no action '{action}' "
                                  f"(actions: {', '.join(self.action_fns)})")
        widths = self.action_widths[action]
        if len(params) != len(widths):
            raise InvalidArgument(f"action '{action}' takes {len(widths)} parameters, got {len(params)}")
        for i, (value, width) in enumerate(zip(params, widths)):
            if not isinstance(value, int) or not 0 <= value < (1 << width):
                raise InvalidArgument(f"action '{action}' parameter {i} ({width} bits) cannot hold {value!r}")
        return (self.action_fns[action], tuple(params), action)

    def _member(self, member_id: int) -> ProfileMember:
        member = self.members.get(member_id)
        if member is None:
            raise NotFound(f"action profile '{self.name}' has no member {member_id}")
        return member

    def member_insert(self, member_id: int, action: str, params: tuple[int, ...]) -> None:
        if member_id in self.members:
            raise AlreadyExists(f"action profile '{self.name}' already has member {member_id}")
        if len(self.members) >= self.spec.size:
            raise ResourceExhausted(f"action profile '{self.name}' is full ({self.spec.size} members)")
        runs = self._runs(action, tuple(params))
        member = ProfileMember(member_id, action, tuple(params), self._member_slots.take(), runs)
        self._add_handle(member)
        member.weight_counts[1] = 1
        self.members[member_id] = member
        self.version += 1

    def member_modify(self, member_id: int, action: str, params: tuple[int, ...]) -> None:
        member = self._member(member_id)
        member.runs = self._runs(action, tuple(params))
        member.action, member.params = action, tuple(params)
        self.version += 1

    def member_delete(self, member_id: int) -> None:
        member = self._member(member_id)
        if member.groups or member.entries:
            users = [f"{member.groups} group(s)"] * bool(member.groups) + [f"{member.entries} table entries"] * bool(
                member.entries)
            raise FailedPrecondition(f"action profile '{self.name}' member {member_id} is used by "
                                     f"{' and '.join(users)}")
        for handle in member.handles:
            self._release_handle(handle)
        self._member_slots.give(member.slot)
        del self.members[member_id]
        self.version += 1

    def member_list(self) -> list[ProfileMemberInfo]:
        return [ProfileMemberInfo(m.member_id, m.action, m.params) for m in self.members.values()]

    def _add_handle(self, member: ProfileMember) -> None:
        handle = self._handles.take()
        member.handles.append(handle)
        self._handle_owner[handle] = member

    def _release_handle(self, handle: int) -> None:
        del self._handle_owner[handle]
        self._handles.give(handle)

    def _purge_copies(self, member: ProfileMember) -> None:
        """PI's purge_unused_weighted_members: free the copies beyond the largest weight any group still uses."""
        used = [w for w, count in member.weight_counts.items() if count > 0]
        keep = max(used) if used else 1
        for weight in [w for w in member.weight_counts if w > keep]:
            del member.weight_counts[weight]
        while len(member.handles) > keep:
            self._release_handle(member.handles.pop())

    # -- groups -------------------------------------------------------------------------------------------
    def _group(self, group_id: int) -> ProfileGroup:
        group = self.groups.get(group_id)
        if group is None:
            raise NotFound(f"action profile '{self.name}' has no group {group_id}")
        return group

    def _check_membership(self, members: Sequence[tuple[int, int]], max_size: int) -> dict[int, int]:
        if self.spec.selector is None:
            raise InvalidArgument(f"action profile '{self.name}' has no selector: it holds no groups")
        wanted: dict[int, int] = {}
        for member_id, weight in members:
            if not isinstance(weight, int) or weight <= 0:
                raise InvalidArgument(f"member {member_id}: weight {weight!r} must be a positive integer")
            if member_id in wanted:
                raise InvalidArgument(f"member {member_id} is given twice; give it a weight instead")
            self._member(member_id)
            wanted[member_id] = weight
        if max_size and sum(wanted.values()) > max_size:
            raise ResourceExhausted(f"the weights of the group's members add up to {sum(wanted.values())}, "
                                    f"more than its max_size {max_size}")
        return dict(sorted(wanted.items()))

    def _set_members(self, group: ProfileGroup, wanted: dict[int, int]) -> None:
        """PI's group_update_members: in increasing member id order, create the copies each member needs, move
        the weight counts; then free the copies nobody needs, and rebuild the group's picks in handle order."""
        touched = sorted(set(group.members) | set(wanted))
        for member_id in touched:
            member = self.members[member_id]
            old, new = group.members.get(member_id, 0), wanted.get(member_id, 0)
            while len(member.handles) < new:
                self._add_handle(member)
            if old:
                member.weight_counts[old] -= 1
                member.groups -= 1
            if new:
                member.weight_counts[new] = member.weight_counts.get(new, 0) + 1
                member.groups += 1
        group.members = wanted
        for member_id in touched:
            self._purge_copies(self.members[member_id])
        handles = sorted(h for member_id, weight in wanted.items() for h in self.members[member_id].handles[:weight])
        group.picks = [self._handle_owner[h] for h in handles]
        self.version += 1

    def group_insert(self, group_id: int, members: Sequence[tuple[int, int]], max_size: int = 0) -> None:
        if group_id in self.groups:
            raise AlreadyExists(f"action profile '{self.name}' already has group {group_id}")
        if not isinstance(max_size, int) or max_size < 0:
            raise InvalidArgument(f"group max_size {max_size!r} must be >= 0")
        wanted = self._check_membership(members, max_size)
        group = ProfileGroup(group_id, self._group_slots.take(), max_size, self)
        self.groups[group_id] = group
        self._set_members(group, wanted)

    def group_modify(self, group_id: int, members: Sequence[tuple[int, int]], max_size: int = 0) -> None:
        group = self._group(group_id)
        if max_size and max_size != group.max_size:
            raise InvalidArgument(f"group {group_id} was created with max_size {group.max_size}; it cannot change")
        self._set_members(group, self._check_membership(members, group.max_size))

    def group_delete(self, group_id: int) -> None:
        group = self._group(group_id)
        if group.entries:
            raise FailedPrecondition(f"action profile '{self.name}' group {group_id} is used by {group.entries} "
                                     "table entries")
        self._set_members(group, {})
        self._group_slots.give(group.slot)
        del self.groups[group_id]
        self.version += 1

    def group_list(self) -> list[ProfileGroupInfo]:
        return [ProfileGroupInfo(g.group_id, tuple(g.members.items()), g.max_size) for g in self.groups.values()]

    def group_handles(self, group_id: int) -> list[tuple[int, int]]:
        """(BMv2 handle, member id) of a group's picks, in the order a hash indexes them (for tests)."""
        group = self._group(group_id)
        handles = sorted(h for member_id, weight in group.members.items() for h in self.members[member_id].handles[:weight])
        return [(h, self._handle_owner[h].member_id) for h in handles]

    # -- table entries ------------------------------------------------------------------------------------
    def resolver(self, member_id: int | None, group_id: int | None) -> ProfileMember | ProfileGroup:
        """What a table entry points at; the table counts the reference with `attach`."""
        if (member_id is None) == (group_id is None):
            raise InvalidArgument(f"a table entry of action profile '{self.name}' gives a member or a group, not "
                                  "an action")
        if member_id is not None:
            return self._member(member_id)
        if self.spec.selector is None:
            raise InvalidArgument(f"action profile '{self.name}' has no selector: entries give members")
        group = self._group(group_id)
        if not group.picks:
            raise InvalidArgument(f"action profile '{self.name}' group {group_id} is empty (BMv2 refuses table "
                                  "entries that point at an empty group)")
        return group

    @staticmethod
    def attach(target: ProfileMember | ProfileGroup, count: int) -> None:
        target.entries += count

    def reset(self) -> None:
        for group_id in list(self.groups):
            self.groups[group_id].entries = 0
            self.group_delete(group_id)
        for member_id in list(self.members):
            self.members[member_id].entries = 0
            self.member_delete(member_id)
