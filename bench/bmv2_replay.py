"""Replay a trace through BMv2's simple_switch in pcap-file mode and time it.

`simple_switch --use-files WAIT -i P@NAME` reads NAME_in.pcap after WAIT seconds, as fast as it can (no
real-time pacing), and appends every frame it sends out of port P to NAME_out.pcap, flushed and stamped with
gettimeofday(). No interface, kernel or root is involved, so the pipeline itself is what is measured.

While BMv2 waits, the recorded control-plane ops are installed through simple_switch_CLI on the switch's own
Thrift port (a free loopback port; BMv2 binds it on all interfaces, for the few seconds of the run). The run is
refused if the configuration was not finished within the wait, since BMv2 would then have started reading
before its tables were complete. The output file is then polled (cheaply: only new bytes are parsed) until it
holds the expected number of frames, or until a deadline.

Timing: BMv2 stamps each output record as it writes it, so the run is timed on BMv2's own clock between the
first and the last frame out (see `rate_between`); the process's CPU time (all its threads) is read from
/proc before reading starts and once the last frame is out.
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from .control_plane import ControlOp, association_commands, cli_commands, cli_errors, node_handles
from .pcap_records import PcapTail, Record, write_pcap

log = logging.getLogger("bench.bmv2")

PORT_NAME = "p"  # interface name: the files are p_in.pcap and p_out.pcap in the run's directory
THRIFT_READY_SECONDS = 10.0
CLI_TIMEOUT_SECONDS = 60.0


@dataclass(frozen=True, slots=True)
class Bmv2Settings:
    simple_switch: str
    cli: str
    wait_seconds: int = 5  # --use-files: time BMv2 waits before reading; the CLI configuration must fit in it
    log_level: str | None = None  # -L LEVEL; None leaves BMv2's default. No console or file log either way.
    queue_depth: int | None = None  # egress queue depth in packets (set_queue_depth); None leaves BMv2's 64
    deadline_seconds: float = 300.0  # for the output to reach the expected count, from the end of the wait
    stall_seconds: float = 10.0  # no new output frame for this long after the first: BMv2 is done (short)
    poll_seconds: float = 0.02
    settle_seconds: float = 0.3  # after the expected count: how long to keep looking for extra frames

    @property
    def label(self) -> str:
        return f"-L {self.log_level}" if self.log_level else "default log level"


@dataclass(slots=True)
class Bmv2Run:
    settings: Bmv2Settings
    command: list[str]
    expected_outputs: int
    outputs: list[Record] = field(default_factory=list)
    complete: bool = False
    configured_at: float = 0.0  # time.time() when the CLI configuration was finished
    cpu_seconds: float | None = None  # user + system time of all BMv2 threads while it processed the trace
    poll_seconds_to_complete: float | None = None  # from the first frame seen to the expected count, by polling
    extra_outputs: int = 0  # frames beyond the expected count seen during the settle time

    @property
    def span_seconds(self) -> float | None:
        """BMv2's own clock from its first output frame to its last."""
        if len(self.outputs) < 2:
            return None
        return self.outputs[-1].timestamp - self.outputs[0].timestamp


class Bmv2Error(RuntimeError):
    """BMv2 could not be run or configured; the message says why and quotes its output."""


def tools_missing(simple_switch: str | None, cli: str | None) -> str | None:
    """Why the BMv2 side cannot run, or None."""
    missing = [name for name, path in (("simple_switch", simple_switch), ("simple_switch_CLI", cli)) if not path]
    return f"{' and '.join(missing)} not on PATH" if missing else None


def rate_between(first_output_input: int, last_output_input: int, span_seconds: float) -> float:
    """Inputs per second, given that the first output frame came from input `first_output_input` and the last
    from input `last_output_input` (0-based indexes into the trace), `span_seconds` apart: in that time the
    switch took in exactly the inputs after the first one up to and including the last one."""
    if last_output_input <= first_output_input or span_seconds <= 0:
        raise ValueError("need two outputs from different inputs, apart in time, to time a run")
    return (last_output_input - first_output_input) / span_seconds


def free_tcp_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def process_cpu_seconds(pid: int) -> float:
    """utime + stime of a process, all threads (Linux /proc)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _wait_for_thrift(process: subprocess.Popen, port: int, log_path: Path) -> None:
    deadline = time.monotonic() + THRIFT_READY_SECONDS
    while True:
        if process.poll() is not None:
            raise Bmv2Error(f"simple_switch exited with {process.returncode}: {_tail(log_path)}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise Bmv2Error(f"simple_switch's Thrift port {port} did not open in {THRIFT_READY_SECONDS} s") from None
        try:
            process.wait(timeout=0.05)  # returns early only if the switch died
        except subprocess.TimeoutExpired:
            pass


def _tail(path: Path, chars: int = 600) -> str:
    try:
        return path.read_text(errors="replace")[-chars:].strip() or "(no output)"
    except OSError:
        return "(no output)"


def _run_cli(cli: str, port: int, commands: list[str]) -> str:
    completed = subprocess.run(
        [cli, "--thrift-port", str(port)], input="\n".join(commands) + "\n", capture_output=True, text=True,
        timeout=CLI_TIMEOUT_SECONDS,
    )
    output = completed.stdout + completed.stderr
    errors = cli_errors(output)
    if completed.returncode != 0 or errors:
        raise Bmv2Error(f"simple_switch_CLI failed (exit {completed.returncode}): {'; '.join(errors) or output[-600:]}")
    return output


def configure(settings: Bmv2Settings, port: int, ops: list[ControlOp]) -> None:
    """Install the ops through simple_switch_CLI: one session for tables, registers and multicast nodes, a second
    one to attach the nodes to their groups with the handles the first one printed."""
    commands, groups = cli_commands(ops)
    if settings.queue_depth is not None:
        commands.append(f"set_queue_depth {settings.queue_depth}")
    output = _run_cli(settings.cli, port, commands)
    if groups:
        _run_cli(settings.cli, port, association_commands(groups, node_handles(output)))


def replay(json_path: Path, port: int, frames: list[bytes], ops: list[ControlOp], expected_outputs: int,
           settings: Bmv2Settings) -> Bmv2Run:
    """Run `frames` into `port` of simple_switch and collect the frames it sends out of that port."""
    workdir = Path(tempfile.mkdtemp(prefix="omni-bench-bmv2-"))
    thrift_port = free_tcp_port()
    command = [settings.simple_switch, "--use-files", str(settings.wait_seconds), "-i", f"{port}@{PORT_NAME}",
               "--thrift-port", str(thrift_port)]
    if settings.log_level:
        command += ["--log-level", settings.log_level]
    command.append(str(Path(json_path).resolve()))
    run = Bmv2Run(settings, command, expected_outputs)
    log_path = workdir / "simple_switch.log"
    process = None
    try:
        write_pcap(workdir / f"{PORT_NAME}_in.pcap", frames)
        started = time.monotonic()
        with log_path.open("wb") as log_file:
            process = subprocess.Popen(command, cwd=workdir, stdout=log_file, stderr=subprocess.STDOUT)
        log.info("simple_switch pid %d (%s), waiting %d s before reading", process.pid, settings.label,
                 settings.wait_seconds)
        _wait_for_thrift(process, thrift_port, log_path)
        configure(settings, thrift_port, ops)
        run.configured_at = time.time()
        if time.monotonic() - started >= settings.wait_seconds:
            raise Bmv2Error(f"configuring BMv2 took {time.monotonic() - started:.1f} s, longer than its wait of "
                            f"{settings.wait_seconds} s: it may have read frames before it was configured "
                            "(raise --bmv2-wait)")
        _collect(process, workdir / f"{PORT_NAME}_out.pcap", run, log_path)
        if run.outputs and run.outputs[0].timestamp < run.configured_at:
            raise Bmv2Error("BMv2 sent a frame before its configuration was finished (raise --bmv2-wait)")
        return run
    finally:
        if process is not None:
            _stop(process)
        shutil.rmtree(workdir, ignore_errors=True)


def _collect(process: subprocess.Popen, out_path: Path, run: Bmv2Run, log_path: Path) -> None:
    settings = run.settings
    tail = PcapTail(out_path)
    # BMv2 starts reading after its wait, counted from its own start-up (a little after `configured_at`).
    deadline = time.monotonic() + settings.wait_seconds + settings.deadline_seconds
    first_seen = last_growth = None
    count = 0
    cpu_before = process_cpu_seconds(process.pid)  # BMv2 is idle until its wait is over
    try:
        while True:
            previous, count = count, tail.poll()
            now = time.monotonic()
            if count and first_seen is None:
                first_seen = now
            if count != previous:
                last_growth = now
            if count >= run.expected_outputs:
                run.complete = True
                run.cpu_seconds = process_cpu_seconds(process.pid) - cpu_before
                run.poll_seconds_to_complete = None if first_seen is None else now - first_seen
                break
            if now > deadline:
                log.warning("BMv2 (%s) sent %d of %d frames before the deadline", settings.label, count,
                            run.expected_outputs)
                break
            if last_growth is not None and now - last_growth > settings.stall_seconds:
                log.warning("BMv2 (%s) sent %d of %d frames, then nothing for %.0f s", settings.label, count,
                            run.expected_outputs, settings.stall_seconds)
                break
            if process.poll() is not None:
                raise Bmv2Error(f"simple_switch exited with {process.returncode}: {_tail(log_path)}")
            try:
                process.wait(timeout=settings.poll_seconds)  # the poll interval; returns early if BMv2 dies
            except subprocess.TimeoutExpired:
                pass
        if run.complete:
            # Anything beyond the expected count would be a difference from the softswitch; look for it briefly.
            settle_until = time.monotonic() + settings.settle_seconds
            while time.monotonic() < settle_until and process.poll() is None:
                try:
                    process.wait(timeout=settings.poll_seconds)
                except subprocess.TimeoutExpired:
                    pass
            tail.poll()
        run.outputs = tail.records[: run.expected_outputs]
        run.extra_outputs = len(tail.records) - len(run.outputs)
    finally:
        tail.close()


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
