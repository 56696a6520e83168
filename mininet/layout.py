"""Where a run keeps its files (inputs, outputs, logs), and what a network mode hands back to the runner."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .plan import WorkerPlace

# Every process of a run carries RUN_TAG_VARIABLE=<run directory> in its environment (see processes.Supervisor).
RUN_TAG_VARIABLE = "OMNIREDUCE_TESTBED_RUN"


@dataclass(frozen=True, slots=True)
class RunLayout:
    """`root/inputs/<worker>.npy`, `root/outputs/<worker>.npy`, `root/logs/<process>.stdout|.stderr|.progress`."""

    root: Path

    @property
    def inputs(self) -> Path:
        return self.root / "inputs"

    @property
    def outputs(self) -> Path:
        return self.root / "outputs"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def tag(self) -> dict[str, str]:
        """The environment marker of this run's processes."""
        return {RUN_TAG_VARIABLE: str(self.root)}

    def create(self) -> "RunLayout":
        for directory in (self.inputs, self.outputs, self.logs):
            directory.mkdir(parents=True, exist_ok=True)
        return self

    def input_path(self, worker: WorkerPlace) -> Path:
        return self.inputs / f"{worker.name}.npy"

    def output_path(self, worker: WorkerPlace) -> Path:
        return self.outputs / f"{worker.name}.npy"

    def stdout_path(self, process_name: str) -> Path:
        return self.logs / f"{process_name}.stdout"

    def stderr_path(self, process_name: str) -> Path:
        return self.logs / f"{process_name}.stderr"

    def progress_path(self, process_name: str) -> Path:
        """The agent's progress lines (host/progress.py), read while it runs."""
        return self.logs / f"{process_name}.progress"


def worker_title(worker: WorkerPlace) -> str:
    """How messages name a worker: 'worker 2 of job 0'."""
    return f"worker {worker.worker_id} of job {worker.job_id}"


@dataclass(frozen=True, slots=True)
class RunOutcome:
    """What a network mode reports: the first failure (None if none), phase durations, the switch's counters
    (their JSON form, None when they could not be read). Agents' results and stats are in the layout's files."""

    failure: str | None
    setup_s: float
    elapsed_s: float
    counters: dict[str, Any] | None
    #: the loopback switch's port kind as run ("shm" or "udp"); None on Mininet
    ports: str | None = None
    #: CPU time the loopback switch process used while the agents ran (from the start barrier's go to the last
    #: agent's exit); None on Mininet or where /proc cannot say
    switch_cpu_s: float | None = None
    #: where the loopback switch and agents ran (mininet/cpus.py CpuPlan.describe()); None on Mininet
    cpus: str | None = None
