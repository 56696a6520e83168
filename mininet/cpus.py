"""Which CPUs a loopback run's processes may use: the switch on a CPU of its own, the agents on the others.

Software switches are benchmarked with their packet thread pinned to a core no other busy process shares (DPDK's
and VPP's worker lcores, BESS's workers): every frame of a job passes through it, so when the scheduler puts an agent
on its CPU or moves it to another one, the whole job waits. Measured on a 16-CPU machine, 16 workers, 100 MB at
density 0.1 (docs/performance.md): 3.6-3.7 s per call unpinned (17 busy processes on 16 CPUs), 2.5 s pinned. On a
machine of 2 or 3 CPUs the agents would share what is left and the run is bound by their CPU time anyway, so `auto`
pins only from MIN_CPUS_TO_PIN CPUs on.
"""

from __future__ import annotations

import enum
import os
from dataclasses import dataclass
from typing import Iterable

#: `auto` pins where the testbed may use at least this many CPUs (one for the switch, the rest for the agents).
MIN_CPUS_TO_PIN = 4


class CpuPinning(enum.Enum):
    """--cpu-pinning: whether the loopback switch gets a CPU of its own."""

    AUTO = "auto"  # on where the testbed may use >= MIN_CPUS_TO_PIN CPUs, else off
    ON = "on"
    OFF = "off"

    def __str__(self) -> str:
        return self.value


class CpuPlanError(ValueError):
    """Pinning was asked for where it cannot be done."""


@dataclass(frozen=True, slots=True)
class CpuPlan:
    """The CPU sets of the switch and of the agents; None: that process may use whatever the testbed may."""

    switch: frozenset[int] | None = None
    agents: frozenset[int] | None = None
    #: why the run is not pinned ('' when it is)
    why_not: str = ""

    @property
    def pinned(self) -> bool:
        return self.switch is not None

    def describe(self) -> str:
        if not self.pinned:
            return f"not pinned ({self.why_not})" if self.why_not else "not pinned"
        agents = self.agents or frozenset()
        plural = "s" if len(agents) > 1 else ""
        return f"switch on CPU {cpu_list(self.switch)}, agents on CPU{plural} {cpu_list(agents)}"


def cpu_list(cpus: Iterable[int]) -> str:
    """CPU numbers as the kernel's cpulist format writes them: '0-14', '0,2-3'."""
    ordered = sorted(set(cpus))
    parts: list[str] = []
    start = previous = None
    for cpu in ordered + [None]:
        if start is not None and cpu == previous + 1:
            previous = cpu
            continue
        if start is not None:
            parts.append(str(start) if start == previous else f"{start}-{previous}")
        start = previous = cpu
    return ",".join(parts)


def available_cpus() -> frozenset[int]:
    """The CPUs this process may run on (its affinity: a taskset or a cgroup's cpuset narrows it)."""
    return frozenset(os.sched_getaffinity(0))


def plan_cpus(pinning: CpuPinning, available: Iterable[int] | None = None) -> CpuPlan:
    """The switch on the highest-numbered available CPU (CPU 0 usually takes more of the machine's interrupts and
    housekeeping), the agents on the rest. CpuPlanError if `on` is asked for with fewer than 2 CPUs."""
    cpus = frozenset(available) if available is not None else available_cpus()
    if pinning is CpuPinning.OFF:
        return CpuPlan(why_not="--cpu-pinning off")
    if pinning is CpuPinning.AUTO and len(cpus) < MIN_CPUS_TO_PIN:
        return CpuPlan(why_not=f"{len(cpus)} CPUs: --cpu-pinning auto pins from {MIN_CPUS_TO_PIN} on")
    if len(cpus) < 2:
        raise CpuPlanError(f"--cpu-pinning on needs at least 2 CPUs (one for the switch, one for the agents); "
                           f"this process may use {len(cpus)} (CPU {cpu_list(cpus)})")
    switch = max(cpus)
    return CpuPlan(switch=frozenset({switch}), agents=cpus - {switch})
