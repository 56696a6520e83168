"""Fixtures of the controller tests: the omnireduce pipeline files, and a running softswitch with it pushed.

- `pipeline_files`: the compiled program (p4src/build/) when it is there, else a synthetic pipeline with the same
  names (tests/controller/synthetic.py).
- `softswitch_server`: the softswitch's P4Runtime server on 127.0.0.1, port 0, no pipeline; ready when yielded.
- `softswitch`: the same with the omnireduce pipeline pushed by the controller; `.connect()` opens a bound session
  and `.ctl(...)` runs omnireduce-ctl against it. Everything is torn down after each test, also on failure.
"""

from __future__ import annotations

import contextlib
import io
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import pytest

from omnireduce.controller import cli
from omnireduce.controller.client import ElectionId, P4RuntimeClient
from omnireduce.controller.errors import NotPrimaryError
from omnireduce.controller.pipeline import PipelineFiles, push
from omnireduce.controller.switch import Switch
from omnireduce.p4src import artifacts
from omnireduce.softswitch.p4runtime.server import P4RuntimeServer

from tests.controller.synthetic import write_synthetic_pipeline

READY_TIMEOUT_S = 10.0


@pytest.fixture(scope="session")
def pipeline_files(tmp_path_factory: pytest.TempPathFactory) -> PipelineFiles:
    if artifacts.P4INFO.is_file() and artifacts.BMV2_JSON.is_file():
        return PipelineFiles(artifacts.P4INFO, artifacts.BMV2_JSON)
    p4info_path, json_path = write_synthetic_pipeline(tmp_path_factory.mktemp("synthetic_pipeline"))
    return PipelineFiles(p4info_path, json_path)


def make_device():
    from omnireduce.softswitch.device import Device

    return Device()


@dataclass
class CtlResult:
    code: int
    out: str
    err: str


@dataclass
class RunningSoftswitch:
    server: P4RuntimeServer
    device: object
    files: PipelineFiles
    sessions: list[Switch] = field(default_factory=list)

    @property
    def address(self) -> str:
        return self.server.bound_address

    def connect(self, bind: bool = True, election_id: ElectionId = ElectionId(0, 1), require_primary: bool = True,
                timeout: float = READY_TIMEOUT_S) -> Switch:
        """A controller session (closed at teardown), bound to our P4Info unless `bind` is False."""
        switch = connect_when_released(self.address, election_id, timeout, require_primary=require_primary)
        self.sessions.append(switch)
        if bind:
            switch.bind_pipeline_file(self.files.p4info)
        return switch

    def ctl(self, *argv: str) -> CtlResult:
        """Run omnireduce-ctl against this switch (with our P4Info), capturing its output."""
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = cli.main(["--grpc-addr", self.address, "--p4info", str(self.files.p4info), "--timeout", "5",
                             *argv])
        return CtlResult(code, out.getvalue(), err.getvalue())

    def close(self) -> None:
        for session in self.sessions:
            session.close()
        self.server.stop(grace=None)


def connect_when_released(address: str, election_id: ElectionId, timeout: float, *,
                          require_primary: bool = True) -> Switch:
    """Switch.connect, retried until `timeout` while the server still holds a just-closed session's election id.

    A session's close ends its stream on the client at once, but the server learns of it a moment later, in its own
    thread: a fixture that closes one session and opens the next with the same id can be refused as a duplicate.
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            return Switch.connect(address, 0, election_id, timeout, require_primary=require_primary)
        except NotPrimaryError as error:
            if "already used" not in str(error) or time.monotonic() >= deadline:
                raise


@pytest.fixture
def softswitch_server(pipeline_files: PipelineFiles) -> Iterator[RunningSoftswitch]:
    server = P4RuntimeServer(make_device(), "127.0.0.1:0", device_id=0)
    server.start()
    running = RunningSoftswitch(server, server.device, pipeline_files)
    try:
        # Readiness, with a deadline: the controller's client waits for the channel and a Capabilities answer.
        with P4RuntimeClient(running.address, timeout=READY_TIMEOUT_S) as client:
            client.connect()
        yield running
    finally:
        running.close()


@pytest.fixture
def softswitch(softswitch_server: RunningSoftswitch) -> RunningSoftswitch:
    """A running softswitch with the omnireduce pipeline pushed by the controller."""
    with connect_when_released(softswitch_server.address, ElectionId(0, 1), READY_TIMEOUT_S) as switch:
        push(switch, softswitch_server.files)
    return softswitch_server


@pytest.fixture
def switch(softswitch: RunningSoftswitch) -> Switch:
    """A primary controller session with the pipeline bound."""
    return softswitch.connect()


def free_tcp_port() -> int:
    """A port nothing listens on (bound and released), for "unreachable switch" tests."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def committed_p4info() -> Path | None:
    return artifacts.P4INFO if artifacts.P4INFO.is_file() else None
