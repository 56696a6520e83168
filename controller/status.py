"""Job status: per slot, the rounds held in its shadow sets and each worker's announced next block.

Everything is read from the switch's registers (docs/protocol.md section 4) and decoded: a round's state from its
tensor cell and round_next, END_OF_TENSOR to "end".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from omnireduce.controller import program
from omnireduce.controller.counters import Count
from omnireduce.controller.entities import CounterEntry
from omnireduce.controller.jobs import InstalledJob, find_job, read_jobs
from omnireduce.controller.model import Limits
from omnireduce.controller.switch import Switch
from omnireduce.p4src import constants

def block_text(block: int) -> str:
    """A block index for people: END_OF_TENSOR reads as "end"."""
    return "end" if block == constants.END_OF_TENSOR else str(block)


@dataclass(frozen=True, slots=True)
class RoundView:
    """The round held in one shadow set of one slot."""

    set: int
    tensor: int | None  # None: the set was never used since the job was installed or reset
    block: int
    next_block: int  # 0 while the round aggregates
    exponent: int

    @property
    def state_name(self) -> str:
        if self.tensor is None:
            return "idle"
        return "complete" if self.next_block != 0 else "aggregating"

    @property
    def aggregating(self) -> bool:
        return self.tensor is not None and self.next_block == 0


@dataclass(frozen=True, slots=True)
class SlotView:
    slot: int  # within the job
    global_slot: int
    tensor: int | None  # slot_tensor: the tensor the worker_next entries belong to (None: never used)
    rounds: tuple[RoundView, ...]  # by set index
    worker_next: tuple[int, ...]  # per worker id: its announced next block in this column

    @property
    def in_flight(self) -> tuple[RoundView, ...]:
        """The rounds still aggregating (the blocks in flight)."""
        return tuple(round_ for round_ in self.rounds if round_.aggregating)

    @property
    def idle(self) -> bool:
        """Never used since the job was installed or reset."""
        return self.tensor is None and all(round_.tensor is None for round_ in self.rounds)

    def waiting_for(self) -> tuple[int, ...]:
        """Workers the column waits for: those whose announced next block is the column's lowest, the block it
        completes next (docs/protocol.md section 4.2), whether others have contributed to that round already (it is
        in flight) or not yet (nobody else has that block). A crashed worker shows here, holding its columns."""
        live = [announced for announced in self.worker_next if announced != constants.END_OF_TENSOR]
        if not live:
            return ()
        lowest = min(live)
        return tuple(worker for worker, announced in enumerate(self.worker_next) if announced == lowest)


@dataclass(frozen=True, slots=True)
class JobStatus:
    job: InstalledJob
    slots: tuple[SlotView, ...]
    # The job's counters: "contributions", "results", "replays", "forwards" -> Count.
    counters: dict[str, Count]


def counter_rates(before: Sequence[JobStatus], after: Sequence[JobStatus], seconds: float) -> dict[int, dict[str, float]]:
    """Per job id present in both reads: packets per second of each job counter between them ("results" is rounds
    per second: one per completed round). Empty when `seconds` is not positive."""
    if seconds <= 0:
        return {}
    earlier = {status.job.job_id: status.counters for status in before}
    rates = {}
    for status in after:
        old = earlier.get(status.job.job_id)
        if old is None:
            continue
        rates[status.job.job_id] = {kind: max(0, count.packets - (old[kind].packets if kind in old else 0)) / seconds
                                    for kind, count in status.counters.items()}
    return rates


def _tensor(cell: int) -> int | None:
    return cell & 0xFFFF if cell & constants.TENSOR_VALID else None


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
    round_cells = [program.round_cell(slot, set_) for slot in slots for set_ in range(program.SETS_PER_SLOT)]
    requests: dict[str, list[int] | range] = {
        register: round_cells for register in (program.ROUND_TENSOR, program.ROUND_BLOCK, program.ROUND_NEXT,
                                               program.ROUND_EXPONENT)}
    requests[program.SLOT_TENSOR] = slots
    for register in program.WORKER_NEXT_GROUPS:
        requests[register] = slots
    cells = switch.read_registers(requests)  # one round trip for the whole job
    views = []
    for slot in slots:
        round_views = []
        for set_ in range(program.SETS_PER_SLOT):
            cell = program.round_cell(slot, set_)
            round_views.append(RoundView(
                set=set_,
                tensor=_tensor(cells[program.ROUND_TENSOR][cell]),
                block=cells[program.ROUND_BLOCK][cell],
                next_block=cells[program.ROUND_NEXT][cell],
                exponent=cells[program.ROUND_EXPONENT][cell],
            ))
        announced = program.worker_next_lanes([cells[register][slot] for register in program.WORKER_NEXT_GROUPS])
        views.append(SlotView(
            slot=slot - slots.start,
            global_slot=slot,
            tensor=_tensor(cells[program.SLOT_TENSOR][slot]),
            rounds=tuple(round_views),
            worker_next=announced[:worker_count],
        ))
    return JobStatus(job, tuple(views), counters)


def read_status(switch: Switch, job_id: int | None = None, limits: Limits = Limits()) -> list[JobStatus]:
    """Status of one job (`job_id`) or of every job on the switch."""
    jobs = [find_job(switch, job_id)] if job_id is not None else list(read_jobs(switch).values())
    return [job_status(switch, job, limits) for job in jobs]
