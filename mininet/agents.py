"""Command lines of the workers' agents (`omnireduce-agent`, host/cli.py), and reading back what they report.

Every agent all-reduces the input the runner generated and saved (`--input`), writes its result (`--output`) and
prints one JSON object on stdout (`--json`): {"job", "worker_id", "status", "stats": {...}, "error": "..."}.
"""

from __future__ import annotations

import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omnireduce.host.config import Timeouts
from omnireduce.host.start_barrier import StartBarrier

from .model import FaultKind, TestbedConfig
from .plan import NetworkPlan, WorkerPlace
from .processes import last_line

# Run the agent as a module of the venv's Python, so the command works in a Mininet host too, without PATH.
AGENT_MODULE = "omnireduce.host.cli"

#: Longest the runner waits at the start barrier: an agent waits there at most its join limit (30 s by default,
#: which the testbed never raises), and by then the ready ones have given up.
START_BARRIER_LIMIT_S = Timeouts().join + 5.0


@dataclass(frozen=True, slots=True)
class FramePorts:
    """Loopback mode: the agent's own UDP socket and the softswitch port's socket it exchanges frames with."""

    agent: tuple[str, int]
    switch: tuple[str, int]


@dataclass(frozen=True, slots=True)
class FrameRing:
    """Loopback mode with shared-memory ports: the ring file of the worker's softswitch port."""

    path: Path


@dataclass(frozen=True, slots=True)
class AgentFiles:
    input: Path
    output: Path
    #: where the agent appends its progress lines (host/progress.py), None: none
    progress: Path | None = None
    #: the launcher's start barrier (host/start_barrier.py), None: the agent calls as soon as it is ready
    start_barrier: Path | None = None


def start_barrier(config: TestbedConfig, agents: int) -> StartBarrier | None:
    """The start barrier of a run's agents, None where they start staggered (asked for, or a hung-worker fault,
    whose stopped agent would never be ready: its peers must find it missing in the scale round)."""
    if not config.start_in_step or (config.fault is not None and config.fault.kind is FaultKind.HANG_WORKER):
        return None
    return StartBarrier.private(agents)


def agent_time_limit(remaining_s: float | None) -> float | None:
    """The agents' own time limits: somewhat shorter than what is left of the run, so that an agent that gives up
    (a worker never showed up, the switch went silent) says why before the runner's deadline cuts everything.
    None: the run has no time limit, and neither have the agents beyond their join and stall limits."""
    if remaining_s is None or math.isinf(remaining_s):
        return None
    return max(1.0, remaining_s - min(5.0, 0.1 * remaining_s))


def _endpoint(address: tuple[str, int]) -> str:
    return f"{address[0]}:{address[1]}"


def agent_argv(worker: WorkerPlace, plan: NetworkPlan, files: AgentFiles, *, workers: int, slots: int, dense: bool,
               timeout_s: float | None, frame: FramePorts | FrameRing | None, repeat: int = 1,
               python: str = sys.executable) -> tuple[str, ...]:
    """The agent command line of one worker; `frame` selects the frame transport over UDP (FramePorts) or shared
    memory (FrameRing) to a loopback softswitch, None kernel UDP (Mininet)."""
    argv = [python, "-m", AGENT_MODULE,
            "--switch", str(plan.aggregator_ip), "--job", str(worker.job_id), "--worker-id", str(worker.worker_id),
            "--workers", str(workers), "--slots", str(slots),
            "--input", str(files.input), "--output", str(files.output), "--json"]
    if files.progress is not None:
        argv += ["--progress-file", str(files.progress)]
    if files.start_barrier is not None:
        argv += ["--start-barrier", str(files.start_barrier)]
    if timeout_s is not None:
        # Joining (the scale round) gives up first, so a worker that never shows up is named as such.
        argv += ["--join-timeout", f"{min(30.0, 0.8 * timeout_s):.3g}", "--deadline", f"{timeout_s:.3g}"]
    if dense:
        argv.append("--dense")
    if repeat != 1:
        argv += ["--repeat", str(repeat)]
    if isinstance(frame, FrameRing):
        argv += ["--transport", "shm", "--ring", str(frame.path),
                 "--worker-addr", f"{worker.ip}:{worker.udp_port}", "--mac", worker.mac,
                 "--switch-mac", plan.aggregator_mac]
    elif frame is not None:
        argv += ["--transport", "frame", "--bind", _endpoint(frame.agent), "--frame-peer", _endpoint(frame.switch),
                 "--worker-addr", f"{worker.ip}:{worker.udp_port}", "--mac", worker.mac,
                 "--switch-mac", plan.aggregator_mac]
    else:
        argv += ["--transport", "udp", "--bind", f"{worker.ip}:{worker.udp_port}"]
    return tuple(argv)


@dataclass(frozen=True, slots=True)
class AgentReport:
    """What an agent printed: its status, stats (summed over its calls), each call's times, and error (if any);
    `raw` is None when it printed no JSON."""

    status: int | None
    stats: dict[str, Any]
    error: str
    raw: dict[str, Any] | None
    calls: tuple[dict[str, Any], ...] = ()


def read_agent_report(stdout_path: Path) -> AgentReport:
    """The agent's JSON line (the last line of its stdout that parses as a JSON object)."""
    try:
        lines = stdout_path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        lines = []
    for line in reversed(lines):
        line = line.strip()
        if not line.startswith("{"):
            continue
        try:
            data = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(data, dict):
            stats = data.get("stats") if isinstance(data.get("stats"), dict) else {}
            calls = data.get("calls") if isinstance(data.get("calls"), list) else []
            return AgentReport(data.get("status"), stats, str(data.get("error", "")), data,
                               tuple(call for call in calls if isinstance(call, dict)))
    return AgentReport(None, {}, "", None)


def agent_failure_reason(stdout_path: Path, stderr_path: Path) -> str:
    """Why an agent failed, in one line: its JSON error, else its last stderr line, else its last stdout line."""
    report = read_agent_report(stdout_path)
    return report.error or last_line(stderr_path) or last_line(stdout_path)
