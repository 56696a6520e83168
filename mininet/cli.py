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
from typing import Sequence

from omnireduce import argtypes
from omnireduce.p4src import constants

from .model import Fault, NetKind, SwitchKind, TestbedConfig
from .runner import ConfigError, run_testbed
from .summary import format_report, report_to_json

EXIT_OK = 0
EXIT_FAILED = 1  # the run failed or a result was wrong
EXIT_USAGE = 2  # bad arguments or configuration
EXIT_INTERRUPTED = 130  # SIGINT or SIGTERM: stopped everything it had started

DESCRIPTION = """\
Start an omnireduce switch, push the pipeline and the job(s) with the controller, run one agent process per
worker on generated sparse tensors, and check every worker's result against numpy's sum (exact for int32, within
the fixed-point bound of docs/protocol.md section 5 for float32). The summary sets the traffic the switch counted
against the loss-free OmniReduce exchange and against dense aggregation.

network modes:
  loopback  the softswitch with one UDP port per worker on 127.0.0.1; agents send whole Ethernet frames to it.
            No root needed. (default)
  mininet   a star of Mininet hosts around the switch (softswitch or BMv2 on the switch's interfaces), agents on
            kernel UDP sockets in the hosts. Needs root and Mininet (apt-get install mininet).

examples:
  omnireduce-testbed --workers 4 --density 0.05
  omnireduce-testbed --workers 8 --size 200000 --dtype int32 --jobs 2 --slots 32 --json
  sudo omnireduce-testbed --net mininet --switch softswitch --workers 4
  omnireduce-testbed --workers 4 --dense                # SwitchML-style baseline on the same inputs
"""

EPILOG = f"""\
exit codes: {EXIT_OK} every result verified; {EXIT_FAILED} the run failed (the last line says which part) or a
result was wrong; {EXIT_USAGE} bad arguments; {EXIT_INTERRUPTED} interrupted (SIGINT/SIGTERM; everything started was
stopped).

limits of the compiled program: MAX_WORKERS={constants.MAX_WORKERS}, MAX_JOBS={constants.MAX_JOBS},
SLOT_COUNT={constants.SLOT_COUNT} (jobs x slots must fit). A loopback run moves some 8,000 packets/s end to end on
2 cores (docs/performance.md): a tensor of N float32 values at density d costs about (N/32)*d packets from each
worker and the union of the workers' blocks back to each.
"""


def build_parser() -> argparse.ArgumentParser:
    defaults = TestbedConfig()
    parser = argparse.ArgumentParser(prog="omnireduce-testbed", description=DESCRIPTION, epilog=EPILOG,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=argtypes.integer(minimum=1), default=defaults.workers, metavar="N",
                        help=f"workers per job (default {defaults.workers})")
    parser.add_argument("--switch", type=SwitchKind, choices=list(SwitchKind), default=defaults.switch,
                        metavar="{softswitch,bmv2}", help="switch implementation (default softswitch; bmv2 needs "
                                                          "--net mininet and simple_switch_grpc on PATH)")
    parser.add_argument("--net", type=NetKind, choices=list(NetKind), default=defaults.net,
                        metavar="{loopback,mininet}", help="network (default loopback)")
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
    parser.add_argument("--timeout", type=argtypes.seconds, default=defaults.timeout, metavar="S",
                        help="limit for the run from the switch's start to the last agent's exit (default: none; "
                             "a run that stops progressing ends anyway: every agent gives up after 10 s without a "
                             "result, or 30 s without its peers joining, and says which)")
    parser.add_argument("--loss", type=argtypes.number(minimum=0.0, maximum=0.99), default=0.0, metavar="P",
                        help="fault injection (loopback): the softswitch loses each frame in or out with "
                             "probability P, seeded by --seed (default 0)")
    parser.add_argument("--json", action="store_true", help="print the report as one JSON object")
    parser.add_argument("--keep-logs", type=Path, metavar="DIR",
                        help="keep inputs, outputs, logs and the switch's counters in DIR")
    parser.add_argument("--fault", type=argtypes.from_parser(Fault.parse), metavar="KIND[@ARG]",
                        help="inject a failure, to test the testbed: kill-switch[@SECONDS] (default 0.5 s after the "
                             "agents start), nan-input[@WORKER] (a NaN in that worker's input of job 0) or "
                             "hang-worker[@WORKER] (that worker of job 0 is stopped with SIGSTOP as it starts)")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging on stderr (-vv: debug)")
    return parser


def config_from_args(args: argparse.Namespace) -> TestbedConfig:
    return TestbedConfig(workers=args.workers, switch=args.switch, net=args.net, size=args.size,
                         density=args.density, dtype=args.dtype, dense=args.dense, jobs=args.jobs, slots=args.slots,
                         seed=args.seed, timeout=args.timeout, loss=args.loss, keep_logs=args.keep_logs,
                         fault=args.fault)


def _raise_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=(logging.WARNING, logging.INFO, logging.DEBUG)[min(args.verbose, 2)],
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    config = config_from_args(args)
    # SIGTERM unwinds like Ctrl-C, so that every `finally` stops the switch and the agents (they run in sessions
    # of their own and would otherwise outlive us).
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        report = run_testbed(config)
    except ConfigError as error:
        parser.print_usage(sys.stderr)
        sys.stderr.write(f"omnireduce-testbed: {error}\n")
        return EXIT_USAGE
    except KeyboardInterrupt:
        sys.stderr.write("omnireduce-testbed: interrupted; the switch and the agents were stopped\n")
        return EXIT_INTERRUPTED
    finally:
        signal.signal(signal.SIGTERM, previous)
    if args.json:
        json.dump(report_to_json(report), sys.stdout, indent=1)
        sys.stdout.write("\n")
    else:
        sys.stdout.write(format_report(report) + "\n")
    return EXIT_OK if report.ok else EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
