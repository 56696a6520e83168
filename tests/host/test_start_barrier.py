# Run: .venv/bin/pytest tests/host/test_start_barrier.py
"""The start barrier: agents that became ready one after another all get the go together, and an agent never
waits past its limit when the launcher gives up or goes away."""

from __future__ import annotations

import socket
import threading
import time

import pytest

from omnireduce.host.start_barrier import StartAbandoned, StartBarrier, wait_at_barrier

from ..polling import wait_until


class Agent(threading.Thread):
    """One agent waiting at the barrier in a thread; records when it got the go, or its error."""

    def __init__(self, barrier: StartBarrier, name: str, limit_s: float = 10.0) -> None:
        super().__init__(daemon=True)
        self._path, self.agent_name, self._limit = barrier.path, name, limit_s
        self.released_at: float | None = None
        self.error: Exception | None = None

    def run(self) -> None:
        try:
            wait_at_barrier(self._path, self.agent_name, self._limit)
            self.released_at = time.monotonic()
        except Exception as error:  # noqa: BLE001 -- recorded for the test to look at
            self.error = error


def test_no_agent_goes_before_the_last_is_ready():
    barrier = StartBarrier.private(3)
    folder = barrier.folder
    early = [Agent(barrier, "w0"), Agent(barrier, "w1")]
    for agent in early:
        agent.start()
    released = []
    opener = threading.Thread(target=lambda: released.append(barrier.release(time.monotonic() + 10)))
    opener.start()
    wait_until(lambda: barrier.ready == ["w0", "w1"], 5, "the first two agents to say they are ready")
    assert all(agent.released_at is None for agent in early)  # still held: one agent is missing
    late = Agent(barrier, "w2")
    late.start()
    opener.join(5)
    for agent in [*early, late]:
        agent.join(5)
        assert agent.error is None and agent.released_at is not None
    assert released and released[0] > 0
    # Closed and cleaned up: the socket and its private folder are gone.
    assert not barrier.path.exists() and not folder.exists()


def test_a_stranger_on_the_socket_is_not_counted_as_an_agent(tmp_path):
    barrier = StartBarrier(tmp_path / "barrier", 1)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as stranger:
        stranger.connect(str(barrier.path))
        stranger.sendall(b"GET / HTTP/1.1\r\n\r\n")
        agent = Agent(barrier, "w0")
        agent.start()
        barrier.release(time.monotonic() + 5)
        agent.join(5)
        assert agent.error is None and agent.released_at is not None
        assert stranger.recv(16) == b""  # closed without a go


def test_an_agent_that_died_before_it_was_ready_ends_the_others_wait_at_once(tmp_path):
    barrier = StartBarrier(tmp_path / "barrier", 2)
    waiting = Agent(barrier, "w0", limit_s=30)
    waiting.start()
    dead = RuntimeError("worker 1 exited with code 3")
    checks = []

    def check() -> None:
        checks.append(time.monotonic())
        if barrier.ready:  # w0 is waiting; now w1 "dies"
            raise dead

    began = time.monotonic()
    with pytest.raises(RuntimeError, match="exited with code 3"):
        barrier.release(time.monotonic() + 30, check)
    waiting.join(5)
    assert isinstance(waiting.error, StartAbandoned) and "closed without a go" in str(waiting.error)
    assert waiting.released_at is None and time.monotonic() - began < 5
    assert not barrier.path.exists()


def test_the_launcher_gives_up_at_its_deadline_naming_who_was_ready(tmp_path):
    barrier = StartBarrier(tmp_path / "barrier", 2)
    agent = Agent(barrier, "w0")
    agent.start()
    with pytest.raises(TimeoutError, match=r"1 of 2 agents ready at the start barrier \(ready: w0\)"):
        barrier.release(time.monotonic() + 0.5)
    agent.join(5)
    assert isinstance(agent.error, StartAbandoned)


def test_an_agent_waits_no_longer_than_its_limit(tmp_path):
    barrier = StartBarrier(tmp_path / "barrier", 2)  # nobody releases it
    began = time.monotonic()
    with pytest.raises(StartAbandoned, match=r"no go from the start barrier .* within 0.3 s"):
        wait_at_barrier(barrier.path, "w0", 0.3)
    assert time.monotonic() - began < 3
    barrier.close()


def test_no_barrier_at_the_path_is_a_clear_error(tmp_path):
    with pytest.raises(StartAbandoned, match="cannot reach the start barrier"):
        wait_at_barrier(tmp_path / "nothing-here", "w0", 1.0)


def test_a_barrier_needs_an_agent(tmp_path):
    with pytest.raises(ValueError):
        StartBarrier(tmp_path / "barrier", 0)
