"""How the CLI shows things: aligned text tables for people, plain JSON-able dicts for scripts.

Both views come from the same decoded objects, so `--json` never carries information the table lacks or the
reverse. Addresses are rendered as text (MAC, dotted quad), blocks as numbers with END_OF_TENSOR as "end".
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping, Sequence

from omnireduce.controller.counters import CounterReport
from omnireduce.controller.encoding import format_ipv4, format_mac
from omnireduce.controller.entities import ActionCall, Exact, Lpm, Match, OptionalMatch, Range, TableEntry, Ternary
from omnireduce.controller.jobs import InstalledJob
from omnireduce.controller.model import Route
from omnireduce.controller.status import JobStatus, RoundView, block_text
from omnireduce.p4src import constants


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """Left-aligned columns separated by two spaces, under a header line."""
    rows = [[str(cell) for cell in row] for row in rows]
    widths = [max([len(header)] + [len(row[column]) for row in rows]) for column, header in enumerate(headers)]
    lines = ["  ".join(header.ljust(width) for header, width in zip(headers, widths)).rstrip()]
    lines += ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in rows]
    return "\n".join(lines)


def _ids(ids: Sequence[int]) -> str:
    return ",".join(str(worker) for worker in ids) if ids else "-"


def _mac(value: int | None) -> str:
    return format_mac(value) if value is not None else "?"


def _or_unknown(value: int | None) -> str:
    return "?" if value is None else str(value)


# --- jobs ----------------------------------------------------------------------------------------------------


def jobs_text(jobs: Sequence[InstalledJob]) -> str:
    if not jobs:
        return "no jobs installed"
    blocks = [table(("job", "slots", "workers", "mcast group", "problems"),
                    [(job.job_id, _slots_text(job), _or_unknown(job.worker_count), _or_unknown(job.mcast_group),
                      len(job.problems) or "-") for job in jobs])]
    for job in jobs:
        blocks.append(f"\njob {job.job_id} workers:\n" + table(
            ("worker", "port", "mac", "ip", "udp port"),
            [(worker.worker_id, worker.port, _mac(worker.mac), format_ipv4(worker.ipv4), worker.udp_port)
             for worker in job.workers]))
        blocks.extend(f"  problem: {problem}" for problem in job.problems)
    return "\n".join(blocks)


def _slots_text(job: InstalledJob) -> str:
    slots = job.slots
    return "?" if slots is None else f"{slots.start}..{slots.stop - 1}"


def job_json(job: InstalledJob) -> dict[str, Any]:
    return {
        "job_id": job.job_id,
        "slot_base": job.slot_base,
        "slot_count": job.slot_count,
        "worker_count": job.worker_count,
        "mcast_group": job.mcast_group,
        "workers": [{"worker_id": worker.worker_id, "port": worker.port,
                     "mac": format_mac(worker.mac) if worker.mac is not None else None,
                     "ip": format_ipv4(worker.ipv4), "udp_port": worker.udp_port} for worker in job.workers],
        "replicas": None if job.replicas is None else [{"port": replica.port, "instance": replica.instance}
                                                        for replica in job.replicas],
        "problems": list(job.problems),
    }


# --- status --------------------------------------------------------------------------------------------------


def rate_text(rates: Mapping[str, float], seconds: float) -> str:
    """'12.5 rounds/s, 40.0 contributions/s (over the last 1.0 s)'."""
    return (f"{rates.get('results', 0.0):,.1f} rounds/s, {rates.get('contributions', 0.0):,.1f} contributions/s, "
            f"{rates.get('replays', 0.0):,.1f} replays/s (over the last {seconds:.1f} s)")


def status_text(statuses: Sequence[JobStatus], all_slots: bool = False,
                rates: Mapping[int, Mapping[str, float]] | None = None, rate_seconds: float = 0.0) -> str:
    """Per job: a header, its counters (and rates between two reads, when watching), and a table of its slots (idle
    ones folded unless `all_slots`)."""
    if not statuses:
        return "no jobs installed"
    blocks = []
    for job_status in statuses:
        job = job_status.job
        header = (f"job {job.job_id}: slots {_slots_text(job)}, {_or_unknown(job.worker_count)} workers, "
                  f"multicast group {_or_unknown(job.mcast_group)}")
        blocks.append(header)
        counts = job_status.counters
        blocks.append("  packets: " + ", ".join(f"{kind} {counts[kind].packets if kind in counts else 0}"
                                                for kind in ("contributions", "results", "replays", "forwards")))
        if rates is not None:
            job_rates = rates.get(job.job_id)
            blocks.append("  rate: " + (rate_text(job_rates, rate_seconds) if job_rates is not None
                                        else "(from the next read on)"))
        blocks.extend(f"  problem: {problem}" for problem in job.problems)
        shown = [slot for slot in job_status.slots if all_slots or not slot.idle]
        folded = len(job_status.slots) - len(shown)
        if not shown:
            blocks.append(f"  all {folded} slots idle" if folded else "  no slots")
            blocks.append("")
            continue
        rows = []
        for slot in shown:
            waiting = _ids(slot.waiting_for())
            for round_ in slot.rounds:
                first = round_.set == 0
                rows.append((slot.slot if first else "", slot.global_slot if first else "",
                             _or_unknown(slot.tensor) if first else "", round_.set, round_.state_name,
                             _or_unknown(round_.tensor), round_.block,
                             # the round in flight waits for them; with none in flight, the column does
                             waiting if round_.aggregating or (first and not slot.in_flight) else "",
                             block_text(round_.next_block) if round_.state_name == "complete" else "",
                             round_.exponent,
                             " ".join(block_text(block) for block in slot.worker_next) if first else ""))
        blocks.append(table(("slot", "global", "slot tensor", "set", "state", "tensor", "block", "waiting for",
                             "next", "exp", "worker_next (by worker id)"), rows))
        if folded:
            blocks.append(f"({folded} idle slots not shown; --all-slots shows them)")
        blocks.append("")
    return "\n".join(blocks).rstrip()


def _round_json(round_: RoundView) -> dict[str, Any]:
    return {"set": round_.set, "state": round_.state_name, "tensor": round_.tensor, "block": round_.block,
            "next_block": round_.next_block, "exponent": round_.exponent}


def status_json(job_status: JobStatus) -> dict[str, Any]:
    return {
        "job": job_json(job_status.job),
        "counters": {kind: {"packets": count.packets, "bytes": count.bytes}
                     for kind, count in job_status.counters.items()},
        "slots": [{"slot": slot.slot, "global_slot": slot.global_slot, "tensor": slot.tensor,
                   "worker_next": list(slot.worker_next),
                   "in_flight": [round_.block for round_ in slot.in_flight],
                   "waiting_for": list(slot.waiting_for()),
                   "sets": [_round_json(round_) for round_ in slot.rounds]}
                  for slot in job_status.slots],
    }


# --- counters ------------------------------------------------------------------------------------------------


def counters_text(report: CounterReport) -> str:
    blocks = []
    ports = sorted(report.port_rx.keys() | report.port_tx.keys())
    if ports:
        blocks.append(table(("port", "rx packets", "rx bytes", "tx packets", "tx bytes"),
                            [(port, *_count_cells(report.port_rx.get(port)), *_count_cells(report.port_tx.get(port)))
                             for port in ports]))
    if report.jobs:
        kinds = ("contributions", "results", "replays", "forwards")
        blocks.append(table(("job",) + kinds,
                            [(job_id, *(counts[kind].packets if kind in counts else 0 for kind in kinds))
                             for job_id, counts in report.jobs.items()]))
    if report.drops:
        blocks.append(table(("pipe", "drop reason", "code", "packets", "bytes"),
                            [(drop.pipe, drop.name, drop.reason, drop.count.packets, drop.count.bytes)
                             for drop in report.drops]))
    else:
        blocks.append("no drops")
    return "\n\n".join(blocks)


def _count_cells(count) -> tuple[int, int]:
    return (count.packets, count.bytes) if count else (0, 0)


def counters_json(report: CounterReport) -> dict[str, Any]:
    def count(value) -> dict[str, int]:
        return {"packets": value.packets, "bytes": value.bytes}

    return {
        "port_rx": {str(port): count(value) for port, value in report.port_rx.items()},
        "port_tx": {str(port): count(value) for port, value in report.port_tx.items()},
        "jobs": {str(job_id): {kind: count(value) for kind, value in counts.items()}
                 for job_id, counts in report.jobs.items()},
        "drops": [{"pipe": drop.pipe, "reason": drop.name, "code": drop.reason, **count(drop.count)}
                  for drop in report.drops],
    }


# --- routes and raw entries ----------------------------------------------------------------------------------


def routes_text(routes: Sequence[Route]) -> str:
    if not routes:
        return "no routes"
    return table(("prefix", "port", "src mac", "dst mac"),
                 [(route.prefix, route.port, format_mac(route.src_mac), format_mac(route.dst_mac))
                  for route in routes])


def route_json(route: Route) -> dict[str, Any]:
    return {"prefix": str(route.prefix), "port": route.port, "src_mac": format_mac(route.src_mac),
            "dst_mac": format_mac(route.dst_mac)}


def _match_json(match: Match) -> Any:
    if isinstance(match, Exact):
        return match.value
    if isinstance(match, Lpm):
        return {"value": match.value, "prefix_len": match.prefix_len}
    if isinstance(match, Ternary):
        return {"value": match.value, "mask": match.mask}
    if isinstance(match, Range):
        return {"low": match.low, "high": match.high}
    assert isinstance(match, OptionalMatch)
    return {"optional": match.value}


def _value_text(name: str, value: int) -> str:
    """A key or parameter value as people read it: MACs and IPv4 addresses by the field's name."""
    if name.endswith("mac") and value < 1 << 48:
        return format_mac(value)
    if name.endswith("addr") and value < 1 << 32:
        return format_ipv4(value)
    return str(value)


def _match_text(name: str, match: Match) -> str:
    if isinstance(match, Exact):
        return _value_text(name, match.value)
    if isinstance(match, Lpm):
        return f"{_value_text(name, match.value)}/{match.prefix_len}"
    if isinstance(match, Ternary):
        return f"{_value_text(name, match.value)}&&&{_value_text(name, match.mask)}"
    if isinstance(match, Range):
        return f"{match.low}..{match.high}"
    return f"{_value_text(name, match.value)}?"


def _action_text(action: ActionCall | None) -> str:
    if action is None:
        return "-"
    return f"{action.name.rsplit('.', 1)[-1]}(" + ", ".join(f"{name}={_value_text(name, value)}" for name, value in
                                                            action.params.items()) + ")"


def entries_text(entries: Sequence[TableEntry]) -> str:
    if not entries:
        return "no entries"
    return table(("table", "match", "action"),
                 [(entry.table, " ".join(f"{name}={_match_text(name, match)}" for name, match in entry.match.items()),
                   _action_text(entry.action)) for entry in entries])


def entry_json(entry: TableEntry) -> dict[str, Any]:
    return {"table": entry.table, "match": {name: _match_json(match) for name, match in entry.match.items()},
            "action": None if entry.action is None else {"name": entry.action.name,
                                                         "params": dict(entry.action.params)},
            "priority": entry.priority}
