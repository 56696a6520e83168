# Run: /work/main/.venv/bin/pytest tests/testbed/test_end_to_end.py -q
"""Whole runs over loopback: softswitch subprocess, controller, one agent process per worker, verified results,
and runs that fail on purpose (a NaN input, a killed switch) with their messages and their cleanup."""

from __future__ import annotations

import json
import os
import time

import pytest

from omnireduce.shm import unavailable_reason
from omnireduce.testbed import Fault, FaultKind, PortKind, TestbedConfig, run_testbed
from omnireduce.testbed.cli import EXIT_FAILED, EXIT_OK, main
from omnireduce.testbed.cpus import CpuPinning, cpu_list
from omnireduce.testbed.loopback import SHM_ROOT

from .conftest import survivors



def check_traffic(report):
    """What the counters saw against the loss-free exchange computed from the inputs."""
    for job in report.jobs:
        assert job.measured is not None
        # Every round completes exactly once, lost packets or not.
        assert job.counters.get("results", 0) == job.expected.results
        # Each result leaves once per worker, plus one unicast per replay.
        assert job.measured.from_switch_packets == job.expected.from_switch_packets + job.counters.get("replays", 0)
        assert job.measured.to_switch_packets >= job.expected.to_switch_packets
        assert job.measured.to_switch_bytes >= job.expected.to_switch_bytes


def test_four_sparse_workers(tmp_path):
    seen = []
    report = run_testbed(TestbedConfig(workers=4, size=32768, density=0.05, slots=16, timeout=90,
                                       keep_logs=tmp_path), progress=seen.append)
    assert report.ok, report.failure
    # Progress: the set-up steps, then the agents' progress lines added up, ending with every block done.
    phases = [item.phase for item in seen]
    assert phases[:3] == ["writing the inputs", "starting the switch", "installing the jobs"]
    assert phases[-2:] == ["reading the switch's counters", "verifying the results"]
    during = [item for item in seen if item.phase == "all-reduce"]
    assert during[-1].blocks_done == during[-1].blocks_total == 4 * 1024
    assert during[-1].agents_done == 4 and during[-1].packets_sent > 0
    assert [item.blocks_done for item in during] == sorted(item.blocks_done for item in during)
    assert [worker.ok for worker in report.jobs[0].workers] == [True] * 4
    check_traffic(report)
    job = report.jobs[0]
    assert job.measured.total_bytes < job.dense.total_bytes / 2
    assert all(worker.stats.get("results", 0) > 0 for worker in job.workers)
    # The switch's CPU time while the agents ran (the bench's "busy"): read from /proc, never more than wall time
    # times its threads can use.
    assert report.switch_cpu_s is not None and 0 <= report.switch_cpu_s <= 4 * report.elapsed_s + 0.1
    assert survivors(tmp_path) == []


def test_two_concurrent_int32_jobs(tmp_path):
    report = run_testbed(TestbedConfig(workers=3, jobs=2, size=8000, density=0.1, dtype="int32", slots=8,
                                       timeout=90, keep_logs=tmp_path))
    assert report.ok, report.failure
    assert [job.slot_base for job in report.jobs] == [0, 8]
    assert all(worker.max_error == 0 for job in report.jobs for worker in job.workers)
    check_traffic(report)
    assert survivors(tmp_path) == []


@pytest.mark.skipif(unavailable_reason() is not None, reason=f"no ring module: {unavailable_reason()}")
def test_shared_memory_ports_give_exact_results(tmp_path):
    folders_before = set(SHM_ROOT.glob("omnireduce-rings-*"))
    report = run_testbed(TestbedConfig(workers=3, size=60000, density=0.1, dtype="int32", slots=16,
                                       ports=PortKind.SHM, timeout=90, keep_logs=tmp_path))
    assert report.ok, report.failure
    assert report.ports == "shm"
    assert all(worker.max_error == 0 for worker in report.jobs[0].workers)
    check_traffic(report)
    assert survivors(tmp_path) == []
    assert set(SHM_ROOT.glob("omnireduce-rings-*")) <= folders_before  # the run's ring folder is gone


def test_udp_ports_still_give_exact_results(tmp_path):
    report = run_testbed(TestbedConfig(workers=2, size=20000, density=0.1, dtype="int32", slots=8,
                                       ports=PortKind.UDP, timeout=90, keep_logs=tmp_path))
    assert report.ok, report.failure
    assert report.ports == "udp"
    assert all(worker.max_error == 0 for worker in report.jobs[0].workers)
    check_traffic(report)


def test_the_python_pipeline_gives_the_same_exact_results(tmp_path):
    # --pipeline python: the softswitch runs the reference pipeline (the generated Python) instead of the C.
    report = run_testbed(TestbedConfig(workers=2, size=20000, density=0.1, dtype="int32", slots=8, pipeline="python",
                                       timeout=90, keep_logs=tmp_path))
    assert report.ok, report.failure
    assert all(worker.max_error == 0 for worker in report.jobs[0].workers)
    check_traffic(report)
    assert survivors(tmp_path) == []


def test_repeated_calls_each_report_their_time_and_make_the_traffic_of_all(tmp_path):
    single = run_testbed(TestbedConfig(workers=3, size=20000, density=0.1, slots=8, timeout=90))
    report = run_testbed(TestbedConfig(workers=3, size=20000, density=0.1, slots=8, repeat=3, timeout=90,
                                       keep_logs=tmp_path))
    assert single.ok and report.ok, (single.failure, report.failure)
    job = report.jobs[0]
    # Three calls on the same inputs: three times the one call's exchange, as the switch's counters saw it.
    assert job.expected == single.jobs[0].expected.times(3) and job.ideal == single.jobs[0].ideal.times(3)
    check_traffic(report)
    for worker in job.workers:
        assert len(worker.calls) == 3 and all(call["elapsed_s"] > 0 for call in worker.calls)
        assert sum(call["elapsed_s"] for call in worker.calls) == pytest.approx(worker.stats["elapsed_s"])
        assert sum(call["retransmissions"] for call in worker.calls) == worker.stats["retransmissions"]
    assert survivors(tmp_path) == []


def test_dense_mode_sends_every_block(tmp_path):
    report = run_testbed(TestbedConfig(workers=2, size=4096, density=0.05, dense=True, slots=8, timeout=90,
                                       keep_logs=tmp_path))
    assert report.ok, report.failure
    job = report.jobs[0]
    assert job.expected == job.dense
    check_traffic(report)


def test_a_bad_input_fails_the_run_with_the_workers_message(tmp_path):
    began = time.monotonic()
    report = run_testbed(TestbedConfig(workers=3, size=4096, fault=Fault(FaultKind.NAN_INPUT, worker=1),
                                       timeout=60, keep_logs=tmp_path))
    assert not report.ok
    assert report.failure.startswith("worker 1 of job 0 exited with code 3: ")
    assert "NaN" in report.failure
    assert time.monotonic() - began < 60
    assert survivors(tmp_path) == []


def test_a_killed_switch_fails_the_run_quickly(tmp_path):
    began = time.monotonic()
    # Large enough that the all-reduce is still running when the switch is killed (the agents start in step, at
    # the start barrier's go, from which after_s counts).
    report = run_testbed(TestbedConfig(workers=2, size=8_000_000, density=0.5, fault=Fault(FaultKind.KILL_SWITCH,
                                                                                          after_s=0.05),
                                       timeout=60, keep_logs=tmp_path))
    assert not report.ok
    assert report.failure.startswith("switch process died (SIGKILL, exit -9)"), report.failure
    # Ended on the switch's death, not on a timeout.
    assert time.monotonic() - began < 45
    assert survivors(tmp_path) == []


def test_a_hung_worker_ends_the_run_within_its_timeout(tmp_path):
    began = time.monotonic()
    report = run_testbed(TestbedConfig(workers=3, size=4096, fault=Fault(FaultKind.HANG_WORKER, worker=1),
                                       timeout=8, keep_logs=tmp_path))
    assert not report.ok
    # The others give up first and say why (a worker never showed up); the runner's deadline is the backstop.
    assert "WorkerMissing" in report.failure or "still running after the 8 s timeout" in report.failure, \
        report.failure
    assert time.monotonic() - began < 8 + 10  # + input generation and teardown
    assert survivors(tmp_path) == []


def test_cli_json_output(tmp_path, capsys):
    code = main(["--workers", "2", "--size", "2000", "--density", "0.2", "--json", "--keep-logs", str(tmp_path)])
    data = json.loads(capsys.readouterr().out)
    assert code == EXIT_OK, data["failure"]
    assert data["ok"] is True and data["jobs"][0]["workers"][1]["ok"] is True
    assert (tmp_path / "logs" / "switch.stderr").is_file()
    assert main(["--workers", "2", "--size", "2000", "--fault", "nan-input@0", "--keep-logs", str(tmp_path / "b")]) \
        == EXIT_FAILED
    assert "RESULT: FAILED: worker 0 of job 0" in capsys.readouterr().out


def test_agents_start_in_step_unless_asked_otherwise_or_one_is_hung():
    from omnireduce.testbed.agents import start_barrier

    barrier = start_barrier(TestbedConfig(workers=3), 3)
    try:
        assert barrier is not None and barrier.expected == 3 and barrier.path.exists()
    finally:
        barrier.close()
    assert start_barrier(TestbedConfig(workers=3, start_in_step=False), 3) is None
    # A stopped agent never becomes ready: its peers must find it missing in the scale round instead.
    assert start_barrier(TestbedConfig(workers=3, fault=Fault(FaultKind.HANG_WORKER, worker=1)), 3) is None


def test_staggered_agents_still_give_exact_results(tmp_path):
    report = run_testbed(TestbedConfig(workers=3, size=8192, density=0.1, slots=8, start_in_step=False,
                                       timeout=90, keep_logs=tmp_path))
    assert report.ok, report.failure
    check_traffic(report)
    assert survivors(tmp_path) == []


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="pinning needs 2 CPUs; this process may use 1")
def test_a_pinned_run_puts_the_switch_on_a_cpu_of_its_own(tmp_path, monkeypatch):
    from omnireduce.testbed import loopback

    started: dict[str, frozenset[int] | None] = {}
    start = loopback.Supervisor.start

    def recording_start(self, spec):
        started[spec.name] = spec.cpus
        return start(self, spec)

    monkeypatch.setattr(loopback.Supervisor, "start", recording_start)
    report = run_testbed(TestbedConfig(workers=3, size=20000, density=0.1, dtype="int32", slots=8,
                                       cpu_pinning=CpuPinning.ON, timeout=90, keep_logs=tmp_path))
    assert report.ok, report.failure
    cpus = os.sched_getaffinity(0)
    assert started.pop("switch") == {max(cpus)}
    assert set(started.values()) == {frozenset(cpus - {max(cpus)})} and len(started) == 3
    assert report.cpus == f"switch on CPU {max(cpus)}, agents on CPU{'s' if len(cpus) > 2 else ''} " \
                          f"{cpu_list(cpus - {max(cpus)})}"
    assert survivors(tmp_path) == []


def test_a_switch_that_cannot_be_pinned_fails_the_run_saying_so(tmp_path, monkeypatch):
    from omnireduce.testbed import loopback
    from omnireduce.testbed.cpus import CpuPlan

    offline = frozenset({max(os.sched_getaffinity(0)) + 4096})  # a CPU this machine does not have
    monkeypatch.setattr(loopback, "plan_cpus", lambda pinning: CpuPlan(switch=offline, agents=offline))
    report = run_testbed(TestbedConfig(workers=2, size=4096, density=0.1, timeout=60, keep_logs=tmp_path))
    assert not report.ok
    assert report.failure.startswith(f"cannot start switch: [Errno 22] cannot pin switch to CPUs {sorted(offline)}")
    assert survivors(tmp_path) == []
