"""Run an STF script on BMv2's simple_switch, for comparison with the softswitch (bench/stf_conformance.py).

simple_switch runs in its pcap-file mode: `--use-files WAIT -i P@pP` for every port the STF names. Its
reader merges the ports' input files by timestamp, so every packet is stamped with its place in the STF and
the switch takes them in the STF's order. While BMv2 waits, the STF's control-plane commands go through
simple_switch_CLI (translated by `StfControl.cli_command`, the same translation the softswitch gets). BMv2
cannot take commands between packets in this mode, so the two STFs that add entries after sending packets
(ternary2-bmv2, v1model-special-ops-bmv2) are configured completely first. The output files are then polled
until they hold the expected number of frames and stay so for a moment, or stop growing.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from .bmv2_replay import Bmv2Error, _tail, _wait_for_thrift, free_tcp_port
from .control_plane import cli_errors
from .pcap_records import GLOBAL_HEADER, LINKTYPE_ETHERNET, MAGIC_MICROSECONDS, RECORD_HEADER, SNAPLEN, PcapTail
from .stf import StfControl, StfScript, check_outputs, packet_of

WAIT_SECONDS = 2  # BMv2's --use-files wait: the CLI configuration must be done by then
QUIET_SECONDS = 1.5  # no new output frame for this long after the wait: BMv2 is done
SETTLE_SECONDS = 0.4  # after the expected count: how long to look for more frames
DEADLINE_SECONDS = 20.0


def _write_inputs(workdir: Path, script: StfScript) -> None:
    files = {}
    for port in script.ports:
        files[port] = [GLOBAL_HEADER.pack(MAGIC_MICROSECONDS, 2, 4, 0, 0, SNAPLEN, LINKTYPE_ETHERNET)]
    index = 0
    for command in script.commands:
        if command.verb != "packet":
            continue
        port, frame = packet_of(command)
        # The reader takes the earliest timestamp across the ports' files next: stamp in STF order.
        files[port].append(RECORD_HEADER.pack(1 + index // 1_000_000, index % 1_000_000, len(frame), len(frame)))
        files[port].append(frame)
        index += 1
    for port, parts in files.items():
        (workdir / f"p{port}_in.pcap").write_bytes(b"".join(parts))


def run_on_bmv2(json_path: Path, program: dict[str, Any], script: StfScript, simple_switch: str,
                cli: str) -> tuple[dict[int, list[bytes]], list[str]]:
    """The frames out of each STF port of simple_switch, and what differs from the STF's expectations.
    Raises Bmv2Error when BMv2 does not start or refuses the configuration."""
    control = StfControl(program)
    commands = [line for command in script.commands if command.verb not in ("packet", "expect")
                for line in [control.cli_command(command)] if line]
    expected_total = sum(len(v) for p, v in script.expected.items() if p not in script.any_ports)
    workdir = Path(tempfile.mkdtemp(prefix="omni-stf-bmv2-"))
    thrift = free_tcp_port()
    # The device id names BMv2's notification socket (/tmp/bmv2-ID-notifications.ipc): one per instance.
    argv = [simple_switch, "--use-files", str(WAIT_SECONDS), "--thrift-port", str(thrift), "--device-id",
            str(thrift), "-L", "off"]
    for port in sorted(script.ports):
        argv += ["-i", f"{port}@p{port}"]
    argv.append(str(Path(json_path).resolve()))
    log_path = workdir / "simple_switch.log"
    process = None
    tails = {}
    try:
        _write_inputs(workdir, script)
        with log_path.open("wb") as log_file:
            process = subprocess.Popen(argv, cwd=workdir, stdout=log_file, stderr=subprocess.STDOUT)
        started = time.monotonic()
        _wait_for_thrift(process, thrift, log_path)
        if commands:
            done = subprocess.run([cli, "--thrift-port", str(thrift)], input="\n".join(commands) + "\n",
                                  capture_output=True, text=True, timeout=30)
            errors = cli_errors(done.stdout + done.stderr)
            if done.returncode or errors:
                raise Bmv2Error(f"simple_switch_CLI: {'; '.join(errors) or (done.stdout + done.stderr)[-300:]}")
        if time.monotonic() - started > WAIT_SECONDS:
            raise Bmv2Error("configuring BMv2 took longer than its --use-files wait")
        tails = {port: PcapTail(workdir / f"p{port}_out.pcap") for port in script.ports}
        deadline = started + WAIT_SECONDS + DEADLINE_SECONDS
        last_change, count, reached = started + WAIT_SECONDS, 0, None
        while time.monotonic() < deadline:
            total = sum(tail.poll() for tail in tails.values())
            now = time.monotonic()
            if total != count:
                count, last_change = total, now
            if total >= expected_total and reached is None:
                reached = now
            if reached is not None and now - max(reached, last_change) > SETTLE_SECONDS:
                break
            if now - last_change > QUIET_SECONDS:
                break
            if process.poll() is not None:
                raise Bmv2Error(f"simple_switch exited with {process.returncode}: {_tail(log_path)}")
            time.sleep(0.05)
        outputs = {port: [record.frame for record in tail.records] for port, tail in tails.items()}
        return outputs, check_outputs(script, outputs)
    finally:
        for tail in tails.values():
            tail.close()
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        shutil.rmtree(workdir, ignore_errors=True)
        Path(f"/tmp/bmv2-{thrift}-notifications.ipc").unlink(missing_ok=True)


def bmv2_tools() -> tuple[str | None, str | None]:
    return shutil.which("simple_switch"), shutil.which("simple_switch_CLI")
