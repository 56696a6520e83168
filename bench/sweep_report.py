"""The sweep's rows as a table for people, the speedups between modes, and the issue's targets checked."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence

from .gloo import GLOO_DENSE, GLOO_SPARSE, GLOO_SPARSE_FLAT
from .sweep import DENSE, MODES, SOURCES, SPARSE, Row

Key = tuple[int, int, float]  # workers, size, density


def by_point(rows: Iterable[Row]) -> dict[Key, dict[str, Row]]:
    points: dict[Key, dict[str, Row]] = {}
    for row in rows:
        points.setdefault((row.workers, row.size, row.density), {})[row.mode] = row
    return points


def _ok(row: Row | None) -> bool:
    return row is not None and row.status == "ok" and row.median_s is not None


@dataclass(frozen=True, slots=True)
class Speedups:
    """Time of each other mode over sparse's (median over median); >1: sparse is faster."""

    over_dense: float | None
    over_gloo: float | None
    over_gloo_sparse: float | None
    over_gloo_sparse_flat: float | None
    ideal_traffic_ratio: float | None  # dense's measured bytes over the ideal exchange's


def speedups(modes: dict[str, Row]) -> Speedups:
    sparse = modes.get(SPARSE)

    def ratio(mode: str) -> float | None:
        other = modes.get(mode)
        if not (_ok(sparse) and _ok(other)) or not sparse.median_s:
            return None
        return other.median_s / sparse.median_s

    dense = modes.get(DENSE)
    traffic = None
    if _ok(dense) and dense.total_bytes and dense.ideal_total_bytes:
        traffic = dense.total_bytes / dense.ideal_total_bytes
    return Speedups(ratio(DENSE), ratio(GLOO_DENSE), ratio(GLOO_SPARSE), ratio(GLOO_SPARSE_FLAT), traffic)


def _size(count: float | None) -> str:
    if count is None:
        return "-"
    for unit, scale in (("MiB", 2**20), ("KiB", 2**10)):
        if count >= scale:
            return f"{count / scale:.1f} {unit}"
    return f"{count:.0f} B"


def _x(value: float | None) -> str:
    return f"{value:.2f}x" if value is not None else "-"


def format_table(rows: Sequence[Row]) -> str:
    lines = ["time: median of the runs [min-max]; bytes per worker; sparse/dense bytes at the switch ports",
             *(f"  {mode}: {source}" for mode, source in SOURCES.items()), ""]
    header = (f"{'W':>3} {'values':>8} {'density':>7} {'union':>6} {'mode':<20} {'median s':>9} {'[min-max]':>17} "
              f"{'sent/worker':>12} {'recv/worker':>12} {'vs ideal':>8} {'retx':>5}")
    lines.append(header)
    for (workers, size, density), modes in sorted(by_point(rows).items(), key=lambda item: (item[0][0], item[0][1],
                                                                                           -item[0][2])):
        any_row = next(iter(modes.values()))
        for mode in MODES:
            row = modes.get(mode)
            if row is None:
                continue
            lead = f"{workers:>3} {size:>8} {density:>7g} {any_row.union_density:>6.3f} {mode:<20}"
            if row.status != "ok":
                lines.append(f"{lead} {row.status}")
                continue
            spread = f"[{min(row.seconds):.4f}-{max(row.seconds):.4f}]"
            versus = (f"{row.total_bytes / row.ideal_total_bytes:.2f}x" if row.total_bytes and row.ideal_total_bytes
                      else "-")
            retx = str(row.retransmissions) if row.retransmissions is not None else "-"
            lines.append(f"{lead} {row.median_s:>9.4f} {spread:>17} {_size(row.sent_bytes_per_worker):>12} "
                         f"{_size(row.received_bytes_per_worker):>12} {versus:>8} {retx:>5}")
        gains = speedups(modes)
        lines.append(f"{'':>3} {'':>8} {'':>7} {'':>6} speedup of sparse: over dense {_x(gains.over_dense)} "
                     f"(ideal traffic ratio {_x(gains.ideal_traffic_ratio)}), over gloo {_x(gains.over_gloo)}, "
                     f"over gloo sparse COO {_x(gains.over_gloo_sparse)}"
                     + (f", over its flat form {_x(gains.over_gloo_sparse_flat)}" if GLOO_SPARSE_FLAT in modes else "")
                     + "; ideal exchange "
                     f"{_size(any_row.ideal_total_bytes)}")
    return "\n".join(lines)


def targets(rows: Sequence[Row]) -> list[str]:
    """The issue's targets, reported (never asserted): one line per point where a target applies."""
    lines = []
    for (workers, size, density), modes in sorted(by_point(rows).items()):
        sparse, coo = modes.get(SPARSE), modes.get(GLOO_SPARSE)
        where = f"W={workers} n={size} d={density:g}"
        if density <= 0.01 and _ok(sparse) and _ok(coo):
            verdict = "met" if sparse.received_bytes_per_worker < coo.received_bytes_per_worker else "MISSED"
            lines.append(f"{where}: received per worker, sparse {_size(sparse.received_bytes_per_worker)} < gloo "
                         f"sparse COO {_size(coo.received_bytes_per_worker)}: {verdict}")
        if _ok(sparse) and sparse.ideal_total_bytes:
            ratio = sparse.total_bytes / sparse.ideal_total_bytes
            lines.append(f"{where}: sparse bytes {ratio:.3f}x the ideal exchange (target <= 1.15): "
                         f"{'met' if ratio <= 1.15 else 'MISSED'}")
        beside = [(label, modes.get(mode)) for label, mode in (("gloo dense", GLOO_DENSE), ("gloo sparse COO", GLOO_SPARSE),
                                                              ("gloo flat COO", GLOO_SPARSE_FLAT))]
        beside = [(label, row) for label, row in beside if _ok(row)]
        if _ok(sparse) and beside:
            # issue 11: below gloo's dense and sparse all-reduces of the same inputs, same run
            lines.append(f"{where}: sparse {sparse.median_s * 1e3:.1f} ms against " + ", ".join(
                f"{label} {row.median_s * 1e3:.1f} ms ({'faster' if sparse.median_s < row.median_s else 'SLOWER'})"
                for label, row in beside))
        if density in (0.1, 0.01):
            gains = speedups(modes)
            if gains.over_dense is not None and gains.ideal_traffic_ratio:
                needed = 0.8 * gains.ideal_traffic_ratio
                lines.append(f"{where}: sparse over dense {gains.over_dense:.2f}x, target >= 0.8 x ideal traffic "
                             f"ratio {gains.ideal_traffic_ratio:.2f} = {needed:.2f}: "
                             f"{'met' if gains.over_dense >= needed else 'MISSED'}")
    return lines


def _ms(row: Row | None) -> str:
    if not _ok(row):
        return row.status.split(":")[0] if row is not None else "-"
    return f"{row.median_s * 1e3:.1f} ({min(row.seconds) * 1e3:.1f}-{max(row.seconds) * 1e3:.1f})"


def format_markdown(rows: Sequence[Row]) -> str:
    """One line per point: each mode's median time [spread] in ms, bytes received per worker, traffic against
    the ideal exchange, and the speedups (docs/performance.md)."""
    flat = any(row.mode == GLOO_SPARSE_FLAT for row in rows)  # its columns only where it ran
    lines = ["| W | values | density | union | sparse ms | dense ms | gloo ms | gloo COO ms | "
             + ("gloo flat COO ms | " if flat else "") + "recv/worker sparse "
             "| recv/worker gloo COO | sparse vs ideal | retx | sparse over dense (ideal ratio) | over gloo "
             "| over gloo COO | " + ("over gloo flat COO | " if flat else "") + "load |",
             "|---" * (16 + 2 * flat) + "|"]
    for (workers, size, density), modes in sorted(by_point(rows).items(),
                                                  key=lambda item: (item[0][0], item[0][1], -item[0][2])):
        any_row = next(iter(modes.values()))
        sparse, coo = modes.get(SPARSE), modes.get(GLOO_SPARSE)
        gains = speedups(modes)
        versus = (f"{sparse.total_bytes / sparse.ideal_total_bytes:.2f}x"
                  if _ok(sparse) and sparse.ideal_total_bytes else "-")
        retx = str(sparse.retransmissions) if _ok(sparse) and sparse.retransmissions is not None else "-"
        lines.append(
            f"| {workers} | {size:,} | {density:g} | {any_row.union_density:.3f} | {_ms(sparse)} | "
            f"{_ms(modes.get(DENSE))} | {_ms(modes.get(GLOO_DENSE))} | {_ms(coo)} | "
            + (f"{_ms(modes.get(GLOO_SPARSE_FLAT))} | " if flat else "")
            + f"{_size(sparse.received_bytes_per_worker) if _ok(sparse) else '-'} | "
            f"{_size(coo.received_bytes_per_worker) if _ok(coo) else '-'} | {versus} | {retx} | "
            f"{_x(gains.over_dense)} ({_x(gains.ideal_traffic_ratio)}) | {_x(gains.over_gloo)} | "
            f"{_x(gains.over_gloo_sparse)} | " + (f"{_x(gains.over_gloo_sparse_flat)} | " if flat else "")
            + f"{_load(modes.values())} |")
    return "\n".join(lines)


def _load(rows: Iterable[Row]) -> str:
    """The 1-minute load averages seen after the runs of a point, as a range (the machine is shared)."""
    loads = [load for row in rows for load in row.extra.get("load_1min", [])]
    return f"{min(loads):.1f}-{max(loads):.1f}" if loads else "-"
