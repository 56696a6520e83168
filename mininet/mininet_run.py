"""Mininet mode, venv side: write the driver's JSON spec, run the driver with Debian's Python, read its report.

The driver (star_driver.py, Mininet + stdlib only) builds the star, starts the switch on its interfaces, runs the
controller setup and the agents (kernel UDP transport) as commands of this venv's Python, and reads the counters
with `python -m omnireduce.testbed.provision_cli`. Every pid the driver starts is recorded in a pid file; if the
driver itself has to be killed, whatever it started and that still runs is killed here, by pid, after checking
that the pid still runs the command recorded for it.
"""

from __future__ import annotations

import json
import logging
import math
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from omnireduce.host.start_barrier import StartBarrier
from omnireduce.softswitch.faults import Impairment, ImpairmentPlan

from .agents import (START_BARRIER_LIMIT_S, AgentFiles, agent_argv, agent_failure_reason, agent_time_limit,
                     start_barrier)
from .inputs import block_count
from .layout import RunLayout, RunOutcome, worker_title
from .model import FaultKind, ImpairSite, SwitchKind, TestbedConfig
from .plan import NetworkPlan
from .ports import free_tcp_port
from .processes import ManagedProcess, ProcessSpec, Supervisor, argv_of, describe_exit, last_line, pid_alive
from .progress import PROGRESS_TICK_S, ProgressCallback, ProgressTail, report_step
from .provision import plan_to_json
from .switches import (bmv2_binary, bmv2_prefix, bmv2_suffix, grpc_server_addr, impairment_argv, pipeline_argv,
                       softswitch_prefix)

log = logging.getLogger(__name__)

SYSTEM_PYTHON = "/usr/bin/python3"
MININET_PACKAGE = Path("/usr/lib/python3/dist-packages/mininet")
DRIVER = Path(__file__).resolve().with_name("star_driver.py")
# Building the star, starting the switch, the controller's setup and the teardown, on top of the all-reduce.
SETUP_ALLOWANCE_S = 60.0
TEARDOWN_ALLOWANCE_S = 30.0


def mininet_unavailable() -> str | None:
    """Why Mininet mode cannot run here (None when it can)."""
    if os.geteuid() != 0:
        return "Mininet mode needs root"
    if not MININET_PACKAGE.is_dir():
        return f"Mininet is not installed ({MININET_PACKAGE} is missing; apt-get install mininet)"
    if not Path(SYSTEM_PYTHON).is_file():
        return f"{SYSTEM_PYTHON} (the Python Mininet is installed for) is missing"
    return None


def netem_unavailable() -> str | None:
    """Why the links of a Mininet run cannot be impaired with tc netem here (None when they can): the kernel may
    lack the netem qdisc. Probed in a network namespace made for it and removed again."""
    namespace = f"omnireduce-netem-probe-{os.getpid()}"
    try:
        subprocess.run(["ip", "netns", "add", namespace], check=True, capture_output=True, timeout=30)
    except (OSError, subprocess.SubprocessError) as error:
        return f"cannot create a network namespace to probe netem ({error})"
    try:
        done = subprocess.run(["ip", "netns", "exec", namespace, "tc", "qdisc", "add", "dev", "lo", "root", "netem",
                               "delay", "1ms"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError) as error:
        return f"tc could not run ({error})"
    finally:
        subprocess.run(["ip", "netns", "del", namespace], capture_output=True, timeout=30)
    if done.returncode != 0:
        return (f"this kernel has no netem qdisc (tc: {done.stderr.strip() or done.returncode}; it needs "
                f"CONFIG_NET_SCH_NETEM or the sch_netem module)")
    return None


def netem_args(impairment: Impairment) -> list[str]:
    """tc's netem options for one direction of one link: `delay D [J] loss P% duplicate P% reorder P%`.

    netem reorders by letting a fraction of frames skip the delay the others take, so reordering needs a delay;
    without one, the reordered frames' `hold` is used as that delay (docs/reliability.md)."""
    args: list[str] = []
    delay = impairment.delay_s or (impairment.reorder_hold_s if impairment.reorder else 0.0)
    if delay:
        args += ["delay", f"{delay * 1e3:g}ms"] + ([f"{impairment.jitter_s * 1e3:g}ms"] if impairment.jitter_s else [])
    for name, value in (("loss", impairment.drop), ("duplicate", impairment.duplicate),
                        ("reorder", impairment.reorder)):
        if value:
            args += [name, f"{value * 100:g}%"]
    return args


def netem_spec(plan: ImpairmentPlan, network: NetworkPlan, seed: int) -> list[dict[str, Any]]:
    """The driver's `netem` entries: per worker port, the host's side of the link impairs what goes to the switch
    ("in"), the switch's side what comes from it ("out"). Each qdisc gets a seed of its own, where tc has one."""
    entries = []
    for worker in network.workers:
        for direction, side in (("in", "host"), ("out", "switch")):
            args = netem_args(plan.for_link(worker.port, direction))
            if args:
                entries.append({"port": worker.port, "side": side, "args": args,
                                "seed": seed * 1024 + worker.port * 2 + (side == "switch")})
    return entries


def driver_command(spec_path: Path) -> tuple[str, ...]:
    # -P: do not put the driver's folder (named mininet/) on sys.path, where it would shadow the Mininet package.
    return (SYSTEM_PYTHON, "-P", str(DRIVER), "--spec", str(spec_path))


def switch_spec(config: TestbedConfig, grpc_port: int, layout: RunLayout,
                thrift_port: int | None) -> dict[str, Any]:
    if config.switch is SwitchKind.BMV2:
        binary = bmv2_binary()
        if binary is None:
            raise ValueError("--switch bmv2: simple_switch_grpc is not on PATH")
        assert thrift_port is not None
        prefix = bmv2_prefix(binary, thrift_port, layout.root / "bmv2-notifications.ipc")
        suffix = bmv2_suffix(grpc_port)
    else:
        prefix = softswitch_prefix()
        suffix = ["--grpc-server-addr", grpc_server_addr(grpc_port), *pipeline_argv(config.pipeline)]
        if config.impair_at is ImpairSite.SWITCH:
            suffix += impairment_argv(config.impairment_plan(), config.seed)
    return {"kind": "process", "argv_prefix": prefix, "interface_flag": "-i", "interface_format": "{port}@{intf}",
            "argv_suffix": suffix, "grpc_port": grpc_port, "ready_timeout": 30.0}


def build_spec(config: TestbedConfig, plan: NetworkPlan, layout: RunLayout, grpc_port: int,
               name_prefix: str, barrier: Path | None = None) -> dict[str, Any]:
    """The driver's spec (format: star_driver.py's docstring); `barrier`: the start barrier's socket the agents
    wait at (host/start_barrier.py), None: none."""
    plan_path = layout.root / "plan.json"
    plan_path.write_text(json.dumps(plan_to_json(plan), indent=1))
    grpc_addr = grpc_server_addr(grpc_port)
    provision = [sys.executable, "-m", "omnireduce.testbed.provision_cli", "--grpc-addr", grpc_addr]
    thrift_port = free_tcp_port() if config.switch is SwitchKind.BMV2 else None
    setup_argv = provision + ["setup", "--plan", str(plan_path)]
    if thrift_port is not None:
        setup_argv += ["--thrift-port", str(thrift_port)]
    agents = []
    for worker in plan.workers:
        files = AgentFiles(layout.input_path(worker), layout.output_path(worker), layout.progress_path(worker.name),
                           barrier)
        argv = agent_argv(worker, plan, files,
                          workers=config.workers, slots=config.slots, dense=config.dense,
                          timeout_s=agent_time_limit(config.timeout), frame=None, repeat=config.repeat)
        agents.append({"name": worker.name, "title": worker_title(worker), "host": worker.label, "argv": list(argv)})
    kill_after = None
    if config.fault is not None and config.fault.kind is FaultKind.KILL_SWITCH:
        kill_after = config.fault.after_s
    return {
        "name_prefix": name_prefix,
        "log_dir": str(layout.logs),
        "report": str(layout.root / "driver-report.json"),
        "pid_file": str(layout.root / "driver-pids.jsonl"),
        "aggregator": {"ip": str(plan.aggregator_ip), "mac": plan.aggregator_mac},
        "hosts": [{"name": worker.label, "ip": str(worker.ip), "prefix_len": plan.prefix_len, "mac": worker.mac,
                   "port": worker.port} for worker in plan.workers],
        "switch": switch_spec(config, grpc_port, layout, thrift_port),
        "setup": [{"name": "controller-setup", "argv": setup_argv, "timeout": 60.0}],
        "agents": agents,
        "agent_timeout": config.timeout,
        "after": [{"name": "controller-counters",
                   "argv": provision + ["counters", "--out", str(layout.root / "counters.json")], "timeout": 30.0}],
        "netem": (netem_spec(config.impairment_plan(), plan, config.seed)
                  if config.impair_at is ImpairSite.LINKS else []),
        "kill_switch_after_s": kill_after,
        "stop_agent": (plan.jobs[0].workers[config.fault.worker].name
                       if config.fault is not None and config.fault.kind is FaultKind.HANG_WORKER else None),
    }


def unique_prefix() -> str:
    """'t' + 4 hex digits: node and interface names of this run (e.g. t3fa2s1-eth1) collide with no other run."""
    return "t" + secrets.token_hex(2)


def kill_leftovers(pid_file: Path) -> list[str]:
    """Kill (SIGKILL, by process group) every recorded process that still runs its recorded command."""
    killed = []
    try:
        records = [json.loads(line) for line in pid_file.read_text().splitlines() if line.strip()]
    except (OSError, json.JSONDecodeError):
        return killed
    for record in records:
        pid, argv = int(record["pid"]), tuple(record["argv"])
        if pid_alive(pid) and argv_of(pid) == argv:
            try:
                os.killpg(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                continue
            killed.append(f"{record['name']} (pid {pid})")
    return killed


def run_mininet(config: TestbedConfig, plan: NetworkPlan, layout: RunLayout,
                progress: ProgressCallback | None = None) -> RunOutcome:
    problem = mininet_unavailable()
    if problem:
        return RunOutcome(problem, 0.0, 0.0, None)
    grpc_port = free_tcp_port()
    barrier = start_barrier(config, len(plan.workers))
    try:
        return _run_driver(config, plan, layout, progress, grpc_port, barrier)
    finally:
        if barrier is not None:
            barrier.close()


def _release_in_background(barrier: StartBarrier, driver: ManagedProcess, limit_s: float) -> threading.Thread:
    """Open the start barrier once every agent the driver starts in its hosts is ready (a thread: this process
    meanwhile waits for the driver). If the driver ends first, or the limit passes, the barrier closes and the
    waiting agents fail at once, which the driver reports."""

    def check() -> None:
        if driver.returncode is not None:
            raise RuntimeError("the Mininet driver ended")

    def release() -> None:
        try:
            waited = barrier.release(time.monotonic() + limit_s, check)
            log.debug("start barrier: agents ready after %.3f s", waited)
        except (RuntimeError, TimeoutError) as error:
            log.debug("start barrier closed without a go: %s", error)

    thread = threading.Thread(target=release, name="start-barrier", daemon=True)
    thread.start()
    return thread


def _run_driver(config: TestbedConfig, plan: NetworkPlan, layout: RunLayout, progress: ProgressCallback | None,
                grpc_port: int, barrier: StartBarrier | None) -> RunOutcome:
    try:
        spec = build_spec(config, plan, layout, grpc_port, unique_prefix(),
                          barrier.path if barrier is not None else None)
    except ValueError as error:
        return RunOutcome(str(error), 0.0, 0.0, None)
    spec_path = layout.root / "driver-spec.json"
    spec_path.write_text(json.dumps(spec, indent=1))
    report_path = Path(spec["report"])
    # Without a run timeout the driver ends when its agents do (they stop by themselves once nothing progresses).
    limit = config.timeout + SETUP_ALLOWANCE_S if config.timeout is not None else None
    failure = None
    with Supervisor(layout.logs, grace_s=TEARDOWN_ALLOWANCE_S, tag=layout.tag) as supervisor:
        report_step(progress, "building the Mininet star, then all-reduce", block_count(config.size) * len(plan.workers),
                    len(plan.workers))
        driver = supervisor.start(ProcessSpec("driver", driver_command(spec_path)))
        started = time.monotonic()
        if barrier is not None:
            # The driver builds the star and sets up the switch before it starts the agents.
            _release_in_background(barrier, driver, SETUP_ALLOWANCE_S + START_BARRIER_LIMIT_S)
        if progress is None:
            code = driver.wait(limit)
        else:
            # The agents run in the Mininet hosts, which share this file system: their progress files are here.
            # (Elapsed time counts from the driver's start: it includes building the star.)
            tail = ProgressTail({worker.name: layout.progress_path(worker.name) for worker in plan.workers},
                                block_count(config.size))
            end_at = started + limit if limit is not None else math.inf
            code = None
            while code is None and time.monotonic() < end_at:
                progress(tail.poll(time.monotonic() - started))
                code = driver.wait(min(PROGRESS_TICK_S, max(0.0, end_at - time.monotonic())))
            progress(tail.poll(time.monotonic() - started))
        if code is None:
            failure = f"Mininet driver still running after {limit:g} s; stopped"
            driver.stop(TEARDOWN_ALLOWANCE_S)
    leftovers = kill_leftovers(Path(spec["pid_file"]))
    if leftovers:
        log.warning("killed processes the driver left behind: %s", ", ".join(leftovers))
    try:
        report = json.loads(report_path.read_text())
    except (OSError, json.JSONDecodeError):
        line = last_line(driver.stderr_path)
        return RunOutcome(failure or f"Mininet driver ended ({describe_exit(driver.returncode or 0)}) without a "
                                     f"report" + (f": {line}" if line else ""), 0.0, 0.0, None)
    failure = failure or report.get("failure")
    if failure and report.get("phase") == "agents":
        failure = _explain_agent_failure(failure, plan, layout)
    counters = None
    counters_path = layout.root / "counters.json"
    if report.get("ok") and counters_path.is_file():
        counters = json.loads(counters_path.read_text())
    return RunOutcome(failure, float(report.get("setup_s", 0.0)), float(report.get("agents_elapsed_s", 0.0)),
                      counters)


def _explain_agent_failure(failure: str, plan: NetworkPlan, layout: RunLayout) -> str:
    """The driver names a failed agent by its title and quotes its last log line; prefer the agent's JSON error."""
    for worker in plan.workers:
        title = worker_title(worker)
        if failure.startswith(title + " exited"):
            head = failure.split(":", 1)[0]
            reason = agent_failure_reason(layout.stdout_path(worker.name), layout.stderr_path(worker.name))
            return f"{head}: {reason}" if reason else head
    return failure
