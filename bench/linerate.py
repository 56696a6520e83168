"""A line-rate model: how long the same all-reduce would take through a hardware switch at 10 and 100 Gbit/s,
beside a bandwidth-optimal ring all-reduce at the same rate, and what that makes of a training step.

    omnireduce-bench model [--from sweep.json] [--rates 10,100] [--host-mpps 12] [--window 512] ...

Assumptions (each one a parameter):
- Every worker has one full-duplex link of R Gbit/s to one switch. Each Ethernet frame costs 24 bytes on the
  wire beyond the counted frame (preamble and start delimiter 8, FCS 4, inter-frame gap 12).
- omnireduce: a worker sends its CONTRIBs (and control packets) up and receives every RESULT down; the time is
  the largest of three bounds, plus one round trip to fill and drain the pipeline:
  bandwidth (the busier direction's wire bytes / R), host packet rate (the busier direction's packets / the
  host's packets/s, --host-mpps, a kernel-bypass agent: the Python agent here does ~0.3 Mpps, bench agent) and
  latency (each slot is a chain of rounds, one round trip each: rounds per column x RTT, with --window slots in
  flight per job). RTT = 2 link delays + switch latency + host turnaround + 2 frame serialisations.
- ring: 2(W-1)/W of the tensor leaves and enters each worker (reduce-scatter, then all-gather) in MTU frames of
  --ring-payload bytes plus --ring-header bytes of headers (RoCEv2: 4096 and 58+24); 2(W-1) steps, each paying
  one link latency (2 link delays + switch latency + host turnaround).
- Traffic: from a sweep (--from), the packets and bytes measured at the switch per worker, scaled to the modelled
  tensor by the ratio measured/ideal at the nearest (workers, density) point of the sweep; without a sweep, the
  ideal exchange itself. Inputs as the sweep's: blocks non-zero with probability d independently per worker, so
  the union of W workers holds 1-(1-d)^W of the blocks.
- Training step: compute + communication, no overlap (DDP overlaps part of it, which lowers both step times and
  raises the speedup's ratio only where communication dominates; see docs/performance.md).
"""

from __future__ import annotations

import argparse
import math
from dataclasses import asdict, dataclass
from typing import Any, Sequence

from omnireduce import argtypes
from omnireduce.host.wire import DATA_FRAME_BYTES
from omnireduce.p4src import constants as C

from .ideal import expected_ideal
from .profiles import PROFILES, ModelProfile
from .sweep import DENSE, SPARSE, Row

WIRE_OVERHEAD_BYTES = 24
OMNIREDUCE_TENSOR = 26_214_400  # OmniReduce's micro-benchmark: 100 MB of float32 (their benchmark.py default)
OMNIREDUCE_DENSITIES = (1.0, 0.4, 0.1, 0.01)
OMNIREDUCE_WORKERS = (2, 4, 8)
TRAINING_WORKERS = 8  # OmniReduce's end-to-end runs: 8 workers


@dataclass(frozen=True, slots=True)
class Network:
    gbps: float
    switch_latency_us: float = 1.0
    link_delay_us: float = 0.5
    host_turnaround_us: float = 2.0
    host_mpps: float = 60.0
    window: int = C.SLOT_COUNT
    ring_payload: int = 4096
    ring_header: int = 58

    @property
    def bytes_per_s(self) -> float:
        return self.gbps * 1e9 / 8

    def serialise_s(self, frame_bytes: float) -> float:
        return (frame_bytes + WIRE_OVERHEAD_BYTES) / self.bytes_per_s

    @property
    def rtt_s(self) -> float:
        return (2 * self.link_delay_us + self.switch_latency_us + self.host_turnaround_us) * 1e-6 \
            + 2 * self.serialise_s(DATA_FRAME_BYTES)

    @property
    def step_latency_s(self) -> float:
        return (2 * self.link_delay_us + self.switch_latency_us + self.host_turnaround_us) * 1e-6


@dataclass(frozen=True, slots=True)
class WorkerTraffic:
    """One worker's share of an all-reduce: packets and frame bytes each way, and its rounds per slot column."""

    packets_up: float
    bytes_up: float
    packets_down: float
    bytes_down: float
    rounds_per_column: float


@dataclass(frozen=True, slots=True)
class Breakdown:
    bandwidth_s: float
    packet_rate_s: float
    latency_s: float
    total_s: float

    @property
    def bound(self) -> str:
        bounds = {"bandwidth": self.bandwidth_s, "host packet rate": self.packet_rate_s, "latency": self.latency_s}
        return max(bounds, key=bounds.get)


def omnireduce_time(traffic: WorkerTraffic, network: Network) -> Breakdown:
    wire_up = traffic.bytes_up + traffic.packets_up * WIRE_OVERHEAD_BYTES
    wire_down = traffic.bytes_down + traffic.packets_down * WIRE_OVERHEAD_BYTES
    bandwidth = max(wire_up, wire_down) / network.bytes_per_s
    packet_rate = max(traffic.packets_up, traffic.packets_down) / (network.host_mpps * 1e6)
    latency = traffic.rounds_per_column * network.rtt_s
    return Breakdown(bandwidth, packet_rate, latency, max(bandwidth, packet_rate, latency) + network.rtt_s)


def ring_time(elements: int, workers: int, network: Network) -> Breakdown:
    """Bandwidth-optimal ring all-reduce of `elements` float32 values."""
    if workers < 2:
        return Breakdown(0.0, 0.0, 0.0, 0.0)
    payload = 2 * (workers - 1) / workers * 4 * elements
    frames = math.ceil(payload / network.ring_payload)
    wire = payload + frames * (network.ring_header + WIRE_OVERHEAD_BYTES)
    bandwidth = wire / network.bytes_per_s
    packet_rate = frames / (network.host_mpps * 1e6)
    latency = 2 * (workers - 1) * network.step_latency_s
    return Breakdown(bandwidth, packet_rate, latency, max(bandwidth, packet_rate) + latency)


def ideal_traffic(workers: int, elements: int, density: float, slots: int) -> WorkerTraffic:
    blocks = -(-elements // C.LANES)
    ideal = expected_ideal(workers, blocks, density)
    up = ideal.contributions / workers
    return WorkerTraffic(up, up * DATA_FRAME_BYTES, ideal.results, ideal.results * DATA_FRAME_BYTES,
                         math.ceil(ideal.results / slots))


def dense_traffic(elements: int, slots: int) -> WorkerTraffic:
    """Every block up and down once (the dense, SwitchML-style exchange in 190-byte frames)."""
    blocks = -(-elements // C.LANES)
    return WorkerTraffic(blocks, blocks * DATA_FRAME_BYTES, blocks, blocks * DATA_FRAME_BYTES,
                         math.ceil(blocks / slots))


@dataclass(frozen=True, slots=True)
class Calibration:
    """Measured over ideal, per direction, at the sweep point nearest to the modelled one (1.0: no sweep)."""

    up: float = 1.0
    down: float = 1.0
    packets_up: float = 1.0
    packets_down: float = 1.0
    source: str = "ideal exchange (no sweep given)"


def calibration(rows: Sequence[Row], workers: int, density: float) -> Calibration:
    measured = [row for row in rows if row.mode == SPARSE and row.status == "ok" and row.switch_to_bytes
                and row.ideal_total_bytes]
    if not measured:
        return Calibration()
    # Nearest worker count first, then nearest density (on a log scale), then the largest tensor.
    row = min(measured, key=lambda r: (abs(math.log2(r.workers) - math.log2(workers)),
                                       abs(math.log10(max(r.density, 1e-6)) - math.log10(max(density, 1e-6))),
                                       -r.size))
    blocks = -(-row.size // C.LANES)
    ideal = expected_ideal(row.workers, blocks, row.density)
    # The exact ideal of that run's inputs, split per direction with the expected split.
    scale = row.ideal_total_bytes / max(ideal.total_bytes, 1)
    ideal_up = ideal.to_switch_bytes * scale
    ideal_down = ideal.from_switch_bytes * scale
    up = row.switch_to_bytes / ideal_up if ideal_up else 1.0
    down = row.switch_from_bytes / ideal_down if ideal_down else 1.0
    packets_up = row.switch_to_packets / (ideal_up / DATA_FRAME_BYTES) if ideal_up else 1.0
    packets_down = row.switch_from_packets / (ideal_down / DATA_FRAME_BYTES) if ideal_down else 1.0
    return Calibration(up, down, packets_up, packets_down,
                       f"measured/ideal of the sweep's sparse run W={row.workers} n={row.size} d={row.density:g}")


def calibrated(traffic: WorkerTraffic, factor: Calibration) -> WorkerTraffic:
    return WorkerTraffic(traffic.packets_up * factor.packets_up, traffic.bytes_up * factor.up,
                         traffic.packets_down * factor.packets_down, traffic.bytes_down * factor.down,
                         traffic.rounds_per_column * factor.packets_down)


def networks(args: argparse.Namespace) -> list[Network]:
    return [Network(gbps, args.switch_latency_us, args.link_delay_us, args.host_turnaround_us, args.host_mpps,
                    args.window, args.ring_payload, args.ring_header) for gbps in args.rates]


def allreduce_table(rows: Sequence[Row], nets: Sequence[Network], elements: int, workers_list: Sequence[int],
                    densities: Sequence[float]) -> list[dict[str, Any]]:
    table = []
    for network in nets:
        for workers in workers_list:
            ring = ring_time(elements, workers, network)
            dense = omnireduce_time(dense_traffic(elements, network.window), network)
            for density in densities:
                factor = calibration(rows, workers, density)
                traffic = calibrated(ideal_traffic(workers, elements, density, network.window), factor)
                sparse = omnireduce_time(traffic, network)
                table.append({
                    "gbps": network.gbps, "workers": workers, "elements": elements, "density": density,
                    "omnireduce_s": sparse.total_s, "omnireduce_bound": sparse.bound, "ring_s": ring.total_s,
                    "dense_switch_s": dense.total_s, "speedup_over_ring": ring.total_s / sparse.total_s,
                    "speedup_over_dense_switch": dense.total_s / sparse.total_s,
                    "calibration": factor.source, "bytes_down_per_worker": traffic.bytes_down,
                })
    return table


def training_table(rows: Sequence[Row], nets: Sequence[Network], profiles: Sequence[ModelProfile],
                   workers: int) -> list[dict[str, Any]]:
    table = []
    for network in nets:
        for profile in profiles:
            ring = ring_time(profile.elements, workers, network).total_s
            factor = calibration(rows, workers, profile.density)
            traffic = calibrated(ideal_traffic(workers, profile.elements, profile.density, network.window), factor)
            sparse = omnireduce_time(traffic, network).total_s
            compute = profile.compute_ms / 1e3
            table.append({
                "gbps": network.gbps, "model": profile.name, "workers": workers, "gradient_mb": profile.gradient_mb,
                "density": profile.density, "compute_ms": profile.compute_ms, "ring_comm_ms": ring * 1e3,
                "omnireduce_comm_ms": sparse * 1e3, "comm_speedup": ring / sparse,
                "step_speedup": (compute + ring) / (compute + sparse), "certainty": profile.certainty,
            })
    return table


def _profile(text: str) -> ModelProfile:
    name, _, rest = text.partition("=")
    size, _, density = rest.partition(":")
    try:
        return ModelProfile(name, float(size), float(density), 100.0, "given on the command line")
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not NAME=MB:DENSITY (e.g. MyModel=500:0.05)") from None


def _compute(text: str) -> tuple[str, float]:
    name, _, value = text.partition("=")
    try:
        milliseconds = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not NAME=MILLISECONDS (e.g. BERT=250)") from None
    if not name or milliseconds < 0 or not math.isfinite(milliseconds):
        raise argparse.ArgumentTypeError(f"{text!r} is not NAME=MILLISECONDS with MILLISECONDS >= 0")
    return name, milliseconds


def add_arguments(parser: argparse.ArgumentParser) -> None:
    default = Network(10.0)
    positive = argtypes.number(minimum=0.0, allow_minimum=False)
    non_negative = argtypes.number(minimum=0.0)

    def rates(text: str) -> tuple[float, ...]:
        return tuple(positive(item) for item in text.split(","))

    parser.add_argument("--rates", type=rates, default=(10.0, 100.0), help="link rates in Gbit/s (default 10,100)")
    parser.add_argument("--switch-latency-us", type=non_negative, default=default.switch_latency_us,
                        help="switch port-to-port latency (default %(default)s us, a Tofino-class switch)")
    parser.add_argument("--link-delay-us", type=non_negative, default=default.link_delay_us,
                        help="one-way propagation per link (default %(default)s us, ~100 m of fibre)")
    parser.add_argument("--host-turnaround-us", type=non_negative, default=default.host_turnaround_us,
                        help="host time from a RESULT in to the next CONTRIB out (default %(default)s us, "
                             "kernel bypass)")
    parser.add_argument("--host-mpps", type=positive, default=default.host_mpps,
                        help="packets per second a host handles each way, in millions (default %(default)s)")
    parser.add_argument("--window", type=argtypes.integer(minimum=1), default=default.window,
                        help="slots of the job: rounds in flight per worker (default %(default)s, the switch's "
                             "SLOT_COUNT)")
    parser.add_argument("--ring-payload", type=argtypes.integer(minimum=1), default=default.ring_payload,
                        help="ring all-reduce payload per frame (default %(default)s, RoCEv2 MTU)")
    parser.add_argument("--ring-header", type=argtypes.integer(minimum=0), default=default.ring_header,
                        help="ring frame headers (default %(default)s: Ethernet, IPv4, UDP, BTH, ICRC)")
    parser.add_argument("--profile", type=_profile, action="append", metavar="NAME=MB:DENSITY",
                        help="a model profile to add or replace (repeatable)")
    parser.add_argument("--compute-ms", type=_compute, action="append", metavar="NAME=MS",
                        help="compute time per step of a profile (repeatable; see omnireduce.bench.profiles)")


def run(args: argparse.Namespace, rows: Sequence[Row]) -> dict[str, Any]:
    nets = networks(args)
    profiles = {profile.name: profile for profile in PROFILES}
    for profile in args.profile or ():
        profiles[profile.name] = profile
    for name, milliseconds in args.compute_ms or ():
        if name not in profiles:
            raise SystemExit(f"omnireduce-bench model: --compute-ms {name}: no profile named {name!r} "
                             f"(have {', '.join(profiles)})")
        profiles[name] = ModelProfile(name, profiles[name].gradient_mb, profiles[name].density, milliseconds,
                                      profiles[name].certainty)
    measured = sweep_points(rows, nets)
    return {
        "networks": [asdict(network) | {"rtt_us": network.rtt_s * 1e6} for network in nets],
        "omnireduce_conditions": allreduce_table(rows, nets, OMNIREDUCE_TENSOR, OMNIREDUCE_WORKERS,
                                                 OMNIREDUCE_DENSITIES),
        "density_curve": allreduce_table(rows, nets, OMNIREDUCE_TENSOR, (8,),
                                         (1.0, 0.7, 0.4, 0.2, 0.1, 0.05, 0.02, 0.01, 0.005, 0.001)),
        "training": training_table(rows, nets, list(profiles.values()), TRAINING_WORKERS),
        "sweep_runs": measured,
    }


def sweep_points(rows: Sequence[Row], nets: Sequence[Network]) -> list[dict[str, Any]]:
    """Each measured sparse/dense run of the sweep, its own packets at line rate (no scaling)."""
    points = []
    for row in rows:
        if row.mode not in (SPARSE, DENSE) or row.status != "ok" or not row.switch_to_packets:
            continue
        for network in nets:
            results = row.switch_from_packets / row.workers
            traffic = WorkerTraffic(row.switch_to_packets / row.workers, row.switch_to_bytes / row.workers,
                                    results, row.switch_from_bytes / row.workers, math.ceil(results / network.window))
            modelled = omnireduce_time(traffic, network)
            points.append({"mode": row.mode, "workers": row.workers, "size": row.size, "density": row.density,
                           "gbps": network.gbps, "modelled_s": modelled.total_s, "bound": modelled.bound,
                           "ring_s": ring_time(row.size, row.workers, network).total_s,
                           "measured_loopback_s": row.median_s})
    return points


def format_report(report: dict[str, Any]) -> str:
    lines = ["networks: " + "; ".join(
        f"{net['gbps']:g} Gbit/s (RTT {net['rtt_us']:.2f} us, switch {net['switch_latency_us']:g} us, host "
        f"{net['host_mpps']:g} Mpps, window {net['window']})" for net in report["networks"])]
    lines += ["", "OmniReduce's conditions (100 MB float32, modelled):",
              f"{'Gbit/s':>6} {'W':>3} {'density':>7} {'omnireduce':>11} {'bound':>17} {'ring':>9} {'dense sw':>9} "
              f"{'vs ring':>8} {'vs dense':>8}"]
    for row in report["omnireduce_conditions"]:
        lines.append(f"{row['gbps']:>6g} {row['workers']:>3} {row['density']:>7g} {row['omnireduce_s'] * 1e3:>8.2f} ms "
                     f"{row['omnireduce_bound']:>17} {row['ring_s'] * 1e3:>6.2f} ms {row['dense_switch_s'] * 1e3:>6.2f} ms "
                     f"{row['speedup_over_ring']:>7.2f}x {row['speedup_over_dense_switch']:>7.2f}x")
    sources = {row["calibration"] for row in report["omnireduce_conditions"]}
    lines.append(next(iter(sources)) if len(sources) == 1 else
                 f"traffic: the ideal exchange scaled by measured/ideal of the nearest sweep point ({len(sources)} "
                 f"points; --json-out names the one behind each row)")
    lines += ["", f"training step, {TRAINING_WORKERS} workers (compute + communication, no overlap):",
              f"{'Gbit/s':>6} {'model':<10} {'MB':>7} {'density':>7} {'compute':>8} {'ring':>10} {'omnireduce':>11} "
              f"{'comm x':>7} {'step x':>7}"]
    for row in report["training"]:
        lines.append(f"{row['gbps']:>6g} {row['model']:<10} {row['gradient_mb']:>7.0f} {row['density']:>7g} "
                     f"{row['compute_ms']:>5.0f} ms {row['ring_comm_ms']:>7.1f} ms {row['omnireduce_comm_ms']:>8.1f} ms "
                     f"{row['comm_speedup']:>6.2f}x {row['step_speedup']:>6.2f}x")
    lines.append("profiles: sizes and densities per omnireduce.bench.profiles (several approximate, see there); "
                 "compute times assumed")
    return "\n".join(lines)
