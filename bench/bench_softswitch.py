"""Packets per second through the softswitch Device (one core, no sockets): load a BMv2 JSON, let a frame
generator configure the device and produce frames, then run them through Device.process_packet.

    .venv/bin/python -m bench.bench_softswitch [--json PATH] [--frames MODULE:FUNCTION] [--packets N] [--json-out]

(run from the repository root with -m: the project program's generator uses tests/p4/omniswitch.py)

--json     BMv2 JSON (default: p4src/build/omnireduce.json once it exists, else the arith test program)
--frames   `function(device) -> list[(port, frame)]` that installs what the program needs into a freshly loaded
           device and returns the frames to send, in order (default: a generator for the chosen program, see
           GENERATORS below). Each timed run gets a fresh device, so stateful programs replay the same trace.

Reports wall-clock and CPU-time rates (best of --repeat runs; CPU time is the steadier number on a shared
machine), the load (compile) time, and what the device counted (drops by reason, outputs per input).

For the project program the default generator records the frames of a real all-reduce (4 workers, 8 slots,
half-sparse tensors; tests/p4/omniswitch.py drives the protocol) and replays them: CONTRIBs that are
absorbed, CONTRIBs that complete a round and multicast the RESULT, and ACKs.
"""

from __future__ import annotations

import argparse
import importlib
import json
import struct
import sys
import time
from collections.abc import Callable
from pathlib import Path

from omnireduce.softswitch.device import Device
from omnireduce.softswitch.entries import FieldMatch, TableEntry

ROOT = Path(__file__).resolve().parent.parent
PROJECT_JSON = ROOT / "p4src" / "build" / "omnireduce.json"
TEST_BUILD = ROOT / "tests" / "softswitch" / "p4" / "build"

Frames = list[tuple[int, bytes]]


def _ethernet(ether_type: int) -> bytes:
    return bytes.fromhex("020000000002020000000001") + struct.pack(">H", ether_type)


def arith_frames(device: Device) -> Frames:
    """tests/softswitch/p4/arith_test.p4: ~40 expressions, 6 register accesses, 4 hashes per packet."""
    ops = struct.pack(">BBHHIIbbhBBB", 200, 100, 40000, 30000, 0xDEADBEEF, 0x12345678, -5, 7, -300, 3, 1, 0)
    return [(1, _ethernet(0x88B7) + ops)]


def tables_frames(device: Device) -> Frames:
    """tests/softswitch/p4/tables_test.p4: nine table lookups of every match kind per packet."""
    src = 0x020000000001
    for kind in range(8):
        device.table_insert(
            TableEntry("TestIngress.t_exact", (FieldMatch("exact", kind), FieldMatch("exact", src)), "TestIngress.set_exact", (kind,))
        )
    for plen in (8, 16, 24):
        device.table_insert(
            TableEntry("TestIngress.t_lpm", (FieldMatch("lpm", 0x0A000000 & (0xFFFFFFFF << (32 - plen)) & 0xFFFFFFFF, prefix_len=plen),), "TestIngress.set_lpm", (plen, plen))
        )
    device.table_insert(
        TableEntry("TestIngress.t_tern", (FieldMatch("ternary", 17, mask=0xFF), FieldMatch("ternary", 0, mask=0)), "TestIngress.set_tern", (1,), priority=10)
    )
    probe = struct.pack(">IHBBB9BI", 0x0A010203, 80, 17, 3, 0, *([0] * 9), 0)
    return [(1, _ethernet(0x88B6) + probe)]


def omnireduce_frames(device: Device, workers: int = 4, slots: int = 8, blocks: int = 256) -> Frames:
    """p4src/build/omnireduce.json: the frames of one all-reduce, recorded on a scratch device."""
    import numpy as np

    try:
        from tests.p4.omniswitch import OmniSwitch, make_workers, run_allreduce
    except ModuleNotFoundError:
        raise SystemExit("run from the repository root as `python -m bench.bench_softswitch`") from None

    def install(target: Device) -> OmniSwitch:
        switch = OmniSwitch(target)
        switch.add_job(1, make_workers(workers), slot_base=0, slot_count=slots, mcast_grp=1)
        return switch

    scratch = Device(name="bench-scratch")
    scratch.load_pipeline(device.pipeline_json)
    recorded: Frames = []
    send = scratch.process_packet

    def recording(port: int, frame: bytes) -> list[tuple[int, bytes]]:
        recorded.append((port, bytes(frame)))
        return send(port, frame)

    scratch.process_packet = recording  # type: ignore[method-assign]
    rng = np.random.default_rng(1)
    tensors = []
    for _ in range(workers):
        values = rng.integers(-1000, 1000, size=(blocks, 32), dtype=np.int64)
        values[rng.random(blocks) < 0.5] = 0  # half of the blocks are zero: sparse
        tensors.append(values.reshape(-1))
    run_allreduce(install(scratch), 1, tensors, slots)
    install(device)
    return recorded


GENERATORS: dict[str, Callable[[Device], Frames]] = {
    "arith_test.json": arith_frames,
    "tables_test.json": tables_frames,
    "omnireduce.json": omnireduce_frames,
}


def load_generator(spec: str | None, json_path: Path) -> Callable[[Device], Frames]:
    if spec:
        module_name, _, func = spec.partition(":")
        if not func:
            raise SystemExit("--frames needs MODULE:FUNCTION")
        return getattr(importlib.import_module(module_name), func)
    if json_path.name in GENERATORS:
        return GENERATORS[json_path.name]
    raise SystemExit(f"no built-in frame generator for {json_path.name}; give --frames MODULE:FUNCTION")


def run(json_path: Path, generator: Callable[[Device], Frames], packets: int, repeats: int) -> dict:
    raw = json_path.read_bytes()
    started = time.perf_counter()
    Device(name="bench").load_pipeline(raw)
    load_ms = (time.perf_counter() - started) * 1000
    best_wall = best_cpu = float("inf")
    for _ in range(repeats):
        device = Device(name="bench")
        device.load_pipeline(raw)
        frames = generator(device)
        if not frames:
            raise SystemExit("the frame generator returned no frames")
        batch = frames if packets <= 0 else [frames[i % len(frames)] for i in range(packets)]
        process = device.process_packet
        outputs = 0
        wall, cpu = time.perf_counter(), time.process_time()
        for port, frame in batch:
            outputs += len(process(port, frame))
        best_wall = min(best_wall, time.perf_counter() - wall)
        best_cpu = min(best_cpu, time.process_time() - cpu)
    stats = device.stats_snapshot()
    return {
        "json": str(json_path),
        "distinct_frames": len(frames),
        "frame_bytes": max(len(f) for _, f in frames),
        "packets_per_run": len(batch),
        "outputs_per_input": round(outputs / len(batch), 3),
        "load_ms": round(load_ms, 1),
        "pps_wall": round(len(batch) / best_wall),
        "pps_cpu": round(len(batch) / best_cpu),
        "us_per_packet_cpu": round(best_cpu / len(batch) * 1e6, 2),
        "drops": {k: v for k, v in stats.items() if k.startswith("drop:")},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    default_json = PROJECT_JSON if PROJECT_JSON.exists() else TEST_BUILD / "arith_test.json"
    parser.add_argument("--json", type=Path, default=default_json, help=f"BMv2 JSON (default {default_json})")
    parser.add_argument("--frames", help="frame generator MODULE:FUNCTION taking the Device")
    parser.add_argument("--packets", type=int, default=0,
                        help="packets per timed run, cycling the frames (default 0: each frame once, at least 5000 "
                             "for stateless generators)")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--json-out", action="store_true", help="print one JSON object instead of a table")
    args = parser.parse_args(argv)
    generator = load_generator(args.frames, args.json)
    packets = args.packets or (0 if generator is omnireduce_frames else 5000)
    result = run(args.json, generator, packets, args.repeat)
    if args.json_out:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"{key:20} {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
