# Run: /work/main/.venv/bin/pytest tests/testbed/test_processes.py -q
"""Process supervision: logs, failure messages, waiting without sleeps, and stopping whole process groups."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from omnireduce.testbed.processes import (
    ManagedProcess,
    ProcessSpec,
    Supervisor,
    describe_exit,
    last_line,
    pid_alive,
    tagged_processes,
    wait_for_any_exit,
)
from tests.polling import wait_until

PY = sys.executable


def python(name: str, code: str) -> ProcessSpec:
    return ProcessSpec(name, (PY, "-c", code))


def test_failure_message_quotes_the_last_stderr_line(tmp_path):
    process = ManagedProcess(python("worker-2", "import sys; print('hello'); sys.stderr.write('first\\nbad input\\n');"
                                                " sys.exit(3)"), tmp_path)
    assert process.wait(30) == 3
    assert process.failure_message() == "worker-2 exited with code 3: bad input"
    assert last_line(process.stdout_path) == "hello"
    process.stop()


def test_describe_exit():
    assert describe_exit(0) == "exit 0"
    assert describe_exit(-9) == "SIGKILL, exit -9"


def test_wait_for_any_exit_returns_when_the_first_one_ends(tmp_path):
    with Supervisor(tmp_path) as supervisor:
        quick = supervisor.start(python("quick", "import sys; sys.stdin.read() if False else None"))
        slow = supervisor.start(python("slow", "import signal; signal.pause()"))
        began = time.monotonic()
        ended = wait_for_any_exit([quick, slow], timeout=30)
        assert ended == [quick]
        assert time.monotonic() - began < 20
        assert wait_for_any_exit([slow], timeout=0.2) == []
    assert not slow.alive()


def test_supervisor_stops_children_and_their_children_also_on_error(tmp_path):
    pid_file = tmp_path / "grandchild.pid"
    code = ("import signal, subprocess, sys; "
            f"child = subprocess.Popen([{PY!r}, '-c', 'import signal; signal.pause()']); "
            f"open({str(pid_file)!r}, 'w').write(str(child.pid)); signal.pause()")
    try:
        with Supervisor(tmp_path, grace_s=5, tag={"OMNIREDUCE_TEST_TAG": str(tmp_path)}) as supervisor:
            parent = supervisor.start(python("parent", code))
            wait_until(lambda: pid_file.is_file() and pid_file.read_text(), 30, "the grandchild's pid file",
                       abort=lambda: None if parent.alive() else "the parent exited")
            grandchild = int(pid_file.read_text())
            assert set(tagged_processes("OMNIREDUCE_TEST_TAG", str(tmp_path))) == {parent.pid, grandchild}
            raise RuntimeError("the run failed")
    except RuntimeError:
        pass
    assert not parent.alive()
    wait_until(lambda: not pid_alive(grandchild), 10, "the grandchild to end")
    assert tagged_processes("OMNIREDUCE_TEST_TAG", str(tmp_path)) == []


def test_sigterm_ignoring_child_is_killed_after_grace(tmp_path):
    code = ("import signal, sys, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
            "print('ready', flush=True); signal.pause()")
    process = ManagedProcess(python("stubborn", code), tmp_path)
    wait_until(lambda: last_line(process.stdout_path) == "ready", 30, "the stubborn child to be ready")
    assert process.stop(grace_s=0.3) == -9
    assert not pid_alive(process.pid)
    assert os.getpgid(os.getpid()) != process.pid  # it had its own group: we never signalled ours


def test_cpu_seconds_reads_a_live_process_and_says_none_for_a_gone_one():
    from omnireduce.testbed.processes import cpu_seconds

    before = cpu_seconds(os.getpid())
    spent = time.process_time()
    while time.process_time() - spent < 0.05:  # burn CPU: the reading must move
        pass
    after = cpu_seconds(os.getpid())
    assert before is not None and after is not None and after - before >= 0.02
    finished = subprocess.Popen(["true"])
    finished.wait()
    assert cpu_seconds(finished.pid) is None


def test_a_pinned_child_runs_on_its_cpus_only(tmp_path):
    cpus = frozenset({max(os.sched_getaffinity(0))})
    process = ManagedProcess(ProcessSpec("pinned", (PY, "-c", "import signal; signal.pause()"), cpus=cpus), tmp_path)
    try:
        assert os.sched_getaffinity(process.pid) == cpus
    finally:
        process.stop()


def test_pinning_to_a_cpu_that_does_not_exist_is_a_clear_error_and_leaves_no_child(tmp_path):
    missing = frozenset({max(os.sched_getaffinity(0)) + 4096})
    marker = f"# {tmp_path}"  # finds the child by its command line, had it survived
    with pytest.raises(OSError, match=r"cannot pin lost to CPUs \[\d+\]"):
        ManagedProcess(ProcessSpec("lost", (PY, "-c", f"import signal; signal.pause()  {marker}"), cpus=missing),
                       tmp_path)
    survivors = []
    for entry in os.listdir("/proc"):
        try:
            if entry.isdigit() and marker.encode() in open(f"/proc/{entry}/cmdline", "rb").read():
                survivors.append(int(entry))
        except OSError:
            pass
    assert survivors == []
