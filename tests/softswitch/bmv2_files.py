"""BMv2 beside the softswitch in the construct tests: simple_switch (configured over Thrift with simple_switch_CLI)
and simple_switch_grpc (configured over P4Runtime), both in pcap-file mode, so no root or interfaces are needed.

`--use-files WAIT -i 1@p1` makes the switch read p1_in.pcap WAIT seconds after it starts and append what port 1
sends to p1_out.pcap; the configuration goes in during the wait (a run is refused when it took longer, since BMv2
would have read frames before it was configured), and with it deeper egress queues than BMv2's 64 packets, which
a pcap file read at full speed overflows (BMv2 then drops frames). The output file is then polled, with a deadline, until it holds
the expected frames or stops growing, or the switch exits (an assert aborts it). The switch's log (`--log-console`
at the level asked) comes back with the frames.

Used by tests/softswitch/test_*.py; they skip where the binaries are missing (`skip_without`).
"""

from __future__ import annotations

import re
import shutil
import socket
import struct
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from omnireduce.softswitch.pcap import PcapWriter, read_pcap
from tests.polling import stop_process, wait_until

SIMPLE_SWITCH = shutil.which("simple_switch")
SIMPLE_SWITCH_CLI = shutil.which("simple_switch_CLI")
SIMPLE_SWITCH_GRPC = shutil.which("simple_switch_grpc")
READY_TIMEOUT_S = 20.0
DEADLINE_S = 60.0
QUIET_S = 1.5
QUEUE_DEPTH = 100_000  # no new output frame for this long (after the first, or after the wait): the switch is done


def skip_without(*tools: str | None, names: str = "BMv2") -> pytest.MarkDecorator:
    return pytest.mark.skipif(not all(tools), reason=f"{names} not on PATH: this case ran on the softswitch only")


def free_tcp_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _whole_records(data: bytes) -> bool:
    """simple_switch may be half-way through writing a record when we read its output file."""
    offset = 24
    while offset + 16 <= len(data):
        offset += 16 + struct.unpack_from("<I", data, offset + 8)[0]
    return offset == len(data)


@dataclass(slots=True)
class Bmv2Result:
    outputs: list[bytes]             # frames out of port 1, in the order BMv2 wrote them
    log: str                         # what the switch printed (its console log)
    returncode: int | None           # None: still running when collected (then stopped by us)
    extra: dict = field(default_factory=dict)

    def log_lines(self, prefix: str) -> list[str]:
        """The messages of the console log (`[time] [bmv2] [I] [thread N] message`) that start with `prefix`."""
        lines = []
        for line in self.log.splitlines():
            _, sep, message = line.partition("] ")
            while sep and message.startswith("["):
                _, sep, message = message.partition("] ")
            if message.startswith(prefix):
                lines.append(message)
        return lines


class Bmv2Process:
    """One simple_switch(_grpc) in pcap-file mode in a temporary directory; stopped and removed by `close`."""

    def __init__(self, argv_head: list[str], frames: Sequence[bytes], wait_s: int, log_level: str | None,
                 json_path: Path | None, grpc_port: int | None = None, spacing_s: float = 0.0) -> None:
        self.workdir = Path(tempfile.mkdtemp(prefix="omni-bmv2-test-"))
        self.wait_s = wait_s
        self.started = time.monotonic()
        writer = PcapWriter(self.workdir / "p1_in.pcap")
        # BMv2 reads the file at the pace of its timestamps: `spacing_s` apart, or as fast as it can.
        first = time.time()
        for i, frame in enumerate(frames):
            writer.write(frame, timestamp=first + i * spacing_s)
        writer.close()
        self.thrift_port = free_tcp_port()
        # Its own notifications socket: BMv2's default (ipc:///tmp/bmv2-0-notifications.ipc) is taken by any other
        # BMv2 on the machine.
        argv = [*argv_head, "--use-files", str(wait_s), "-i", "1@p1", "--thrift-port", str(self.thrift_port),
                "--notifications-addr", f"ipc://{self.workdir}/notifications.ipc"]
        if log_level:
            argv += ["--log-console", "-L", log_level]
        argv.append(str(json_path) if json_path is not None else "--no-p4")
        if grpc_port is not None:
            argv += ["--", "--grpc-server-addr", f"127.0.0.1:{grpc_port}"]
        self.log_path = self.workdir / "switch.log"
        with self.log_path.open("wb") as log_file:
            self.process = subprocess.Popen(argv, cwd=self.workdir, stdout=log_file, stderr=subprocess.STDOUT)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def _died(self) -> str | None:
        if self.process.poll() is None:
            return None
        return f"it exited with {self.process.returncode}: {self.log()[-800:]}"

    def wait_for_port(self, port: int, what: str) -> None:
        def answers() -> bool:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                return True
            except OSError:
                return False

        wait_until(answers, READY_TIMEOUT_S, what, abort=self._died)

    def check_in_time(self) -> None:
        took = time.monotonic() - self.started
        if took >= self.wait_s:
            raise AssertionError(f"configuring BMv2 took {took:.1f} s, longer than its --use-files wait of "
                                 f"{self.wait_s} s: it may have read frames before it was configured")

    def cli(self, commands: Sequence[str]) -> str:
        """Run simple_switch_CLI commands on the switch; an error line fails the test."""
        done = subprocess.run([SIMPLE_SWITCH_CLI, "--thrift-port", str(self.thrift_port)],
                              input="\n".join(commands) + "\n", capture_output=True, text=True, timeout=60)
        output = done.stdout + done.stderr
        errors = [line for line in output.splitlines() if "Error" in line or "Invalid" in line]
        if done.returncode != 0 or errors:
            raise AssertionError(f"simple_switch_CLI failed: {errors or output[-800:]}")
        return output

    def configure(self, commands: Sequence[str] = ()) -> None:
        """Run simple_switch_CLI `commands` in one session, after deepening BMv2's egress queues: they hold 64
        packets by default and drop beyond, which a pcap file read at full speed overflows."""
        self.wait_for_port(self.thrift_port, "the switch's Thrift port")
        self.cli([f"set_queue_depth {QUEUE_DEPTH}", *commands])

    def pvs_add(self, name: str, values: Sequence[int], nbytes: int) -> None:
        """Add values to a parser value set through BMv2's Thrift API. simple_switch_CLI's `pvs_add` cannot be used:
        under Python 3 it sizes the value with a float division and sends a byte too many unless the width is
        8n+1 bits, which makes simple_switch abort (parser.cpp: Assertion `new_v.size() == width')."""
        script = CLI_THRIFT_SCRIPT.format(site=_cli_site_packages(), port=self.thrift_port)
        calls = "".join(f"client.bm_parse_vset_add(0, {name!r}, {v.to_bytes(nbytes, 'big')!r})\n" for v in values)
        done = subprocess.run(["python3", "-c", script + calls], capture_output=True, text=True, timeout=60)
        if done.returncode != 0:
            raise AssertionError(f"adding to value set {name} over Thrift failed: {done.stderr[-800:]}")

    def collect(self, expected: int | None, quiet_s: float = QUIET_S,
                until: Callable[[Bmv2Result], bool] | None = None) -> Bmv2Result:
        """Wait until port 1 sent `expected` frames (None: until quiet), `until(result)` holds, the output stops
        growing for `quiet_s` after the wait, or the switch exits; then what it sent and logged."""
        out_file = self.workdir / "p1_out.pcap"
        outputs: list[bytes] = []
        reading_from = self.started + self.wait_s
        last_change = max(time.monotonic(), reading_from)
        deadline = time.monotonic() + self.wait_s + DEADLINE_S
        while time.monotonic() < deadline:
            exited = self.process.poll() is not None
            data = out_file.read_bytes() if out_file.exists() else b""
            if len(data) >= 24 and _whole_records(data):
                current = read_pcap(out_file)
                if len(current) != len(outputs):
                    outputs, last_change = current, time.monotonic()
            result = Bmv2Result(outputs, self.log(), self.process.returncode)
            if exited or (expected is not None and len(outputs) >= expected) or (until and until(result)):
                if not exited:
                    time.sleep(0.2)  # a frame more than expected would show up now
                    result = Bmv2Result(read_pcap(out_file) if out_file.exists() else outputs, self.log(), None)
                return result
            now = time.monotonic()
            if now > reading_from and now - last_change > quiet_s:
                return result
            time.sleep(0.02)
        return Bmv2Result(outputs, self.log(), self.process.poll())

    def close(self) -> None:
        stop_process(self.process, grace_s=2.0)
        shutil.rmtree(self.workdir, ignore_errors=True)


# The Thrift client simple_switch_CLI builds (bm_runtime, thrift), for what the CLI itself gets wrong.
CLI_THRIFT_SCRIPT = """
import sys
sys.path.append({site!r})
from bm_runtime.standard import Standard
from thrift.protocol import TBinaryProtocol, TMultiplexedProtocol
from thrift.transport import TSocket, TTransport
transport = TTransport.TBufferedTransport(TSocket.TSocket("127.0.0.1", {port}))
protocol = TMultiplexedProtocol.TMultiplexedProtocol(TBinaryProtocol.TBinaryProtocol(transport), "standard")
client = Standard.Client(protocol)
transport.open()
"""


def _cli_site_packages() -> str:
    """Where simple_switch_CLI finds its modules (the script appends the directory to sys.path)."""
    found = re.search(r"sys\.path\.append\(['\"]([^'\"]+)['\"]\)", Path(SIMPLE_SWITCH_CLI).read_text())
    return found.group(1) if found else ""


def run_simple_switch(json_path: Path, frames: Sequence[bytes], commands: Sequence[str] = (),
                      expected: int | None = None, log_level: str | None = None, wait_s: int = 3,
                      until: Callable[[Bmv2Result], bool] | None = None,
                      configure: Callable[[Bmv2Process], None] | None = None) -> Bmv2Result:
    """Frames into port 1 of simple_switch running `json_path`, configured with simple_switch_CLI `commands` and
    then `configure(switch)`."""
    switch = Bmv2Process([SIMPLE_SWITCH], frames, wait_s, log_level, json_path)
    try:
        switch.configure(commands)
        if configure:
            configure(switch)
        switch.check_in_time()
        return switch.collect(expected, until=until)
    finally:
        switch.close()


@contextmanager
def simple_switch_grpc(frames: Sequence[bytes], wait_s: int = 3,
                       spacing_s: float = 0.0) -> Iterator[tuple[Bmv2Process, str]]:
    """simple_switch_grpc without a program, reading `frames` (`spacing_s` apart) after `wait_s` seconds: yields the
    process and its P4Runtime address; the caller pushes the pipeline and configures it (within the wait,
    `check_in_time`), then `collect`s."""
    grpc_port = free_tcp_port()
    switch = Bmv2Process([SIMPLE_SWITCH_GRPC], frames, wait_s, None, None, grpc_port=grpc_port, spacing_s=spacing_s)
    try:
        switch.wait_for_port(grpc_port, "simple_switch_grpc's gRPC port")
        switch.configure()
        yield switch, f"127.0.0.1:{grpc_port}"
    finally:
        switch.close()
