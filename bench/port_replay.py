"""The switch alone at its ports: a recorded all-reduce replayed into its ring ports by workers that take no time.

A switch's standalone rate is measured where its traffic enters and leaves it (RFC 2544's throughput, how DPDK,
VPP and BESS quote a software switch): a generator on each port and a sink on each port, nothing else. Here:

- `record_port_trace` drives one all-reduce (the point's workers, density, slots) through a scratch switch with the
  agent's own protocol engine (bench/protocol_driver.py) and keeps, for every frame a worker sent, the frame the
  switch had just delivered to that worker which made it send it (None: sent when the call started);
- `port_rate` starts the softswitch's own packet loop (softswitch/ports.py's PacketLoop, the loop the softswitch
  process runs: its ring ports, its gather, the pipeline, its scatter into the output rings) on a fresh switch with
  the same tables, one ring port per worker, in this process (on the switch's CPU where the testbed pins one), and
  one replay process per worker (on the agents' CPUs). Each replay process sends its worker's frames as the
  recording did, each as soon as the frame that caused it has come out of its ring (it reads every frame it is
  sent, as an agent does, and waits on the ring's bell when it has nothing to do). The switch's rate is the
  frames into it over the time from the start signal until the last worker has everything it was sent.

So the switch pays everything it pays in an all-reduce (each frame gathered from a ring another core wrote, each
result written into W rings other cores read) and nothing else: the agents' own work (scanning, encoding, summing
in place) costs no time. The replay is exact: every worker must receive, frame for frame, what it received in the
recording, or the run fails with what was missing; a result a replay waits for but never gets (a replay that
diverged from the recording) ends the run at its deadline with a clear error.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pickle
import select
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict, deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np


#: a replay that has not finished this long after its start has diverged: a fixed allowance plus one per frame in
#: that even the Python pipeline (tens of microseconds a frame, more with W egress passes) stays well inside
REPLAY_DEADLINE_S = 30.0
REPLAY_DEADLINE_PER_FRAME_S = 200e-6
#: how long a replay process waits on its ring's bell before it looks at its deadline again
IDLE_WAIT_S = 0.05
#: frames popped from a ring in one call
POP_ROWS = 256


@dataclass(frozen=True, slots=True)
class WorkerScript:
    """What one worker sends and receives in the recording."""

    port: int
    frames: list[bytes]  # every frame it sent, in order
    triggers: list[bytes | None]  # for each, the frame it had just received that made it send it (None: at start)
    received: int  # frames the switch sent it

    def groups(self) -> tuple[list[bytes], dict[bytes, deque[list[bytes]]]]:
        """Its frames sent at the start, and the others grouped by the received frame that triggers them (a frame
        received twice triggers its groups in recording order)."""
        initial: list[bytes] = []
        by_trigger: dict[bytes, deque[list[bytes]]] = defaultdict(deque)
        last: bytes | None = None
        group: list[bytes] | None = None
        for frame, trigger in zip(self.frames, self.triggers):
            if trigger is None:
                initial.append(frame)
                continue
            if trigger is not last or group is None:  # one delivery's frames share the trigger object
                group = []
                by_trigger[trigger].append(group)
                last = trigger
            group.append(frame)
        return initial, dict(by_trigger)


@dataclass(frozen=True, slots=True)
class PortTrace:
    """A recorded all-reduce, per worker, and the switch's tables for it."""

    workers: int
    density: float
    blocks: int
    slots: int
    scripts: list[WorkerScript]
    #: the switch's drop counters after the recording (frames it consumes, e.g. contributions that complete no block)
    drops: dict[str, int]

    @property
    def frames_in(self) -> int:
        return sum(len(script.frames) for script in self.scripts)


def record_port_trace(workers: int, density: float, blocks: int, slots: int, seed: int = 1) -> PortTrace:
    """One all-reduce of `blocks` blocks (each non-zero with probability `density` per worker) with `slots` slots,
    recorded with each worker on its own port (bench_workers: ports 1..W)."""
    from omnireduce.softswitch.device import Device

    from .bench_softswitch import PROJECT_JSON
    from .protocol_driver import bench_workers, drive_allreduce, install_job, sparse_block_tensors

    scratch = Device(name="bench-port-trace")
    scratch.load_pipeline(PROJECT_JSON.read_bytes())
    spread = bench_workers(workers)
    install_job(scratch, 1, spread, slot_count=slots, mcast_group=1)
    run = drive_allreduce(scratch, 1, spread, sparse_block_tensors(workers, blocks, density, seed), slots)
    sent: dict[int, tuple[list[bytes], list[bytes | None]]] = {worker.port: ([], []) for worker in spread}
    for (port, frame), trigger in zip(run.frames_in, run.triggers):
        frames, triggers = sent[port]
        frames.append(frame)
        triggers.append(trigger)
    scripts = [WorkerScript(port, frames, triggers, run.frames_out_by_port[port])
               for port, (frames, triggers) in sent.items()]
    return PortTrace(workers, density, blocks, slots, scripts, drops_of(scratch))


def drops_of(device) -> dict[str, int]:
    return {name: count for name, count in device.stats_snapshot().items() if name.startswith("drop:") and count}


@dataclass(frozen=True, slots=True)
class ReplayOutcome:
    """One worker's replay: what it sent and received, when it finished (CLOCK_MONOTONIC), or why it failed."""

    port: int
    sent: int
    received: int
    finished: float
    failure: str | None = None


def replay_worker(ring_path: str, script: WorkerScript, deadline_s: float, ready: Callable[[], None],
                  wait_for_start: Callable[[], None]) -> ReplayOutcome:
    """One worker's replay: attach to the port's ring file, say it is ready, wait for the start, then send and
    receive as the recording did."""
    from omnireduce.shm import FROM_SWITCH, TO_SWITCH, RingFile

    ring = RingFile.open(ring_path)
    ring.claim()
    to_switch, from_switch = ring.writer(TO_SWITCH), ring.reader(FROM_SWITCH)
    initial, by_trigger = script.groups()
    # Rows as wide as the longest frame that triggers anything (a longer one is cut and triggers nothing: _frames).
    largest = max((len(t) for t in script.triggers if t is not None), default=0)
    rows = np.empty((POP_ROWS, max(64, -(-largest // 64) * 64)), dtype=np.uint8)
    lens = np.empty(POP_ROWS, dtype=np.uint32)
    pending: deque[bytes] = deque(initial)
    sent = received = 0
    failure = None
    clock = time.clock_gettime
    ready()
    wait_for_start()
    deadline = clock(time.CLOCK_MONOTONIC) + deadline_s
    try:
        while True:
            if pending:
                pushed = to_switch.push(list(pending))  # a full ring takes what fits; the rest goes next time round
                sent += pushed
                for _ in range(pushed):
                    pending.popleft()
            if received >= script.received and not pending:
                break
            count = from_switch.pop_rows(rows, lens)
            if count:
                received += count
                for groups in map(by_trigger.get, _frames(rows, lens, count)):
                    if groups:
                        pending.extend(groups.popleft())
                continue
            if pending:
                continue  # the switch has not made room in the ring yet
            if clock(time.CLOCK_MONOTONIC) > deadline:
                failure = (f"port {script.port}: received {received} of {script.received} frames and sent {sent} "
                           f"of {len(script.frames)} by the deadline ({deadline_s:.0f} s): the replay diverged "
                           f"from the recording")
                break
            from_switch.wait(IDLE_WAIT_S)
        finished = clock(time.CLOCK_MONOTONIC)
        extra = from_switch.pop_rows(rows, lens)  # a frame the recording did not have is a divergence too
        if failure is None and (extra or received != script.received or sent != len(script.frames)):
            failure = (f"port {script.port}: received {received + extra} frames (the recording: "
                       f"{script.received}), sent {sent} (the recording: {len(script.frames)})")
        return ReplayOutcome(script.port, sent, received, finished, failure)
    finally:
        ring.close()


def _frames(rows: np.ndarray, lens: np.ndarray, count: int) -> list[bytes]:
    """The first `count` rows as bytes, each its length: in one numpy call where they are all as long (results
    are), so that the replay costs well under the switch's time per frame. A frame longer than the rows (cut by
    pop_rows) becomes b"": the rows are as wide as the longest frame that triggers anything, so it triggers nothing."""
    width = rows.shape[1]
    lengths = lens[:count]
    first = int(lengths[0])
    if first <= width and (lengths == first).all():
        return np.ascontiguousarray(rows[:count, :first]).view(f"V{first}").ravel().tolist()
    return [row[:length].tobytes() if length <= width else b"" for row, length in zip(rows[:count], lengths.tolist())]


def _ring_dir() -> Path:
    base = Path("/dev/shm")
    return Path(tempfile.mkdtemp(prefix="omnireduce-port-replay-",
                                 dir=base if base.is_dir() and os.access(base, os.W_OK) else None))


class ReplayFailed(Exception):
    """The replay could not be run or did not reproduce the recording."""


def port_rate(trace: PortTrace, pipeline: str = "auto", repeats: int = 5,
              agent_cpus: frozenset[int] | None = None) -> dict:
    """The switch's rate at its ports on `trace`: packets in per second (wall) of the median of `repeats` replays,
    each on a fresh switch (the median, as the end-to-end time is the median of its calls: on a shared machine
    the same work takes 0.7-1.5x as long from one minute to the next, and a best-of against a median would read
    that noise as a gap), and of the fastest. The packet loop runs in this process: call it on the switch's CPU
    (bench_efficiency's running_on); the replay processes run on `agent_cpus` (None: anywhere). Returns
    {"pps_wall", "pps_best", "frames", "seconds", ...} or {"failure": why}."""
    times = []
    with tempfile.TemporaryDirectory(prefix="omnireduce-port-trace-") as scratch:
        scripts = []
        for script in trace.scripts:
            path = Path(scratch) / f"port{script.port}.pickle"
            path.write_bytes(pickle.dumps(script, protocol=pickle.HIGHEST_PROTOCOL))
            scripts.append(path)
        for _ in range(repeats):
            try:
                times.append(_replay_once(trace, scripts, pipeline, agent_cpus))
            except ReplayFailed as error:
                return {"failure": str(error)}
    seconds = statistics.median(times)
    return {"pps_wall": trace.frames_in / seconds, "pps_best": trace.frames_in / min(times),
            "frames": trace.frames_in, "seconds": seconds, "repeats": repeats, "workers": trace.workers,
            "blocks": trace.blocks, "slots": trace.slots}


def _replay_once(trace: PortTrace, scripts: list[Path], pipeline: str, agent_cpus: frozenset[int] | None) -> float:
    """One replay on a fresh switch; its seconds from the start signal to the last worker's last frame."""
    from omnireduce.softswitch.device import Device
    from omnireduce.softswitch.ports import PacketLoop, PortSpec, ShmPort

    from .bench_softswitch import PROJECT_JSON
    from .protocol_driver import bench_workers, install_job

    device = Device(name="bench-port-replay", backend=pipeline)
    device.load_pipeline(PROJECT_JSON.read_bytes())
    install_job(device, 1, bench_workers(trace.workers), slot_count=trace.slots, mcast_group=1)
    directory = _ring_dir()
    ports: list = []
    children: list[subprocess.Popen] = []
    loop = None
    deadline_s = REPLAY_DEADLINE_S + REPLAY_DEADLINE_PER_FRAME_S * trace.frames_in
    try:
        for script in trace.scripts:
            ports.append(ShmPort(PortSpec(script.port, "shm", path=directory / f"port{script.port}")))
        loop = PacketLoop(device, ports)
        for script_path, port in zip(scripts, ports):
            child = subprocess.Popen(
                [sys.executable, "-m", __name__, str(port.spec.path), str(script_path), str(deadline_s)],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            children.append(child)
            if agent_cpus:  # as the testbed pins its agents (mininet/processes.py), right after the fork
                os.sched_setaffinity(child.pid, agent_cpus)
        for child in children:
            line = _read_line(child, REPLAY_DEADLINE_S)
            if line != "ready":
                raise ReplayFailed(f"a replay process did not start: {line or _stderr(child)}")
        loop.start()
        began = time.clock_gettime(time.CLOCK_MONOTONIC)
        for child in children:
            child.stdin.write(b"go\n")
            child.stdin.flush()
        outcomes = []
        for child in children:
            line = _read_line(child, deadline_s + REPLAY_DEADLINE_S)
            try:
                outcomes.append(ReplayOutcome(**json.loads(line)))
            except (ValueError, TypeError):
                raise ReplayFailed(f"a replay process failed: {line or _stderr(child)}") from None
    finally:
        if loop is not None:
            loop.stop()
        else:
            for port in ports:
                port.close()
        for child in children:
            if child.poll() is None:
                child.kill()
            child.wait()
            for stream in (child.stdin, child.stdout, child.stderr):
                stream.close()
        shutil.rmtree(directory, ignore_errors=True)
    failures = [outcome.failure for outcome in outcomes if outcome.failure]
    if failures:
        raise ReplayFailed("; ".join(failures))
    drops = drops_of(device)
    if loop.stats["rx"] != trace.frames_in or drops != trace.drops:
        raise ReplayFailed(f"the switch took {loop.stats['rx']} frames of {trace.frames_in} and dropped {drops} "
                           f"(the recording: {trace.drops})")
    return max(outcome.finished for outcome in outcomes) - began


def _read_line(child: subprocess.Popen, timeout: float) -> str:
    """The child's next line on stdout, '' if it ends or says nothing within `timeout` seconds."""
    ready, _, _ = select.select([child.stdout], [], [], timeout)
    if not ready:
        child.kill()
        return ""
    return child.stdout.readline().decode(errors="replace").strip()


def _stderr(child: subprocess.Popen) -> str:
    if child.poll() is None:
        child.kill()
    child.wait()
    text = child.stderr.read().decode(errors="replace").strip().splitlines()
    return text[-1] if text else f"exit status {child.returncode}"


def main(argv: list[str] | None = None) -> int:
    """A replay process (run by port_rate): RING_PATH SCRIPT_PICKLE DEADLINE_S. Prints 'ready', waits for a
    line on stdin, replays, prints its ReplayOutcome as JSON."""
    ring_path, script_path, deadline_s = argv if argv is not None else sys.argv[1:]
    script = pickle.loads(Path(script_path).read_bytes())

    def ready() -> None:
        sys.stdout.write("ready\n")
        sys.stdout.flush()

    outcome = replay_worker(ring_path, script, float(deadline_s), ready, sys.stdin.readline)
    sys.stdout.write(json.dumps(dataclasses.asdict(outcome)) + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
