"""Primary/backup arbitration between the controllers of one device (P4Runtime spec, "Client Arbitration").

Each StreamChannel is a `StreamSession`. For every (device_id, role) the `Arbiter` remembers the live
sessions, the primary, and the highest election id ever seen. A session becomes primary when its
election id is >= that highest id; it stops being primary when it lowers its id or its stream closes
(then there is no primary until some controller arbitrates again, as the spec says). Every change is
announced to the sessions of the role with MasterArbitrationUpdate: OK to the primary, ALREADY_EXISTS
to backups, NOT_FOUND to everyone while there is no primary.
"""

from __future__ import annotations

import itertools
import logging
import queue
import threading
from typing import Callable
from dataclasses import dataclass, field

import grpc
from google.protobuf import any_pb2
from google.rpc import code_pb2, status_pb2

from omnireduce.p4proto import p4runtime_pb2
from omnireduce.softswitch.p4runtime.errors import P4RuntimeError

log = logging.getLogger(__name__)

DEFAULT_ROLE = ""
_session_numbers = itertools.count(1)


def election_id_of(uint128: p4runtime_pb2.Uint128) -> int:
    return (uint128.high << 64) | uint128.low


def uint128_of(value: int) -> p4runtime_pb2.Uint128:
    return p4runtime_pb2.Uint128(high=value >> 64, low=value & ((1 << 64) - 1))


@dataclass(frozen=True, slots=True)
class StreamEnd:
    """Queued to a session's outbox to end its stream, with an error status unless `code` is OK."""

    code: grpc.StatusCode = grpc.StatusCode.OK
    message: str = ""


@dataclass(eq=False, slots=True)
class StreamSession:
    """One controller's StreamChannel: what it announced, and the queue of messages to send it."""

    peer: str = ""
    number: int = field(default_factory=lambda: next(_session_numbers))
    outbox: queue.Queue = field(default_factory=queue.Queue)
    device_id: int | None = None          # None until its first MasterArbitrationUpdate is accepted
    role: str = DEFAULT_ROLE
    election_id: int | None = None        # None: unset, i.e. lower than any id (a permanent backup)
    #: Whether the stream's RPC is still up (the server passes its context's is_active). A client that closes its
    #: stream is gone at once, but the server removes the session a moment later in another thread; until then
    #: its election id must not be held against the next controller.
    alive: Callable[[], bool] = field(default=lambda: True)

    def send(self, message: p4runtime_pb2.StreamMessageResponse) -> None:
        self.outbox.put(message)

    def end(self, code: grpc.StatusCode = grpc.StatusCode.OK, message: str = "") -> None:
        self.outbox.put(StreamEnd(code, message))

    def __str__(self) -> str:
        election = "unset" if self.election_id is None else str(self.election_id)
        return f"stream #{self.number} ({self.peer or 'peer?'}, role '{self.role}', election id {election})"


@dataclass(slots=True)
class _RoleState:
    sessions: list[StreamSession] = field(default_factory=list)
    primary: StreamSession | None = None
    highest_election_id: int | None = None   # of all time, for this (device, role)
    role_config: any_pb2.Any | None = None


class Arbiter:
    """Arbitration state of the device(s) one server serves. Thread-safe."""

    def __init__(self, device_id: int, max_sessions_per_role: int = 16) -> None:
        self.device_id = device_id
        self.max_sessions_per_role = max_sessions_per_role
        self._roles: dict[str, _RoleState] = {}
        self._lock = threading.Lock()

    # --- stream side -----------------------------------------------------------------------------------
    def arbitrate(self, session: StreamSession, update: p4runtime_pb2.MasterArbitrationUpdate) -> None:
        """Apply a MasterArbitrationUpdate received on `session`.

        Raises P4RuntimeError when the spec says the stream must be terminated with that error.
        """
        role = update.role.name if update.HasField("role") else DEFAULT_ROLE
        election_id = election_id_of(update.election_id) if update.HasField("election_id") else None
        with self._lock:
            first = session.device_id is None
            if first and update.device_id != self.device_id:
                raise P4RuntimeError.not_found(
                    f"unknown device id {update.device_id}: this switch is device {self.device_id}")
            if not first and update.device_id != session.device_id:
                raise P4RuntimeError.failed_precondition(
                    f"stream already arbitrated for device {session.device_id}, not {update.device_id}")
            if not first and role != session.role:
                raise P4RuntimeError.failed_precondition(
                    f"stream already arbitrated for role '{session.role}'; open a new stream for role '{role}'")
            state = self._roles.setdefault(role, _RoleState())
            if election_id is not None and any(
                    s is not session and s.election_id == election_id and s.alive() for s in state.sessions):
                raise P4RuntimeError.invalid_argument(
                    f"election id {election_id} is already used by another controller of role '{role}'")
            if first and len(state.sessions) >= self.max_sessions_per_role:
                raise P4RuntimeError(grpc.StatusCode.RESOURCE_EXHAUSTED,
                                     f"too many controllers for role '{role}' (at most {self.max_sessions_per_role})")
            if first:
                session.device_id, session.role = update.device_id, role
                state.sessions.append(session)
            session.election_id = election_id
            if election_id is not None and (state.highest_election_id is None
                                             or election_id >= state.highest_election_id):
                state.primary = session
                state.highest_election_id = election_id
                if update.role.HasField("config"):
                    state.role_config = update.role.config
                log.info("%s is primary", session)
                self._notify(state, state.sessions)
            elif state.primary is session:
                state.primary = None
                log.info("%s downgraded itself: no primary for role '%s'", session, role)
                self._notify(state, state.sessions)
            else:
                log.info("%s is a backup", session)
                self._notify(state, [session])

    def disconnect(self, session: StreamSession) -> None:
        """Forget a closed stream; if it was the primary, tell the others there is none now."""
        with self._lock:
            state = self._roles.get(session.role)
            if state is None or session not in state.sessions:
                return
            state.sessions.remove(session)
            log.info("%s closed", session)
            if state.primary is session:
                state.primary = None
                self._notify(state, state.sessions)

    def _notify(self, state: _RoleState, sessions: list[StreamSession]) -> None:
        for session in sessions:
            update = p4runtime_pb2.MasterArbitrationUpdate(device_id=self.device_id)
            if session.role != DEFAULT_ROLE:
                update.role.name = session.role
                if state.role_config is not None:
                    update.role.config.CopyFrom(state.role_config)
            if state.highest_election_id is not None:
                update.election_id.CopyFrom(uint128_of(state.highest_election_id))
            if state.primary is session:
                update.status.CopyFrom(status_pb2.Status(code=code_pb2.OK, message="is primary"))
            elif state.primary is not None:
                update.status.CopyFrom(status_pb2.Status(code=code_pb2.ALREADY_EXISTS, message="is backup"))
            else:
                update.status.CopyFrom(status_pb2.Status(code=code_pb2.NOT_FOUND, message="no primary"))
            session.send(p4runtime_pb2.StreamMessageResponse(arbitration=update))

    # --- unary RPC side --------------------------------------------------------------------------------
    def check_writer(self, role: str, election_id: p4runtime_pb2.Uint128 | None) -> None:
        """Allow a Write / SetForwardingPipelineConfig only from the primary of `role`.

        Like simple_switch_grpc (PI), a request without election id is accepted while no controller
        has a stream open for the role, which keeps grpc_cli-style debugging possible.
        """
        with self._lock:
            state = self._roles.get(role)
            if state is None and role != DEFAULT_ROLE:
                raise P4RuntimeError.not_found(f"no controller has arbitrated for role '{role}'")
            live = state.sessions if state is not None else []
            if not live and election_id is None:
                return
            primary = state.primary if state is not None else None
            if primary is None:
                raise P4RuntimeError.permission_denied(f"not primary: role '{role}' has no primary controller")
            requested = None if election_id is None else election_id_of(election_id)
            if requested != primary.election_id:
                raise P4RuntimeError.permission_denied(
                    f"not primary: election id {'unset' if requested is None else requested} is not "
                    f"the primary's ({primary.election_id}) for role '{role}'")

    def primary_of(self, role: str = DEFAULT_ROLE) -> StreamSession | None:
        with self._lock:
            state = self._roles.get(role)
            return state.primary if state is not None else None

    def is_primary(self, session: StreamSession) -> bool:
        with self._lock:
            state = self._roles.get(session.role)
            return state is not None and state.primary is session
