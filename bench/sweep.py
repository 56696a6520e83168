"""`omnireduce-bench allreduce`: the all-reduce sweep over density, workers and tensor size, four modes on the
same inputs in the same run.

    rows = run_sweep(SweepConfig(densities=(0.1,), workers=(2,), sizes=(65536,)), progress)

Modes (the inputs are the testbed's: each block of LANES values non-zero with probability `density`,
independently per worker, from a generator seeded by (seed, job, rank); omnireduce.testbed.inputs):
- sparse: this project over the loopback testbed (softswitch process, one agent process per worker);
- dense: the same switch and agents with --dense (every block sent, SwitchML-style);
- gloo: torch.distributed all-reduce of the dense tensor between W spawned processes over loopback TCP;
- gloo-sparse-coo: the same with the tensor as a sparse COO tensor, one row per non-zero block;
- gloo-sparse-coo-flat (only when asked for, --modes): the flat tensor's own COO form, one index per non-zero
  value (`tensor.to_sparse()`); it all-gathers 3x the bytes of the values, so it is left out of the default sweep,
  whose 32-worker dense points it would take minutes over.

Time of a testbed run: the smallest of the agents' own all-reduce clocks (`stats.elapsed_s`, from the call to
the return, scale round included). The agents start one after another; the scale round waits for the last one,
so the last to start measures the all-reduce itself and the others add their wait for it. Process start-up and
switch set-up are not timed. With `calls` > 1 every agent all-reduces its tensor `calls` times in one run, and the
point's times are the calls after the first, each the slowest worker's: calls that start in step, as gloo's
barrier-started all-reduces and a training loop's do. gloo: the slowest rank's all-reduce after a barrier (bench/gloo.py).

Bytes: sparse and dense are measured at the switch's ports (its counters: packets and Ethernet bytes, no FCS);
a worker's received bytes are the switch's sent bytes over W. gloo's are described in bench/gloo.py.
"""

from __future__ import annotations

import logging
import os
import statistics
import tempfile
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

from omnireduce.testbed import TestbedConfig, run_testbed
from omnireduce.testbed.inputs import InputSpec, block_count
from omnireduce.testbed.summary import call_seconds

from .gloo import GLOO_DENSE, GLOO_SPARSE, GLOO_SPARSE_FLAT, GlooPoint, GlooTiming, run_gloo, torch_missing
from .ideal import IdealExchange, ideal_of_job, ideal_of_spec

log = logging.getLogger(__name__)

SPARSE = "sparse"
DENSE = "dense"
MODES = (SPARSE, DENSE, GLOO_DENSE, GLOO_SPARSE, GLOO_SPARSE_FLAT)
DEFAULT_MODES = (SPARSE, DENSE, GLOO_DENSE, GLOO_SPARSE)
TESTBED_MODES = (SPARSE, DENSE)
GLOO_MODES = (GLOO_DENSE, GLOO_SPARSE, GLOO_SPARSE_FLAT)

# Where each mode's figures come from, said once in every table and JSON.
SOURCES = {
    SPARSE: "switch port counters (measured)",
    DENSE: "switch port counters (measured)",
    GLOO_DENSE: "sent: /proc/self/io wchar per rank (measured); received: the group's sent / W (loopback TCP "
                "delivers each byte to one rank); the ring's 2(W-1)/W of the tensor beside it (computed)",
    GLOO_SPARSE: "sent: /proc/self/io wchar per rank (measured); received: the group's sent / W; others' nnz x "
                 "(8 + 128) B beside it (computed, all-gather, without gloo's sizes)",
    GLOO_SPARSE_FLAT: "sent: /proc/self/io wchar per rank (measured); received: the group's sent / W; others' "
                      "non-zero values x (8 + 4) B beside it (computed, all-gather, without gloo's sizes)",
}


@dataclass(frozen=True, slots=True)
class SweepConfig:
    """The points and modes of one sweep. A point is (workers, size, density); points with
    size * workers > max_elements are left out (they take too long on a small machine: it says which)."""

    densities: tuple[float, ...] = (1.0, 0.4, 0.1, 0.01, 0.001)
    workers: tuple[int, ...] = (2, 4, 8, 16, 32)
    sizes: tuple[int, ...] = (65536, 1048576)
    max_elements: int = 2 * 1048576
    repeat: int = 3
    slots: int | None = None  # None: the testbed's own choice (it follows the tensor)
    seed: int = 0
    modes: tuple[str, ...] = DEFAULT_MODES
    timeout_s: float = 300.0
    calls: int = 1  # all-reduces per testbed run; above 1 the later calls are timed (in step)

    def points(self) -> list[tuple[int, int, float]]:
        return [(workers, size, density) for workers in self.workers for size in self.sizes
                for density in self.densities if size * workers <= self.max_elements]

    def left_out(self) -> list[tuple[int, int]]:
        return [(workers, size) for workers in self.workers for size in self.sizes
                if size * workers > self.max_elements]


QUICK = SweepConfig(densities=(1.0, 0.1, 0.01), workers=(2,), sizes=(16384,), repeat=2)


@dataclass(frozen=True, slots=True)
class Row:
    """One mode at one point, over `repeat` runs: medians and the spread (min, max) of the time; traffic per
    worker and at the switch; the ideal exchange of the same inputs. Absent figures are None."""

    mode: str
    workers: int
    size: int
    density: float
    status: str  # "ok", "not installed ...", "failed: ...", "skipped: ..."
    seconds: tuple[float, ...] = ()
    union_density: float = 0.0
    ideal_total_bytes: int = 0
    ideal_received_bytes_per_worker: int = 0
    switch_to_packets: int | None = None
    switch_to_bytes: int | None = None
    switch_from_packets: int | None = None
    switch_from_bytes: int | None = None
    sent_bytes_per_worker: float | None = None  # mean over workers
    received_bytes_per_worker: float | None = None  # mean over workers
    retransmissions: int | None = None  # median over runs of the sum over workers (per call with calls > 1)
    source: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def median_s(self) -> float | None:
        return statistics.median(self.seconds) if self.seconds else None

    @property
    def total_bytes(self) -> float | None:
        if self.sent_bytes_per_worker is None or self.received_bytes_per_worker is None:
            return None
        return (self.sent_bytes_per_worker + self.received_bytes_per_worker) * self.workers

    def as_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["median_s"] = self.median_s
        data["min_s"] = min(self.seconds) if self.seconds else None
        data["max_s"] = max(self.seconds) if self.seconds else None
        data["total_bytes"] = self.total_bytes
        return data


# The testbed picks free loopback ports by binding port 0 and closing; another process on the machine (another
# testbed run) can take one before the softswitch binds it. That failure says nothing about the point: run again.
PORT_RACE = "Address already in use"
PORT_RACE_RETRIES = 3


def _median_int(values: Sequence[int]) -> int:
    return int(statistics.median(values))


def testbed_row(mode: str, workers: int, size: int, density: float, config: SweepConfig,
                ideal: IdealExchange, blocks: int) -> Row:
    """`repeat` testbed runs of one point in sparse or dense mode."""
    base = Row(mode, workers, size, density, "ok", union_density=ideal.results / blocks,
               ideal_total_bytes=ideal.total_bytes, ideal_received_bytes_per_worker=ideal.received_bytes_per_worker,
               source=SOURCES[mode])
    testbed = TestbedConfig(workers=workers, size=size, density=density, slots=config.slots, seed=config.seed,
                            dense=mode == DENSE, timeout=config.timeout_s, repeat=config.calls)
    seconds, to_packets, to_bytes, from_packets, from_bytes, retransmissions = [], [], [], [], [], []
    loads, retried = [], 0
    for _ in range(config.repeat):
        report = run_testbed(testbed)
        while not report.ok and retried < PORT_RACE_RETRIES and PORT_RACE in (report.failure or ""):
            retried += 1
            log.warning("%s W=%d n=%d d=%g: %s; running it again", mode, workers, size, density, report.failure)
            report = run_testbed(testbed)
        if not report.ok:
            return replace(base, status=f"failed: {report.failure}", seconds=tuple(seconds))
        loads.append(os.getloadavg()[0])
        job = report.jobs[0]
        spec = InputSpec(workers, size, density, "float32", config.seed)
        reported = ideal_of_job(job, spec)  # the run's: `calls` times one call's
        if reported != replace(ideal, contributions=ideal.contributions * config.calls,
                               results=ideal.results * config.calls):
            log.warning("the testbed's ideal exchange %s differs from the bench's %s", reported, ideal)
        if config.calls > 1:
            seconds.extend(call_seconds(job.workers)[1:])
        else:
            seconds.append(min(float(worker.stats.get("elapsed_s", 0.0)) for worker in job.workers))
        # Counters and retransmissions cover the run's calls; a row is one call's (the same tensor each call).
        measured = job.measured
        to_packets.append(measured.to_switch_packets / config.calls)
        to_bytes.append(measured.to_switch_bytes / config.calls)
        from_packets.append(measured.from_switch_packets / config.calls)
        from_bytes.append(measured.from_switch_bytes / config.calls)
        retransmissions.append(sum(worker.retransmissions for worker in job.workers) / config.calls)
    return replace(
        base, seconds=tuple(seconds), switch_to_packets=_median_int(to_packets), switch_to_bytes=_median_int(to_bytes),
        switch_from_packets=_median_int(from_packets), switch_from_bytes=_median_int(from_bytes),
        sent_bytes_per_worker=_median_int(to_bytes) / workers, received_bytes_per_worker=_median_int(from_bytes) / workers,
        retransmissions=_median_int(retransmissions),
        extra={"load_1min": [round(load, 2) for load in loads], "runs_retried_for_port_race": retried,
               "calls_per_run": config.calls})


def gloo_rows(timings: Iterable[GlooTiming], workers: int, ideals: dict[tuple[int, float], IdealExchange]) -> list[Row]:
    rows = []
    for timing in timings:
        ideal = ideals[(timing.size, timing.density)]
        blocks = block_count(timing.size)
        sent, received = sum(timing.sent_bytes), sum(timing.received_bytes)
        rows.append(Row(
            timing.mode, workers, timing.size, timing.density, "ok" if timing.verified else "failed: wrong sum",
            seconds=timing.seconds, union_density=ideal.results / blocks, ideal_total_bytes=ideal.total_bytes,
            ideal_received_bytes_per_worker=ideal.received_bytes_per_worker,
            # Loopback TCP loses nothing and every byte sent is received by one rank: the group's measured bytes
            # sent, over W, are the mean received per rank. The algorithm's figure leaves out gloo's sizes and
            # metadata, which dominate a sparse all-reduce of a few blocks; it is kept beside for comparison.
            sent_bytes_per_worker=sent / workers, received_bytes_per_worker=sent / workers, source=SOURCES[timing.mode],
            extra={"computed_received_bytes_per_worker": received / workers,
                   "group_sent_over_computed_received": round(sent / received, 4) if received else None,
                   "load_1min": [round(os.getloadavg()[0], 2)]}))
    return rows


Progress = Callable[[str], None]


def run_sweep(config: SweepConfig, progress: Progress = lambda label: None,
              on_row: Callable[[Row], None] = lambda row: None) -> list[Row]:
    """Run every point of `config` in every mode; `progress(label)` is called once per unit of work done
    (see `work_units`), `on_row` with each finished row."""
    missing = torch_missing() if any(mode in GLOO_MODES for mode in config.modes) else None
    rows: list[Row] = []

    def emit(row: Row) -> None:
        rows.append(row)
        on_row(row)

    for workers in config.workers:
        points = [(size, density) for w, size, density in config.points() if w == workers]
        if not points:
            continue
        ideals = {(size, density): ideal_of_spec(InputSpec(workers, size, density, "float32", config.seed))
                  for size, density in points}
        gloo_modes = [mode for mode in config.modes if mode in GLOO_MODES]
        if gloo_modes:
            if missing:
                for (size, density) in points:
                    for mode in gloo_modes:
                        emit(Row(mode, workers, size, density, missing, source=SOURCES[mode]))
            else:
                try:
                    with tempfile.TemporaryDirectory(prefix="omnireduce-bench-gloo-") as work:
                        timings = run_gloo(workers, [GlooPoint(size, density) for size, density in points],
                                           config.repeat, config.seed, Path(work), gloo_modes)
                    for row in gloo_rows(timings, workers, ideals):
                        emit(row)
                except Exception as error:  # noqa: BLE001 -- a failed group is a row, the sweep goes on
                    log.error("gloo with %d workers failed: %s", workers, error)
                    for (size, density) in points:
                        for mode in gloo_modes:
                            emit(Row(mode, workers, size, density, f"failed: {error}", source=SOURCES[mode]))
            progress(f"gloo W={workers}")
        for size, density in points:
            for mode in (mode for mode in config.modes if mode in TESTBED_MODES):
                emit(testbed_row(mode, workers, size, density, config, ideals[(size, density)], block_count(size)))
                progress(f"{mode} W={workers} n={size} d={density:g}")
    return rows


def work_units(config: SweepConfig) -> int:
    """How many times run_sweep calls `progress`: one per gloo group, one per testbed point and mode."""
    testbed = sum(1 for mode in config.modes if mode in TESTBED_MODES)
    groups = len({workers for workers, _, _ in config.points()}) if any(m in GLOO_MODES for m in config.modes) else 0
    return groups + testbed * len(config.points())
