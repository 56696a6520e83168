"""A start barrier: agent processes that a launcher started one after another begin their first call in step.

The scale round waits for every worker of the job (docs/protocol.md 4.6); an agent that starts before its peers
resends its scale CONTRIB every backed-off timeout until the last one arrives (`rendezvous_resends`), and its call's
time includes the others' start-up. Benchmarks of other all-reduces start timing after a barrier (nccl-tests,
gloo's benchmark, OmniReduce's own); the testbed does the same with this one, over a Unix stream socket, which
reaches into Mininet's hosts too (they share the file system; a pathname socket is not a network address).

Exchange, one line each way per agent: the agent connects to the launcher's socket once it is ready (input loaded,
transport open) and sends `ready <name>\\n`; when every agent it started has said so, the launcher sends each
`go\\n` and closes. An agent that reads end of file, or nothing within its limit, raises StartAbandoned: the
launcher went away or gave up (another agent died before it was ready).
"""

from __future__ import annotations

import math
import os
import select
import socket
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from .errors import AgentTimeout

READY = b"ready"
GO = b"go\n"
#: A ready line is `ready <name>\n`; a longer one is no agent of ours.
MAX_LINE = 256
#: How often the launcher looks at its agents' health while it waits for them.
POLL_S = 0.1


class StartAbandoned(AgentTimeout):
    """The start barrier did not open: the launcher closed it or did not answer within the limit."""


def wait_at_barrier(path: Path, name: str, limit_s: float) -> float:
    """Say `name` is ready at the barrier socket `path` and wait (at most `limit_s`) for the go; returns the
    seconds waited."""
    started = time.monotonic()
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as connection:
        connection.settimeout(limit_s)
        try:
            connection.connect(str(path))
            connection.sendall(READY + b" " + name.encode("ascii", "replace") + b"\n")
            answer = b""
            while not answer.endswith(b"\n") and len(answer) < MAX_LINE:
                chunk = connection.recv(MAX_LINE)
                if not chunk:
                    break
                answer += chunk
        except TimeoutError:
            raise StartAbandoned(f"{name}: no go from the start barrier {path} within {limit_s:g} s (another "
                                 f"agent never became ready)") from None
        except OSError as error:
            raise StartAbandoned(f"{name}: cannot reach the start barrier {path}: {error.strerror or error}") \
                from None
    if answer != GO:
        raise StartAbandoned(f"{name}: the start barrier {path} closed without a go (the launcher gave up: another "
                             f"agent failed before it was ready)")
    return time.monotonic() - started


@dataclass
class StartBarrier:
    """The launcher's side: listens at `path` (created here, removed by close) for `expected` agents."""

    path: Path
    expected: int
    #: a folder made for the socket alone (StartBarrier.private), removed with it
    folder: Path | None = None
    _server: socket.socket = field(init=False, repr=False)
    _waiting: dict[socket.socket, bytes] = field(init=False, default_factory=dict, repr=False)
    _ready: dict[socket.socket, str] = field(init=False, default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if self.expected < 1:
            raise ValueError("a start barrier needs at least one agent")
        self._server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            self._server.bind(str(self.path))
            self._server.listen(self.expected)
        except OSError:
            self._server.close()
            raise
        self._server.setblocking(False)

    @classmethod
    def private(cls, expected: int) -> "StartBarrier":
        """A barrier whose socket lies in a new private folder of the temporary directory: a Unix socket's path is
        limited to 107 bytes, which a run folder given by the user may exceed."""
        folder = Path(tempfile.mkdtemp(prefix="omnireduce-start-"))
        try:
            return cls(folder / "barrier", expected, folder)
        except BaseException:
            os.rmdir(folder)
            raise

    @property
    def ready(self) -> list[str]:
        """The names of the agents that said they are ready so far."""
        return sorted(self._ready.values())

    def release(self, deadline: float = math.inf, check: Callable[[], None] | None = None) -> float:
        """Wait until `expected` agents are ready, then let them all go; returns the seconds waited.

        check: called every POLL_S while waiting; it raises to give up (an agent died), which closes every
        connection, so the waiting agents fail at once instead of at their limit. Past `deadline`: TimeoutError.
        """
        started = time.monotonic()
        try:
            while len(self._ready) < self.expected:
                if check is not None:
                    check()
                now = time.monotonic()
                if now >= deadline:
                    raise TimeoutError(f"{len(self._ready)} of {self.expected} agents ready at the start barrier "
                                       f"(ready: {', '.join(self.ready) or 'none'})")
                readable, _, _ = select.select([self._server, *self._waiting], [], [],
                                               min(POLL_S, deadline - now))
                for ready_socket in readable:
                    if ready_socket is self._server:
                        self._accept()
                    else:
                        self._read(ready_socket)
            for connection in self._ready:
                try:
                    connection.sendall(GO)
                except OSError:
                    pass  # that agent died since; the launcher sees its exit
        finally:
            self.close()
        return time.monotonic() - started

    def _accept(self) -> None:
        try:
            connection, _ = self._server.accept()
        except BlockingIOError:
            return
        connection.setblocking(False)
        self._waiting[connection] = b""

    def _read(self, connection: socket.socket) -> None:
        try:
            chunk = connection.recv(MAX_LINE)
        except BlockingIOError:
            return
        line = self._waiting[connection] + chunk
        if not chunk or len(line) > MAX_LINE or (line.endswith(b"\n") and not line.startswith(READY + b" ")):
            # Gone before it said anything, or not one of our agents: forget it; the count waits for the real ones.
            del self._waiting[connection]
            connection.close()
            return
        if line.endswith(b"\n"):
            del self._waiting[connection]
            self._ready[connection] = line[len(READY) + 1:-1].decode("ascii", "replace")
        else:
            self._waiting[connection] = line

    def close(self) -> None:
        """Close every connection (an agent still waiting reads end of file) and remove the socket file."""
        for connection in [*self._waiting, *self._ready]:
            connection.close()
        self._waiting.clear()
        self._ready.clear()
        self._server.close()
        try:
            self.path.unlink()
        except FileNotFoundError:
            pass
        if self.folder is not None:
            try:
                os.rmdir(self.folder)
            except OSError:
                pass
            self.folder = None
