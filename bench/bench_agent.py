"""The agent's own cost, without a network: is the agent ever the bottleneck?

    omnireduce-bench agent [--values 16000000] [--blocks 200000] [--slots 64] [--json]

1. Preparing a tensor (NaN/Inf check, exponent claim, quantisation, block scan, next-block hints, big-endian lanes)
   in GB/s of float32 input, per density, with the agent's compiled kernels (host/exchange.c) and with numpy's.
2. Packets per second per core through the worker state machine (host/engine.py): a one-worker job whose "switch"
   turns each CONTRIB into its RESULT in place, so every packet is built, handed over, parsed and its lanes
   written into the result: the agent's whole per-packet cost, one datagram per call (on_payload) and a batch of
   results per call (on_batch, what the agent does: a batch is every result a wave of CONTRIBs brought back, i.e.
   one per slot), with numpy's batch path and the compiled one. Also the cost of building alone, one at a time.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from omnireduce import argtypes
from omnireduce.host.blocks import block_count, plan_blocks
from omnireduce.host.config import Timeouts
from omnireduce.host.columns import SlotChannels
from omnireduce.host.engine import TensorExchange, big_endian_lanes
from omnireduce.host import native
from omnireduce.host.errors import InputError
from omnireduce.host.quantize import exponent_claim, quantize_blocks, scale_shift, scan_float32
from omnireduce.host.stats import Stats
from omnireduce.host.synthetic import synthetic_tensor
from omnireduce.host.wire import DATA_FRAME_BYTES, DATA_PAYLOAD_BYTES, LANE_DTYPE
from omnireduce.p4src import constants as C


def best_of(repeats: int, work) -> float:
    """The best CPU time (process_time) of `repeats` calls: on a shared machine the wall clock also counts the
    time other processes held the core, CPU time only this one's work. The work is single-threaded."""
    times = []
    for _ in range(repeats):
        started = time.process_time()
        work()
        times.append(time.process_time() - started)
    return min(times)


def prepare(values: np.ndarray, slots: int, workers: int = 8) -> None:
    """What AllReduce does to a float32 tensor before the first packet of the data tensor."""
    scan = scan_float32(values)  # NaN/Inf, largest magnitude, blocks with a non-zero bit: one pass
    if not scan.finite:
        raise InputError("NaN or Inf in the tensor")
    shift = scale_shift(exponent_claim(values, scan.magnitude), workers)
    count = block_count(values.size)
    # Big-endian lanes (packets copy them as they are), only the blocks with a non-zero bit converted.
    _lanes, significant = quantize_blocks(values, shift, count * C.LANES, scan.candidates)
    plan = plan_blocks(significant, slots)
    assert plan.count == count


def kernel_kinds() -> list[str]:
    """numpy always; compiled where it builds."""
    return ["compiled", "numpy"] if native.available() is not None else ["numpy"]


def bench_prepare(count: int, densities: list[float], slots: int) -> list[dict]:
    rows = []
    for density in densities:
        values = synthetic_tensor(count, density, 0, 0)
        for kind in kernel_kinds():
            with native.kernels(kind):
                seconds = best_of(3, lambda: prepare(values, slots))
            rows.append({"density": density, "values": count, "kernels": kind, "seconds": seconds,
                         "gb_per_s": values.nbytes / seconds / 1e9})
    return rows


class LoopbackSwitch:
    """A one-worker job: the round completes at once, the RESULT is the CONTRIB with its type changed."""

    def __init__(self) -> None:
        self.pending: list[bytearray] = []

    def send(self, payload: bytes | bytearray) -> None:
        if payload[0] == C.MSG_CONTRIB:
            result = bytearray(payload)
            result[0] = C.MSG_RESULT
            self.pending.append(result)


class BatchLoopbackSwitch:
    """The same, a batch at a time: every batch of CONTRIBs comes back as one batch of RESULTs."""

    def __init__(self) -> None:
        self.pending: list[np.ndarray] = []

    def send(self, payload) -> None:
        self.send_batch(np.frombuffer(payload, dtype=np.uint8).reshape(1, DATA_PAYLOAD_BYTES))

    def send_batch(self, rows: np.ndarray) -> None:
        results = rows.copy()
        results[:, 0] = C.MSG_RESULT
        self.pending.append(results)


def bench_packets(blocks: int, slots: int) -> dict:
    values = np.ones(blocks * C.LANES, dtype=np.int32)
    lanes = big_endian_lanes(values)
    plan = plan_blocks(np.ones(blocks, dtype=bool), slots)
    timeouts = Timeouts(retransmit_initial=60, retransmit_max=60)

    def full_cycle() -> None:
        switch = LoopbackSwitch()
        result = np.zeros(values.size, dtype=LANE_DTYPE)
        exchange = TensorExchange(
            job_id=1, tensor_id=1, plan=plan, lanes=memoryview(lanes).cast("B"), result=memoryview(result).cast("B"),
            exponent=0, channels=SlotChannels.create(slots), send=switch.send, stats=Stats(),
            timeouts=timeouts,
        )
        exchange.start(0.0)
        while switch.pending:
            batch, switch.pending = switch.pending, []
            for payload in batch:
                exchange.on_payload(payload, 0.0)
        assert exchange.done and np.array_equal(result.astype(np.int32), values)

    cycle_seconds = best_of(3, full_cycle)

    def batch_cycle(compiled: bool) -> None:
        switch = BatchLoopbackSwitch()
        result = np.zeros(values.size, dtype=LANE_DTYPE)
        exchange = TensorExchange(
            job_id=1, tensor_id=1, plan=plan, lanes=memoryview(lanes).cast("B"), result=memoryview(result).cast("B"),
            exponent=0, channels=SlotChannels.create(slots), send=switch.send, send_batch=switch.send_batch,
            stats=Stats(), timeouts=timeouts, compiled=compiled,
        )
        assert exchange.compiled == compiled
        exchange.start(0.0)
        while switch.pending:
            batch = np.concatenate(switch.pending)
            switch.pending = []
            exchange.on_batch(batch, np.full(len(batch), DATA_PAYLOAD_BYTES), 0.0)
        assert exchange.done and np.array_equal(result.astype(np.int32), values)

    batch_seconds = best_of(3, lambda: batch_cycle(False))
    compiled_seconds = best_of(3, lambda: batch_cycle(True)) if native.available() is not None else None

    def build_only() -> None:
        sent: list[int] = []
        exchange = TensorExchange(
            job_id=1, tensor_id=1, plan=plan, lanes=memoryview(lanes).cast("B"),
            result=memoryview(np.zeros(values.size, dtype=LANE_DTYPE)).cast("B"), exponent=0,
            channels=SlotChannels.create(slots), send=lambda payload: sent.append(1), stats=Stats(),
            timeouts=timeouts,
        )
        for block in range(blocks):  # the engine's own packet builder, block after block
            exchange._contribute(0, block, 0.0)

    build_seconds = best_of(3, build_only)
    return {
        "blocks": blocks,
        "packets_per_s_build_and_consume": blocks / cycle_seconds,
        "packets_per_s_build_and_consume_batched": blocks / batch_seconds,
        "packets_per_s_build_and_consume_compiled": blocks / compiled_seconds if compiled_seconds else None,
        "packets_per_s_build_only": blocks / build_seconds,
        "frame_gbit_per_s_at_that_rate": blocks / cycle_seconds * DATA_FRAME_BYTES * 8 / 1e9,
    }


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--values", type=argtypes.integer(minimum=1), default=16_000_000,
                        help="tensor size for the preparation benchmark (default 16000000)")
    parser.add_argument("--blocks", type=argtypes.integer(minimum=1), default=200_000,
                        help="packets for the packet benchmark (default 200000)")
    parser.add_argument("--slots", type=argtypes.integer(minimum=1), default=64, help="slots (default 64)")
    parser.add_argument("--json", action="store_true", help="JSON on stdout instead of the table")


def run(args: argparse.Namespace) -> dict:
    return {
        "prepare": bench_prepare(args.values, [1.0, 0.1, 0.01, 0.001], args.slots),
        "packets": bench_packets(args.blocks, args.slots),
    }


def table(report: dict, args: argparse.Namespace) -> str:
    lines = [f"tensor preparation ({args.values} float32 values, {args.slots} slots), CPU time, best of 3:"]
    for row in report["prepare"]:
        lines.append(f"  density {row['density']:<6} {row.get('kernels', 'numpy'):<9} {row['seconds'] * 1e3:8.1f} ms  "
                     f"{row['gb_per_s']:6.2f} GB/s")
    packets = report["packets"]
    lines.append(f"worker state machine, one core, CPU time ({packets['blocks']} blocks):")
    lines.append(f"  build + consume  {packets['packets_per_s_build_and_consume']:>12,.0f} packets/s "
                 f"({packets['frame_gbit_per_s_at_that_rate']:.2f} Gbit/s of 190-byte frames each way)")
    lines.append(f"  batched          {packets['packets_per_s_build_and_consume_batched']:>12,.0f} packets/s "
                 f"(on_batch, numpy, {args.slots} results a batch)")
    compiled = packets.get("packets_per_s_build_and_consume_compiled")
    lines.append(f"  batched, C       {compiled:>12,.0f} packets/s (on_batch, host/exchange.c)" if compiled
                 else "  batched, C       not built here (no C compiler or cffi)")
    lines.append(f"  build only       {packets['packets_per_s_build_only']:>12,.0f} packets/s")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser)
    args = parser.parse_args(argv)
    report = run(args)
    print(json.dumps(report, indent=2) if args.json else table(report, args))


if __name__ == "__main__":
    main()
