"""Loopback mode: the softswitch as a subprocess with one port per worker, the controller in-process, and one agent
process per worker exchanging whole Ethernet frames with its switch port. No root needed.

The ports are shared-memory ring files in a private folder under /dev/shm (PortKind.SHM, the default where the
rings build) or UDP sockets on 127.0.0.1 (PortKind.UDP, and the fallback without a C compiler, logged).
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import signal
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator, Sequence

from omnireduce.host.start_barrier import StartBarrier
from omnireduce.shm import unavailable_reason as shm_unavailable

from .agents import (AgentFiles, FramePorts, FrameRing, agent_argv, agent_failure_reason, agent_time_limit,
                     START_BARRIER_LIMIT_S, start_barrier)
from .cpus import plan_cpus
from .inputs import block_count
from .layout import RunLayout, RunOutcome, worker_title
from .model import FaultKind, PortKind, TestbedConfig
from .plan import NetworkPlan, WorkerPlace
from .ports import LOOPBACK, NotReady, free_ports, free_tcp_port, wait_for_grpc
from .processes import (ManagedProcess, ProcessSpec, Supervisor, cpu_seconds, describe_exit, last_line,
                        wait_for_any_exit)
from .progress import PROGRESS_TICK_S, ProgressCallback, ProgressTail, report_step
from .provision import read_counters, set_up_switch
from .switches import grpc_server_addr, softswitch_loopback_argv, softswitch_ring_argv

log = logging.getLogger(__name__)

# Longest the switch may take to open its gRPC port (a Python process importing grpc and numpy on a busy machine).
SWITCH_START_S = 30.0


class RunFailed(Exception):
    """A step of the run failed; the message is the report's failure line."""


def switch_failure(switch: ManagedProcess) -> str:
    code = switch.returncode
    what = f"switch process died ({describe_exit(code)})" if code is not None and code < 0 else (
        f"switch process exited with code {code}")
    # Only stderr: the softswitch's stdout holds its "listening"/"ready" lines, which explain nothing.
    line = last_line(switch.stderr_path)
    return f"{what}: {line}" if line else what


def agent_failure(worker: WorkerPlace, process: ManagedProcess) -> str:
    code = process.returncode
    what = f"exited with code {code}" if code is not None and code >= 0 else f"died ({describe_exit(code or 0)})"
    reason = agent_failure_reason(process.stdout_path, process.stderr_path)
    return f"{worker_title(worker)} {what}: {reason}" if reason else f"{worker_title(worker)} {what}"


def is_hung_worker(config: TestbedConfig, worker: WorkerPlace) -> bool:
    fault = config.fault
    return (fault is not None and fault.kind is FaultKind.HANG_WORKER and worker.job_id == 0
            and worker.worker_id == fault.worker)


def release_barrier(barrier: StartBarrier, switch: ManagedProcess,
                    agents: Sequence[tuple[WorkerPlace, ManagedProcess]], deadline: float) -> None:
    """Let the agents go once all are ready; RunFailed if one fails or the switch dies first, or none is ready
    within the agents' own join limit (the barrier closes, and the ready ones fail at once)."""

    try:
        waited = barrier.release(min(deadline, time.monotonic() + START_BARRIER_LIMIT_S),
                                 lambda: raise_on_failure(switch, agents, deadline))
    except TimeoutError as error:
        raise RunFailed(f"the agents did not start: {error}") from None
    log.debug("start barrier: %d agents ready after %.3f s", len(agents), waited)


def start_process(supervisor: Supervisor, spec: ProcessSpec) -> ManagedProcess:
    """supervisor.start, with a process that cannot be started or pinned (OSError) ending the run as a failure
    that says so."""
    try:
        return supervisor.start(spec)
    except OSError as error:
        raise RunFailed(f"cannot start {spec.name}: {error}") from None


def remaining(deadline: float) -> float:
    return max(0.0, deadline - time.monotonic())


#: Longest single wait of the watch loop, so that an unbounded run still looks at the switch and the fault timers.
WATCH_TICK_S = 1.0
#: Deadlines of steps that have their own (switch set-up, counters) when the run itself has none.
STEP_LIMIT_S = 60.0


# Workers of a job refuse a bad all-reduce together (docs/protocol.md section 5): when one fails, the others
# usually exit within moments, and the one to report is the cause, not a peer that merely saw it.
PEER_EXIT_GRACE_S = 2.0
PEER_REFUSAL = "PeerRefused"


def first_cause(agents: Sequence[tuple[WorkerPlace, ManagedProcess]], grace_until: float) -> str:
    """The failure to report once some agent failed: after waiting (until `grace_until` at most) for the others to
    exit, the first failed worker whose own error is not a peer's refusal, else the first failed worker."""
    running = [process for _worker, process in agents if process.returncode is None]
    while running and time.monotonic() < grace_until:
        wait_for_any_exit(running, grace_until - time.monotonic())
        running = [process for process in running if process.returncode is None]
    failures = [agent_failure(worker, process) for worker, process in agents if process.returncode not in (None, 0)]
    causes = [failure for failure in failures if PEER_REFUSAL not in failure] or failures
    others = len(failures) - 1
    return causes[0] + (f" ({others} other worker(s) failed too)" if others else "")


def raise_on_failure(switch: ManagedProcess, agents: Sequence[tuple[WorkerPlace, ManagedProcess]],
                     deadline: float) -> None:
    """RunFailed if the switch died or an agent exited non-zero (the first cause among the agents)."""
    if switch.returncode is not None:
        raise RunFailed(switch_failure(switch))
    if any(process.returncode not in (None, 0) for _worker, process in agents):
        raise RunFailed(first_cause(agents, min(deadline, time.monotonic() + PEER_EXIT_GRACE_S)))


def watch_agents(switch: ManagedProcess, agents: Sequence[tuple[WorkerPlace, ManagedProcess]], deadline: float,
                 timeout_s: float | None, kill_switch_at: float | None = None,
                 on_tick: Callable[[], None] | None = None) -> None:
    """Wait until every agent has exited 0; raise RunFailed at the first agent failure, switch death or deadline
    (inf: none; the agents' own stall limits end a run that stops progressing). `on_tick` is called every
    PROGRESS_TICK_S while waiting (progress reports)."""
    tick_s = PROGRESS_TICK_S if on_tick is not None else WATCH_TICK_S
    while True:
        if on_tick is not None:
            on_tick()
        raise_on_failure(switch, agents, deadline)
        running = [process for _worker, process in agents if process.returncode is None]
        if not running:
            return
        now = time.monotonic()
        if now >= deadline:
            names = ", ".join(worker_title(worker) for worker, process in agents if process.returncode is None)
            raise RunFailed(f"{names} still running after the {timeout_s:g} s timeout")
        wake_at = deadline if kill_switch_at is None else min(deadline, kill_switch_at)
        wait_for_any_exit([switch, *running], min(tick_s, max(0.0, wake_at - now)))
        if kill_switch_at is not None and time.monotonic() >= kill_switch_at:
            log.warning("fault injection: killing the switch (pid %d)", switch.pid)
            os.killpg(switch.pid, signal.SIGKILL)
            switch.wait(5.0)
            kill_switch_at = None


#: Where ring folders go: tmpfs, so the rings are plain memory (a file on disk would be written back).
SHM_ROOT = Path("/dev/shm")


def port_kind(requested: PortKind | str | None) -> PortKind:
    """The port kind to run: `requested` (a PortKind or its value), else shared memory where the rings build, else
    UDP (logged)."""
    if requested is not None:
        return PortKind(requested)
    problem = shm_unavailable()
    if problem is None:
        return PortKind.SHM
    log.warning("shared-memory ports unavailable (%s): the switch's ports are UDP sockets on loopback", problem)
    return PortKind.UDP


@contextmanager
def ring_folder(fallback: Path) -> Iterator[Path]:
    """A private folder for the run's ring files (under /dev/shm where it exists, else in `fallback`), removed
    afterwards: the switch removes its files when it stops, this also takes what a killed switch left."""
    root = SHM_ROOT if SHM_ROOT.is_dir() and os.access(SHM_ROOT, os.W_OK) else fallback
    folder = Path(tempfile.mkdtemp(prefix="omnireduce-rings-", dir=root))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def run_loopback(config: TestbedConfig, plan: NetworkPlan, layout: RunLayout,
                 progress: ProgressCallback | None = None) -> RunOutcome:
    kind = port_kind(config.ports)
    if kind is PortKind.UDP:
        return _run_loopback(config, plan, layout, progress, None)
    with ring_folder(layout.root) as folder:
        return _run_loopback(config, plan, layout, progress, folder)


def _run_loopback(config: TestbedConfig, plan: NetworkPlan, layout: RunLayout, progress: ProgressCallback | None,
                  rings: Path | None) -> RunOutcome:
    """One run; `rings`: the folder of the ring files (shared-memory ports), None for UDP ports."""
    started = time.monotonic()
    deadline = started + config.timeout if config.timeout is not None else math.inf
    workers = plan.workers
    grpc_port = free_tcp_port()
    frames: dict[WorkerPlace, FramePorts | FrameRing]
    if rings is not None:
        frames = {worker: FrameRing(rings / f"port{worker.port}") for worker in workers}
        switch_argv = softswitch_ring_argv([(worker.port, frames[worker].path) for worker in workers], grpc_port,
                                           impairments=config.impairment_plan(), impair_seed=config.seed,
                                           pipeline=config.pipeline)
    else:
        udp_ports = free_ports(2 * len(workers))
        frames = {worker: FramePorts(agent=(LOOPBACK, udp_ports[2 * index]),
                                     switch=(LOOPBACK, udp_ports[2 * index + 1]))
                  for index, worker in enumerate(workers)}
        switch_argv = softswitch_loopback_argv(
            [(worker.port, frames[worker].switch, frames[worker].agent) for worker in workers], grpc_port,
            impairments=config.impairment_plan(), impair_seed=config.seed, pipeline=config.pipeline)
    ports = "shm" if rings is not None else "udp"
    cpus = plan_cpus(config.cpu_pinning)  # CpuPlanError: run_testbed checked it before any work (unavailable_here)
    grpc_addr = grpc_server_addr(grpc_port)
    setup_s = elapsed_s = 0.0
    switch_cpu_s: float | None = None
    counters = None
    with Supervisor(layout.logs, tag=layout.tag) as supervisor:
        try:
            blocks_total = block_count(config.size) * len(workers)
            report_step(progress, "starting the switch", blocks_total, len(workers))
            switch = start_process(supervisor, ProcessSpec("switch", switch_argv, cpus=cpus.switch))
            try:
                wait_for_grpc(grpc_addr, switch, min(SWITCH_START_S, remaining(deadline)))
            except NotReady as error:
                raise RunFailed(switch_failure(switch) if not switch.alive() else str(error)) from None
            report_step(progress, "installing the jobs", blocks_total, len(workers))
            try:
                set_up_switch(grpc_addr, plan, timeout=max(1.0, min(STEP_LIMIT_S, remaining(deadline))))
            except Exception as error:  # noqa: BLE001 -- any controller failure ends the run with its message
                if not switch.alive():
                    raise RunFailed(switch_failure(switch)) from None
                raise RunFailed(f"controller could not set up the switch: {error}") from None
            setup_s = time.monotonic() - started
            barrier = start_barrier(config, len(workers))
            agents = []
            try:
                for worker in workers:
                    files = AgentFiles(layout.input_path(worker), layout.output_path(worker),
                                       layout.progress_path(worker.name),
                                       barrier.path if barrier is not None else None)
                    argv = agent_argv(worker, plan, files,
                                      workers=config.workers, slots=config.slots, dense=config.dense,
                                      timeout_s=agent_time_limit(remaining(deadline)), frame=frames[worker],
                                      repeat=config.repeat)
                    agents.append((worker, start_process(supervisor, ProcessSpec(worker.name, argv, cpus=cpus.agents))))
                    if is_hung_worker(config, worker):
                        os.killpg(agents[-1][1].pid, signal.SIGSTOP)
                if barrier is not None:
                    release_barrier(barrier, switch, agents, deadline)
            finally:
                if barrier is not None:
                    barrier.close()
            agents_started = time.monotonic()
            switch_cpu_before = cpu_seconds(switch.pid)
            on_tick = None
            if progress is not None:
                tail = ProgressTail({worker.name: layout.progress_path(worker.name) for worker in workers},
                                    block_count(config.size))

                def on_tick() -> None:
                    progress(tail.poll(time.monotonic() - agents_started))
            kill_at = None
            if config.fault is not None and config.fault.kind is FaultKind.KILL_SWITCH:
                kill_at = agents_started + config.fault.after_s
            try:
                watch_agents(switch, agents, deadline, config.timeout, kill_at, on_tick)
            finally:
                elapsed_s = time.monotonic() - agents_started
                switch_cpu_after = cpu_seconds(switch.pid)
                if switch_cpu_before is not None and switch_cpu_after is not None:
                    switch_cpu_s = switch_cpu_after - switch_cpu_before
            report_step(progress, "reading the switch's counters", blocks_total, len(workers))
            try:
                counters = read_counters(grpc_addr, timeout=max(1.0, min(15.0, remaining(deadline) + 5.0)))
            except Exception as error:  # noqa: BLE001
                raise RunFailed(f"could not read the switch's counters: {error}") from None
        except RunFailed as failure:
            log.info("run failed: %s", failure)
            return RunOutcome(str(failure), setup_s, elapsed_s, counters, ports, switch_cpu_s, cpus.describe())
    return RunOutcome(None, setup_s, elapsed_s, counters, ports, switch_cpu_s, cpus.describe())
