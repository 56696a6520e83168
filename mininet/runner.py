"""`run_testbed(config) -> report`: generate the inputs, run the chosen network mode, verify every result.

    from omnireduce.testbed import TestbedConfig, run_testbed
    report = run_testbed(TestbedConfig(workers=4, density=0.05))
    assert report.ok, report.failure
"""

from __future__ import annotations

import logging
import os
import signal
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import numpy as np

from omnireduce.shm import unavailable_reason as shm_unavailable

from .agents import read_agent_report
from .cpus import CpuPlanError, plan_cpus
from .inputs import InputSpec, block_count, make_inputs, nonzero_block_mask
from .layout import RUN_TAG_VARIABLE, RunLayout, RunOutcome, worker_title
from .loopback import run_loopback
from .mininet_run import mininet_unavailable, netem_unavailable, run_mininet
from .model import (
    FaultKind,
    ImpairSite,
    JobOutcome,
    NetKind,
    PortKind,
    SwitchKind,
    TestbedConfig,
    TestbedReport,
    WorkerOutcome,
)
from .plan import JobPlace, NetworkPlan, plan_network
from .processes import argv_of, tagged_processes
from .progress import ProgressCallback, report_step
from .summary import drop_packets, job_counter_packets, job_traffic
from .switches import bmv2_binary
from .traffic import dense_exchange, ideal_exchange, omnireduce_exchange
from .verify import check_results, results_agree

log = logging.getLogger(__name__)


LEFTOVER_GRACE_S = 2.0


class ConfigError(ValueError):
    """The configuration cannot run; the message lists every problem."""


@contextmanager
def run_directory(keep: Path | None) -> Iterator[Path]:
    """`keep` (created if needed) or a temporary directory removed afterwards."""
    if keep is not None:
        keep.mkdir(parents=True, exist_ok=True)
        yield keep
        return
    with tempfile.TemporaryDirectory(prefix="omnireduce-testbed-") as directory:
        yield Path(directory)


def job_inputs(config: TestbedConfig, job: JobPlace) -> list[np.ndarray]:
    tensors = make_inputs(InputSpec(config.workers, config.size, config.density, config.dtype, config.seed,
                                    job_index=job.job_id))
    fault = config.fault
    if fault is not None and fault.kind is FaultKind.NAN_INPUT and job.job_id == 0:
        tensors[fault.worker] = tensors[fault.worker].copy()
        tensors[fault.worker][0] = np.nan
    return tensors


def verify_job(config: TestbedConfig, job: JobPlace, inputs: list[np.ndarray], layout: RunLayout,
               outcome: RunOutcome) -> JobOutcome:
    """Check every worker's saved result against numpy's sum, and set the traffic against what it should be."""
    workers: list[WorkerOutcome | None] = []
    results = []
    loaded = []  # (index in workers, worker id, stats, calls) of each result in `results`
    for worker in job.workers:
        agent_report = read_agent_report(layout.stdout_path(worker.name))
        stats, calls = agent_report.stats, agent_report.calls
        path = layout.output_path(worker)
        if not path.is_file():
            workers.append(WorkerOutcome(job.job_id, worker.worker_id, False, float("inf"), 0.0,
                                         "no result written", stats))
            continue
        try:
            # Mapped, not read: the checks stream through the file's pages in the page cache, where a read would
            # fill 100 MB of fresh memory per worker first (on a VM, fresh pages cost most of the run's setup).
            result = np.load(path, allow_pickle=False, mmap_mode="r")
        except (OSError, ValueError) as error:
            workers.append(WorkerOutcome(job.job_id, worker.worker_id, False, float("inf"), 0.0,
                                         f"unreadable result {path}: {error}", stats))
            continue
        loaded.append((len(workers), worker.worker_id, stats, calls))
        workers.append(None)
        results.append(result)
    # Every result in one pass over the inputs: the sum and the bounds are computed once for the job.
    for (index, worker_id, stats, calls), verdict in zip(loaded, check_results(results, inputs)):
        workers[index] = WorkerOutcome(job.job_id, worker_id, verdict.ok, verdict.max_error, verdict.bound,
                                       verdict.message, stats, calls)
    if len(results) == len(job.workers):
        disagreement = results_agree(results)
        if disagreement:
            workers = [WorkerOutcome(item.job_id, item.worker_id, False, item.max_error, item.error_bound,
                                     item.message or disagreement, item.stats, item.calls) for item in workers]
    counters = outcome.counters
    masks = [nonzero_block_mask(tensor) for tensor in inputs]
    nonzero = np.logical_or.reduce(masks)
    return JobOutcome(
        job_id=job.job_id, slot_base=job.slot_base, slot_count=job.slot_count, workers=tuple(workers),
        measured=job_traffic(counters, (worker.port for worker in job.workers)) if counters is not None else None,
        # Every call all-reduces the same tensors: --repeat N makes N times the traffic.
        expected=omnireduce_exchange(inputs, config.slots, config.dense).times(config.repeat),
        dense=dense_exchange(config.workers, config.size, config.slots).times(config.repeat),
        ideal=ideal_exchange(inputs).times(config.repeat),
        counters=job_counter_packets(counters, job.job_id) if counters is not None else {},
        blocks=block_count(config.size), nonzero_blocks=int(np.count_nonzero(nonzero)),
        nonzero_per_worker=tuple(int(np.count_nonzero(mask)) for mask in masks),
    )


def stop_leftovers(layout: RunLayout) -> str:
    """Kill any process of this run still alive (there should be none); '' when there was none, else their pids."""
    tag = layout.tag[RUN_TAG_VARIABLE]
    # A process being reaped by its parent can still show for a moment; give it that moment, then kill.
    deadline = time.monotonic() + LEFTOVER_GRACE_S
    survivors = tagged_processes(RUN_TAG_VARIABLE, tag)
    while survivors and time.monotonic() < deadline:
        time.sleep(0.05)
        survivors = tagged_processes(RUN_TAG_VARIABLE, tag)
    for pid in survivors:
        log.error("process %d (%s) outlived the run; killing it", pid, " ".join(argv_of(pid) or ()))
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return ", ".join(str(pid) for pid in survivors)


def unavailable_here(config: TestbedConfig) -> str | None:
    """Why this machine cannot run `config` (checked before any work), or None."""
    if config.net is NetKind.MININET:
        problem = mininet_unavailable()
        if problem:
            return (f"--net mininet cannot run here, {problem}; run it as root where Mininet is installed "
                    f"(apt-get install mininet bridge-utils), or use --net loopback (no root needed)")
        if config.switch is SwitchKind.BMV2 and bmv2_binary() is None:
            return ("--switch bmv2 cannot run here, simple_switch_grpc is not on PATH; install BMv2 (README.md, "
                    "'Mininet and BMv2') or use --switch softswitch")
        if config.impair_at is ImpairSite.LINKS and config.impairment_plan().rules:
            problem = netem_unavailable()
            if problem:
                hint = ("use --impair-at switch (the softswitch's own fault injection)"
                        if config.switch is SwitchKind.SOFTSWITCH else "run where the kernel has netem")
                return f"--impair on Mininet links cannot run here, {problem}; {hint}"
    if config.ports is PortKind.SHM:
        problem = shm_unavailable()
        if problem:
            return (f"--ports shm cannot run here, the shared-memory rings need a C compiler and cffi ({problem}); "
                    f"use --ports udp")
    if config.net is NetKind.LOOPBACK:
        try:
            plan_cpus(config.cpu_pinning)
        except CpuPlanError as error:
            return f"{error}; use --cpu-pinning auto or off"
    return None


def what_to_try(failure: str, config: TestbedConfig) -> str:
    """A hint to append to a failure of a known kind ('' when there is none)."""
    logs = ("rerun with --keep-logs DIR to keep each agent's log and the switch's counters (drops by reason)"
            if config.keep_logs is None else f"each agent's log and the switch's counters are in {config.keep_logs}")
    if "Stalled:" in failure:
        return (f"; the run stopped progressing (no result for the agents' stall limit); {logs}; on a loaded "
                f"machine try fewer --workers or a smaller --size")
    if "WorkerMissing:" in failure:
        return f"; a worker never joined (it did not start, or the switch drops its packets); {logs}"
    if "still running after" in failure:
        return f"; give a larger --timeout, or none (the agents' stall limit ends a stopped run); {logs}"
    return ""


def run_testbed(config: TestbedConfig, progress: ProgressCallback | None = None) -> TestbedReport:
    """Run `config` end to end. Raises ConfigError for a configuration that cannot run; every failure of the run
    itself is in the report (`ok` False, `failure` saying which part failed). `progress` is called a few times a
    second while the agents run (omnireduce.testbed.progress.RunProgress)."""
    problems = config.problems()
    if problems:
        raise ConfigError("invalid testbed configuration:\n  " + "\n  ".join(problems))
    missing = unavailable_here(config)
    if missing:
        raise ConfigError(missing)
    try:
        plan: NetworkPlan = plan_network(config)
    except ValueError as error:
        raise ConfigError(str(error)) from None
    began = time.monotonic()
    agents = config.workers * config.jobs
    report_step(progress, "writing the inputs", block_count(config.size) * agents, agents)
    with run_directory(config.keep_logs) as root:
        layout = RunLayout(root).create()
        inputs = {}
        for job in plan.jobs:
            inputs[job.job_id] = job_inputs(config, job)
            for worker, tensor in zip(job.workers, inputs[job.job_id]):
                np.save(layout.input_path(worker), tensor, allow_pickle=False)
        log.info("inputs written to %s (%.2f s)", layout.inputs, time.monotonic() - began)
        if config.net is NetKind.LOOPBACK:
            outcome = run_loopback(config, plan, layout, progress)
        else:
            outcome = run_mininet(config, plan, layout, progress)
        leftovers = stop_leftovers(layout)
        report_step(progress, "verifying the results", block_count(config.size) * agents, agents)
        jobs = tuple(verify_job(config, job, inputs[job.job_id], layout, outcome) for job in plan.jobs)
    failure = outcome.failure
    if leftovers and failure is None:
        failure = f"processes outlived the run and were killed: {leftovers}"
    if failure is None:
        for job in jobs:
            for worker in job.workers:
                if not worker.ok:
                    failure = f"{worker_title(plan.jobs[job.job_id].workers[worker.worker_id])}: {worker.message}"
                    break
            if failure:
                break
    if failure is not None:
        failure += what_to_try(failure, config)
    ok = failure is None and all(job.ok for job in jobs)
    return TestbedReport(config=config, ok=ok, failure=failure, elapsed_s=outcome.elapsed_s, setup_s=outcome.setup_s,
                         jobs=jobs, drops=drop_packets(outcome.counters) if outcome.counters is not None else {},
                         log_dir=config.keep_logs, ports=outcome.ports, switch_cpu_s=outcome.switch_cpu_s,
                         cpus=outcome.cpus)
