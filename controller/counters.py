"""The switch's counters, decoded: per port, per job, and drops by reason (names from the generated constants)."""

from __future__ import annotations

from dataclasses import dataclass

from omnireduce.controller import program
from omnireduce.controller.switch import Switch
from omnireduce.p4src import constants


@dataclass(frozen=True, slots=True)
class Count:
    packets: int
    bytes: int

    def __bool__(self) -> bool:
        return bool(self.packets or self.bytes)


@dataclass(frozen=True, slots=True)
class DropCount:
    pipe: str  # "ingress" or "egress"
    reason: int
    name: str  # DROP_* without the prefix, e.g. UNKNOWN_WORKER
    count: Count


@dataclass(frozen=True, slots=True)
class CounterReport:
    """Non-zero cells only: a port, job or reason that saw nothing is left out."""

    port_rx: dict[int, Count]
    port_tx: dict[int, Count]
    drops: tuple[DropCount, ...]
    jobs: dict[int, dict[str, Count]]  # job id -> {"contributions"|"results"|"replays"|"forwards": Count}


def drop_reason_name(reason: int) -> str:
    return constants.DROP_REASONS.get(reason, f"REASON_{reason}")


def _cells(switch: Switch, counter: str) -> dict[int, Count]:
    return {index: Count(entry.packets, entry.bytes) for index, entry in sorted(switch.read_counter(counter).items())
            if entry.packets or entry.bytes}


def read_counters(switch: Switch) -> CounterReport:
    drops = []
    for pipe, counter in (("ingress", program.INGRESS_DROPS), ("egress", program.EGRESS_DROPS)):
        for reason, count in _cells(switch, counter).items():
            drops.append(DropCount(pipe, reason, drop_reason_name(reason), count))
    jobs: dict[int, dict[str, Count]] = {}
    for kind, counter in program.JOB_COUNTERS.items():
        for job_id, count in _cells(switch, counter).items():
            jobs.setdefault(job_id, {})[kind] = count
    return CounterReport(_cells(switch, program.PORT_RX), _cells(switch, program.PORT_TX), tuple(drops),
                         dict(sorted(jobs.items())))
