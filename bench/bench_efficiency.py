"""The protocol's efficiency, measured end to end: packets per contributed block, bytes against the ideal exchange,
recovery traffic, drops, and the switch's end-to-end packet rate beside its standalone rate, in one run.

    .venv/bin/omnireduce-bench efficiency                            # the sweep of docs/performance.md
    .venv/bin/omnireduce-bench efficiency --quick                    # a few small points (under a minute)
    .venv/bin/omnireduce-bench efficiency --workers 4 --density 0.01 --size 26214400 --json-out out.json

Each point is one `omnireduce-testbed` run (loopback, the softswitch running p4src/build/omnireduce.json as its own
process, one agent process per worker, inputs with each block non-zero with probability `density` independently
per worker, every result checked against numpy's sum). Reported per point:

- packets/block: each worker's packets sent (first round, scale and closing rounds and any recovery included)
  per non-zero block of its own input, the mean and the largest over the workers;
- bytes/ideal: bytes counted at the job's switch ports, both directions, over the ideal exchange (each worker sends
  each of its non-zero blocks once; each block non-zero anywhere comes back once to every worker; 190-byte
  packets; docs/performance.md);
- retransmissions (data tensor) and rendezvous resends (the scale and closing rounds, which wait for every worker:
  the testbed starts the agents' calls in step, so on a loss-free path both stay 0) and REQUESTs the agents sent,
  and the switch's drops (all reasons);
- busy: the switch process's CPU time while the agents ran over the all-reduce's time: whether the agents keep
  the switch busy (its end-to-end rate is then its rate at its ports);
- time: the all-reduce by the agents' clocks (slowest worker; with --calls N, the median of calls 2..N), and the
  switch's packet rate into the pipeline over that time and over the data exchange alone (exch pps: the data
  frames over the slowest worker's exchange_s, without the agents' own passes over the tensor and the scale and
  closing rounds, in which the switch has nothing to process), each set against the switch's standalone rate on
  the same work, measured in the same run:
  - at ports (the standalone rate): the switch alone, fed at its ports by workers that take no time: its own packet
    loop with a ring port per worker, on a fresh switch with the point's tables, in this process (on the switch's
    CPU where the testbed pins one), and one process per worker (on the agents' CPUs) replaying an all-reduce of
    the point's W, density and slots recorded beforehand (about PORT_TRACE_CONTRIBUTIONS contributions), each frame
    sent as soon as the frame that caused it has come out of the worker's ring (bench/port_replay.py; every worker
    must receive exactly what it received in the recording). The median of PORT_REPEATS replays. This is how a
    switch's throughput is measured (RFC 2544: generators and sinks at its ports): it pays what it pays in the
    run (gathering each frame from a ring another core wrote, writing each result into W rings other cores read)
    and nothing else;
  - pipeline: the pipeline alone, one process, no ports: a trace of the point's all-reduce (bench_softswitch's
    generator, its slots scaled to the trace so that the dense first round weighs the same), in the batches the
    port loop hands it, best of STANDALONE_REPEATS: the pipeline's ceiling. Each multicast result costs the
    pipeline one egress pass per worker, so the rate per packet in depends on W and on the density; a trace of
    other work would not compare.
  bench_softswitch's own trace (W = 4, d = 0.5) is timed too, as a reference across runs.

--pipeline chooses the switch's pipeline for the runs and the standalone rates alike: native (the generated C,
where it builds), python (the reference), or auto.

With --loss P the switch loses each frame in and out with probability P (seeded), and the time is also compared
with the same point's loss-free run.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import logging
import math
import os
import statistics
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Iterator

from omnireduce import argtypes
from omnireduce.softswitch.backend import BACKENDS as PIPELINES
from omnireduce.softswitch.ports import RING_DRAIN_FRAMES
from omnireduce.testbed.cpus import CpuPinning, CpuPlanError, plan_cpus
from omnireduce.testbed.model import TestbedConfig, TestbedReport
from omnireduce.testbed.runner import run_testbed
from omnireduce.testbed.summary import call_seconds, data_frames_in

log = logging.getLogger("bench")

#: The sweep of the efficiency issue: W x density on 4,194,304-value tensors, and density 0.001 on 100 MB.
FULL_POINTS = ([(workers, density, 4_194_304) for density in (0.01, 0.1) for workers in (2, 4, 8, 16, 32)]
               + [(workers, 0.001, 26_214_400) for workers in (2, 4, 8)])
QUICK_POINTS = [(2, 0.05, 262_144), (4, 0.05, 262_144), (8, 0.01, 262_144)]


@dataclass(frozen=True, slots=True)
class PointResult:
    workers: int
    density: float
    size: int
    slots: int
    loss: float
    ok: bool
    failure: str | None
    seconds: float
    packets_per_block_mean: float
    packets_per_block_max: float
    loss_free_packets_per_block: float
    bytes_over_ideal: float
    bytes_over_dense: float
    retransmissions: int
    requests: int
    repairs: int
    drops: dict[str, int]
    switch_packets_in: int
    switch_pps: float
    pipeline: str = "auto"
    standalone_pps: float = 0.0  # the same pipeline alone on a trace of this point's work (0: not measured)
    rendezvous_resends: int = 0
    calls: int = 1  # all-reduces in the run; > 1: seconds and rates are one call's after the first (measure_point)
    #: the switch process's CPU time over the agents' all-reduce time (all calls): how much of the all-reduce the
    #: agents kept it busy (None: not measured, e.g. Mininet)
    switch_busy: float | None = None
    #: where the switch and the agents ran (mininet/cpus.py)
    cpus: str | None = None
    #: the switch alone at its ports on a replay of the point's work (bench/port_replay.py; 0: not measured)
    ports_alone_pps: float = 0.0
    ports_alone_failure: str | None = None
    #: the data exchange of one call (the slowest worker's; the median of the later calls like seconds), and the
    #: switch's packets in per second over it: its rate while the call's data travels (0: not reported)
    exchange_seconds: float = 0.0
    exchange_pps: float = 0.0
    #: with loss: the same point's loss-free time in this run (0: none to compare with), for the time overhead
    loss_free_seconds: float = 0.0

    @property
    def loss_overhead(self) -> float | None:
        """This run's time over the same point's loss-free time (None: loss-free, or nothing to compare with)."""
        return self.seconds / self.loss_free_seconds if self.loss and self.loss_free_seconds else None


def measure_point(workers: int, density: float, size: int, slots: int | None, loss: float,
                  seed: int, pipeline: str = "auto", calls: int = 1,
                  cpu_pinning: CpuPinning = CpuPinning.AUTO) -> PointResult:
    """One testbed run of the point. calls > 1: the agents all-reduce the tensor that many times in a row; the
    time is then the median of the calls after the first (each the slowest worker's), the switch's rate the
    packets of one call over it, and packets per block those of one call (every call sends the same traffic
    on a loss-free path); retransmissions, REQUESTs and drops are the whole run's."""
    config = TestbedConfig(workers=workers, size=size, density=density, slots=slots, seed=seed, loss=loss,
                           pipeline=pipeline, repeat=calls, cpu_pinning=cpu_pinning)
    slots = config.slots
    report: TestbedReport = run_testbed(config)
    if not report.jobs:
        return PointResult(workers, density, size, slots, loss, False, report.failure, report.elapsed_s, 0.0, 0.0,
                           0.0, 0.0, 0.0, 0, 0, 0, dict(report.drops), 0, 0.0, pipeline, calls=calls,
                           cpus=report.cpus)
    job = report.jobs[0]
    stats = [worker.stats for worker in job.workers]
    seconds = max((float(s.get("elapsed_s", 0.0)) for s in stats), default=0.0) or report.elapsed_s
    busy = report.switch_cpu_s / seconds if report.switch_cpu_s is not None and seconds else None
    each_call = call_seconds(job.workers)
    if calls > 1 and len(each_call) == calls:
        seconds = statistics.median(each_call[1:])
    each_exchange = call_seconds(job.workers, "exchange_s")
    exchange_seconds = statistics.median(each_exchange[1:] if len(each_exchange) > 1 else each_exchange) \
        if each_exchange else 0.0
    per_block = [value / calls for value in job.packets_per_block() if value != float("inf")]
    measured = job.measured
    packets_in = (measured.to_switch_packets if measured else 0) / calls
    data_packets_in = data_frames_in(packets_in, workers, 1)
    return PointResult(
        workers=workers, density=density, size=size, slots=slots, loss=loss, ok=report.ok, failure=report.failure,
        seconds=seconds,
        packets_per_block_mean=statistics.fmean(per_block) if per_block else 0.0,
        packets_per_block_max=max(per_block, default=0.0),
        # What the protocol sends on a loss-free path, from the inputs (first round, scale and closing rounds).
        loss_free_packets_per_block=job.expected.contributions / calls / max(1, sum(job.nonzero_per_worker)),
        bytes_over_ideal=measured.total_bytes / job.ideal.total_bytes if measured and job.ideal else 0.0,
        bytes_over_dense=measured.total_bytes / job.dense.total_bytes if measured else 0.0,
        retransmissions=sum(int(s.get("retransmissions", 0)) for s in stats),
        requests=sum(int(s.get("requests_sent", 0)) for s in stats),
        repairs=sum(int(s.get("repairs_sent", 0)) for s in stats),
        drops=dict(report.drops),
        switch_packets_in=round(packets_in),
        switch_pps=packets_in / seconds if seconds else 0.0,
        pipeline=pipeline,
        rendezvous_resends=sum(int(s.get("rendezvous_resends", 0)) for s in stats),
        calls=calls,
        switch_busy=busy,
        cpus=report.cpus,
        exchange_seconds=exchange_seconds,
        exchange_pps=data_packets_in / exchange_seconds if exchange_seconds else 0.0,
    )


#: A point's standalone trace is an all-reduce of about this many contributions (enough to time; its recording
#: runs the Python pipeline, whose egress passes grow with W).
TRACE_CONTRIBUTIONS = 8000
#: A trace is timed this many times from a fresh switch, the best run counting: one pass takes milliseconds, so on
#: a shared machine any single one may be slowed by a neighbour (best of 3 still read 0.58 to 1.45 M packets/s
#: for like work within one run).
STANDALONE_REPEATS = 9
TRACE_MIN_BLOCKS = 2048
#: The port replay's all-reduce: about this many contributions with the point's own slots (the replay's window is
#: the slots, so they are not scaled down; the dense first round then weighs more than in the run: W x slots
#: frames, e.g. 8,192 of about 100,000 at W = 16 with 512 slots, against 1% of the 100 MB run's); the median of
#: PORT_REPEATS replays counts (each takes 0.05-0.3 s on a fresh switch).
PORT_TRACE_CONTRIBUTIONS = 100_000
PORT_REPEATS = 5


def pipeline_mode(pipeline: str):
    """The pipeline that runs for `pipeline` here, timed as the testbed's shared-memory port loop feeds it: the
    native one arrays of RING_DRAIN_FRAMES frames (what the loop gathers from its ring ports in one go), the
    Python one process_batch of as many."""
    from omnireduce.softswitch.device import Device

    from .bench_softswitch import PROJECT_JSON, SoftswitchMode

    probe = Device(name="bench-probe", backend=pipeline)
    probe.load_pipeline(PROJECT_JSON.read_bytes())
    native = probe.backend == "native"
    return SoftswitchMode(f"{probe.backend}, {'arrays' if native else 'batches'} of {RING_DRAIN_FRAMES}",
                          probe.backend, RING_DRAIN_FRAMES, arrays=native)


def _timed(trace, mode) -> dict:
    from .bench_softswitch import PROJECT_JSON, time_softswitch

    wall, cpu, _ = time_softswitch(PROJECT_JSON.read_bytes(), trace, STANDALONE_REPEATS, mode)
    frames = len(trace.batch)
    return {"mode": mode.label, "frames": frames, "pps_wall": frames / wall, "pps_cpu": frames / cpu}


def standalone_rate(pipeline: str = "auto") -> dict:
    """The softswitch's own rate on bench_softswitch's recorded trace (W = 4, d = 0.5; no sockets, one process),
    best of STANDALONE_REPEATS, in the configuration the testbed's switch runs (pipeline_mode)."""
    from .bench_softswitch import PROJECT_JSON, load_generator, record_trace

    trace = record_trace(PROJECT_JSON.read_bytes(), PROJECT_JSON, load_generator(None, PROJECT_JSON, 2048), 0)
    return _timed(trace, pipeline_mode(pipeline))


def _blocks_for(contributions: int, workers: int, density: float, size: int, least: int = 1) -> int:
    """Blocks that hold about `contributions` contributions of W workers at `density`, at least `least`, within the
    tensor."""
    from omnireduce.testbed.inputs import block_count

    wanted = math.ceil(contributions / max(workers * density, 1e-9))
    return max(1, min(block_count(size), max(least, wanted)))


def trace_blocks(workers: int, density: float, size: int) -> int:
    """Blocks of a point's standalone trace: about TRACE_CONTRIBUTIONS contributions, within the tensor."""
    return _blocks_for(TRACE_CONTRIBUTIONS, workers, density, size, TRACE_MIN_BLOCKS)


def trace_slots(slots: int, blocks: int, size: int) -> int:
    """Slots of a point's standalone trace: the point's, scaled down with the tensor, so that the dense first round
    (S blocks per worker) weighs in the trace what it weighs in the run."""
    from omnireduce.testbed.inputs import block_count

    return max(1, min(slots, round(slots * blocks / block_count(size))))


def workload_rate(workers: int, density: float, size: int, slots: int, pipeline: str = "auto") -> dict:
    """The standalone rate on the point's own work: a recorded all-reduce of trace_blocks() blocks with its
    workers and density, and its slots scaled to the trace (trace_slots), timed like standalone_rate."""
    from .bench_softswitch import PROJECT_JSON, record_trace
    from .frame_generators import omnireduce_frames

    blocks = trace_blocks(workers, density, size)
    generator = functools.partial(omnireduce_frames, workers=workers, slots=trace_slots(slots, blocks, size),
                                  blocks=blocks, density=density)
    trace = record_trace(PROJECT_JSON.read_bytes(), PROJECT_JSON, generator, 0)
    return _timed(trace, pipeline_mode(pipeline))


def port_trace_blocks(workers: int, density: float, size: int) -> int:
    """Blocks of a point's port replay: about PORT_TRACE_CONTRIBUTIONS contributions, within the tensor."""
    return _blocks_for(PORT_TRACE_CONTRIBUTIONS, workers, density, size)


def ports_rate(workers: int, density: float, size: int, slots: int, pipeline: str, seed: int,
               agent_cpus: frozenset[int] | None) -> dict:
    """The switch alone at its ports on the point's work (bench/port_replay.py); call it on the switch's CPU."""
    from .port_replay import port_rate, record_port_trace

    blocks = port_trace_blocks(workers, density, size)
    trace = record_port_trace(workers, density, blocks, min(slots, blocks), seed)
    return port_rate(trace, pipeline, PORT_REPEATS, agent_cpus)


def table(results: list[PointResult], standalone: dict | None) -> str:
    lines = [f"{'W':>3} {'density':>8} {'values':>11} {'slots':>5} {'loss':>5} {'ok':>3} {'seconds':>8} {'x':>6} "
             f"{'pkts/block':>10} {'(max)':>6} {'loss-free':>9} {'bytes/ideal':>11} {'of dense':>8} {'retx':>6} "
             f"{'rdv':>4} {'req':>5} {'drops':>6} {'switch pps':>10} {'exch pps':>9} {'at ports':>9} "
             f"{'of ports':>8} {'exch/ports':>10} {'pipeline':>9} {'of pipe':>7} {'busy':>5}"]
    for r in results:
        exchange = f"{r.exchange_pps:9.0f}" if r.exchange_pps else f"{'-':>9}"
        ports = f"{r.ports_alone_pps:9.0f}" if r.ports_alone_pps else f"{'-':>9}"
        of_ports = f"{r.switch_pps / r.ports_alone_pps:8.0%}" if r.ports_alone_pps else f"{'-':>8}"
        exchange_of_ports = (f"{r.exchange_pps / r.ports_alone_pps:10.0%}" if r.ports_alone_pps and r.exchange_pps
                             else f"{'-':>10}")
        alone = f"{r.standalone_pps:9.0f}" if r.standalone_pps else f"{'-':>9}"
        share = f"{r.switch_pps / r.standalone_pps:7.0%}" if r.standalone_pps else f"{'-':>7}"
        busy = f"{r.switch_busy:5.0%}" if r.switch_busy is not None else f"{'-':>5}"
        overhead = f"{r.loss_overhead:5.1f}x" if r.loss_overhead is not None else f"{'-':>6}"
        lines.append(f"{r.workers:3d} {r.density:8g} {r.size:11d} {r.slots:5d} {r.loss:5g} "
                     f"{'yes' if r.ok else 'NO':>3} {r.seconds:8.2f} {overhead} {r.packets_per_block_mean:10.3f} "
                     f"{r.packets_per_block_max:6.3f} {r.loss_free_packets_per_block:9.3f} "
                     f"{r.bytes_over_ideal:11.3f} {r.bytes_over_dense:8.1%} {r.retransmissions:6d} "
                     f"{r.rendezvous_resends:4d} {r.requests:5d} "
                     f"{sum(r.drops.values()):6d} {r.switch_pps:10.0f} {exchange} {ports} {of_ports} "
                     f"{exchange_of_ports} {alone} {share} {busy}")
        if r.failure:
            lines.append(f"    FAILED: {r.failure}")
        if r.ports_alone_failure:
            lines.append(f"    the switch alone at its ports was not measured: {r.ports_alone_failure}")
    if any(r.calls > 1 for r in results):
        lines.append(f"seconds, switch pps, packets/block: one call after the first ({results[0].calls} calls a point: "
                     f"the median of the later ones); retx, rdv, req, drops: the whole run's")
    if any(r.loss_overhead is not None for r in results):
        lines.append("x: the time with loss over the same point's loss-free time in this run")
    lines.append("retx: the data tensor's CONTRIBs resent after a timeout; rdv: the scale and closing rounds' (the calls "
                 "start in step after the testbed's start barrier)")
    lines.append("switch pps: packets into the switch over the whole call; exch pps: the data frames over the data "
                 "exchange alone (slowest worker), without the agents' own passes over the tensor (scan, quantizing, "
                 "writing the result) and the scale and closing rounds, in which the switch has no data to process")
    lines.append("busy: the switch process's CPU time over the all-reduce's (all calls, by the agents' clocks): near "
                 "100%, the agents keep the switch busy and its rate is its cost per frame with its ports; well below, "
                 "it waits for the agents")
    if results and results[0].cpus:
        lines.append(f"CPUs: {results[0].cpus} (the testbed's --cpu-pinning; the standalone rates ran on the "
                     f"switch's CPU where it has one)")
    if any(r.ports_alone_pps for r in results):
        lines.append("at ports: the switch alone, its packet loop with one ring port per worker, fed a replay of an "
                     f"all-reduce of the point's W, density and slots (about {PORT_TRACE_CONTRIBUTIONS} "
                     f"contributions) by one process per worker that sends each frame as soon as the frame that "
                     f"caused it comes out (no agent work; bench/port_replay.py); packets in per second wall, median "
                     f"of {PORT_REPEATS} replays, same run: the standalone rate, as a switch's is measured at its "
                     f"ports")
    if any(r.standalone_pps for r in results):
        lines.append("pipeline: the same pipeline in one process, no ports, on a trace of the point's own all-reduce "
                     f"(its W and density, its slots scaled to the trace; packets in per second wall, best of "
                     f"{STANDALONE_REPEATS}, same run): the pipeline's ceiling, without the ports' cost")
    if standalone:
        lines.append(f"softswitch alone ({standalone['mode']}, bench_softswitch trace W = 4 d = 0.5, "
                     f"{standalone['frames']} frames, same run): "
                     f"{standalone['pps_wall']:.0f} packets/s wall, {standalone['pps_cpu']:.0f} per CPU second")
    return "\n".join(lines)


@contextlib.contextmanager
def running_on(cpus: frozenset[int] | None) -> Iterator[None]:
    """This process on `cpus` meanwhile (None: as it is): the standalone rate on the CPU the switch gets."""
    if cpus is None:
        yield
        return
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, cpus)
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of this bench, on its own parser or on `omnireduce-bench efficiency`."""
    parser.add_argument("--quick", action="store_true", help="a few small points instead of the full sweep")
    parser.add_argument("--workers", type=argtypes.integer(minimum=1, maximum=32), action="append",
                        help="worker counts 1..32 (repeatable)")
    parser.add_argument("--density", type=argtypes.fraction, action="append",
                        help="densities in [0, 1] (repeatable)")
    parser.add_argument("--size", type=argtypes.integer(minimum=1), action="append",
                        help="tensor sizes in values (repeatable)")
    parser.add_argument("--slots", type=argtypes.integer(minimum=1), default=None,
                        help="slots per job (default: the testbed's, chosen from the tensor)")
    parser.add_argument("--loss", type=argtypes.fraction, action="append",
                        help="also run every point with this loss probability (repeatable; loss-free always runs)")
    parser.add_argument("--seed", type=argtypes.integer(minimum=0), default=1,
                        help="seed of the inputs and of the loss (default 1)")
    parser.add_argument("--pipeline", choices=PIPELINES, default="auto",
                        help="the softswitch's pipeline, in the runs and alone (default auto: native where it "
                             "builds, else python)")
    parser.add_argument("--calls", type=argtypes.integer(minimum=1), default=1, metavar="N",
                        help="all-reduce each point's tensor N times in a row and report the calls after the first "
                             "(time: their median; switch rate and packets per block: one call's), as a training "
                             "loop calls it and as nccl-tests time after warm-up (default 1: the one cold call)")
    parser.add_argument("--cpu-pinning", type=argtypes.choice(CpuPinning), choices=list(CpuPinning),
                        default=CpuPinning.AUTO, metavar="{auto,on,off}",
                        help="the testbed's --cpu-pinning for every run (default auto: the switch on a CPU of its "
                             "own from 4 CPUs on); the standalone rates run on the switch's CPU")
    parser.add_argument("--no-standalone", action="store_true", help="skip the standalone softswitch rates")
    parser.add_argument("--json-out", metavar="PATH", help="also write the results as JSON to PATH")


def run(args: argparse.Namespace) -> int:
    if args.workers or args.density or args.size:
        points = [(w, d, n) for n in (args.size or [4_194_304]) for d in (args.density or [0.01])
                  for w in (args.workers or [4])]
    else:
        points = QUICK_POINTS if args.quick else FULL_POINTS
    losses = [0.0] + [loss for loss in (args.loss or []) if loss > 0]
    # Every point's testbed configuration is checked before any is measured (e.g. --slots past the switch's).
    problems = sorted({problem for workers, density, size in points for loss in losses
                       for problem in TestbedConfig(workers=workers, size=size, density=density, slots=args.slots,
                                                    seed=args.seed, loss=loss, pipeline=args.pipeline,
                                                    repeat=args.calls, cpu_pinning=args.cpu_pinning).problems()})
    if problems:
        print(f"omnireduce-bench efficiency: error: {'; '.join(problems)}", file=sys.stderr)
        return 2
    try:
        plan = plan_cpus(args.cpu_pinning)
    except CpuPlanError as error:
        print(f"omnireduce-bench efficiency: error: {error}", file=sys.stderr)
        return 2
    with running_on(plan.switch):
        standalone = None if args.no_standalone else standalone_rate(args.pipeline)
    results = []
    started = time.monotonic()
    for workers, density, size in points:
        alone, at_ports = 0.0, {}
        if not args.no_standalone:
            slots = TestbedConfig(workers=workers, size=size, density=density, slots=args.slots).slots
            with running_on(plan.switch):
                alone = workload_rate(workers, density, size, slots, args.pipeline)["pps_wall"]
                at_ports = ports_rate(workers, density, size, slots, args.pipeline, args.seed, plan.agents)
        loss_free_seconds = 0.0  # losses[0] is 0: the loss-free run comes first
        for loss in losses:
            log.info("W=%d density=%g values=%d slots=%s loss=%g", workers, density, size, args.slots or "auto", loss)
            result = replace(measure_point(workers, density, size, args.slots, loss, args.seed, args.pipeline,
                                           args.calls, args.cpu_pinning),
                             standalone_pps=alone, ports_alone_pps=at_ports.get("pps_wall", 0.0),
                             ports_alone_failure=at_ports.get("failure"), loss_free_seconds=loss_free_seconds)
            if loss == 0.0 and result.ok:
                loss_free_seconds = result.seconds
            log.info("  -> %s in %.2f s, %.3f packets/block, %.3f x ideal bytes", "ok" if result.ok else "FAILED",
                     result.seconds, result.packets_per_block_mean, result.bytes_over_ideal)
            results.append(result)
    print(table(results, standalone))
    print(f"(bench took {time.monotonic() - started:.0f} s)")
    if args.json_out:
        Path(args.json_out).write_text(json.dumps({"standalone": standalone, "points": [asdict(r) for r in results]},
                                                  indent=1))
    return 0 if all(r.ok for r in results) else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", stream=sys.stderr)
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
