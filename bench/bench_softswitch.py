"""Packets per second through the softswitch Device (one core, no sockets): load a BMv2 JSON, let a frame
generator configure the device and produce frames, then run them through Device.process_packet.

    .venv/bin/python bench/bench_softswitch.py [--json PATH] [--frames MODULE:FUNCTION] [--packets N] [--json-out]

--json     BMv2 JSON (default: p4src/build/omnireduce.json once it exists, else the arith test program)
--frames   `function(device) -> list[(port, frame)]` that installs what the program needs and returns frames
           to cycle through (default: a generator for the chosen program, see GENERATORS below)

Reports wall-clock and CPU-time rates (best of --repeat runs; CPU time is the steadier number on a shared
machine), the load (compile) time, and what the device counted (drops by reason, outputs per input).
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


GENERATORS: dict[str, Callable[[Device], Frames]] = {"arith_test.json": arith_frames, "tables_test.json": tables_frames}


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
    device = Device(name="bench")
    started = time.perf_counter()
    device.load_pipeline(json_path.read_bytes())
    load_ms = (time.perf_counter() - started) * 1000
    frames = generator(device)
    if not frames:
        raise SystemExit("the frame generator returned no frames")
    outputs = sum(len(device.process_packet(port, frame)) for port, frame in frames)
    batch = [frames[i % len(frames)] for i in range(packets)]
    process = device.process_packet
    best_wall = best_cpu = float("inf")
    for _ in range(repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        for port, frame in batch:
            process(port, frame)
        best_wall = min(best_wall, time.perf_counter() - wall)
        best_cpu = min(best_cpu, time.process_time() - cpu)
    stats = device.stats_snapshot()
    return {
        "json": str(json_path),
        "frames": len(frames),
        "frame_bytes": len(frames[0][1]),
        "outputs_per_input": outputs / len(frames),
        "load_ms": round(load_ms, 1),
        "packets_per_run": packets,
        "pps_wall": round(packets / best_wall),
        "pps_cpu": round(packets / best_cpu),
        "us_per_packet_cpu": round(best_cpu / packets * 1e6, 2),
        "drops": {k: v for k, v in stats.items() if k.startswith("drop:")},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    default_json = PROJECT_JSON if PROJECT_JSON.exists() else TEST_BUILD / "arith_test.json"
    parser.add_argument("--json", type=Path, default=default_json, help=f"BMv2 JSON (default {default_json})")
    parser.add_argument("--frames", help="frame generator MODULE:FUNCTION taking the Device")
    parser.add_argument("--packets", type=int, default=5000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--json-out", action="store_true", help="print one JSON object instead of a table")
    args = parser.parse_args(argv)
    result = run(args.json, load_generator(args.frames, args.json), args.packets, args.repeat)
    if args.json_out:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"{key:20} {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
