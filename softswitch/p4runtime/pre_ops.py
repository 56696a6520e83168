"""P4Runtime PacketReplicationEngineEntry (multicast groups, clone sessions) on the softswitch Device.

The Device keeps replicas as (egress port, instance) pairs. What P4Runtime adds on top — a group's
opaque `metadata`, a session's `class_of_service`, and whether each replica's port was sent as the
deprecated `egress_port` number or as a `port` bytestring — is remembered here so reads give back
exactly what was written (read-write symmetry), as PI does for simple_switch_grpc.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING


from omnireduce.p4proto import p4runtime_pb2
from omnireduce.softswitch.p4runtime.errors import P4RuntimeError, device_errors

if TYPE_CHECKING:   # only for annotations: the Device module needs nothing from the server
    from omnireduce.softswitch.device import Device

Update = p4runtime_pb2.Update
Replica = tuple[int, int]   # (egress port, instance)

# v1model's egress_rid, which carries the replica instance, is 16 bits wide.
MAX_INSTANCE = (1 << 16) - 1


@dataclass(slots=True)
class _Extras:
    """P4Runtime-only attributes of one group or session."""

    port_bytes: dict[Replica, bytes] = field(default_factory=dict)   # replicas whose port came as bytes
    metadata: bytes = b""
    class_of_service: int = 0


def _decode_replicas(what: str, replicas: Sequence[p4runtime_pb2.Replica]) -> tuple[list[Replica], _Extras]:
    extras = _Extras()
    result: list[Replica] = []
    for replica in replicas:
        kind = replica.WhichOneof("port_kind")
        if kind == "egress_port":
            port = replica.egress_port
        elif kind == "port":
            if not replica.port or len(replica.port) > 4:
                raise P4RuntimeError.invalid_argument(f"{what}: replica port must be a 1..4 byte string")
            port = int.from_bytes(replica.port, "big")
        else:
            raise P4RuntimeError.invalid_argument(f"{what}: a replica has no port")
        if replica.instance > MAX_INSTANCE:
            raise P4RuntimeError.invalid_argument(
                f"{what}: replica instance {replica.instance} does not fit v1model's 16-bit egress_rid")
        if len(getattr(replica, "backup_replicas", ())):
            raise P4RuntimeError.unimplemented(f"{what}: backup replicas are not supported")
        pair = (port, replica.instance)
        if pair in result:
            raise P4RuntimeError.invalid_argument(f"{what}: replica (port {port}, instance {replica.instance}) is repeated")
        result.append(pair)
        if kind == "port":
            extras.port_bytes[pair] = replica.port
    return result, extras


def _encode_replicas(replicas: Sequence[Replica], extras: _Extras | None) -> list[p4runtime_pb2.Replica]:
    result = []
    for port, instance in replicas:
        port_bytes = extras.port_bytes.get((port, instance)) if extras else None
        if port_bytes is not None:
            result.append(p4runtime_pb2.Replica(port=port_bytes, instance=instance))
        else:
            result.append(p4runtime_pb2.Replica(egress_port=port, instance=instance))
    return result


class PreOps:
    """Multicast groups and clone sessions of one Device."""

    def __init__(self, device: Device) -> None:
        self.device = device
        self._groups: dict[int, _Extras] = {}
        self._sessions: dict[int, _Extras] = {}

    def write(self, update_type: int, msg: p4runtime_pb2.PacketReplicationEngineEntry) -> None:
        kind = msg.WhichOneof("type")
        if kind == "multicast_group_entry":
            self._write_group(update_type, msg.multicast_group_entry)
        elif kind == "clone_session_entry":
            self._write_session(update_type, msg.clone_session_entry)
        else:
            raise P4RuntimeError.invalid_argument("packet_replication_engine_entry has no entry")

    def _write_group(self, update_type: int, group: p4runtime_pb2.MulticastGroupEntry) -> None:
        group_id = group.multicast_group_id
        what = f"multicast group {group_id}"
        if group_id == 0:
            raise P4RuntimeError.invalid_argument("multicast group id 0 is only a wildcard for reads")
        if update_type == Update.DELETE:
            with device_errors():
                self.device.mc_group_delete(group_id)
            self._groups.pop(group_id, None)
            return
        replicas, extras = _decode_replicas(what, group.replicas)
        extras.metadata = group.metadata
        with device_errors():
            if update_type == Update.INSERT:
                self.device.mc_group_insert(group_id, replicas)
            elif update_type == Update.MODIFY:
                self.device.mc_group_modify(group_id, replicas)
            else:
                raise P4RuntimeError.invalid_argument(f"{what}: update type must be INSERT, MODIFY or DELETE")
        self._groups[group_id] = extras

    def _write_session(self, update_type: int, session: p4runtime_pb2.CloneSessionEntry) -> None:
        session_id = session.session_id
        what = f"clone session {session_id}"
        if session_id == 0:
            raise P4RuntimeError.invalid_argument("clone session id 0 is only a wildcard for reads")
        if update_type == Update.DELETE:
            with device_errors():
                self.device.clone_session_delete(session_id)
            self._sessions.pop(session_id, None)
            return
        replicas, extras = _decode_replicas(what, session.replicas)
        extras.class_of_service = session.class_of_service
        with device_errors():
            if update_type == Update.INSERT:
                self.device.clone_session_insert(session_id, replicas, session.packet_length_bytes)
            elif update_type == Update.MODIFY:
                self.device.clone_session_modify(session_id, replicas, session.packet_length_bytes)
            else:
                raise P4RuntimeError.invalid_argument(f"{what}: update type must be INSERT, MODIFY or DELETE")
        self._sessions[session_id] = extras

    def read(self, query: p4runtime_pb2.PacketReplicationEngineEntry) -> Iterator[p4runtime_pb2.Entity]:
        kind = query.WhichOneof("type")
        if kind == "multicast_group_entry":
            group_id = query.multicast_group_entry.multicast_group_id
            with device_errors():
                groups = self.device.mc_group_read(group_id or None)
            if group_id and group_id not in groups:
                raise P4RuntimeError.not_found(f"multicast group {group_id} does not exist")
            for gid in sorted(groups):
                extras = self._groups.get(gid)
                entity = p4runtime_pb2.Entity()
                entry = entity.packet_replication_engine_entry.multicast_group_entry
                entry.multicast_group_id = gid
                entry.replicas.extend(_encode_replicas(groups[gid], extras))
                if extras:
                    entry.metadata = extras.metadata
                yield entity
        elif kind == "clone_session_entry":
            session_id = query.clone_session_entry.session_id
            with device_errors():
                sessions = self.device.clone_session_read(session_id or None)
            if session_id and session_id not in sessions:
                raise P4RuntimeError.not_found(f"clone session {session_id} does not exist")
            for sid in sorted(sessions):
                session = sessions[sid]   # has .replicas and .packet_length_bytes
                extras = self._sessions.get(sid)
                entity = p4runtime_pb2.Entity()
                entry = entity.packet_replication_engine_entry.clone_session_entry
                entry.session_id = sid
                entry.replicas.extend(_encode_replicas(session.replicas, extras))
                entry.packet_length_bytes = session.packet_length_bytes
                if extras:
                    entry.class_of_service = extras.class_of_service
                yield entity
        else:
            raise P4RuntimeError.invalid_argument("packet_replication_engine_entry read needs a multicast group or "
                                                  "clone session entry")
