"""The fault suite: all-reduces through a faulty network, each result compared bit for bit with the fault-free run.

    omnireduce-bench faults                         # every scenario, 100 runs each (docs/reliability.md)
    omnireduce-bench faults --runs 5 --scenarios loss-1,reorder-5     # a few
    omnireduce-bench faults --from faults.json --markdown              # the table of a saved suite

One switch and one job of W workers (the in-process loopback testbed, omnireduce.testbed.inprocess: the softswitch
with the native pipeline, the controller over P4Runtime, one agent per worker in a thread, the agents' default
timers), all-reducing run after run on the same agents, as training does. Run r of every scenario all-reduces the
same inputs (block-sparse float32, seed + r), so each scenario meets the same tensors. Scenario `none` runs first:
its results are the reference. In every other scenario the switch impairs the frames on their way in and out
(softswitch/faults.py, seeded per scenario and run), and a run is exact when every worker's result is bit-identical
to the reference run's (fixed point makes the sum exact, so a fault may cost time but must not change one bit), all
workers agree, and the result is within docs/protocol.md section 5's bound of numpy's float64 sum. A run whose
agents fail (Stalled, ...) counts as not exact; the job is reset (omnireduce-ctl reset) and the suite goes on with
fresh agents.

Per scenario: runs, exact runs, failures, the all-reduce's time (median, mean, 95th percentile, max) and its
overhead over `none` (mean over mean, median over median), the agents' retransmissions, REQUESTs and repairs, the
faults injected, and the switch's drops by reason; the load average before and after each scenario, since this
machine is shared.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import statistics
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from omnireduce.host import Timeouts
from omnireduce.softswitch.faults import ImpairmentPlan
from omnireduce.testbed.inprocess import InProcessConfig, InProcessTestbed, counter_delta
from omnireduce.testbed.inputs import InputSpec, make_inputs
from omnireduce.testbed.model import auto_slots
from omnireduce.testbed.verify import check_result, results_agree

log = logging.getLogger("omnireduce.bench.faults")


@dataclass(frozen=True, slots=True)
class Scenario:
    name: str
    specs: tuple[str, ...]  # --impair specs; () for the fault-free reference
    what: str

    @property
    def plan(self) -> ImpairmentPlan:
        return ImpairmentPlan.parse(self.specs)


REFERENCE = Scenario("none", (), "no fault: the reference results and times")
#: The issue's list (loss of 0.1%, 1% and 5% both ways, duplication, reordering), then delay with jitter, one lossy
#: link, and everything at once.
SCENARIOS = (
    REFERENCE,
    Scenario("loss-0.1", ("drop=0.1%",), "each frame in and out lost with probability 0.001"),
    Scenario("loss-1", ("drop=1%",), "each frame in and out lost with probability 0.01"),
    Scenario("loss-5", ("drop=5%",), "each frame in and out lost with probability 0.05"),
    Scenario("duplicate-5", ("duplicate=5%",), "each frame in and out sent twice with probability 0.05"),
    Scenario("reorder-5", ("reorder=5%",), "each frame in and out held back behind the next one with probability "
                                           "0.05 (at most 20 ms)"),
    Scenario("jitter", ("delay=2ms,jitter=2ms",), "every frame in and out delayed 0-4 ms (uniform), which reorders"),
    Scenario("lossy-link", ("1:drop=10%",), "worker 0's link (port 1) loses 10% both ways, the others nothing"),
    Scenario("mixed", ("drop=1%,duplicate=1%,reorder=1%,delay=1ms,jitter=1ms",), "all of it at once, 1% each"),
)
SCENARIO_NAMES = tuple(scenario.name for scenario in SCENARIOS)


def scenario_named(name: str) -> Scenario:
    for scenario in SCENARIOS:
        if scenario.name == name:
            return scenario
    raise ValueError(f"unknown scenario {name!r}; choose from {', '.join(SCENARIO_NAMES)}")


@dataclass(frozen=True, slots=True)
class FaultSuiteConfig:
    """The suite: `runs` all-reduces per scenario of `size` float32 values at `density`, W workers, one job.

    The default tensor (4,096 values, 10% of blocks non-zero: 128 blocks, about 44 of them non-zero in some worker,
    16 slots) keeps 100 runs at 5% loss within a quarter of an hour on a loaded 2-core machine; the time under loss
    is set by the agents' timers, not by the tensor (docs/reliability.md)."""

    runs: int = 100
    workers: int = 4
    size: int = 4096
    density: float = 0.1
    slots: int | None = None
    seed: int = 0
    scenarios: tuple[str, ...] = SCENARIO_NAMES
    #: the agents' timers (None: the agent's defaults, as a user runs it; tests shorten them)
    timeouts: Timeouts | None = None

    def slot_count(self) -> int:
        return self.slots if self.slots is not None else auto_slots(self.size, self.density)


@dataclass(slots=True)
class RunRecord:
    scenario: str
    run: int
    exact: bool
    failure: str | None
    seconds: float
    retransmissions: int
    requests: int
    repairs: int


@dataclass(slots=True)
class ScenarioResult:
    name: str
    specs: tuple[str, ...]
    what: str
    runs: int = 0
    exact: int = 0
    failures: list[str] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    retransmissions: int = 0
    requests: int = 0
    repairs: int = 0
    injected: dict[str, int] = field(default_factory=dict)  # "drop in": frames
    switch: dict[str, int] = field(default_factory=dict)  # counters that moved (drops by reason, job counters)
    load_before: tuple[float, ...] = ()
    load_after: tuple[float, ...] = ()
    wall_s: float = 0.0

    def summary(self, reference: "ScenarioResult | None") -> dict:
        times = sorted(self.seconds)
        mean = statistics.fmean(times) if times else math.nan
        median = statistics.median(times) if times else math.nan
        row = {"scenario": self.name, "runs": self.runs, "exact": self.exact, "failed": self.runs - self.exact,
               "median_s": median, "mean_s": mean,
               "p95_s": times[min(len(times) - 1, math.ceil(0.95 * len(times)) - 1)] if times else math.nan,
               "max_s": times[-1] if times else math.nan,
               "retransmissions_per_run": self.retransmissions / max(1, self.runs),
               "requests_per_run": self.requests / max(1, self.runs),
               "repairs": self.repairs}
        if reference is not None and reference.seconds:
            row["overhead_mean"] = mean / statistics.fmean(reference.seconds)
            row["overhead_median"] = median / statistics.median(reference.seconds)
            row["added_mean_s"] = mean - statistics.fmean(reference.seconds)
        return row


def inputs_of(config: FaultSuiteConfig, run: int) -> list[np.ndarray]:
    return make_inputs(InputSpec(config.workers, config.size, config.density, "float32", seed=config.seed + run))


def digest(array: np.ndarray) -> str:
    return hashlib.sha256(array.tobytes()).hexdigest()


def impair_seed(config: FaultSuiteConfig, scenario: Scenario, run: int) -> int:
    """Each (scenario, run) has its own faults, reproducible from the suite's seed."""
    index = SCENARIO_NAMES.index(scenario.name)
    return (config.seed * 1000 + index) * 100_000 + run


def judge(results: Sequence, inputs: Sequence[np.ndarray], reference: str | None) -> str | None:
    """None when every worker's result is exact (see the module doc), else why not."""
    failed = [(worker, result) for worker, result in enumerate(results) if not isinstance(result, np.ndarray)]
    if failed:
        worker, error = failed[0]
        return f"worker {worker}: {type(error).__name__}: {error}" + (
            f" ({len(failed) - 1} other worker(s) failed too)" if len(failed) > 1 else "")
    disagreement = results_agree(results)
    if disagreement:
        return disagreement
    if reference is not None and digest(results[0]) != reference:
        return "result differs from the fault-free run's on the same inputs"
    verdict = check_result(results[0], inputs)
    return None if verdict.ok else verdict.message


Progress = Callable[[str], None]


def run_suite(config: FaultSuiteConfig, progress: Progress | None = None,
              on_scenario: Callable[[ScenarioResult], None] | None = None) -> list[ScenarioResult]:
    """Run every scenario of `config` (the reference first, whether asked for or not)."""
    names = [REFERENCE.name] + [name for name in config.scenarios if name != REFERENCE.name]
    scenarios = [scenario_named(name) for name in names]
    bed_config = InProcessConfig(workers=config.workers, slots=config.slot_count(),
                                 timeouts=config.timeouts or Timeouts(), impairments=ImpairmentPlan())
    references: dict[int, str] = {}
    done: list[ScenarioResult] = []
    with InProcessTestbed(bed_config) as bed:
        for scenario in scenarios:
            result = run_scenario(bed, config, scenario, references, progress)
            done.append(result)
            if on_scenario is not None:
                on_scenario(result)
    return done


def run_scenario(bed: InProcessTestbed, config: FaultSuiteConfig, scenario: Scenario, references: dict[int, str],
                 progress: Progress | None) -> ScenarioResult:
    result = ScenarioResult(scenario.name, scenario.specs, scenario.what, load_before=os.getloadavg())
    started = time.monotonic()
    injected_before = Counter(bed.impaired.injected)
    counters_before = bed.switch_counters()
    plan = scenario.plan
    for run in range(config.runs):
        inputs = inputs_of(config, run)
        bed.impair(plan, impair_seed(config, scenario, run))
        began = time.monotonic()
        results = bed.allreduce({0: inputs})[0]
        seconds = time.monotonic() - began
        bed.impair(ImpairmentPlan(), 0)
        if scenario is REFERENCE and all(isinstance(item, np.ndarray) for item in results):
            references.setdefault(run, digest(results[0]))
        failure = judge(results, inputs, references.get(run) if scenario is not REFERENCE else None)
        stats = [agent.last_stats for agent in bed.agents.values() if agent.last_stats is not None]
        record = RunRecord(scenario.name, run, failure is None, failure, seconds,
                           # Every CONTRIB resent, the scale and closing rounds' too: the calls start in step,
                           # so a resend there is loss recovery as much as in the data tensor.
                           sum(item.retransmissions + item.rendezvous_resends for item in stats),
                           sum(item.requests_sent for item in stats),
                           sum(item.repairs_received for item in stats))
        result.runs += 1
        result.exact += record.exact
        result.seconds.append(seconds)
        result.retransmissions += record.retransmissions
        result.requests += record.requests
        result.repairs += record.repairs
        if failure is not None:
            log.warning("%s run %d: %s", scenario.name, run, failure)
            result.failures.append(f"run {run}: {failure}")
            bed.wait_idle()
            bed.reset_job(0)
        if progress is not None:
            progress(f"{scenario.name} run {run + 1}/{config.runs}: {seconds:.2f} s"
                     + ("" if failure is None else " FAILED"))
    bed.wait_idle()
    injected = Counter(bed.impaired.injected)
    injected.subtract(injected_before)
    totals: Counter[str] = Counter()
    for (kind, direction, _port), count in injected.items():
        if count:
            totals[f"{kind} {direction}"] += count
    result.injected = dict(sorted(totals.items()))
    result.switch = counter_delta(bed.switch_counters(), counters_before)
    result.load_after = os.getloadavg()
    result.wall_s = time.monotonic() - started
    return result


# --- reporting -----------------------------------------------------------------------------------------------------

def summaries(results: Sequence[ScenarioResult]) -> list[dict]:
    reference = next((result for result in results if result.name == REFERENCE.name), None)
    return [result.summary(reference) for result in results]


def _drops_text(switch: dict[str, int]) -> str:
    drops = {name.split(":", 1)[1]: count for name, count in switch.items() if name.startswith(("ingress:",
                                                                                                  "egress:"))}
    return ", ".join(f"{name} {count:,}" for name, count in sorted(drops.items(), key=lambda item: -item[1])) or "none"


def _injected_text(injected: dict[str, int]) -> str:
    return ", ".join(f"{name} {count:,}" for name, count in injected.items()) or "none"


def format_table(results: Sequence[ScenarioResult], markdown: bool = False) -> str:
    header = ["scenario", "impairment", "runs", "exact", "median s", "mean s", "p95 s", "max s", "overhead (mean)",
              "added s (mean)", "retx/run", "REQUESTs/run", "repairs", "injected", "switch drops", "load before/after"]
    rows = []
    for result, summary in zip(results, summaries(results)):
        load = f"{result.load_before[0]:.1f}/{result.load_after[0]:.1f}" if result.load_before else ""
        overhead = summary.get("overhead_mean")
        rows.append([result.name, " ".join(result.specs) or "-", f"{summary['runs']}", f"{summary['exact']}",
                     f"{summary['median_s']:.3f}", f"{summary['mean_s']:.3f}", f"{summary['p95_s']:.3f}",
                     f"{summary['max_s']:.3f}", "1" if result.name == REFERENCE.name else
                     (f"{overhead:.1f}x" if overhead is not None else ""),
                     "0" if result.name == REFERENCE.name else f"{summary.get('added_mean_s', math.nan):.3f}",
                     f"{summary['retransmissions_per_run']:.1f}", f"{summary['requests_per_run']:.1f}",
                     f"{result.repairs}", _injected_text(result.injected), _drops_text(result.switch), load])
    if markdown:
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(row) + " |" for row in rows]
    else:
        widths = [max(len(str(item)) for item in column) for column in zip(header, *rows)]
        short = slice(0, 13)  # the wide columns go on lines of their own
        lines = ["  ".join(str(item).ljust(width) for item, width in zip(header[short], widths[short]))]
        for row in rows:
            lines.append("  ".join(str(item).ljust(width) for item, width in zip(row[short], widths[short])))
            lines.append(f"    injected: {row[13]}; switch drops: {row[14]}; load {row[15]}")
    failures = [f"  {result.name} {failure}" for result in results for failure in result.failures]
    if failures:
        lines += ["", "runs that were not exact:"] + failures
    return "\n".join(lines)


def to_json(config: FaultSuiteConfig, results: Sequence[ScenarioResult], machine: str, seconds: float) -> dict:
    data = asdict(config)
    if config.timeouts is not None:
        data["timeouts"] = asdict(config.timeouts)
    data["slots"] = config.slot_count()
    return {"config": data, "machine": machine, "seconds": round(seconds, 1),
            "summaries": summaries(results), "scenarios": [asdict(result) for result in results]}


def load_results(path: Path) -> list[ScenarioResult]:
    data = json.loads(path.read_text())
    results = []
    for item in data["scenarios"]:
        item["specs"] = tuple(item["specs"])
        item["load_before"] = tuple(item["load_before"])
        item["load_after"] = tuple(item["load_after"])
        results.append(ScenarioResult(**item))
    return results
