"""omnireduce-bench: the project's benchmarks behind one command.

    omnireduce-bench allreduce --quick                  # < 1 minute: 2 workers, a tiny tensor, 3 densities
    omnireduce-bench allreduce --json-out sweep.json --plot-dir docs/img      # the full sweep (~20 minutes)
    omnireduce-bench switch --plot-dir docs/img         # softswitch native/Python vs BMv2, and the e2e rate
    omnireduce-bench agent                              # the host agent's own cost
    omnireduce-bench model --from sweep.json --plot-dir docs/img   # line-rate model at 10 and 100 Gbit/s
    omnireduce-bench efficiency --quick                 # packets per block, bytes against the ideal, retransmissions
    omnireduce-bench gpu-scan --json scan.json          # the DDP hook's GPU block scan (a CUDA GPU and torch)
    omnireduce-bench faults                             # the fault suite: loss, duplication, reordering (~25 min)
    omnireduce-bench fuzz                               # 10,000 hostile packets into running jobs, all counted

docs/performance.md shows what each prints on the project's machine (docs/reliability.md for faults). Exit
status: 0 when every run worked (faults: every result exact), 1 when a run failed (the table says which), 2 for bad
arguments.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Callable, TypeVar

from omnireduce import argtypes

from . import bench_agent, bench_softswitch
from . import sweep as sweep_module
from .sweep import MODES, QUICK, SweepConfig, Row, run_sweep, work_units
from .sweep_report import format_markdown, format_table, targets

log = logging.getLogger("omnireduce.bench")

_T = TypeVar("_T")


def comma_list(convert: Callable[[str], _T], what: str) -> Callable[[str], tuple[_T, ...]]:
    """A comma-separated list of values, each through `convert` (an argtypes converter)."""

    def parse(text: str) -> tuple[_T, ...]:
        items = [item.strip() for item in text.split(",")]
        if not all(items):
            raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of {what}")
        return tuple(convert(item) for item in items)

    parse.__name__ = "list"
    return parse


def machine_line() -> str:
    """nproc, CPU model, memory and load: said next to every timing."""
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
        memory_kib = next(int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines()
                          if line.startswith("MemTotal"))
        memory = f"{memory_kib / 2**20:.0f} GiB"
    except (OSError, StopIteration, ValueError):
        memory = "unknown memory"
    load = ", ".join(f"{value:.2f}" for value in os.getloadavg())
    return f"{os.cpu_count()} CPUs ({model}), {memory}, load average {load}"


# --- allreduce -----------------------------------------------------------------------------------------------------

def add_allreduce(sub) -> None:
    parser = sub.add_parser(
        "allreduce", help="the all-reduce sweep: sparse, dense, gloo, gloo sparse COO on the same inputs",
        description=sweep_module.__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    default = SweepConfig()
    fractions = comma_list(argtypes.fraction, "fractions in [0, 1]")
    counts = comma_list(argtypes.integer(minimum=1), "positive integers")
    parser.add_argument("--densities", type=fractions, default=default.densities,
                        help="fraction of non-zero blocks per worker (default %(default)s)")
    parser.add_argument("--workers", type=comma_list(argtypes.integer(minimum=1, maximum=32), "worker counts 1..32"),
                        default=default.workers, help="worker counts (default %(default)s)")
    parser.add_argument("--sizes", type=counts, default=default.sizes,
                        help="tensor sizes in float32 values (default %(default)s)")
    parser.add_argument("--max-elements", type=argtypes.integer(minimum=1), default=default.max_elements,
                        help="leave out points with size x workers above this (default %(default)s: the full sweep "
                             "then fits ~20 minutes on 2 cores)")
    parser.add_argument("--repeat", type=argtypes.integer(minimum=1), default=default.repeat,
                        help="runs per point and mode; the median and the spread are reported (default %(default)s)")
    parser.add_argument("--slots", type=argtypes.integer(minimum=1), default=default.slots,
                        help="aggregation slots of the job (default: the testbed's choice, which follows the tensor)")
    parser.add_argument("--seed", type=argtypes.integer(minimum=0), default=default.seed)
    parser.add_argument("--modes", type=comma_list(_mode, "modes"), default=default.modes,
                        help=f"modes to run, of {','.join(MODES)} (default {','.join(default.modes)})")
    parser.add_argument("--calls", type=argtypes.integer(minimum=1), default=default.calls,
                        help="all-reduces per testbed run (default %(default)s); above 1 the calls after the first "
                             "are timed, which start in step as gloo's do")
    parser.add_argument("--timeout", type=argtypes.seconds, default=default.timeout_s,
                        help="limit of one testbed run (default %(default)s s)")
    parser.add_argument("--quick", action="store_true",
                        help=f"a smoke run under a minute: W={QUICK.workers}, {QUICK.sizes[0]} values, densities "
                             f"{QUICK.densities}, {QUICK.repeat} runs (other point options are ignored)")
    parser.add_argument("--json-out", type=Path, metavar="PATH", help="write the rows as JSON (written as they come)")
    parser.add_argument("--plot-dir", type=Path, metavar="DIR", help="write the PNG plots there (needs matplotlib)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    parser.add_argument("--from", dest="sweep", type=argtypes.existing_file, metavar="SWEEP_JSON",
                        help="report (and plot) a sweep written earlier with --json-out instead of running one")
    parser.add_argument("--markdown", action="store_true", help="print the table as Markdown (docs/performance.md)")
    parser.set_defaults(run=run_allreduce)


def _mode(text: str) -> str:
    if text not in MODES:
        raise argparse.ArgumentTypeError(f"unknown mode {text!r}; choose from {', '.join(MODES)}")
    return text


def _progress_bar(total: int, enabled: bool):
    """A tqdm bar on stderr, or a log line per step where tqdm is not installed."""
    if enabled:
        try:
            from tqdm import tqdm

            return tqdm(total=total, unit="run", file=sys.stderr, dynamic_ncols=True)
        except ImportError:
            log.info("tqdm is not installed (pip install -e '.[bench]'); progress as log lines")

    class Lines:
        done = 0

        def update(self, count: int = 1) -> None:
            self.done += count

        def set_postfix_str(self, text: str) -> None:
            if enabled:
                log.info("[%d/%d] %s", self.done, total, text)

        def close(self) -> None:
            pass

    return Lines()


def sweep_config(args: argparse.Namespace) -> SweepConfig:
    if args.quick:
        return SweepConfig(densities=QUICK.densities, workers=QUICK.workers, sizes=QUICK.sizes, repeat=QUICK.repeat,
                           slots=args.slots, seed=args.seed, modes=args.modes, timeout_s=args.timeout)
    return SweepConfig(densities=args.densities, workers=args.workers, sizes=args.sizes,
                       max_elements=args.max_elements, repeat=args.repeat, slots=args.slots, seed=args.seed,
                       modes=args.modes, timeout_s=args.timeout, calls=args.calls)


def report_sweep(rows: list[Row], args: argparse.Namespace) -> int:
    print(format_markdown(rows) if args.markdown else format_table(rows))
    print("\ntargets (reported, not asserted):")
    for line in targets(rows):
        print(f"  {line}")
    if args.plot_dir:
        from .plots import plot_sweep

        for path in plot_sweep(rows, args.plot_dir):
            print(f"plot: {path}")
    failed = [row for row in rows if row.status.startswith("failed")]
    return 1 if failed else 0


def run_allreduce(args: argparse.Namespace) -> int:
    if args.sweep:
        return report_sweep(load_rows(args.sweep), args)
    config = sweep_config(args)
    if not config.points():
        raise SystemExit("omnireduce-bench allreduce: every point exceeds --max-elements; nothing to run")
    print(f"machine: {machine_line()}")
    left_out = config.left_out()
    if left_out:
        print("left out (size x workers > --max-elements): "
              + ", ".join(f"W={workers} n={size}" for workers, size in left_out))
    started = time.monotonic()
    rows: list[Row] = []
    bar = _progress_bar(work_units(config), not args.no_progress)

    def on_row(row: Row) -> None:
        rows.append(row)
        if args.json_out:
            write_sweep_json(args.json_out, config, rows, time.monotonic() - started)

    def progress(label: str) -> None:
        bar.set_postfix_str(label)
        bar.update(1)

    try:
        run_sweep(config, progress, on_row)
    finally:
        bar.close()
    status = report_sweep(rows, args)
    print(f"\nsweep took {time.monotonic() - started:.0f} s; machine after: {machine_line()}")
    return status


def write_sweep_json(path: Path, config: SweepConfig, rows: list[Row], seconds: float) -> None:
    data = {"config": {name: getattr(config, name) for name in config.__dataclass_fields__},
            "machine": machine_line(), "seconds": round(seconds, 1), "rows": [row.as_json() for row in rows]}
    path.write_text(json.dumps(data, indent=1) + "\n")


def load_rows(path: Path) -> list[Row]:
    """The rows of a sweep written with --json-out."""
    data = json.loads(path.read_text())
    fields = Row.__dataclass_fields__
    return [Row(**{name: (tuple(value) if name == "seconds" else value) for name, value in item.items()
                   if name in fields}) for item in data["rows"]]


# --- switch and agent ----------------------------------------------------------------------------------------------

def add_switch(sub) -> None:
    parser = sub.add_parser("switch", help="packets/s: the softswitch's native and Python pipelines, BMv2 where "
                                           "installed, and an all-reduce's end-to-end switch rate",
                            description=bench_softswitch.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    bench_softswitch.add_arguments(parser)
    parser.add_argument("--e2e-workers", type=argtypes.integer(minimum=1, maximum=32), default=4,
                        help="workers of the end-to-end all-reduce (dense, loopback testbed; default 4)")
    parser.add_argument("--e2e-size", type=argtypes.integer(minimum=1), default=262144,
                        help="its tensor size in values (default 262144)")
    parser.add_argument("--no-e2e", action="store_true", help="skip the end-to-end all-reduce")
    parser.add_argument("--plot-dir", type=Path, metavar="DIR", help="write switch_packets_per_s.png there")
    parser.set_defaults(run=run_switch, parser=parser)


def run_switch(args: argparse.Namespace) -> int:
    from .switch_rate import end_to_end_rate, format_end_to_end

    bench_softswitch.check_arguments(args.parser, args)
    logging.getLogger("bench").setLevel(logging.INFO)
    print(f"machine: {machine_line()}")
    result = bench_softswitch.run(args)
    if not args.no_e2e:
        result["end_to_end"] = end_to_end_rate(args.e2e_workers, args.e2e_size, result)
    if args.json_out == "-":
        print(json.dumps(result, indent=1))
    else:
        print(bench_softswitch.table(result))
        if "end_to_end" in result:
            print(format_end_to_end(result["end_to_end"]))
        if args.json_out:
            Path(args.json_out).write_text(json.dumps(result, indent=1) + "\n")
    if args.plot_dir:
        from .plots import plot_switch

        print(f"plot: {plot_switch(result, args.plot_dir)}")
    failed = bench_softswitch.exit_status(result) or not result.get("end_to_end", {}).get("ok", True)
    return 1 if failed else 0


def add_agent(sub) -> None:
    parser = sub.add_parser("agent", help="the host agent's own cost: tensor preparation GB/s, packets/s per core",
                            description=bench_agent.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    bench_agent.add_arguments(parser)
    parser.set_defaults(run=run_agent)


def run_agent(args: argparse.Namespace) -> int:
    report = bench_agent.run(args)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(f"machine: {machine_line()}")
        print(bench_agent.table(report, args))
    return 0


# --- model ---------------------------------------------------------------------------------------------------------

def add_model(sub) -> None:
    from . import linerate

    parser = sub.add_parser("model", help="line-rate model: the same all-reduce at 10/100 Gbit/s through a hardware "
                                          "switch, beside a ring all-reduce, and a training-step model",
                            description=linerate.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    linerate.add_arguments(parser)
    parser.add_argument("--from", dest="sweep", type=argtypes.existing_file, metavar="SWEEP_JSON",
                        help="a sweep written by `allreduce --json-out`: its measured packets calibrate the model")
    parser.add_argument("--json-out", type=Path, metavar="PATH", help="write the model's tables as JSON")
    parser.add_argument("--plot-dir", type=Path, metavar="DIR", help="write model_speedup.png there")
    parser.set_defaults(run=run_model)


def run_model(args: argparse.Namespace) -> int:
    from . import linerate

    rows = load_rows(args.sweep) if args.sweep else []
    report = linerate.run(args, rows)
    print(linerate.format_report(report))
    if args.json_out:
        args.json_out.write_text(json.dumps(report, indent=1, default=str) + "\n")
    if args.plot_dir:
        from .plots import plot_model

        print(f"plot: {plot_model(report, args.plot_dir)}")
    return 0


# --- efficiency, gpu-scan --------------------------------------------------------------------------------------------

def add_efficiency(sub) -> None:
    from . import bench_efficiency

    parser = sub.add_parser("efficiency", help="the protocol's efficiency end to end: packets per contributed block, "
                            "bytes against the ideal exchange, retransmissions, the switch's rate beside its "
                            "standalone rate", description=bench_efficiency.__doc__,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    bench_efficiency.add_arguments(parser)
    parser.set_defaults(run=bench_efficiency.run)


def add_gpu_scan(sub) -> None:
    # Listed here for --help; main() hands its arguments to bench_gpu_scan's own parser (which needs torch).
    sub.add_parser("gpu-scan", help="the DDP hook's block scan on a CUDA GPU as a fraction of HBM bandwidth "
                   "(needs torch; omnireduce-bench gpu-scan --help lists its options)", add_help=False)


def run_gpu_scan(argv: list[str]) -> int:
    try:
        from . import bench_gpu_scan
    except ImportError as error:  # torch is an optional extra
        print(f"omnireduce-bench gpu-scan needs PyTorch ({error}); pip install -e '.[torch]'", file=sys.stderr)
        return 2
    return bench_gpu_scan.main(argv)


# --- faults --------------------------------------------------------------------------------------------------------

def add_faults(sub) -> None:
    from . import faults

    parser = sub.add_parser("faults", help="the fault suite: all-reduces under loss, duplication, reordering and "
                                           "delay, every result compared bit for bit with the fault-free run",
                            description=faults.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    default = faults.FaultSuiteConfig()
    parser.add_argument("--runs", type=argtypes.integer(minimum=1), default=default.runs,
                        help="all-reduces per scenario (default %(default)s)")
    parser.add_argument("--workers", type=argtypes.integer(minimum=1, maximum=32), default=default.workers,
                        help="workers of the job (default %(default)s)")
    parser.add_argument("--size", type=argtypes.integer(minimum=1), default=default.size,
                        help="float32 values per tensor (default %(default)s)")
    parser.add_argument("--density", type=argtypes.fraction, default=default.density,
                        help="fraction of non-zero blocks per worker (default %(default)s)")
    parser.add_argument("--slots", type=argtypes.integer(minimum=1, maximum=512), default=None,
                        help="slots of the job (default: the testbed's choice for the tensor)")
    parser.add_argument("--seed", type=argtypes.integer(minimum=0), default=default.seed,
                        help="seed of the inputs and of every scenario's faults (default %(default)s)")
    parser.add_argument("--scenarios", type=comma_list(_scenario, "scenario names"), default=default.scenarios,
                        help=f"scenarios to run, the reference 'none' always first (default all: "
                             f"{','.join(faults.SCENARIO_NAMES)})")
    parser.add_argument("--json-out", type=Path, metavar="PATH", help="write every scenario as JSON (as they end)")
    parser.add_argument("--markdown", action="store_true", help="print the table as Markdown (docs/reliability.md)")
    parser.add_argument("--from", dest="saved", type=argtypes.existing_file, metavar="FAULTS_JSON",
                        help="report a suite written earlier with --json-out instead of running one")
    parser.add_argument("--no-progress", action="store_true", help="no progress on stderr")
    parser.set_defaults(run=run_faults)


def _scenario(text: str) -> str:
    from .faults import SCENARIO_NAMES

    if text not in SCENARIO_NAMES:
        raise argparse.ArgumentTypeError(f"unknown scenario {text!r}; choose from {', '.join(SCENARIO_NAMES)}")
    return text


def run_faults(args: argparse.Namespace) -> int:
    from . import faults

    if args.saved:
        results = faults.load_results(args.saved)
        print(faults.format_table(results, args.markdown))
        return 0 if all(result.exact == result.runs for result in results) else 1
    config = faults.FaultSuiteConfig(runs=args.runs, workers=args.workers, size=args.size, density=args.density,
                                     slots=args.slots, seed=args.seed, scenarios=args.scenarios)
    print(f"machine: {machine_line()}")
    print(f"{config.workers} workers, {config.size:,} float32 values at density {config.density:g}, "
          f"{config.slot_count()} slots, {config.runs} runs per scenario")
    started = time.monotonic()
    scenarios = 1 + len([name for name in config.scenarios if name != faults.REFERENCE.name])
    bar = _progress_bar(scenarios * config.runs, not args.no_progress)
    done: list = []

    def on_scenario(result) -> None:
        done.append(result)
        if args.json_out:
            args.json_out.write_text(json.dumps(faults.to_json(config, done, machine_line(),
                                                               time.monotonic() - started), indent=1) + "\n")

    def progress(label: str) -> None:
        bar.set_postfix_str(label)
        bar.update(1)

    try:
        results = faults.run_suite(config, progress, on_scenario)
    finally:
        bar.close()
    print(faults.format_table(results, args.markdown))
    print(f"\nsuite took {time.monotonic() - started:.0f} s; machine after: {machine_line()}")
    return 0 if all(result.exact == result.runs for result in results) else 1


# --- fuzz ----------------------------------------------------------------------------------------------------------

def add_fuzz(sub) -> None:
    from . import fuzz

    parser = sub.add_parser("fuzz", help="malformed and spoofed packets into running jobs: every one counted by the "
                                         "switch, every result exact",
                            description=fuzz.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    default = fuzz.FuzzConfig()
    parser.add_argument("--packets", type=argtypes.integer(minimum=1), default=default.packets,
                        help="fuzzed packets to send (default %(default)s)")
    parser.add_argument("--seed", type=argtypes.integer(minimum=0), default=default.seed,
                        help="seed of the packets, the inputs and the jobs' link faults (default %(default)s)")
    parser.add_argument("--time-limit", type=argtypes.seconds, default=default.time_limit_s,
                        help="stop sending after this many seconds even if fewer packets went (default %(default)s)")
    parser.add_argument("--rate", type=argtypes.number(minimum=1.0), default=default.rate,
                        help="fuzzed packets per second at most (default %(default)s)")
    parser.add_argument("--workers", type=argtypes.integer(minimum=2, maximum=32), default=default.workers,
                        help="workers of each of the two jobs (default %(default)s)")
    parser.add_argument("--json-out", type=Path, metavar="PATH", help="write the report as JSON")
    parser.add_argument("--markdown", action="store_true",
                        help="print the tables as Markdown (docs/reliability.md)")
    parser.add_argument("--no-progress", action="store_true", help="no progress on stderr")
    parser.set_defaults(run=run_fuzz)


def run_fuzz(args: argparse.Namespace) -> int:
    from . import fuzz

    config = fuzz.FuzzConfig(packets=args.packets, seed=args.seed, time_limit_s=args.time_limit, rate=args.rate,
                             workers=args.workers)
    print(f"machine: {machine_line()}")
    bar = _progress_bar(config.packets, not args.no_progress)
    sent = [0]

    def progress(label: str) -> None:
        done = int(label.split("/", 1)[0])
        bar.set_postfix_str(label)
        bar.update(done - sent[0])
        sent[0] = done

    try:
        report = fuzz.run_fuzzer(config, progress)
    finally:
        bar.close()
    print(fuzz.format_report(report, args.markdown))
    if args.markdown:
        print()
        print(fuzz.variant_table(report))
    if args.json_out:
        args.json_out.write_text(json.dumps(fuzz.report_to_json(report), indent=1) + "\n")
    print(f"machine after: {machine_line()}")
    return 0 if report.ok else 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="omnireduce-bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-v", "--verbose", action="store_true", help="log what the runs do (INFO)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    add_allreduce(sub)
    add_switch(sub)
    add_agent(sub)
    add_model(sub)
    add_efficiency(sub)
    add_gpu_scan(sub)
    add_faults(sub)
    add_fuzz(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["gpu-scan"]:
        return run_gpu_scan(argv[1:])
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(name)s: %(message)s",
                        stream=sys.stderr)
    log.setLevel(logging.INFO)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
