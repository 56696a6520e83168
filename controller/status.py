"""Job status: per slot, the rounds held in both shadow sets and each worker's announced next block.

Everything is read from the switch's registers (docs/protocol.md section 4) and decoded: states to names, worker
bitmaps to worker ids, END_OF_TENSOR to "end".
"""

from __future__ import annotations

from dataclasses import dataclass

from omnireduce.controller import program
from omnireduce.controller.counters import Count
from omnireduce.controller.encoding import bitmap_members
from omnireduce.controller.entities import CounterEntry
from omnireduce.controller.jobs import InstalledJob, find_job, read_jobs
from omnireduce.controller.model import Limits
from omnireduce.controller.switch import Switch
from omnireduce.p4src import constants

ROUND_STATE_NAMES = {constants.ROUND_IDLE: "idle", constants.ROUND_AGGREGATING: "aggregating",
                     constants.ROUND_COMPLETE: "complete"}


def block_text(block: int) -> str:
    """A block index for people: END_OF_TENSOR reads as "end"."""
    return "end" if block == constants.END_OF_TENSOR else str(block)


@dataclass(frozen=True, slots=True)
class RoundView:
    """The round held in one shadow set of one slot."""

    set: int
    state: int
    tensor: int
    block: int
    contributed: tuple[int, ...]  # worker ids whose contribution was added
    unacked: tuple[int, ...]  # worker ids that have not yet confirmed the result
    next_block: int
    exponent: int

    @property
    def state_name(self) -> str:
        return ROUND_STATE_NAMES.get(self.state, f"invalid({self.state})")

    def missing(self, worker_count: int) -> tuple[int, ...]:
        """Workers that have not contributed to this round (meaningful while it aggregates)."""
        return tuple(worker for worker in range(worker_count) if worker not in self.contributed)


@dataclass(frozen=True, slots=True)
class SlotView:
    slot: int  # within the job
    global_slot: int
    tensor: int  # slot_tensor: the tensor the worker_next entries belong to
    rounds: tuple[RoundView, RoundView]  # set 0, set 1
    worker_next: tuple[int, ...]  # per worker id; 0 = not announced

    @property
    def in_flight(self) -> tuple[RoundView, ...]:
        """The rounds still aggregating (the blocks in flight)."""
        return tuple(round_ for round_ in self.rounds if round_.state == constants.ROUND_AGGREGATING)


    @property
    def idle(self) -> bool:
        """Nothing held: both sets idle, no tensor, no worker announced anything."""
        return (all(round_.state == constants.ROUND_IDLE for round_ in self.rounds) and self.tensor == 0
                and not any(self.worker_next))


@dataclass(frozen=True, slots=True)
class JobStatus:
    job: InstalledJob
    slots: tuple[SlotView, ...]
    # The job's counters: "contributions", "results", "replays", "acks" -> Count.
    counters: dict[str, Count]


def job_status(switch: Switch, job: InstalledJob, limits: Limits = Limits()) -> JobStatus:
    """Read and decode the slot state of an installed job."""
    kinds = {counter: kind for kind, counter in program.JOB_COUNTERS.items()}
    counters = {kinds[entry.counter]: Count(entry.packets, entry.bytes)
                for entry in switch.read([CounterEntry(counter, job.job_id) for counter in kinds])
                if isinstance(entry, CounterEntry)}
    slots = job.slots
    if slots is None:
        return JobStatus(job, (), counters)
    worker_count = job.worker_count or 0
    round_cells = [program.SETS_PER_SLOT * slot + set_ for slot in slots for set_ in range(program.SETS_PER_SLOT)]
    requests: dict[str, list[int] | range] = {
        register: round_cells for register in (program.ROUND_STATE, program.ROUND_TENSOR, program.ROUND_BLOCK,
                                               program.ROUND_CONTRIBUTED, program.ROUND_UNACKED, program.ROUND_NEXT,
                                               program.ROUND_EXPONENT)}
    requests[program.SLOT_TENSOR] = slots
    requests[program.WORKER_NEXT] = [slot * limits.max_workers + worker for slot in slots
                                     for worker in range(worker_count)]
    rounds = switch.read_registers(requests)  # one round trip for the whole job
    slot_tensor = rounds[program.SLOT_TENSOR]
    worker_next = rounds[program.WORKER_NEXT]
    views = []
    for slot in slots:
        round_views = []
        for set_ in range(program.SETS_PER_SLOT):
            cell = program.SETS_PER_SLOT * slot + set_
            round_views.append(RoundView(
                set=set_,
                state=rounds[program.ROUND_STATE][cell],
                tensor=rounds[program.ROUND_TENSOR][cell],
                block=rounds[program.ROUND_BLOCK][cell],
                contributed=bitmap_members(rounds[program.ROUND_CONTRIBUTED][cell]),
                unacked=bitmap_members(rounds[program.ROUND_UNACKED][cell]),
                next_block=rounds[program.ROUND_NEXT][cell],
                exponent=rounds[program.ROUND_EXPONENT][cell],
            ))
        views.append(SlotView(
            slot=slot - slots.start,
            global_slot=slot,
            tensor=slot_tensor[slot],
            rounds=(round_views[0], round_views[1]),
            worker_next=tuple(worker_next[slot * limits.max_workers + worker] for worker in range(worker_count)),
        ))
    return JobStatus(job, tuple(views), counters)


def read_status(switch: Switch, job_id: int | None = None, limits: Limits = Limits()) -> list[JobStatus]:
    """Status of one job (`job_id`) or of every job on the switch."""
    jobs = [find_job(switch, job_id)] if job_id is not None else list(read_jobs(switch).values())
    return [job_status(switch, job, limits) for job in jobs]
