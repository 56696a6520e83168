"""omnireduce-testbed: run an all-reduce of synthetic sparse tensors end to end and check every result.

`main(argv)` returns the exit code; tests call it directly.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
from pathlib import Path
from typing import Sequence, TextIO

from tqdm import tqdm

from omnireduce import argtypes
from omnireduce.clierrors import JsonArgumentParser, json_usage_errors, report_error, wants_json
from omnireduce.host.config import Timeouts
from omnireduce.host.progress import plural
from omnireduce.p4src import constants
from omnireduce.softswitch.backend import BACKENDS as PIPELINES
from omnireduce.softswitch.faults import ImpairmentError, ImpairmentPlan, parse_rule

from .cpus import MIN_CPUS_TO_PIN, CpuPinning
from .model import Fault, ImpairSite, NetKind, PortKind, SwitchKind, TestbedConfig
from .progress import ALL_REDUCE, RunProgress
from .runner import ConfigError, run_testbed
from .summary import format_report, report_to_json

PROG = "omnireduce-testbed"

EXIT_OK = 0
EXIT_FAILED = 1  # the run failed or a result was wrong
EXIT_USAGE = 2  # bad arguments or configuration
EXIT_INTERRUPTED = 130  # SIGINT or SIGTERM: stopped everything it had started

#: The agents' own time limits (their defaults: the testbed does not change them).
AGENT_LIMITS = Timeouts()
#: Off a terminal, one progress line every this many seconds.
PROGRESS_LINE_S = 5.0

DESCRIPTION = """\
Start an omnireduce switch, push the pipeline and the job(s) with the controller, run one agent process per
worker on generated sparse tensors, and check every worker's result against numpy's sum (exact for int32, within
the fixed-point bound of docs/protocol.md section 5 for float32). The summary sets the traffic the switch counted
against the loss-free OmniReduce exchange and against dense aggregation.

network modes:
  loopback  the softswitch with one port per worker (shared-memory rings, or UDP sockets on 127.0.0.1: --ports);
            agents send whole Ethernet frames to it. No root needed. (default)
  mininet   a star of Mininet hosts around the switch (softswitch or BMv2 on the switch's interfaces), agents on
            kernel UDP sockets in the hosts. Needs root and Mininet (apt-get install mininet).

examples:
  omnireduce-testbed --workers 4 --density 0.05
  omnireduce-testbed --workers 8 --size 200000 --dtype int32 --jobs 2 --slots 32 --json
  sudo omnireduce-testbed --net mininet --switch softswitch --workers 4
  omnireduce-testbed --workers 4 --dense                # SwitchML-style baseline on the same inputs
"""

EPILOG = f"""\
exit codes:
  {EXIT_OK}    every result verified
  {EXIT_FAILED}    the run failed (the last line says which part and what to try) or a result was wrong
  {EXIT_USAGE}    bad arguments, or the chosen network or switch cannot run on this machine (checked before any work)
  {EXIT_INTERRUPTED}  interrupted (SIGINT/SIGTERM); everything started was stopped
errors are one line on stderr, `omnireduce-testbed: error: ...`; with --json also {{"ok": false, "error": ...}} on
stdout (a run that failed prints its whole report instead, with "ok": false and "failure").

progress: while the agents run, a bar on stderr (blocks done over every worker, packets/s, time left); off a
terminal a line every {PROGRESS_LINE_S:g} s; -q for none.

time: no overall limit by default. A run that stops progressing ends anyway: each agent gives up after
{AGENT_LIMITS.stall:g} s without a result (Stalled) or {AGENT_LIMITS.join:g} s without its peers (WorkerMissing), and the report names the worker.

cost: N values make N/{constants.LANES} blocks. At density D each worker sends about D*N/{constants.LANES} CONTRIB
packets (and at least one per slot), and the switch sends every worker one RESULT for each block that is non-zero
in any worker (a fraction 1-(1-D)^W of the blocks at W workers); --dense sends every block both ways. The report's
"loss-free" row is the exact count of a run. Measured packet rates of the softswitch and of BMv2, and so the time
a size takes, are in docs/performance.md.

limits of the compiled program: MAX_WORKERS={constants.MAX_WORKERS}, MAX_JOBS={constants.MAX_JOBS},
SLOT_COUNT={constants.SLOT_COUNT} (jobs x slots must fit).
"""


def build_parser() -> argparse.ArgumentParser:
    defaults = TestbedConfig()
    parser = JsonArgumentParser(prog=PROG, description=DESCRIPTION, epilog=EPILOG,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=argtypes.integer(minimum=1), default=defaults.workers, metavar="N",
                        help=f"workers per job (default {defaults.workers})")
    parser.add_argument("--switch", type=argtypes.choice(SwitchKind), choices=list(SwitchKind), default=defaults.switch,
                        metavar="{softswitch,bmv2}", help="switch implementation (default softswitch; bmv2 needs "
                                                          "--net mininet and simple_switch_grpc on PATH)")
    parser.add_argument("--net", type=argtypes.choice(NetKind), choices=list(NetKind), default=defaults.net,
                        metavar="{loopback,mininet}", help="network (default loopback)")
    parser.add_argument("--ports", type=argtypes.choice(PortKind), choices=list(PortKind), default=None,
                        metavar="{shm,udp}",
                        help="loopback: how the softswitch's ports carry frames: shm, shared-memory rings under "
                             "/dev/shm (no system call per frame; needs a C compiler, like the native pipeline), or "
                             "udp, a UDP socket per worker on 127.0.0.1 (default: shm where it builds, else udp, "
                             "saying why)")
    parser.add_argument("--pipeline", choices=PIPELINES, default=defaults.pipeline,
                        help="the softswitch's packet pipeline: native (the generated C), python (the reference), "
                             "or auto (default): the softswitch's own default, $OMNIREDUCE_SOFTSWITCH_BACKEND where "
                             "set, else native where it builds and python otherwise, saying why")
    parser.add_argument("--size", type=argtypes.integer(minimum=1), default=defaults.size, metavar="ELEMENTS",
                        help=f"tensor length in values (default {defaults.size})")
    parser.add_argument("--density", type=argtypes.fraction, default=defaults.density, metavar="D",
                        help=f"fraction of each worker's {constants.LANES}-value blocks that are non-zero "
                             f"(default {defaults.density})")
    parser.add_argument("--dtype", choices=("float32", "int32"), default=defaults.dtype,
                        help=f"value type (default {defaults.dtype})")
    parser.add_argument("--dense", action="store_true", help="agents send every block (SwitchML-style baseline)")
    parser.add_argument("--jobs", type=argtypes.integer(minimum=1), default=defaults.jobs, metavar="J",
                        help="concurrent jobs on disjoint slot ranges, each with --workers workers (default 1)")
    parser.add_argument("--slots", type=argtypes.integer(minimum=1), default=None, metavar="S",
                        help="slots per job, i.e. rounds in flight per worker (default: from the tensor: the largest "
                             "power of two, 16 to 512/jobs, whose dense first round stays within 5%% of a worker's "
                             "expected non-zero blocks; e.g. 16 for the default run, 256 for 26,214,400 values at "
                             "density 0.01)")
    parser.add_argument("--seed", type=int, default=defaults.seed, metavar="N",
                        help="seed of the generated inputs (default 0)")
    parser.add_argument("--repeat", type=argtypes.integer(minimum=1), default=defaults.repeat, metavar="N",
                        help="all-reduce each tensor N times in a row (default 1); the report gives the first call "
                             "(the first use of the agents' buffers and the switch's slots) and the later ones (as "
                             "in a training loop) apart, and the traffic of all N")
    parser.add_argument("--staggered-start", action="store_true",
                        help="let each agent call as soon as it has started, instead of starting every agent's first "
                             "call in step after a start barrier (what benchmarks of other all-reduces do): the scale "
                             "round then waits for the last agent, resending meanwhile (rendezvous resends)")
    parser.add_argument("--cpu-pinning", type=argtypes.choice(CpuPinning), choices=list(CpuPinning),
                        default=defaults.cpu_pinning, metavar="{auto,on,off}",
                        help="loopback: run the switch on a CPU of its own (the highest-numbered one this process "
                             "may use) and the agents on the others, as software switches are benchmarked; auto "
                             f"(the default) pins where at least {MIN_CPUS_TO_PIN} CPUs are available")
    parser.add_argument("--timeout", type=argtypes.seconds, default=defaults.timeout, metavar="S",
                        help="limit for the run from the switch's start to the last agent's exit (default: none; "
                             "see 'time' below)")
    parser.add_argument("--loss", type=argtypes.number(minimum=0.0, maximum=0.99), default=0.0, metavar="P",
                        help="short for --impair drop=P: each frame to or from the switch is lost with "
                             "probability P (default 0)")
    parser.add_argument("--impair", action="append", default=[], metavar="SPEC",
                        type=argtypes.from_parser(parse_rule, ImpairmentError),
                        help="fault injection on the frames to and from the switch, netem's terms: "
                             "[PORT[/in|out]:|in:|out:]KEY=VALUE,... with KEY drop, duplicate, reorder (0.01 or "
                             "1%%), delay, jitter (5ms), hold; 'in' is towards the switch, worker k is on port k+1. "
                             "Repeatable; the more specific spec wins per key. Seeded by --seed where the softswitch "
                             "injects (docs/reliability.md)")
    parser.add_argument("--impair-at", type=argtypes.choice(ImpairSite), choices=list(ImpairSite), default=None,
                        metavar="{switch,links}",
                        help="where --impair acts: switch (the softswitch, between ports and pipeline; the default "
                             "on loopback) or links (tc netem on both ends of every Mininet link; the default on "
                             "Mininet, needs the kernel's netem qdisc)")
    parser.add_argument("--json", action="store_true", help="print the report as one JSON object")
    parser.add_argument("--keep-logs", type=Path, metavar="DIR",
                        help="keep inputs, outputs, logs and the switch's counters in DIR")
    parser.add_argument("--fault", type=argtypes.from_parser(Fault.parse), metavar="KIND[@ARG]",
                        help="inject a failure, to test the testbed: kill-switch[@SECONDS] (default 0.5 s after the "
                             "agents start), nan-input[@WORKER] (a NaN in that worker's input of job 0) or "
                             "hang-worker[@WORKER] (that worker of job 0 is stopped with SIGSTOP as it starts)")
    parser.add_argument("-q", "--quiet", action="store_true",
                        help="no progress on stderr (default: a bar on a terminal, else a line every "
                             f"{PROGRESS_LINE_S:g} s)")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging on stderr (-vv: debug)")
    return parser


def config_from_args(args: argparse.Namespace) -> TestbedConfig:
    return TestbedConfig(workers=args.workers, switch=args.switch, net=args.net, size=args.size,
                         density=args.density, dtype=args.dtype, dense=args.dense, jobs=args.jobs, slots=args.slots,
                         seed=args.seed, repeat=args.repeat, start_in_step=not args.staggered_start,
                         timeout=args.timeout, loss=args.loss,
                         impairments=ImpairmentPlan(tuple(args.impair)), impair_at=args.impair_at,
                         keep_logs=args.keep_logs,
                         fault=args.fault, ports=args.ports, pipeline=args.pipeline,
                         cpu_pinning=args.cpu_pinning)


class ProgressView:
    """Shows a run's progress on stderr: a tqdm bar on a terminal, else one line every `line_every_s` seconds."""

    def __init__(self, stream: TextIO, *, bar: bool, line_every_s: float = PROGRESS_LINE_S) -> None:
        self._stream = stream
        self._use_bar = bar
        self._line_every_s = line_every_s
        self._bar: tqdm | None = None
        self._next_line_at = 0.0
        self._rate_mark: tuple[float, int] | None = None
        self._rate = 0.0
        self._last: RunProgress | None = None
        self._status_shown = False
        self._written: RunProgress | None = None

    def __call__(self, progress: RunProgress) -> None:
        if progress.phase != ALL_REDUCE:
            self._step(progress.phase)
            return
        self._last = progress
        self._update_rate(progress)
        if self._use_bar:
            self._draw(progress)
        elif progress.elapsed_s >= self._next_line_at:
            self._next_line_at = progress.elapsed_s + self._line_every_s
            self._write_line(progress)

    def _write_line(self, progress: RunProgress) -> None:
        self._stream.write(f"omnireduce-testbed: {progress_line(progress, self._rate)}\n")
        self._stream.flush()
        self._written = progress

    def _finish_lines(self) -> None:
        """Off a terminal: where the all-reduce ended, if the last line written was not that."""
        if self._last is not None and self._written is not self._last:
            self._write_line(self._last)
        self._last = None

    def _step(self, phase: str) -> None:
        if self._use_bar:
            if self._bar is not None:
                self._bar.close()
                self._bar = None
            # One status line, overwritten by the next step or the bar.
            self._stream.write(f"\r\033[K{phase} ...")
            self._stream.flush()
            self._status_shown = True
        else:
            self._finish_lines()
            self._stream.write(f"omnireduce-testbed: {phase}\n")
            self._stream.flush()

    def _update_rate(self, progress: RunProgress) -> None:
        if self._rate_mark is None:
            self._rate_mark = (progress.elapsed_s, progress.packets_sent)
            return
        since, packets = self._rate_mark
        if progress.elapsed_s - since >= 1.0:
            self._rate = (progress.packets_sent - packets) / (progress.elapsed_s - since)
            self._rate_mark = (progress.elapsed_s, progress.packets_sent)

    def _draw(self, progress: RunProgress) -> None:
        if self._bar is None:
            if self._status_shown:
                self._stream.write("\r\033[K")
                self._status_shown = False
            self._bar = tqdm(total=progress.blocks_total, unit="block", unit_scale=True, file=self._stream,
                             desc="all-reduce", dynamic_ncols=True, mininterval=0, leave=False)
        agents = (f"{progress.agents_started}/{progress.agents} agents up" if progress.agents_started < progress.agents
                  else f"{progress.agents - progress.agents_done} running")
        retransmitted = (f", {progress.retransmissions} {plural(progress.retransmissions, 'retransmission')}"
                         if progress.retransmissions else "")
        self._bar.set_postfix_str(f"{self._rate:,.0f} packets/s, {agents}{retransmitted}", refresh=False)
        self._bar.update(progress.blocks_done - self._bar.n)

    def close(self) -> None:
        """Take the bar off the terminal (the report follows); off a terminal, write where the run ended."""
        if self._status_shown:
            self._stream.write("\r\033[K")
            self._stream.flush()
            self._status_shown = False
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        if not self._use_bar:
            self._finish_lines()


def progress_line(progress: RunProgress, packets_per_s: float) -> str:
    """'1,024/131,072 blocks (0.8%), 4 of 4 agents running, 9,870 packets/s, about 13 s left'."""
    line = (f"{progress.blocks_done:,}/{progress.blocks_total:,} blocks ({progress.fraction:.1%}) after "
            f"{progress.elapsed_s:.0f} s, ")
    if progress.agents_started < progress.agents:
        line += f"{progress.agents_started} of {progress.agents} agents started"
    elif progress.agents_done == progress.agents:
        line += "every agent done"
    else:
        line += f"{progress.agents - progress.agents_done} of {progress.agents} agents running"
    line += f", {packets_per_s:,.0f} packets/s"
    if progress.retransmissions:
        line += f", {progress.retransmissions} {plural(progress.retransmissions, 'retransmission')}"
    if 0 < progress.blocks_done < progress.blocks_total:
        left = progress.elapsed_s * (progress.blocks_total - progress.blocks_done) / progress.blocks_done
        line += f", about {left:.0f} s left"
    return line


def _raise_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    json_usage_errors(parser, wants_json(argv))
    args = parser.parse_args(argv)
    logging.basicConfig(level=(logging.WARNING, logging.INFO, logging.DEBUG)[min(args.verbose, 2)],
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    config = config_from_args(args)
    # SIGTERM unwinds like Ctrl-C, so that every `finally` stops the switch and the agents (they run in sessions
    # of their own and would otherwise outlive us).
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    view = ProgressView(sys.stderr, bar=sys.stderr.isatty()) if not args.quiet else None
    try:
        report = run_testbed(config, progress=view)
    except ConfigError as error:
        return report_error(PROG, str(error), EXIT_USAGE, json_output=args.json)
    except KeyboardInterrupt:
        return report_error(PROG, "interrupted, the switch and the agents were stopped", EXIT_INTERRUPTED,
                            json_output=args.json)
    finally:
        if view is not None:
            view.close()
        signal.signal(signal.SIGTERM, previous)
    if args.json:
        json.dump(report_to_json(report), sys.stdout, indent=1)
        sys.stdout.write("\n")
    else:
        sys.stdout.write(format_report(report) + "\n")
    if not report.ok:
        sys.stderr.write(f"{PROG}: error: {report.failure or 'a result was wrong'}\n")
    return EXIT_OK if report.ok else EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
