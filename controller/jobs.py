"""Jobs on the switch: install, remove, list (read back from the switch), and reset their slot state.

The switch is the only record of what is installed: `read_jobs()` rebuilds every job from the `jobs`, `workers`
and `result_destinations` tables and the PRE's multicast groups, so successive CLI invocations (or two
controllers) agree without a local state file.

Install order makes a half-installed job harmless and the rollback simple: the slot state is cleared first, then
the multicast group, result destinations and workers are written, and the `jobs` entry LAST; a packet of a worker
whose job entry is missing is dropped as UNKNOWN_WORKER. A failure at any step deletes what was written, in
reverse order. Removal runs the same order backwards (the `jobs` entry first).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Iterable, Sequence

from omnireduce.controller import program
from omnireduce.controller.encoding import format_ipv4
from omnireduce.controller.entities import ActionCall, Entity, Exact, MulticastGroupEntry, Replica, TableEntry
from omnireduce.controller.errors import BadInputError, ControllerError, P4RuntimeError
from omnireduce.controller.model import Job, JobFootprint, Limits, Worker, validate_job
from omnireduce.controller.switch import Switch

log = logging.getLogger(__name__)


# --- entries of a job ----------------------------------------------------------------------------------------


def jobs_entry(job: Job) -> TableEntry:
    return TableEntry(program.JOBS_TABLE, {program.JOBS_KEY_JOB_ID: Exact(job.job_id)},
                      ActionCall(program.SET_JOB, {program.SET_JOB_SLOT_BASE: job.slot_base,
                                                   program.SET_JOB_SLOT_COUNT: job.slot_count,
                                                   program.SET_JOB_WORKER_COUNT: job.worker_count,
                                                   program.SET_JOB_MCAST_GRP: job.mcast_group}))


def worker_entry(job_id: int, worker_id: int, worker: Worker) -> TableEntry:
    return TableEntry(program.WORKERS_TABLE, {program.WORKERS_KEY_PORT: Exact(worker.port),
                                              program.WORKERS_KEY_SRC_ADDR: Exact(worker.ipv4),
                                              program.WORKERS_KEY_UDP_SRC_PORT: Exact(worker.udp_port)},
                      ActionCall(program.SET_WORKER, {program.SET_WORKER_JOB_ID: job_id,
                                                      program.SET_WORKER_WORKER_ID: worker_id}))


def result_destination_entry(job_id: int, worker_id: int, worker: Worker) -> TableEntry:
    return TableEntry(program.RESULT_DESTINATIONS_TABLE,
                      {program.RESULT_DESTINATIONS_KEY_JOB_ID: Exact(job_id),
                       program.RESULT_DESTINATIONS_KEY_WORKER_ID: Exact(worker_id)},
                      ActionCall(program.SET_RESULT_DESTINATION,
                                 {program.SET_RESULT_DESTINATION_DST_MAC: worker.mac,
                                  program.SET_RESULT_DESTINATION_DST_ADDR: worker.ipv4,
                                  program.SET_RESULT_DESTINATION_UDP_DST_PORT: worker.udp_port}))


def multicast_group(job: Job) -> MulticastGroupEntry:
    """One replica per worker, out of its port, tagged with its worker id (egress_rid, the delivery table's key)."""
    return MulticastGroupEntry(job.mcast_group, tuple(Replica(worker.port, worker_id)
                                                      for worker_id, worker in enumerate(job.workers)))


def job_entities(job: Job) -> list[list[Entity]]:
    """What installing `job` writes, in install order (one list per write)."""
    return [
        [multicast_group(job)],
        [result_destination_entry(job.job_id, worker_id, worker) for worker_id, worker in enumerate(job.workers)],
        [worker_entry(job.job_id, worker_id, worker) for worker_id, worker in enumerate(job.workers)],
        [jobs_entry(job)],
    ]


# --- reading jobs back ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class InstalledWorker:
    worker_id: int
    port: int
    ipv4: int
    udp_port: int
    mac: int | None  # from its result destination; None when that entry is missing


@dataclass(frozen=True, slots=True)
class InstalledJob:
    """A job as the switch holds it. `problems` says how it differs from a cleanly installed job (empty if not)."""

    job_id: int
    slot_base: int | None
    slot_count: int | None
    worker_count: int | None
    mcast_group: int | None
    workers: tuple[InstalledWorker, ...]
    replicas: tuple[Replica, ...] | None
    problems: tuple[str, ...]
    # The table entries that make up the job (what removal deletes).
    entries: tuple[TableEntry, ...] = field(default=(), repr=False, compare=False)

    @property
    def slots(self) -> range | None:
        if self.slot_base is None or self.slot_count is None:
            return None
        return range(self.slot_base, self.slot_base + self.slot_count)

    def footprint(self) -> JobFootprint:
        return JobFootprint(self.job_id, self.slots, self.mcast_group,
                            tuple((worker.port, worker.ipv4, worker.udp_port) for worker in self.workers))

    def to_job(self) -> Job:
        """The `Job` this installation stands for; only for a job with no problems."""
        if self.problems or self.slot_base is None or self.slot_count is None or self.mcast_group is None:
            raise BadInputError(f"job {self.job_id} is not cleanly installed: " + "; ".join(self.problems))
        return Job(self.job_id, self.slot_base, self.slot_count, self.mcast_group,
                   tuple(Worker(worker.port, worker.mac or 0, worker.ipv4, worker.udp_port)
                         for worker in self.workers))


def read_jobs(switch: Switch) -> dict[int, InstalledJob]:
    """Every job on the switch, rebuilt from its tables and multicast groups, by job id."""
    jobs_rows = switch.read_table(program.JOBS_TABLE)
    worker_rows = switch.read_table(program.WORKERS_TABLE)
    destination_rows = switch.read_table(program.RESULT_DESTINATIONS_TABLE)
    groups = switch.read_multicast_groups()

    job_rows: dict[int, TableEntry] = {_key(row, program.JOBS_KEY_JOB_ID): row for row in jobs_rows}
    workers_by_job: dict[int, list[TableEntry]] = {}
    for row in worker_rows:
        workers_by_job.setdefault(_param(row, program.SET_WORKER_JOB_ID), []).append(row)
    destinations_by_job: dict[int, dict[int, TableEntry]] = {}
    for row in destination_rows:
        destinations_by_job.setdefault(_key(row, program.RESULT_DESTINATIONS_KEY_JOB_ID), {})[
            _key(row, program.RESULT_DESTINATIONS_KEY_WORKER_ID)] = row

    result = {}
    for job_id in sorted(job_rows.keys() | workers_by_job.keys() | destinations_by_job.keys()):
        result[job_id] = _rebuild_job(job_id, job_rows.get(job_id), workers_by_job.get(job_id, []),
                                      destinations_by_job.get(job_id, {}), groups)
    return result


def _rebuild_job(job_id: int, job_row: TableEntry | None, worker_rows: list[TableEntry],
                 destination_rows: dict[int, TableEntry], groups: dict[int, MulticastGroupEntry]) -> InstalledJob:
    problems: list[str] = []
    slot_base = slot_count = worker_count = mcast_group = None
    if job_row is None:
        problems.append("no entry in the jobs table (its workers are inactive)")
    else:
        slot_base = _param(job_row, program.SET_JOB_SLOT_BASE)
        slot_count = _param(job_row, program.SET_JOB_SLOT_COUNT)
        worker_count = _param(job_row, program.SET_JOB_WORKER_COUNT)
        mcast_group = _param(job_row, program.SET_JOB_MCAST_GRP)

    workers = []
    for row in sorted(worker_rows, key=lambda row: _param(row, program.SET_WORKER_WORKER_ID)):
        worker_id = _param(row, program.SET_WORKER_WORKER_ID)
        port = _key(row, program.WORKERS_KEY_PORT)
        ipv4 = _key(row, program.WORKERS_KEY_SRC_ADDR)
        udp_port = _key(row, program.WORKERS_KEY_UDP_SRC_PORT)
        destination = destination_rows.get(worker_id)
        mac = None
        if destination is None:
            problems.append(f"worker {worker_id} has no result destination")
        else:
            mac = _param(destination, program.SET_RESULT_DESTINATION_DST_MAC)
            dst = (_param(destination, program.SET_RESULT_DESTINATION_DST_ADDR),
                   _param(destination, program.SET_RESULT_DESTINATION_UDP_DST_PORT))
            if dst != (ipv4, udp_port):
                problems.append(f"worker {worker_id} sends from {format_ipv4(ipv4)}:{udp_port} but its results go "
                                f"to {format_ipv4(dst[0])}:{dst[1]}")
        workers.append(InstalledWorker(worker_id, port, ipv4, udp_port, mac))

    worker_ids = [worker.worker_id for worker in workers]
    if worker_count is not None and sorted(worker_ids) != list(range(worker_count)):
        problems.append(f"worker count is {worker_count} but the workers table holds worker ids {worker_ids}")
    if len(set(worker_ids)) != len(worker_ids):
        problems.append(f"duplicate worker ids {worker_ids}")
    for worker_id in sorted(destination_rows.keys() - set(worker_ids)):
        problems.append(f"result destination for worker {worker_id}, who is not in the workers table")

    replicas = None
    if mcast_group is not None:
        group = groups.get(mcast_group)
        if group is None:
            problems.append(f"multicast group {mcast_group} does not exist")
        else:
            replicas = tuple(sorted(group.replicas))
            expected = tuple(sorted(Replica(worker.port, worker.worker_id) for worker in workers))
            if replicas != expected:
                problems.append(f"multicast group {mcast_group} replicas {_replicas_text(replicas)} differ from the "
                                f"workers' {_replicas_text(expected)}")

    entries = tuple(([job_row] if job_row else []) + worker_rows + list(destination_rows.values()))
    return InstalledJob(job_id, slot_base, slot_count, worker_count, mcast_group, tuple(workers), replicas,
                        tuple(problems), entries)


def _replicas_text(replicas: Sequence[Replica]) -> str:
    return "[" + ", ".join(f"port {replica.port}/rid {replica.instance}" for replica in replicas) + "]"


def _key(entry: TableEntry, name: str) -> int:
    match = entry.match.get(name)
    if not isinstance(match, Exact):
        raise BadInputError(f"{entry.table} entry without exact key {name}: {entry}")
    return match.value


def _param(entry: TableEntry, name: str) -> int:
    if entry.action is None or name not in entry.action.params:
        raise BadInputError(f"{entry.table} entry without action parameter {name}: {entry}")
    return entry.action.params[name]


def find_job(switch: Switch, job_id: int) -> InstalledJob:
    jobs = read_jobs(switch)
    if job_id not in jobs:
        known = ", ".join(str(known_id) for known_id in jobs) or "none"
        raise BadInputError(f"no job {job_id} on switch {switch.name} (installed jobs: {known})")
    return jobs[job_id]


# --- slot state ----------------------------------------------------------------------------------------------


def slot_register_cells(slots: range, max_workers: int) -> dict[str, list[int]]:
    """Every register cell that belongs to `slots` (global slot numbers), by register name."""
    round_cells = [program.round_cell(slot, set_) for slot in slots for set_ in range(program.SETS_PER_SLOT)]
    cells = {register: round_cells for register in program.ROUND_REGISTERS}
    cells[program.SLOT_TENSOR] = list(slots)
    for register in program.WORKER_NEXT_GROUPS:
        cells[register] = list(slots)
    return cells


def reset_slots(switch: Switch, slots: range, limits: Limits = Limits()) -> int:
    """Write 0 to every register cell of `slots` that is not 0 already; returns how many cells were written.

    Reading first (one batched read of every register) makes resetting an idle range nearly free and keeps the
    writes to what actually changed.
    """
    current = switch.read_registers(slot_register_cells(slots, limits.max_workers))
    dirty = {register: {index: 0 for index, value in cells.items() if value != 0}
             for register, cells in current.items()}
    switch.write_register_cells(dirty)
    written = sum(len(cells) for cells in dirty.values())
    log.info("[%s] reset slots %d..%d: %d register cells written", switch.name, slots.start, slots.stop - 1, written)
    return written


# --- operations ----------------------------------------------------------------------------------------------


def add_job(switch: Switch, job: Job, limits: Limits = Limits()) -> InstalledJob:
    """Install `job` after checking it alone and against the switch's jobs; all-or-nothing. Returns the read-back."""
    installed = read_jobs(switch)
    groups = switch.read_multicast_groups()
    validate_job(job, limits, (other.footprint() for other in installed.values()), groups.keys())
    reset_slots(switch, job.slots, limits)
    written: list[list[Entity]] = []
    try:
        for batch in job_entities(job):
            try:
                switch.insert(batch)
            except P4RuntimeError as error:
                # The updates the switch refused are not ours to delete (an entry with that key may belong to
                # someone else); the others of the batch were written. Without per-update details, assume all were.
                if error.failures:
                    batch = [entity for index, entity in enumerate(batch) if index not in error.failed_indexes]
                written.append(batch)
                raise
            except BaseException:
                written.append(batch)  # interrupted: some of it may be on the switch
                raise
            written.append(batch)
    except BaseException as error:
        log.warning("[%s] installing job %d failed; rolling back", switch.name, job.job_id)
        _roll_back(switch, written, error)
        raise
    log.info("[%s] job %d installed: slots %d..%d, %d workers, multicast group %d", switch.name, job.job_id,
             job.slot_base, job.slot_base + job.slot_count - 1, job.worker_count, job.mcast_group)
    return read_jobs(switch)[job.job_id]


def _roll_back(switch: Switch, written: list[list[Entity]], cause: BaseException) -> None:
    for batch in reversed(written):
        try:
            switch.delete(batch, ignore_missing=True)
        except ControllerError as error:
            # The original failure is what the user needs; the leftovers are named so they can be cleaned up.
            log.error("[%s] rollback left entries behind: %s", switch.name, error)
            if hasattr(cause, "add_note"):
                cause.add_note(f"rollback incomplete (run `omnireduce-ctl job rm`): {error}")


def remove_job(switch: Switch, job_id: int, limits: Limits = Limits()) -> InstalledJob:
    """Remove every entry of job `job_id` (also of a half-installed one), its multicast group and its slot state."""
    job = find_job(switch, job_id)
    by_table: dict[str, list[TableEntry]] = {}
    for entry in job.entries:
        by_table.setdefault(entry.table, []).append(entry)
    # Reverse install order: deactivate the job first, so no packet sees it half-removed.
    for table in (program.JOBS_TABLE, program.WORKERS_TABLE, program.RESULT_DESTINATIONS_TABLE):
        switch.delete([_key_only(entry) for entry in by_table.get(table, [])], ignore_missing=True)
    if job.mcast_group is not None and job.replicas is not None:
        switch.delete([MulticastGroupEntry(job.mcast_group)], ignore_missing=True)
    if job.slots is not None:
        reset_slots(switch, job.slots, limits)
    log.info("[%s] job %d removed", switch.name, job_id)
    return job


def _key_only(entry: TableEntry) -> TableEntry:
    """A delete names the entry by its key; sending the action too is allowed but pointless."""
    return TableEntry(entry.table, entry.match, None, entry.priority)


def reset_job(switch: Switch, job_id: int, limits: Limits = Limits()) -> int:
    """Clear job `job_id`'s slot state so its agents start over at set 0; returns the cells written."""
    job = find_job(switch, job_id)
    if job.slots is None:
        raise BadInputError(f"job {job_id} has no jobs-table entry, so its slot range is unknown; remove it instead")
    return reset_slots(switch, job.slots, limits)


def add_jobs(switch: Switch, jobs: Iterable[Job], limits: Limits = Limits()) -> list[InstalledJob]:
    """Install several jobs (a config file): all of them, or (on a failure) none of those this call installed."""
    done: list[InstalledJob] = []
    try:
        for job in jobs:
            done.append(add_job(switch, job, limits))
    except BaseException:
        for installed in reversed(done):
            log.warning("[%s] removing job %d again (a later job failed)", switch.name, installed.job_id)
            try:
                remove_job(switch, installed.job_id, limits)
            except ControllerError as error:
                log.error("[%s] could not remove job %d: %s", switch.name, installed.job_id, error)
        raise
    return done
