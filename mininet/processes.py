"""Child processes of a testbed run: start them with their output in log files, wait on them with deadlines, and
stop them (and everything they spawned) on the way out.

Every child starts in a new session, so that it and whatever it forks share one process group whose id is the
child's pid: stopping a child signals that group, never anything found by name. Waiting uses pidfds where the kernel
has them (Linux >= 5.3), so no loop sleeps to find out that a process ended.
"""

from __future__ import annotations

import logging
import os
import select
import shlex
import signal
import subprocess
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Iterable, Mapping, Sequence

log = logging.getLogger(__name__)

# How long a child gets between SIGTERM and SIGKILL: enough for a Python process to run its finally blocks.
DEFAULT_GRACE_S = 3.0
# How much of a log's end is read to find its last line.
_TAIL_BYTES = 8192


@dataclass(frozen=True, slots=True)
class ProcessSpec:
    """What to run: a name used in messages and log file names, the command line, and its environment."""

    name: str
    argv: tuple[str, ...]
    env: Mapping[str, str] | None = None
    cwd: Path | None = None
    #: the CPUs it may run on (its threads and children inherit them); None: whatever its parent may use
    cpus: frozenset[int] | None = None


def last_line(path: Path) -> str:
    """The last non-empty line of a log file ('' when there is none), for failure messages."""
    try:
        with path.open("rb") as stream:
            stream.seek(0, os.SEEK_END)
            size = stream.tell()
            stream.seek(max(0, size - _TAIL_BYTES))
            tail = stream.read().decode("utf-8", errors="replace")
    except OSError:
        return ""
    lines = [line.strip() for line in tail.splitlines() if line.strip()]
    return lines[-1] if lines else ""


def describe_exit(returncode: int) -> str:
    """'exit 3' or 'SIGKILL, exit -9': what a return code means."""
    if returncode < 0:
        try:
            return f"{signal.Signals(-returncode).name}, exit {returncode}"
        except ValueError:
            return f"signal {-returncode}, exit {returncode}"
    return f"exit {returncode}"


class ManagedProcess:
    """One child: started in its own session with stdout and stderr in `<log_dir>/<name>.stdout|.stderr`."""

    def __init__(self, spec: ProcessSpec, log_dir: Path) -> None:
        self.spec = spec
        self.stdout_path = log_dir / f"{spec.name}.stdout"
        self.stderr_path = log_dir / f"{spec.name}.stderr"
        with self.stdout_path.open("wb") as stdout, self.stderr_path.open("wb") as stderr:
            self.popen = subprocess.Popen(
                list(spec.argv), stdin=subprocess.DEVNULL, stdout=stdout, stderr=stderr,
                env=dict(spec.env) if spec.env is not None else None, cwd=spec.cwd, start_new_session=True)
        self.pid = self.popen.pid
        if spec.cpus is not None:
            # Set right after the fork, while the child is still starting its interpreter: every thread it
            # starts later inherits the set.
            try:
                os.sched_setaffinity(self.pid, spec.cpus)
            except OSError as error:
                self.popen.kill()
                self.popen.wait()
                raise OSError(error.errno, f"cannot pin {spec.name} to CPUs {sorted(spec.cpus)}: "
                                           f"{error.strerror}") from None
        self._pidfd: int | None = _open_pidfd(self.pid)
        log.debug("started %s (pid %d): %s", spec.name, self.pid, " ".join(spec.argv))

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def returncode(self) -> int | None:
        return self.popen.poll()

    def alive(self) -> bool:
        return self.popen.poll() is None

    def fileno(self) -> int | None:
        """The pidfd that becomes readable when the process ends (None where pidfds are unavailable)."""
        return self._pidfd

    def wait(self, timeout: float | None) -> int | None:
        """The return code, or None if the process is still running after `timeout` seconds."""
        try:
            return self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def last_error_line(self) -> str:
        """The last line it wrote to stderr, else to stdout."""
        return last_line(self.stderr_path) or last_line(self.stdout_path)

    def failure_message(self) -> str:
        """'<name> exited with code 3: <last stderr line>' (or 'was killed by SIGKILL ...')."""
        code = self.popen.poll()
        if code is None:
            return f"{self.name} is still running"
        what = f"exited with code {code}" if code >= 0 else f"died ({describe_exit(code)})"
        line = self.last_error_line()
        return f"{self.name} {what}: {line}" if line else f"{self.name} {what}"

    def stop(self, grace_s: float = DEFAULT_GRACE_S) -> int:
        """SIGTERM to its process group, SIGKILL after `grace_s`; returns the exit code. Idempotent."""
        if self.popen.poll() is None:
            self._signal_group(signal.SIGTERM)
            # A stopped process (SIGSTOP, e.g. a hung-worker test) acts on SIGTERM only once continued.
            self._signal_group(signal.SIGCONT)
            if self.wait(grace_s) is None:
                log.warning("%s (pid %d) ignored SIGTERM for %.1f s; killing it", self.name, self.pid, grace_s)
                self._signal_group(signal.SIGKILL)
                self.popen.wait()
        else:
            # The leader is gone; anything it forked into its group is killed too (the group id is our child's pid,
            # and stays reserved while any member lives, so this cannot hit an unrelated process).
            self._signal_group(signal.SIGKILL)
        self._close_pidfd()
        return self.popen.returncode

    def _signal_group(self, signum: int) -> None:
        try:
            os.killpg(self.pid, signum)
        except ProcessLookupError:
            pass
        except PermissionError:
            log.warning("no permission to signal process group %d of %s", self.pid, self.name)

    def _close_pidfd(self) -> None:
        if self._pidfd is not None:
            os.close(self._pidfd)
            self._pidfd = None

    def __repr__(self) -> str:
        return f"<ManagedProcess {self.name} pid={self.pid} returncode={self.popen.poll()}>"


def _open_pidfd(pid: int) -> int | None:
    opener = getattr(os, "pidfd_open", None)
    if opener is None:
        return None
    try:
        return opener(pid)
    except OSError:
        return None


def wait_for_any_exit(processes: Iterable[ManagedProcess], timeout: float) -> list[ManagedProcess]:
    """Block until at least one of `processes` has ended or `timeout` s have passed; return those that ended.

    With pidfds this is one poll() on all of them; without, it checks at a short interval up to the deadline.
    """
    processes = list(processes)
    ended = [process for process in processes if process.returncode is not None]
    if ended or not processes:
        return ended
    deadline = time.monotonic() + max(0.0, timeout)
    if all(process.fileno() is not None for process in processes):
        poller = select.poll()
        for process in processes:
            poller.register(process.fileno(), select.POLLIN)
        poller.poll(max(0.0, timeout) * 1000.0)
    else:
        while time.monotonic() < deadline:
            if any(process.returncode is not None for process in processes):
                break
            time.sleep(0.02)
    return [process for process in processes if process.returncode is not None]


@dataclass(slots=True)
class Supervisor:
    """Starts children and guarantees they are all stopped when the `with` block ends, however it ends."""

    log_dir: Path
    grace_s: float = DEFAULT_GRACE_S
    # Environment variables added to every child (and inherited by whatever it starts), so that a check after the
    # run can find any process of this run that outlived it (`tagged_processes`).
    tag: Mapping[str, str] = field(default_factory=dict)
    processes: list[ManagedProcess] = field(default_factory=list)

    def start(self, spec: ProcessSpec) -> ManagedProcess:
        if any(process.name == spec.name for process in self.processes):
            raise ValueError(f"a process named {spec.name!r} was already started")
        if self.tag:
            spec = replace(spec, env={**(spec.env or os.environ), **self.tag})
        process = ManagedProcess(spec, self.log_dir)
        self.processes.append(process)
        return process

    def stop_all(self) -> None:
        """Stop every child, last started first (agents before the switch they talk to)."""
        for process in reversed(self.processes):
            try:
                process.stop(self.grace_s)
            except Exception:  # noqa: BLE001 -- one failed stop must not leave the others running
                log.exception("could not stop %s (pid %d)", process.name, process.pid)

    def __enter__(self) -> "Supervisor":
        self.log_dir.mkdir(parents=True, exist_ok=True)
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop_all()


def cpu_seconds(pid: int) -> float | None:
    """User and system CPU time a live process (all its threads) has used so far; None where /proc cannot say."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) is in parentheses and may hold spaces: count the fields after its end.
    fields_after_name = stat[stat.rfind(")") + 2:].split()
    try:
        ticks = int(fields_after_name[11]) + int(fields_after_name[12])  # utime, stime: fields 14 and 15
    except (IndexError, ValueError):
        return None
    return ticks / os.sysconf("SC_CLK_TCK")


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists (and is not a zombie)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            # Field 3, after the parenthesised command name, is the state; Z is a zombie.
            return stat.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except (OSError, IndexError):
        return False


def argv_of(pid: int) -> tuple[str, ...] | None:
    """The command line of a live process, or None when it is gone."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    return tuple(part.decode("utf-8", errors="replace") for part in raw.split(b"\0") if part)


def format_argv(argv: Sequence[str]) -> str:
    return " ".join(shlex.quote(part) for part in argv)


def tagged_processes(name: str, value: str) -> list[int]:
    """Pids of live processes whose environment holds `name=value` (those this user may read)."""
    marker = f"{name}={value}".encode()
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue
        if marker in environ.split(b"\0") and pid_alive(int(entry.name)):
            pids.append(int(entry.name))
    return sorted(pids)
