"""A testbed run as values: what to run (`TestbedConfig`) and what came of it (`TestbedReport`)."""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from omnireduce.p4src import constants
from omnireduce.softswitch.backend import BACKENDS as PIPELINES
from omnireduce.softswitch.faults import ImpairmentError, ImpairmentPlan

from .cpus import CpuPinning
from .inputs import SUPPORTED_DTYPES, block_count
from .traffic import Exchange

# Hosts take 10.0.0.1 .. 10.0.0.253 of the testbed's /24 (.254 is the aggregator, .255 broadcast); see plan.py.
MAX_HOSTS = 253


class SwitchKind(enum.Enum):
    SOFTSWITCH = "softswitch"  # omnireduce-switch, our embedded Python switch
    BMV2 = "bmv2"  # simple_switch_grpc


class NetKind(enum.Enum):
    LOOPBACK = "loopback"  # UDP sockets on 127.0.0.1 carry Ethernet frames to softswitch ports; no root needed
    MININET = "mininet"  # a star of Mininet hosts (network namespaces, veth links) around the switch; root only


class PortKind(enum.Enum):
    """How the loopback softswitch's ports carry frames to and from the agents."""

    SHM = "shm"  # shared-memory rings, a file per worker under /dev/shm (needs a C compiler, like the native pipeline)
    UDP = "udp"  # a UDP socket per worker and per switch port on 127.0.0.1, one frame per datagram


class ImpairSite(enum.Enum):
    """Where a run's impairments (drop, duplicate, reorder, delay) act on frames."""

    SWITCH = "switch"  # the softswitch's own fault injection, between its ports and its pipeline (seeded)
    LINKS = "links"  # Linux's netem qdisc on both ends of every Mininet link (any switch; the kernel's draws)


class FaultKind(enum.Enum):
    """Failures a run can inject on purpose, to test that the testbed reports them and cleans up."""

    KILL_SWITCH = "kill-switch"  # SIGKILL the switch `after_s` seconds into the all-reduce
    NAN_INPUT = "nan-input"  # give worker `worker` of job 0 an input holding a NaN (its agent must refuse it)
    HANG_WORKER = "hang-worker"  # SIGSTOP worker `worker` of job 0 as soon as it starts (it never shows up)


@dataclass(frozen=True, slots=True)
class Fault:
    kind: FaultKind
    worker: int = 0
    after_s: float = 0.5

    @classmethod
    def parse(cls, text: str) -> "Fault":
        """`kill-switch[@SECONDS]`, `nan-input[@WORKER]` or `hang-worker[@WORKER]`."""
        name, _, argument = text.partition("@")
        try:
            kind = FaultKind(name)
        except ValueError:
            choices = ", ".join(kind.value for kind in FaultKind)
            raise ValueError(f"unknown fault {name!r}; choose from {choices}") from None
        if not argument:
            return cls(kind)
        try:
            if kind is FaultKind.KILL_SWITCH:
                return cls(kind, after_s=float(argument))
            return cls(kind, worker=int(argument))
        except ValueError:
            raise ValueError(f"fault {text!r}: {argument!r} is not a number") from None


#: Bounds of auto_slots: at least as many columns as the old fixed default, at most the switch's share per job.
MIN_AUTO_SLOTS = 16
#: The dense first round sends up to S blocks per worker whatever their values: auto_slots keeps it to about this
#: fraction of a worker's non-zero blocks.
FIRST_ROUND_SHARE = 0.05


def auto_slots(size: int, density: float, jobs: int = 1) -> int:
    """Slots for a tensor of `size` values with `density` of its blocks non-zero: each column advances one round per
    round trip, so more slots keep more rounds in flight, but each slot costs every worker one first-round packet
    (docs/performance.md). The largest power of two that keeps the first round within FIRST_ROUND_SHARE of a
    worker's expected non-zero blocks, between MIN_AUTO_SLOTS and the switch's SLOT_COUNT shared by `jobs` jobs."""
    expected_nonzero = max(1.0, block_count(max(size, 1)) * density)
    share = max(1, constants.SLOT_COUNT // max(jobs, 1))
    slots = MIN_AUTO_SLOTS
    while slots * 2 <= min(expected_nonzero * FIRST_ROUND_SHARE, share):
        slots *= 2
    return min(slots, share)


@dataclass(frozen=True, slots=True)
class TestbedConfig:
    """One testbed run: `jobs` jobs of `workers` workers each, all-reducing one tensor per worker concurrently.

    Job j owns slots [j*slots, (j+1)*slots) of the switch. `timeout` bounds the all-reduce (agents started to
    every agent done); None (the default) sets no bound on a run that progresses: the agents themselves stop when no
    result arrives for their stall limit or a worker never joins, so a large tensor never fails only because it is
    large. Setup and teardown have their own deadlines. `keep_logs`: write inputs, outputs and logs
    there and keep them (else a temporary directory, removed at the end).
    """

    workers: int = 4
    switch: SwitchKind = SwitchKind.SOFTSWITCH
    net: NetKind = NetKind.LOOPBACK
    size: int = 65536
    density: float = 0.05
    dtype: str = "float32"
    dense: bool = False
    jobs: int = 1
    #: slots per job; None: auto_slots() of the tensor
    slots: int | None = None
    seed: int = 0
    #: all-reduces of the same tensor in a row per agent (the first one waits for every agent to start; the later
    #: ones are in step, as in a training loop)
    repeat: int = 1
    #: the agents' first call begins in step, after a start barrier (host/start_barrier.py); False: each agent
    #: calls as soon as it has started, and the scale round waits for the last (rendezvous resends meanwhile)
    start_in_step: bool = True
    timeout: float | None = None
    #: probability that a frame is lost on its way into or out of the switch (short for a first rule drop=P)
    loss: float = 0.0
    #: impairments of the frames to and from the switch (softswitch/faults.py), seeded by `seed`
    impairments: ImpairmentPlan = ImpairmentPlan()
    #: where they act; None: the softswitch on loopback, the links (netem) on Mininet
    impair_at: ImpairSite | None = None
    #: the loopback softswitch's port kind; None: shared memory where its rings build, else UDP (saying why)
    ports: PortKind | None = None
    #: the softswitch's packet pipeline (softswitch/backend.py): auto (native where it builds), native, python
    pipeline: str = "auto"
    #: the loopback switch on a CPU of its own and the agents on the others (mininet/cpus.py); auto: from 4 CPUs
    cpu_pinning: CpuPinning = CpuPinning.AUTO
    keep_logs: Path | None = None
    fault: Fault | None = None

    __test__ = False  # pytest: not a test class despite its name

    def __post_init__(self) -> None:
        if self.slots is None:
            object.__setattr__(self, "slots", auto_slots(self.size, self.density, self.jobs))
        if self.impair_at is None:
            object.__setattr__(self, "impair_at",
                               ImpairSite.SWITCH if self.net is NetKind.LOOPBACK else ImpairSite.LINKS)

    def impairment_plan(self) -> ImpairmentPlan:
        """--loss (as a first rule drop=P) and --impair together."""
        if not self.loss:
            return self.impairments
        return ImpairmentPlan.parse([f"drop={self.loss!r}"]).then(self.impairments)

    def problems(self) -> list[str]:
        """Everything wrong with this configuration (empty when it can run)."""
        problems = []
        if not 1 <= self.workers <= constants.MAX_WORKERS:
            problems.append(f"--workers must be in 1..{constants.MAX_WORKERS} (MAX_WORKERS), got {self.workers}")
        if not 1 <= self.jobs <= constants.MAX_JOBS:
            problems.append(f"--jobs must be in 1..{constants.MAX_JOBS} (MAX_JOBS), got {self.jobs}")
        if self.slots < 1:
            problems.append(f"--slots must be at least 1, got {self.slots}")
        elif self.jobs * self.slots > constants.SLOT_COUNT:
            problems.append(f"--jobs {self.jobs} x --slots {self.slots} = {self.jobs * self.slots} slots, more than "
                            f"the switch's {constants.SLOT_COUNT} (SLOT_COUNT)")
        if self.workers * self.jobs > MAX_HOSTS:
            problems.append(f"--jobs {self.jobs} x --workers {self.workers} = {self.workers * self.jobs} workers, "
                            f"more than the testbed's {MAX_HOSTS} addresses (10.0.0.1-253)")
        if self.repeat < 1:
            problems.append(f"--repeat must be at least 1, got {self.repeat}")
        if self.size < 1:
            problems.append(f"--size must be at least 1 element, got {self.size}")
        if not (0.0 <= self.density <= 1.0):
            problems.append(f"--density must be in [0, 1], got {self.density}")
        if self.dtype not in SUPPORTED_DTYPES:
            problems.append(f"--dtype must be one of {', '.join(SUPPORTED_DTYPES)}, got {self.dtype!r}")
        if self.timeout is not None and not (self.timeout > 0 and math.isfinite(self.timeout)):
            problems.append(f"--timeout must be a positive number of seconds, got {self.timeout}")
        if not 0.0 <= self.loss < 1.0:
            problems.append(f"--loss must be in [0, 1), got {self.loss}")
        elif self.impairment_plan().rules:
            try:
                self.impairment_plan().check()
            except ImpairmentError as error:
                problems.append(f"--impair: {error}")
            if self.impair_at is ImpairSite.LINKS and self.net is NetKind.LOOPBACK:
                problems.append("--impair-at links needs --net mininet (loopback has no links for netem); the "
                                "softswitch impairs frames itself: --impair-at switch")
            if self.impair_at is ImpairSite.SWITCH and self.switch is SwitchKind.BMV2:
                problems.append("--impair-at switch is the softswitch's fault injection; BMv2 has none: use "
                                "--impair-at links (netem)")
            rules = self.impairment_plan().rules
            ports = {rule.port for rule in rules if rule.port is not None}
            hosts = set(range(1, self.workers * self.jobs + 1))
            if not ports <= hosts:
                problems.append(f"--impair names port(s) {', '.join(map(str, sorted(ports - hosts)))}, which no "
                                f"worker uses (worker k of the run is on port k+1: ports 1..{len(hosts)})")
        if self.cpu_pinning is CpuPinning.ON and self.net is not NetKind.LOOPBACK:
            problems.append("--cpu-pinning on applies to the loopback testbed (on Mininet the switch and the "
                            "agents run in their hosts as the kernel schedules them)")
        if self.pipeline not in PIPELINES:
            problems.append(f"--pipeline must be one of {', '.join(PIPELINES)}, got {self.pipeline!r}")
        elif self.pipeline != "auto" and self.switch is SwitchKind.BMV2:
            problems.append("--pipeline chooses the softswitch's pipeline; BMv2 runs its own")
        if self.ports is not None and self.net is not NetKind.LOOPBACK:
            problems.append("--ports is the loopback softswitch's port kind; Mininet hosts use their interfaces")
        if self.switch is SwitchKind.BMV2 and self.net is NetKind.LOOPBACK:
            problems.append("--switch bmv2 needs --net mininet (BMv2 ports are network interfaces, not UDP sockets)")
        if self.fault is not None and self.fault.kind is FaultKind.NAN_INPUT and self.dtype != "float32":
            problems.append("fault nan-input needs --dtype float32 (an int32 tensor cannot hold a NaN)")
        if self.fault is not None and self.fault.kind is not FaultKind.KILL_SWITCH:
            if not 0 <= self.fault.worker < self.workers:
                problems.append(f"fault {self.fault.kind.value}: worker {self.fault.worker} is not in "
                                f"0..{self.workers - 1}")
        return problems


@dataclass(frozen=True, slots=True)
class WorkerOutcome:
    """One worker: whether its result was verified, how far it was from the exact sum, and its agent's stats."""

    job_id: int
    worker_id: int
    ok: bool
    max_error: float
    error_bound: float
    message: str
    stats: Mapping[str, Any] = field(default_factory=dict)
    #: each call's times (the agent's JSON "calls": elapsed_s, joined_s, exchange_s, cpu_s, retransmissions,
    #: rendezvous_resends); stats sums them
    calls: tuple[Mapping[str, Any], ...] = ()

    @property
    def retransmissions(self) -> int:
        return int(self.stats.get("retransmissions", 0))

    @property
    def rendezvous_resends(self) -> int:
        return int(self.stats.get("rendezvous_resends", 0))


@dataclass(frozen=True, slots=True)
class Traffic:
    """Packets and bytes in both directions at the switch's ports, as its counters saw them."""

    to_switch_packets: int
    to_switch_bytes: int
    from_switch_packets: int
    from_switch_bytes: int

    @property
    def total_bytes(self) -> int:
        return self.to_switch_bytes + self.from_switch_bytes

    @classmethod
    def of(cls, exchange: Exchange) -> "Traffic":
        return cls(exchange.to_switch_packets, exchange.to_switch_bytes, exchange.from_switch_packets,
                   exchange.from_switch_bytes)


@dataclass(frozen=True, slots=True)
class JobOutcome:
    """One job: its workers, the traffic measured at its ports, and what the loss-free, the ideal and the dense
    exchanges would have put on the wire. `counters`: the job's counters (contributions, results, replays, forwards: packets)."""

    job_id: int
    slot_base: int
    slot_count: int
    workers: tuple[WorkerOutcome, ...]
    measured: Traffic | None
    expected: Exchange
    dense: Exchange
    counters: Mapping[str, int] = field(default_factory=dict)
    #: the ideal exchange (non-zero blocks only; docs/performance.md), None where not computed
    ideal: Exchange | None = None
    blocks: int = 0  # blocks of the tensor
    nonzero_blocks: int = 0  # blocks non-zero in at least one worker's input
    nonzero_per_worker: tuple[int, ...] = ()  # each worker's non-zero blocks, by worker id

    def packets_per_block(self) -> list[float]:
        """Per worker: packets it sent per non-zero block it contributed (first round, scale and closing rounds and
        any recovery included), the efficiency measure of docs/performance.md; inf for a worker with none."""
        return [float(worker.stats.get("packets_sent", 0)) / nonzero if nonzero else float("inf")
                for worker, nonzero in zip(self.workers, self.nonzero_per_worker)]

    @property
    def ok(self) -> bool:
        return bool(self.workers) and all(worker.ok for worker in self.workers)


@dataclass(frozen=True, slots=True)
class TestbedReport:
    """The outcome of a run. `ok` only when every worker of every job holds a verified result.

    failure: what failed, in one line ("worker 2 of job 0 exited with code 3: ...") or None. elapsed_s: from the
    agents' start to the last agent's exit. drops: the switch's drop counters by reason (packets).
    """

    config: TestbedConfig
    ok: bool
    failure: str | None
    elapsed_s: float
    setup_s: float
    jobs: tuple[JobOutcome, ...] = ()
    drops: Mapping[str, int] = field(default_factory=dict)
    log_dir: Path | None = None
    #: the port kind the loopback switch ran with ("shm" or "udp"); None on Mininet
    ports: str | None = None
    #: CPU time the loopback switch process used while the agents ran; None on Mininet
    switch_cpu_s: float | None = None
    #: where the loopback switch and agents ran (CpuPlan.describe()); None on Mininet
    cpus: str | None = None

    __test__ = False
