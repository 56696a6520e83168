"""A testbed report for people (text) and for scripts (JSON), and the traffic measured at a job's ports."""

from __future__ import annotations

import enum
import math
import statistics
from dataclasses import fields, is_dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from omnireduce.host.progress import plural
from omnireduce.p4src import constants
from omnireduce.softswitch.faults import ImpairmentPlan

from .model import JobOutcome, NetKind, TestbedReport, Traffic, WorkerOutcome
from .traffic import CONTROL_PACKET_BYTES, DATA_PACKET_BYTES

# Input bytes per block (LANES 4-byte values).
BLOCK_BYTES = 4 * constants.LANES

#: Where the counters are defined.
DROPS_DOC = "docs/protocol.md section 6"

#: What each drop reason means in a testbed run, in one line (the causes are docs/protocol.md section 6's table;
#: a test checks that every reason of the compiled program has its line).
DROP_EXPLANATIONS = {
    "PARSER_ERROR": "frames too short for their headers",
    "BAD_CHECKSUM": "IPv4 header checksums were wrong",
    "BAD_LENGTH": "UDP/IPv4 lengths disagreed with the lane count",
    "BAD_LANE_COUNT": "packets carried a lane count their type does not allow",
    "BAD_MSG_TYPE": "unknown message types, or a RESULT sent to the switch",
    "UNKNOWN_WORKER": "packets from an address that is no registered worker, or of a job not installed",
    "JOB_MISMATCH": "a worker sent packets of another job than the one it is registered for",
    "SLOT_OUT_OF_RANGE": "packets named a slot beyond the job's slot count (--slots differs from the job's)",
    "DUPLICATE": "retransmitted contributions to rounds that already had them (a timer fired before the result "
                 "arrived: loss, or a busy CPU); harmless",
    "STALE": "packets of an older tensor, or contributions older than the sender's announcement (late "
             "retransmissions); harmless",
    "SET_BUSY": "contributions to a shadow set still holding an unfinished or later round (a worker out of step)",
    "NOT_ANNOUNCED": "contributions of blocks their sender had not announced (late retransmissions after the "
                     "round moved on); harmless",
    "ROUND_NOT_READY": "REQUESTs for rounds not complete yet (a worker asked before the last contribution "
                       "arrived); harmless",
    "NO_ROUTE": "other IPv4 traffic with no route",
    "NOT_IPV4": "traffic that is not IPv4 (or IPv4 with options)",
    "TTL_EXPIRED": "routed packets whose TTL ran out",
    "NO_RESULT_DESTINATION": "result copies for a worker with no result_destinations entry (a half-installed job)",
    "BAD_PEER": "REQUESTs or REPAIRs naming the sender itself or no worker of the job as peer",
}



def job_traffic(counters: Mapping[str, Any], ports: Iterable[int]) -> Traffic:
    """What the switch counted at `ports` (a job's workers' ports): received = to the switch, sent = from it.

    `counters` is the JSON form of the switch's counters (omnireduce.testbed.provision.counters_to_json).
    """
    ports = [str(port) for port in ports]
    rx = counters.get("port_rx", {})
    tx = counters.get("port_tx", {})
    return Traffic(
        to_switch_packets=sum(rx.get(port, {}).get("packets", 0) for port in ports),
        to_switch_bytes=sum(rx.get(port, {}).get("bytes", 0) for port in ports),
        from_switch_packets=sum(tx.get(port, {}).get("packets", 0) for port in ports),
        from_switch_bytes=sum(tx.get(port, {}).get("bytes", 0) for port in ports),
    )


def job_counter_packets(counters: Mapping[str, Any], job_id: int) -> dict[str, int]:
    """The job counters (contributions, results, replays, forwards), packets only."""
    return {kind: int(count.get("packets", 0)) for kind, count in counters.get("jobs", {}).get(str(job_id), {}).items()}


def drop_packets(counters: Mapping[str, Any]) -> dict[str, int]:
    """Drops by reason name (ingress and egress added up), packets."""
    drops: dict[str, int] = {}
    for drop in counters.get("drops", []):
        drops[drop["name"]] = drops.get(drop["name"], 0) + int(drop.get("packets", 0))
    return drops


def _mib(count: int) -> str:
    return f"{count / 2**20:.2f} MiB"


def _ratio(part: float, whole: float) -> str:
    return f"{100.0 * part / whole:.1f}%" if whole else "n/a"


def _job_lines(job: JobOutcome, elapsed_s: float, dense_mode: bool = False) -> list[str]:
    lines = [f"job {job.job_id}: slots {job.slot_base}..{job.slot_base + job.slot_count - 1}, "
             f"{len(job.workers)} workers, {job.blocks} blocks ({job.nonzero_blocks} non-zero in some worker, "
             f"{_ratio(job.nonzero_blocks, job.blocks)})"]
    for worker in job.workers:
        if not worker.ok:
            lines.append(f"  worker {worker.worker_id}: FAILED: {worker.message}")
            continue
        error = f"max error {worker.max_error:.3g} (bound {worker.error_bound:.3g})" if worker.error_bound else "exact"
        resends = worker.rendezvous_resends
        lines.append(f"  worker {worker.worker_id}: ok, {error}, {worker.retransmissions} "
                     f"{plural(worker.retransmissions, 'retransmission')}"
                     + (f", {resends} rendezvous {plural(resends, 'resend')}" if resends else ""))
    expected, dense = job.expected, job.dense
    lines.append(f"  wire at the job's switch ports (CONTRIB/RESULT {DATA_PACKET_BYTES} B, REQUEST "
                 f"{CONTROL_PACKET_BYTES} B; the scale and closing rounds included):")
    lines.append(f"    {'':<22}{'to switch':>24}{'from switch':>24}{'total':>12}")
    rows: list[tuple[str, int, int, int, int]] = []
    if job.measured is not None:
        measured = job.measured
        rows.append(("measured (counters)", measured.to_switch_packets, measured.to_switch_bytes,
                     measured.from_switch_packets, measured.from_switch_bytes))
    # The agents' exchange without loss: every block in dense mode, the non-zero ones otherwise.
    rows.append(("loss-free dense" if dense_mode else "loss-free omnireduce", expected.to_switch_packets, expected.to_switch_bytes,
                 expected.from_switch_packets, expected.from_switch_bytes))
    if job.ideal is not None:
        rows.append(("ideal sparse exchange", job.ideal.to_switch_packets, job.ideal.to_switch_bytes,
                     job.ideal.from_switch_packets, job.ideal.from_switch_bytes))
    rows.append(("dense aggregation", dense.to_switch_packets, dense.to_switch_bytes,
                 dense.from_switch_packets, dense.from_switch_bytes))
    for name, to_packets, to_bytes, from_packets, from_bytes in rows:
        lines.append(f"    {name:<22}{to_packets:>9} pkts {_mib(to_bytes):>10}{from_packets:>9} pkts "
                     f"{_mib(from_bytes):>10}{_mib(to_bytes + from_bytes):>12}")
    if job.measured is not None:
        ideal_share = (f"{job.measured.total_bytes / job.ideal.total_bytes:.3f}x the ideal exchange, "
                       if job.ideal is not None and job.ideal.total_bytes else "")
        lines.append(f"    measured bytes are {ideal_share}{_ratio(job.measured.total_bytes, dense.total_bytes)} of dense; "
                     f"contribution blocks {job.counters.get('contributions', 0)} "
                     f"(loss-free {expected.contributions}, dense {dense.contributions}), "
                     f"results {job.counters.get('results', 0)} (loss-free {expected.results}), "
                     f"replays {job.counters.get('replays', 0)}, forwards {job.counters.get('forwards', 0)}")
    # The agents' own clocks exclude their process start-up (imports), which the run's wall time includes.
    agent_seconds = max((float(worker.stats.get("elapsed_s", 0.0)) for worker in job.workers), default=0.0)
    seconds = agent_seconds or elapsed_s
    # After the scale round every worker has joined: from there on the time is what a barrier-started all-reduce
    # (gloo's, in the bench) would take, without the agents' start-up skew.
    joined = [float(worker.stats["elapsed_s"]) - float(worker.stats["joined_s"]) for worker in job.workers
              if "joined_s" in worker.stats and "elapsed_s" in worker.stats]
    cpu = [float(worker.stats["cpu_s"]) for worker in job.workers if "cpu_s" in worker.stats]
    notes = ([f"{max(joined):.2f} s after every worker joined"] if agent_seconds and joined else []) + (
        [f"agents' CPU {min(cpu):.2f}-{max(cpu):.2f} s each"] if agent_seconds and cpu else [])
    after_join = f" ({'; '.join(notes)})" if notes else ""
    calls = call_seconds(job.workers)
    if seconds > 0 and job.measured is not None:
        what = f"{len(calls)} all-reduces" if len(calls) > 1 else "all-reduce"
        lines.append(f"    {what} {seconds:.2f} s by the agents' clocks{after_join}: "
                     f"{job.blocks * BLOCK_BYTES / seconds / 2**20:.2f} MiB/s of tensor per worker, "
                     f"{job.measured.to_switch_packets / seconds:.0f} packets/s into the switch")
        exchanges = call_seconds(job.workers, "exchange_s")
        if exchanges and all(exchanges):
            data_packets = data_frames_in(job.measured.to_switch_packets, len(job.workers), len(exchanges))
            lines.append(f"    of which the data exchanges {sum(exchanges):.2f} s (slowest worker, each call): "
                         f"{data_packets / sum(exchanges):.0f} packets/s into the switch while the data travels; "
                         f"the rest is the agents' own passes over the tensor and the scale and closing rounds")
    if len(calls) > 1:
        later = sorted(calls[1:])
        lines.append(f"    per call (slowest worker): first {calls[0]:.3f} s (the buffers' and slots' first use), "
                     f"then median {statistics.median(later):.3f} s [{later[0]:.3f}-{later[-1]:.3f}] over "
                     f"{len(later)} later call(s)")
    return lines


def data_frames_in(frames_in: float, workers: int, calls: int) -> float:
    """The data tensors' frames among `frames_in` frames into the switch over `calls` calls: each call's scale and
    closing rounds are one frame per worker each (on a loss-free path; never below 0)."""
    return max(0.0, frames_in - 2 * workers * calls)


def call_seconds(workers: Sequence[WorkerOutcome], part: str = "elapsed_s") -> list[float]:
    """Each call's time, the slowest worker's (a call is done when every worker has its result); empty unless
    every worker reported the same number of calls. part: which of the calls' times ("exchange_s": the data
    exchange alone)."""
    counts = {len(worker.calls) for worker in workers}
    if len(counts) != 1 or not workers:
        return []
    return [max(float(worker.calls[index].get(part, 0.0)) for worker in workers)
            for index in range(counts.pop())]


def format_report(report: TestbedReport) -> str:
    config = report.config
    ports = f" ({report.ports} ports)" if report.ports else ""
    head = (f"omnireduce testbed: {config.jobs} job(s) x {config.workers} workers, {config.switch.value} over "
            f"{config.net.value}{ports}, {config.size} x {config.dtype}, density {config.density:g}"
            f"{', dense mode' if config.dense else ''}, {config.slots} slots/job")
    lines = [head, f"setup {report.setup_s:.2f} s, agents {report.elapsed_s:.2f} s (start to last exit)"]
    if report.cpus:
        lines.append(f"CPUs: {report.cpus}")
    for job in report.jobs:
        lines.extend(_job_lines(job, report.elapsed_s, config.dense))
    lines.extend(explanation_lines(report))
    if report.log_dir is not None:
        lines.append(f"logs: {report.log_dir}")
    lines.append("RESULT: all results verified" if report.ok else f"RESULT: FAILED: {report.failure}")
    return "\n".join(lines)


def explanation_lines(report: TestbedReport) -> list[str]:
    """One line per non-zero drop reason, and one for retransmissions, saying what they mean."""
    lines = []
    drops = {name: count for name, count in report.drops.items() if count}
    if drops:
        lines.append(f"drops at the switch (all jobs; {DROPS_DOC}):")
        for name, count in sorted(drops.items()):
            why = DROP_EXPLANATIONS.get(name, f"see {DROPS_DOC}")
            lines.append(f"  {name} {count}: {why}")
    retransmissions = sum(worker.retransmissions for job in report.jobs for worker in job.workers)
    if retransmissions:
        if report.config.impairment_plan().rules:
            why = "mostly after the frames --loss or --impair dropped or delayed"
        elif report.config.net is NetKind.LOOPBACK:
            why = "loopback loses nothing, so CPU contention (agents and the switch share the cores) delayed it"
        else:
            why = "a packet was lost, or a busy CPU delayed the result"
        lines.append(f"retransmissions ({retransmissions} in all): a worker's timer fired before its result arrived; "
                     f"{why} (docs/protocol.md section 4.6, step 3)")
    resends = sum(worker.rendezvous_resends for job in report.jobs for worker in job.workers)
    if resends:
        lines.append(f"rendezvous resends ({resends} in all): a worker sent its scale or closing round's CONTRIB "
                     f"again while it waited for that round's result, mostly for a peer that had not arrived yet "
                     f"(each is a DUPLICATE drop at the switch when its first copy arrived); the testbed starts the "
                     f"agents' first call in step unless --staggered-start (docs/protocol.md section 4.6, step 3)")
    return lines


def _plain(value: Any) -> Any:
    """A JSON-able copy of dataclasses, enums, paths, mappings; inf/nan become strings (JSON has neither)."""
    if isinstance(value, ImpairmentPlan):
        return value.describe()  # the --impair specs, as the command line takes them
    if is_dataclass(value) and not isinstance(value, type):
        data = {item.name: _plain(getattr(value, item.name)) for item in fields(value)}
        for name in ("ok", "to_switch_packets", "to_switch_bytes", "from_switch_packets", "from_switch_bytes",
                     "total_bytes", "retransmissions", "rendezvous_resends"):
            if hasattr(type(value), name) and isinstance(getattr(type(value), name), property):
                data[name] = getattr(value, name)
        return data
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, Mapping):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


def report_to_json(report: TestbedReport) -> dict[str, Any]:
    return _plain(report)

