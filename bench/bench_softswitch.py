"""Packets per second through the softswitch (one core, no sockets), on its native (C) and its Python packet
pipeline, side by side with BMv2's simple_switch on the same JSON, the same frames and the same control-plane state.

    omnireduce-bench switch [--json PATH] [--blocks N] [--repeat N] [--json-out [PATH]]
    .venv/bin/python -m omnireduce.bench.bench_softswitch ...      (the same, without the end-to-end rate)

The trace. For p4src/build/omnireduce.json (the default) the frames of a real all-reduce are recorded once
(4 workers, 8 slots, --blocks blocks of LANES=32 lanes, half of them zero; the host agent's protocol engine drives
the protocol, bench/protocol_driver.py): CONTRIBs that are absorbed, CONTRIBs that complete a round and multicast the RESULT to the 4 workers,
and ACKs. Every worker is registered on port 1 with its own IP address and UDP port, and every frame enters on
port 1, so that BMv2's pcap-file mode keeps the exact order (see bench/frame_generators.py). The generator's
control-plane calls are recorded and replayed into every switch measured (bench/control_plane.py).

Softswitch: each timed run gets a freshly loaded device with that state and sends the whole trace, for each
of: the native pipeline through Device.process_arrays in arrays of --batch frames (what the shared-memory port
loop hands it: frames in arrays, outputs left in C for the rings' scatter, no Python object per frame), the
native pipeline through Device.process_batch in batches of --batch frames (what the UDP port loop hands it
after recvmmsg: a bytes object per frame in and out), the native pipeline one frame per Device.process_packet
call, and the Python pipeline one frame
per call. The best of --repeat runs is reported, in CPU time (process_time, the steadier number on a shared
machine) and in wall time. The Python pipeline's output is the reference; the native one must equal it, byte for
byte and in order.

BMv2: `simple_switch --use-files` reads the trace from a pcap file and writes its output to one
(bench/bmv2_replay.py), once per --bmv2-log-level. Timed in wall time on BMv2's own clock (the stamps of its
first and last output records), and in CPU time of all its threads. Skipped, with the reason, where
simple_switch or simple_switch_CLI is not on PATH, or with --no-bmv2.

The output frames of BMv2 are compared with the reference, in order.
"""

from __future__ import annotations

import argparse
import functools
import importlib
import json
import logging
import shutil
import sys
import time

import numpy as np
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from omnireduce import argtypes
from omnireduce.p4src import artifacts
from omnireduce.p4src import constants as C
from omnireduce.softswitch.device import Device
from omnireduce.softswitch.errors import FailedPrecondition

from .bmv2_replay import Bmv2Error, Bmv2Settings, rate_between, replay, tools_missing
from .control_plane import ControlOp, RecordingDevice, apply_ops
from .frame_generators import GENERATORS, Frames, omnireduce_frames

log = logging.getLogger("bench")

# The installed program (package data of omnireduce.p4src), so the bench runs from any directory.
PROJECT_JSON = artifacts.BMV2_JSON
ROOT = Path(__file__).resolve().parent.parent
TEST_BUILD = ROOT / "tests" / "softswitch" / "p4" / "build"
STATELESS_PACKETS = 20000  # default run length for generators that return a few frames to cycle through
DEFAULT_LOG_LEVELS = ("default", "off")


@dataclass(frozen=True, slots=True)
class Trace:
    json_path: Path
    batch: Frames  # what every switch is sent, in order
    ops: list[ControlOp]  # the control-plane state every switch is given first
    distinct_frames: int

    @property
    def ports(self) -> set[int]:
        return {port for port, _ in self.batch}


@dataclass(frozen=True, slots=True)
class SoftswitchMode:
    """One way of running the trace through the softswitch."""

    label: str
    backend: str  # Device backend: "native" | "python"
    batch: int  # frames per Device.process_batch call; 0: one Device.process_packet call per frame
    arrays: bool = False  # Device.process_arrays instead of process_batch (batch frames per call)


@dataclass(frozen=True, slots=True)
class Reference:
    """What the softswitch sends for the trace (one untimed run)."""

    outputs: list[tuple[int, bytes]]
    output_inputs: list[int]  # for each output, the index of the input frame that produced it
    drops: dict[str, int]


def load_generator(spec: str | None, json_path: Path, blocks: int) -> Callable:
    if spec:
        module_name, _, func = spec.partition(":")
        if not func:
            raise SystemExit("--frames needs MODULE:FUNCTION")
        return getattr(importlib.import_module(module_name), func)
    generator = GENERATORS.get(json_path.name)
    if generator is None:
        raise SystemExit(f"no built-in frame generator for {json_path.name}; give --frames MODULE:FUNCTION")
    return functools.partial(omnireduce_frames, blocks=blocks) if generator is omnireduce_frames else generator


def record_trace(raw: bytes, json_path: Path, generator: Callable, packets: int) -> Trace:
    device = Device(name="bench-record")
    device.load_pipeline(raw)
    recorder = RecordingDevice(device)
    frames = generator(recorder)
    if not frames:
        raise SystemExit("the frame generator returned no frames")
    batch = frames if packets <= 0 else [frames[i % len(frames)] for i in range(packets)]
    return Trace(json_path, batch, recorder.ops, len(frames))


def fresh_device(raw: bytes, ops: list[ControlOp], backend: str = "python") -> Device:
    device = Device(name="bench", backend=backend)
    device.load_pipeline(raw)
    apply_ops(device, ops)
    return device


def softswitch_modes(batch: int) -> list[SoftswitchMode]:
    return [
        SoftswitchMode(f"native, arrays of {batch}", "native", batch, arrays=True),
        SoftswitchMode(f"native, batches of {batch}", "native", batch),
        SoftswitchMode("native, per packet", "native", 0),
        SoftswitchMode("python, per packet", "python", 0),
    ]


def reference_run(raw: bytes, trace: Trace) -> Reference:
    """What the Python pipeline, the reference, sends for the trace."""
    device = fresh_device(raw, trace.ops, "python")
    outputs, output_inputs = [], []
    for index, (port, frame) in enumerate(trace.batch):
        sent = device.process_packet(port, frame)
        outputs.extend(sent)
        output_inputs.extend([index] * len(sent))
    drops = {k: v for k, v in device.stats_snapshot().items() if k.startswith("drop:")}
    return Reference(outputs, output_inputs, drops)


def time_softswitch(raw: bytes, trace: Trace, repeats: int, mode: SoftswitchMode) -> tuple[float, float, list]:
    """Best wall and best CPU seconds for the whole trace, each on a fresh device, and the first run's output."""
    if mode.arrays:
        return time_arrays(raw, trace, repeats, mode.batch)
    best_wall = best_cpu = float("inf")
    first_outputs: list | None = None
    frames = trace.batch
    for _ in range(repeats):
        device = fresh_device(raw, trace.ops, mode.backend)
        outputs: list = []
        if mode.batch:
            process_batch, size = device.process_batch, mode.batch
            chunks = [frames[i:i + size] for i in range(0, len(frames), size)]
            wall, cpu = time.perf_counter(), time.process_time()
            for chunk in chunks:
                outputs.extend(process_batch(chunk))
        else:
            process = device.process_packet
            wall, cpu = time.perf_counter(), time.process_time()
            for port, frame in frames:
                outputs.extend(process(port, frame))
        best_wall = min(best_wall, time.perf_counter() - wall)
        best_cpu = min(best_cpu, time.process_time() - cpu)
        if first_outputs is None:
            first_outputs = outputs
    return best_wall, best_cpu, first_outputs or []


def time_arrays(raw: bytes, trace: Trace, repeats: int, size: int) -> tuple[float, float, list]:
    """time_softswitch for Device.process_arrays: what the softswitch's shared-memory port loop calls. The frames
    come as arrays (the rings' gather writes them so) and the outputs stay in the pipeline's C buffers for the
    rings' scatter, so no Python object is made per frame: the timed runs only count the outputs; one more,
    untimed run copies them out for the comparison with the reference."""
    chunks = []
    for start in range(0, len(trace.batch), size):
        part = trace.batch[start:start + size]
        data = np.frombuffer(b"".join(frame for _, frame in part), dtype=np.uint8)
        lens = np.array([len(frame) for _, frame in part], dtype=np.uint32)
        ports = np.array([port for port, _ in part], dtype=np.uint16)
        chunks.append((data, lens, ports, len(part)))

    def run(emit) -> None:
        for data, lens, ports, count in chunks:
            if not device.process_arrays(data, lens, ports, count, emit):
                raise FailedPrecondition("the native pipeline is not running: process_arrays needs it")

    best_wall = best_cpu = float("inf")
    emitted = [0]

    def count_outputs(outputs) -> None:
        emitted[0] += outputs.count

    for _ in range(repeats):
        device = fresh_device(raw, trace.ops, "native")
        wall, cpu = time.perf_counter(), time.process_time()
        run(count_outputs)
        best_wall = min(best_wall, time.perf_counter() - wall)
        best_cpu = min(best_cpu, time.process_time() - cpu)
    device = fresh_device(raw, trace.ops, "native")
    outputs: list = []
    run(lambda out: outputs.extend(out.frames(list(range(out.count)))))
    return best_wall, best_cpu, outputs


def compare_outputs(ours: list[bytes], theirs: list[bytes]) -> dict:
    """How BMv2's output frames compare with the softswitch's: counts, order, and the first difference."""
    first_difference = next((i for i, (a, b) in enumerate(zip(ours, theirs)) if a != b), None)
    if first_difference is None and len(ours) != len(theirs):
        first_difference = min(len(ours), len(theirs))
    return {
        "softswitch_frames": len(ours),
        "bmv2_frames": len(theirs),
        "identical_in_order": first_difference is None,
        "same_frames_any_order": Counter(ours) == Counter(theirs),
        "first_difference_at": first_difference,
    }


def bmv2_side(args, raw_json: Path, trace: Trace, reference: Reference) -> dict:
    simple_switch, cli = shutil.which(args.simple_switch), shutil.which(args.simple_switch_cli)
    if args.no_bmv2:
        return {"skipped": "--no-bmv2 given"}
    missing = tools_missing(simple_switch, cli)
    if missing:
        return {"skipped": missing}
    if len(trace.ports) != 1:
        return {"skipped": f"the frames enter on ports {sorted(trace.ports)}: BMv2's pcap-file mode keeps their "
                           "order only on one port"}
    (port,) = trace.ports
    ours = [frame for out_port, frame in reference.outputs if out_port == port]
    if len(ours) < 2:
        return {"skipped": f"the softswitch sent {len(ours)} frames out of port {port}: BMv2 is timed between "
                           "its first and last output frame, so at least 2 are needed"}
    producing = [index for (out_port, _), index in zip(reference.outputs, reference.output_inputs) if out_port == port]
    # BMv2 drops what does not fit its egress queue (64 packets unless set): on this trace its egress thread, which
    # handles 4 multicast copies per completed round, falls behind its ingress thread when logging is off.
    queue_depth = None if args.bmv2_queue_depth == 0 else args.bmv2_queue_depth or max(64, len(ours))
    frames = [frame for _, frame in trace.batch]
    runs = []
    for level in args.bmv2_log_level:
        settings = Bmv2Settings(simple_switch, cli, wait_seconds=args.bmv2_wait,
                                log_level=None if level == "default" else level, queue_depth=queue_depth,
                                deadline_seconds=args.bmv2_deadline)
        attempts = []
        for _ in range(args.bmv2_repeat):
            try:
                run = replay(raw_json, port, frames, trace.ops, len(ours), settings)
            except Bmv2Error as error:
                attempts.append({"log_level": level, "error": str(error)})
                break
            attempts.append(describe_bmv2_run(run, level, queue_depth, producing, ours))
        # The best complete run, as for the softswitch; else the last one, which says what went wrong.
        complete = [a for a in attempts if a.get("pps_wall")]
        best = dict(max(complete, key=lambda a: a["pps_wall"]) if complete else attempts[-1])
        best["attempts_pps_wall"] = [a.get("pps_wall") for a in attempts]
        runs.append(best)
    return {"runs": runs}


def describe_bmv2_run(run, level: str, queue_depth: int | None, producing: list[int], ours: list[bytes]) -> dict:
    result = {
        "log_level": level,
        "command": " ".join(run.command),
        "egress_queue_depth": queue_depth or "BMv2 default (64)",
        "complete": run.complete,
        "timed_inputs": producing[-1] - producing[0],
        "span_s": run.span_seconds,
        "pps_wall": None,
        "cpu_s": run.cpu_seconds,
        "pps_cpu": round((producing[-1] + 1) / run.cpu_seconds) if run.cpu_seconds else None,
        "poll_s_to_complete": run.poll_seconds_to_complete,
        "extra_frames_out": run.extra_outputs,
        "outputs": compare_outputs(ours, [record.frame for record in run.outputs]),
    }
    if run.complete and run.span_seconds:
        result["pps_wall"] = round(rate_between(producing[0], producing[-1], run.span_seconds))
    return result


def run(args) -> dict:
    raw = args.json.read_bytes()
    started = time.perf_counter()
    Device(name="bench-load").load_pipeline(raw)
    load_ms = (time.perf_counter() - started) * 1000
    generator = load_generator(args.frames, args.json, args.blocks)
    stateless = generator in (GENERATORS.get("arith_test.json"), GENERATORS.get("tables_test.json"))
    packets = args.packets or (STATELESS_PACKETS if stateless else 0)
    log.info("recording the trace")
    trace = record_trace(raw, args.json, generator, packets)
    reference = reference_run(raw, trace)
    frames_in = len(trace.batch)
    softswitch = {}
    for mode in softswitch_modes(args.batch):
        if mode.backend not in args.backend:
            continue
        log.info("timing the softswitch (%s): %d frames, best of %d", mode.label, frames_in, args.repeat)
        try:
            wall, cpu, outputs = time_softswitch(raw, trace, args.repeat, mode)
        except FailedPrecondition as error:
            softswitch[mode.label] = {"skipped": str(error)}
            continue
        softswitch[mode.label] = {
            "backend": mode.backend,
            "batch": mode.batch,
            "repeats": args.repeat,
            "cpu_s": round(cpu, 4),
            "pps_cpu": round(frames_in / cpu),
            "wall_s": round(wall, 4),
            "pps_wall": round(frames_in / wall),
            "us_per_packet_cpu": round(cpu / frames_in * 1e6, 3),
            "same_output_as_python": outputs == reference.outputs,
        }
    result = {
        "json": str(args.json),
        "trace": {
            "frames_in": frames_in,
            "distinct_frames": trace.distinct_frames,
            "ports_in": sorted(trace.ports),
            "largest_frame_bytes": max(len(frame) for _, frame in trace.batch),
            "lanes_per_contrib": C.LANES if args.json.name == "omnireduce.json" else None,
            "frames_out": len(reference.outputs),
            "control_plane_ops": len(trace.ops),
        },
        "load_ms": round(load_ms, 1),
        "drops": reference.drops,
        "softswitch": softswitch,
    }
    result["bmv2"] = bmv2_side(args, args.json, trace, reference)
    result["ratios"] = ratios(softswitch, result["bmv2"].get("runs", []))
    return result


def ratios(softswitch: dict, bmv2_runs: list[dict]) -> list[dict]:
    """The fastest native mode's packets/s over the Python pipeline's and over each BMv2 run's (CPU and wall)."""
    timed = {label: run for label, run in softswitch.items() if "pps_cpu" in run}
    native = [run for run in timed.values() if run["backend"] == "native"]
    if not native:
        return []
    best = max(native, key=lambda run: run["pps_cpu"])
    best_label = next(label for label, run in timed.items() if run is best)
    others = [(label, run["pps_cpu"], run["pps_wall"]) for label, run in timed.items() if run["backend"] == "python"]
    for run in bmv2_runs:
        if run.get("pps_wall"):
            name = "BMv2" if run["log_level"] == "default" else f"BMv2 -L {run['log_level']}"
            others.append((name, run.get("pps_cpu"), run["pps_wall"]))
    return [{"native": best_label, "against": label,
             "cpu": round(best["pps_cpu"] / cpu, 2) if cpu else None,
             "wall": round(best["pps_wall"] / wall, 2) if wall else None}
            for label, cpu, wall in others]


def table(result: dict) -> str:
    trace = result["trace"]
    lanes = f", CONTRIBs of {trace['lanes_per_contrib']} lanes" if trace["lanes_per_contrib"] else ""
    lines = [
        f"program   {result['json']}",
        f"trace     {trace['frames_in']} frames in on port(s) {trace['ports_in']} ({trace['distinct_frames']} distinct, "
        f"up to {trace['largest_frame_bytes']} B{lanes}); the Python pipeline sends {trace['frames_out']} frames out",
        "",
        f"{'switch':34} {'timed':40} {'seconds':>8} {'packets/s':>10} {'frames out':>11}  same output as python",
    ]
    for label, soft in result["softswitch"].items():
        name = f"softswitch {label}"
        if "skipped" in soft:
            lines.append(f"{name:34} skipped: {soft['skipped']}")
            continue
        same = "yes, identical bytes in order" if soft["same_output_as_python"] else "NO"
        lines.append(f"{name:34} {'CPU, best of ' + str(soft['repeats']):40} {soft['cpu_s']:8.3f} {soft['pps_cpu']:10d} "
                     f"{trace['frames_out']:11d}  {same}")
        lines.append(f"{name:34} {'wall, best of ' + str(soft['repeats']):40} {soft['wall_s']:8.3f} {soft['pps_wall']:10d}")
    bmv2 = result["bmv2"]
    if "skipped" in bmv2:
        lines.append(f"{'BMv2 simple_switch':28} skipped: {bmv2['skipped']}")
    for run in bmv2.get("runs", []):
        name = f"BMv2 simple_switch -L {run['log_level']}" if run["log_level"] != "default" else "BMv2 simple_switch"
        if "error" in run:
            lines.append(f"{name:28} failed: {run['error']}")
            continue
        outputs = run["outputs"]
        same = ("yes, identical bytes in order" if outputs["identical_in_order"]
                else "same frames, other order" if outputs["same_frames_any_order"]
                else f"NO (first difference at output {outputs['first_difference_at']})")
        if not run["complete"]:
            same += f" (INCOMPLETE: {outputs['softswitch_frames'] - outputs['bmv2_frames']} frames missing)"
        if run["extra_frames_out"]:
            same += f" (+{run['extra_frames_out']} extra frames)"
        span = f"{run['span_s']:8.3f}" if run["span_s"] else f"{'-':>8}"
        pps = f"{run['pps_wall']:10d}" if run["pps_wall"] else f"{'-':>10}"
        timed = f"wall, 1st to last frame out, best of {len(run['attempts_pps_wall'])}"
        lines.append(f"{name:34} {timed:40} {span} {pps} {outputs['bmv2_frames']:11d}  {same}")
        if run["cpu_s"]:
            lines.append(f"{name:34} {'CPU, all threads, same run':40} {run['cpu_s']:8.3f} {run['pps_cpu']:10d}")
    for ratio in result["ratios"]:
        cpu = f"CPU/CPU {ratio['cpu']}x" if ratio["cpu"] else "CPU/CPU -"
        lines.append(f"native ({ratio['native']}) / {ratio['against']}: {cpu}, wall/wall {ratio['wall']}x")
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of this bench (shared by `omnireduce-bench switch`)."""
    default_json = PROJECT_JSON if PROJECT_JSON.exists() else TEST_BUILD / "arith_test.json"
    parser.add_argument("--json", type=Path, default=default_json, help=f"BMv2 JSON (default {default_json})")
    parser.add_argument("--frames", help="frame generator MODULE:FUNCTION taking the device to configure (a "
                                         "recorder offering table_insert, table_set_default, mc_group_insert, "
                                         "register_write, process_packet) and returning [(port, frame), ...] "
                                         "(default: the built-in one for --json, see bench/frame_generators.py)")
    parser.add_argument("--blocks", type=argtypes.integer(minimum=1), default=6144,
                        help="blocks per worker in the recorded all-reduce (omnireduce.json; default 6144: about "
                             "12,300 frames in, 23,000 out)")
    parser.add_argument("--packets", type=argtypes.integer(minimum=0), default=0,
                        help="frames per run, cycling the generator's frames (default 0: each recorded frame once; "
                             f"{STATELESS_PACKETS} for the stateless test programs)")
    parser.add_argument("--repeat", type=argtypes.integer(minimum=1), default=5, help="softswitch runs per mode; the best is reported")
    parser.add_argument("--batch", type=argtypes.integer(minimum=1), default=256,
                        help="frames per Device.process_batch call for the native pipeline (default 256)")
    parser.add_argument("--backend", action="append", choices=("native", "python"),
                        help="softswitch pipelines to time (repeatable; default both)")
    parser.add_argument("--no-bmv2", action="store_true", help="measure the softswitch only")
    parser.add_argument("--bmv2-log-level", action="append", metavar="LEVEL",
                        help="one BMv2 run per use: 'default' (no -L), or a -L level such as off, info, trace "
                             f"(default: {' and '.join(DEFAULT_LOG_LEVELS)}); never a console log")
    parser.add_argument("--bmv2-repeat", type=argtypes.integer(minimum=1), default=2,
                        help="BMv2 runs per log level; the best complete one is reported (default 2)")
    parser.add_argument("--bmv2-wait", type=argtypes.integer(minimum=1), default=3,
                        help="seconds simple_switch waits before reading its input file; its configuration through "
                             "simple_switch_CLI must be done by then (default 3)")
    parser.add_argument("--bmv2-queue-depth", type=argtypes.integer(minimum=0), default=None,
                        help="BMv2's egress queue depth in packets (set_queue_depth). Default: as many as the frames "
                             "expected out, so that none is dropped for a full queue; 0: BMv2's own default, 64, "
                             "with which it drops frames on this trace")
    parser.add_argument("--bmv2-deadline", type=argtypes.seconds, default=300.0,
                        help="seconds BMv2 has to send all its frames once it starts reading (default 300)")
    parser.add_argument("--simple-switch", default="simple_switch", help=argparse.SUPPRESS)
    parser.add_argument("--simple-switch-cli", default="simple_switch_CLI", help=argparse.SUPPRESS)
    parser.add_argument("--json-out", nargs="?", const="-", metavar="PATH",
                        help="write the results as JSON to PATH (and print the table), or alone to stdout "
                             "instead of the table when no PATH is given")


def check_arguments(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Refuse bad combinations through parser.error, and fill in the list defaults."""
    if not args.json.is_file():
        parser.error(f"--json {args.json}: no such file")
    args.bmv2_log_level = args.bmv2_log_level or list(DEFAULT_LOG_LEVELS)
    args.backend = args.backend or ["native", "python"]


def exit_status(result: dict) -> int:
    """1 if a BMv2 run failed or was incomplete, or the native output differs from the Python one."""
    failed = [r for r in result["bmv2"].get("runs", []) if "error" in r or not r["complete"]]
    differs = [label for label, run in result["softswitch"].items() if run.get("same_output_as_python") is False]
    return 1 if failed or differs else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser)
    args = parser.parse_args(argv)
    check_arguments(parser, args)
    logging.basicConfig(level=logging.WARNING, format="%(name)s: %(message)s", stream=sys.stderr)
    log.setLevel(logging.INFO)  # the bench's progress; the switches' own INFO logs would drown it
    result = run(args)
    if args.json_out == "-":
        print(json.dumps(result, indent=1))
    else:
        print(table(result))
        if args.json_out:
            Path(args.json_out).write_text(json.dumps(result, indent=1) + "\n")
    return exit_status(result)


if __name__ == "__main__":
    sys.exit(main())
