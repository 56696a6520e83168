"""What the controller installs, as values: workers, jobs, routes, and the switch's limits they must respect.

Validation lives here so the CLI, config files and library callers get the same checks and the same messages.
A check that needs the switch's installed state (conflicts with other jobs) takes that state as an argument, so it
is a pure function and unit-testable without a switch.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Iterable

from omnireduce.controller.encoding import format_ipv4, format_mac, parse_ipv4, parse_mac
from omnireduce.controller.errors import BadInputError
from omnireduce.p4src import constants

# v1model: egress_spec 511 drops the packet (BMv2's drop port), so no worker or route may sit on it.
DROP_PORT = 511
PORT_BITS = 9


@dataclass(frozen=True, slots=True)
class Limits:
    """The sizes compiled into the P4 program (from the generated constants), which every job must fit."""

    max_jobs: int = constants.MAX_JOBS
    max_workers: int = constants.MAX_WORKERS
    slot_count: int = constants.SLOT_COUNT


@dataclass(frozen=True, slots=True)
class Worker:
    """One worker as the switch sees it: the switch port it is behind, its MAC, IPv4 address and UDP port.

    (port, ipv4, udp_port) is the worker's identity in the `workers` table; results go back to (mac, ipv4,
    udp_port). The UDP port defaults to the aggregation port the agent binds.
    """

    port: int
    mac: int
    ipv4: int
    udp_port: int = constants.OMNI_UDP_PORT

    @classmethod
    def parse(cls, text: str) -> "Worker":
        """`PORT,MAC,IP[,UDPPORT]`, e.g. `1,02:00:00:00:00:01,10.0.0.1` or `1,02:00:00:00:00:01,10.0.0.1,20306`."""
        parts = [part.strip() for part in text.split(",")]
        if len(parts) not in (3, 4):
            raise BadInputError(f"worker {text!r}: expected PORT,MAC,IP[,UDPPORT] "
                                f"(e.g. 1,02:00:00:00:00:01,10.0.0.1,20306)")
        port = _parse_int(parts[0], f"worker {text!r}: port")
        udp_port = _parse_int(parts[3], f"worker {text!r}: UDP port") if len(parts) == 4 else constants.OMNI_UDP_PORT
        try:
            return cls(port, parse_mac(parts[1]), parse_ipv4(parts[2]), udp_port)
        except BadInputError as error:
            raise BadInputError(f"worker {text!r}: {error}") from None

    @property
    def identity(self) -> tuple[int, int, int]:
        """The `workers` table key."""
        return (self.port, self.ipv4, self.udp_port)

    def __str__(self) -> str:
        return f"port {self.port} {format_mac(self.mac)} {format_ipv4(self.ipv4)}:{self.udp_port}"


@dataclass(frozen=True, slots=True)
class Job:
    """A job: its id, the slot range it owns, its multicast group and its workers (worker id = position)."""

    job_id: int
    slot_base: int
    slot_count: int
    mcast_group: int
    workers: tuple[Worker, ...] = field(default=())

    @property
    def worker_count(self) -> int:
        return len(self.workers)

    @property
    def slots(self) -> range:
        """The global slots this job owns."""
        return range(self.slot_base, self.slot_base + self.slot_count)


@dataclass(frozen=True, slots=True)
class Route:
    """A plain IPv4 route: packets to `prefix` leave on `port` with these Ethernet addresses."""

    prefix: ipaddress.IPv4Network
    port: int
    src_mac: int
    dst_mac: int

    def __str__(self) -> str:
        return f"{self.prefix} -> port {self.port} ({format_mac(self.src_mac)} -> {format_mac(self.dst_mac)})"


def _parse_int(text: str, what: str) -> int:
    try:
        return int(text, 0)
    except ValueError:
        raise BadInputError(f"{what}: {text!r} is not an integer") from None


def _port_problem(port: int, what: str) -> str | None:
    if not 0 <= port < 1 << PORT_BITS:
        return f"{what}: port {port} outside 0..{(1 << PORT_BITS) - 1}"
    if port == DROP_PORT:
        return f"{what}: port {DROP_PORT} is v1model's drop port"
    return None


def job_problems(job: Job, limits: Limits = Limits()) -> list[str]:
    """Everything wrong with `job` on its own (ranges, sizes, duplicate workers); empty when it is valid."""
    problems = []
    name = f"job {job.job_id}"
    if not 0 <= job.job_id < limits.max_jobs:
        problems.append(f"{name}: job id must be in 0..{limits.max_jobs - 1} (MAX_JOBS = {limits.max_jobs})")
    if job.slot_count < 1:
        problems.append(f"{name}: slot count must be at least 1, got {job.slot_count}")
    if job.slot_base < 0:
        problems.append(f"{name}: slot base must be >= 0, got {job.slot_base}")
    if job.slot_base + job.slot_count > limits.slot_count:
        problems.append(f"{name}: slots {job.slot_base}..{job.slot_base + job.slot_count - 1} exceed the switch's "
                        f"{limits.slot_count} slots (SLOT_COUNT); slot_base + slot_count must be <= "
                        f"{limits.slot_count}")
    if not 1 <= job.mcast_group <= 0xFFFF:
        problems.append(f"{name}: multicast group must be in 1..65535 (0 means no multicast), got {job.mcast_group}")
    if not job.workers:
        problems.append(f"{name}: no workers")
    if job.worker_count > limits.max_workers:
        problems.append(f"{name}: {job.worker_count} workers, more than MAX_WORKERS = {limits.max_workers}")
    seen_identity: dict[tuple[int, int, int], int] = {}
    seen_destination: dict[tuple[int, int], int] = {}
    for worker_id, worker in enumerate(job.workers):
        what = f"{name} worker {worker_id} ({worker})"
        port_problem = _port_problem(worker.port, what)
        if port_problem:
            problems.append(port_problem)
        if not 1 <= worker.udp_port <= 0xFFFF:
            problems.append(f"{what}: UDP port must be in 1..65535")
        if not 0 <= worker.mac < 1 << 48:
            problems.append(f"{what}: MAC out of range")
        if worker.identity in seen_identity:
            problems.append(f"{what}: duplicate of worker {seen_identity[worker.identity]} "
                            f"(same port, IP and UDP port)")
        else:
            seen_identity[worker.identity] = worker_id
        destination = (worker.ipv4, worker.udp_port)
        if destination in seen_destination and seen_destination[destination] != seen_identity.get(worker.identity):
            problems.append(f"{what}: same IP and UDP port as worker {seen_destination[destination]}; results "
                            f"for both would go to one socket")
        seen_destination.setdefault(destination, worker_id)
    return problems


@dataclass(frozen=True, slots=True)
class JobFootprint:
    """What an installed job occupies on the switch, for conflict checks (possibly partial for a broken job)."""

    job_id: int
    slots: range | None
    mcast_group: int | None
    worker_identities: tuple[tuple[int, int, int], ...]

    @classmethod
    def of(cls, job: Job) -> "JobFootprint":
        return cls(job.job_id, job.slots, job.mcast_group, tuple(worker.identity for worker in job.workers))


def job_conflicts(job: Job, installed: Iterable[JobFootprint], used_groups: Iterable[int] = ()) -> list[str]:
    """How `job` collides with what is installed: job id, slot ranges, workers, multicast groups."""
    problems = []
    used_groups = set(used_groups)
    name = f"job {job.job_id}"
    for other in installed:
        if other.job_id == job.job_id:
            problems.append(f"{name} already exists; remove it first (omnireduce-ctl job rm {job.job_id})")
            continue
        if other.slots is not None and other.slots.start < job.slots.stop and job.slots.start < other.slots.stop:
            problems.append(f"{name}: slots {job.slots.start}..{job.slots.stop - 1} overlap job {other.job_id}'s "
                            f"slots {other.slots.start}..{other.slots.stop - 1}")
        if other.mcast_group is not None and other.mcast_group == job.mcast_group:
            problems.append(f"{name}: multicast group {job.mcast_group} is job {other.job_id}'s")
        used_groups.discard(other.mcast_group)
        theirs = set(other.worker_identities)
        for worker_id, worker in enumerate(job.workers):
            if worker.identity in theirs:
                problems.append(f"{name} worker {worker_id} ({worker}) is already a worker of job {other.job_id}")
    if job.mcast_group in used_groups:
        problems.append(f"{name}: multicast group {job.mcast_group} already exists on the switch (no job owns it); "
                        f"pick another group")
    return problems


def validate_job(job: Job, limits: Limits = Limits(), installed: Iterable[JobFootprint] = (),
                 used_groups: Iterable[int] = ()) -> None:
    """Raise one BadInputError listing every problem of `job`, alone and against what is installed."""
    problems = job_problems(job, limits)
    if not problems:
        problems = job_conflicts(job, installed, used_groups)
    if problems:
        raise BadInputError("cannot install job {}:\n  {}".format(job.job_id, "\n  ".join(problems)))


def route_problems(route: Route) -> list[str]:
    problem = _port_problem(route.port, f"route {route.prefix}")
    return [problem] if problem else []


def validate_jobs_together(jobs: Iterable[Job], limits: Limits = Limits()) -> None:
    """Check several jobs (a config file) alone and against each other, listing every problem at once."""
    problems: list[str] = []
    footprints: list[JobFootprint] = []
    for job in jobs:
        own = job_problems(job, limits)
        problems.extend(own)
        if not own:
            problems.extend(job_conflicts(job, footprints))
        footprints.append(JobFootprint.of(job))
    if problems:
        raise BadInputError("invalid jobs:\n  " + "\n  ".join(problems))
