"""Packet replication engine: multicast groups and clone sessions (what P4Runtime's PacketReplicationEngineEntry
configures). Both hold replicas as (egress_port, rid); a replica's rid becomes standard_metadata.egress_rid."""

from __future__ import annotations

from dataclasses import dataclass

from .errors import AlreadyExists, InvalidArgument, NotFound

MAX_PORT = 511  # v1model ports are 9 bits
MAX_RID = 0xFFFF
MAX_GROUP_ID = 0xFFFF  # standard_metadata.mcast_grp is 16 bits; 0 means "no multicast"
MAX_SESSION_ID = 0x7FFF  # BMv2 RegisterAccess::MAX_MIRROR_SESSION_ID

Replica = tuple[int, int]


@dataclass(frozen=True, slots=True)
class CloneSession:
    replicas: tuple[Replica, ...]
    packet_length_bytes: int  # 0: clones are not truncated


def _check_replicas(replicas: list[tuple[int, int]] | tuple, what: str) -> tuple[Replica, ...]:
    out = []
    for replica in replicas:
        try:
            port, rid = replica
        except (TypeError, ValueError):
            raise InvalidArgument(f"{what}: replica {replica!r} is not (egress_port, rid)") from None
        if not isinstance(port, int) or not 0 <= port <= MAX_PORT:
            raise InvalidArgument(f"{what}: egress port {port!r} is not in 0..{MAX_PORT}")
        if not isinstance(rid, int) or not 0 <= rid <= MAX_RID:
            raise InvalidArgument(f"{what}: replica id {rid!r} is not in 0..{MAX_RID}")
        out.append((port, rid))
    if len(set(out)) != len(out):
        raise InvalidArgument(f"{what}: duplicate replicas")
    return tuple(out)


class ReplicationEngine:
    def __init__(self) -> None:
        self.groups: dict[int, tuple[Replica, ...]] = {}
        self.sessions: dict[int, CloneSession] = {}
        # Bumped by every change, so that a native pipeline knows when to reload its copy of the PRE.
        self.version = 0

    def clear(self) -> None:
        self.groups.clear()
        self.sessions.clear()
        self.version += 1

    # -- multicast groups ---------------------------------------------------------------------------------
    @staticmethod
    def _check_group(group_id: int) -> None:
        if not isinstance(group_id, int) or not 1 <= group_id <= MAX_GROUP_ID:
            raise InvalidArgument(f"multicast group id {group_id!r} is not in 1..{MAX_GROUP_ID}")

    def group_insert(self, group_id: int, replicas: list[tuple[int, int]]) -> None:
        self._check_group(group_id)
        checked = _check_replicas(replicas, f"multicast group {group_id}")
        if group_id in self.groups:
            raise AlreadyExists(f"multicast group {group_id} already exists")
        self.groups[group_id] = checked
        self.version += 1

    def group_modify(self, group_id: int, replicas: list[tuple[int, int]]) -> None:
        self._check_group(group_id)
        checked = _check_replicas(replicas, f"multicast group {group_id}")
        if group_id not in self.groups:
            raise NotFound(f"multicast group {group_id} does not exist")
        self.groups[group_id] = checked
        self.version += 1

    def group_delete(self, group_id: int) -> None:
        self._check_group(group_id)
        if self.groups.pop(group_id, None) is None:
            raise NotFound(f"multicast group {group_id} does not exist")
        self.version += 1

    def group_read(self, group_id: int | None) -> dict[int, list[Replica]]:
        if group_id is None or group_id == 0:
            return {gid: list(replicas) for gid, replicas in sorted(self.groups.items())}
        self._check_group(group_id)
        if group_id not in self.groups:
            raise NotFound(f"multicast group {group_id} does not exist")
        return {group_id: list(self.groups[group_id])}

    # -- clone sessions -----------------------------------------------------------------------------------
    @staticmethod
    def _check_session(session_id: int) -> None:
        if not isinstance(session_id, int) or not 0 <= session_id <= MAX_SESSION_ID:
            raise InvalidArgument(f"clone session id {session_id!r} is not in 0..{MAX_SESSION_ID}")

    @staticmethod
    def _check_length(length: int) -> int:
        if not isinstance(length, int) or length < 0:
            raise InvalidArgument(f"clone packet_length_bytes {length!r} must be >= 0")
        return length

    def session_insert(self, session_id: int, replicas: list[tuple[int, int]], packet_length_bytes: int = 0) -> None:
        self._check_session(session_id)
        session = CloneSession(
            _check_replicas(replicas, f"clone session {session_id}"), self._check_length(packet_length_bytes)
        )
        if session_id in self.sessions:
            raise AlreadyExists(f"clone session {session_id} already exists")
        self.sessions[session_id] = session
        self.version += 1

    def session_modify(self, session_id: int, replicas: list[tuple[int, int]], packet_length_bytes: int = 0) -> None:
        self._check_session(session_id)
        session = CloneSession(
            _check_replicas(replicas, f"clone session {session_id}"), self._check_length(packet_length_bytes)
        )
        if session_id not in self.sessions:
            raise NotFound(f"clone session {session_id} does not exist")
        self.sessions[session_id] = session
        self.version += 1

    def session_delete(self, session_id: int) -> None:
        self._check_session(session_id)
        if self.sessions.pop(session_id, None) is None:
            raise NotFound(f"clone session {session_id} does not exist")
        self.version += 1

    def session_read(self, session_id: int | None) -> dict[int, CloneSession]:
        if session_id is None:
            return dict(sorted(self.sessions.items()))
        self._check_session(session_id)
        if session_id not in self.sessions:
            raise NotFound(f"clone session {session_id} does not exist")
        return {session_id: self.sessions[session_id]}
