"""How fast the hook's block scan runs on a GPU, as a fraction of HBM bandwidth.

The scan is what omnireduce.torch does to every gradient bucket on the device before anything crosses to the host:
one score per block of 32 values over a (n/32, 32) view of the bucket (torch_hook/blocks.py: `block_scores`, the
largest magnitude for natural sparsity and the threshold, the L2 norm for top-k). It reads the whole gradient once
and writes one value per 32, so it is memory-bound: bytes read / time / peak bandwidth says how close it gets.

    python3 bench/bench_gpu_scan.py --json scan.json              # a CUDA GPU: 100 MiB and 1 GiB gradients
    python3 bench/bench_gpu_scan.py --device cpu --sizes-mb 8     # a smoke test of the script on the CPU

Variants (the first is the library's): vector_norm_inf (torch.linalg.vector_norm(ord=inf, dim=1): one reduction
kernel), vector_norm_l2 (the same for top-k), amax_abs (abs() then amax(): two kernels and a temporary), ne_any
(ne(0).any(): a bool temporary), compiled_max_abs (torch.compile of abs().amax(), fused by Inductor into one
kernel), compiled_l2 (the same for the L2 norm), compiled_max_abs_autotuned (Inductor's max-autotune), triton_{max_abs,l2}_r*_w* (omnireduce.torch.triton_scan's kernel, a (rows, 32) tile per program, over a grid of tile heights and warps), library_block_scores (omnireduce.torch's block_scores, where importable). References: read_sum (x.sum(), a pure streaming read) and copy (y.copy_(x), bytes read + written).
Then the whole selection at 1% density: scan + nonzero + index_select + copy of the chosen blocks to pinned host
memory (time only). Timing: torch.cuda.Event around each call, L2 flushed (a 256 MiB read; --flush write: a memset) before each, warmup
calls first, the median of the repeats; on a GPU each variant is also timed
10 calls back to back between two events (hides the host's launch overhead on short kernels). This file needs only torch (it runs on a machine without this package).
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

import torch

LANES = 32
#: H200 SXM HBM3e, vendor datasheet: 4.8 TB/s.
DEFAULT_PEAK_GBPS = 4800.0
DENSITY = 0.01


def block_view(flat: torch.Tensor) -> torch.Tensor:
    return flat.view(-1, LANES)


def vector_norm_inf(flat: torch.Tensor) -> torch.Tensor:
    return torch.linalg.vector_norm(block_view(flat), ord=math.inf, dim=1)


def vector_norm_l2(flat: torch.Tensor) -> torch.Tensor:
    return torch.linalg.vector_norm(block_view(flat), ord=2, dim=1)


def amax_abs(flat: torch.Tensor) -> torch.Tensor:
    return block_view(flat).abs().amax(dim=1)


def ne_any(flat: torch.Tensor) -> torch.Tensor:
    return block_view(flat).ne(0).any(dim=1)


SCANS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "vector_norm_inf": vector_norm_inf,
    "vector_norm_l2": vector_norm_l2,
    "amax_abs": amax_abs,
    "ne_any": ne_any,
}

#: The same scans through torch.compile (Inductor fuses abs and the reduction into one Triton kernel).
COMPILED: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "compiled_max_abs": amax_abs,
    "compiled_l2": vector_norm_l2,
}


def library_scan() -> Callable[[torch.Tensor], torch.Tensor] | None:
    """omnireduce.torch's own scan (blocks.block_scores, compiled on CUDA), where the package can be imported."""
    try:
        from omnireduce.torch.blocks import Score, block_scores
    except ImportError:
        return None
    return lambda flat: block_scores(flat, Score.MAX_ABS)


#: (blocks per program, warps) of the hand-written kernel (omnireduce.torch.triton_scan, the library's CUDA scan).
TRITON_CONFIGS = ((32, 1), (32, 2), (64, 2), (64, 4), (128, 4), (128, 8), (256, 4), (256, 8), (512, 8))


def triton_module():
    """omnireduce.torch.triton_scan where the package and Triton are importable, else None."""
    try:
        from omnireduce.torch import triton_scan
    except ImportError:
        return None
    return triton_scan if triton_scan.available() else None


class Timer:
    """CUDA events on a GPU (the kernels' own time on the stream), perf_counter after a sync on the CPU.

    Before each lone call the L2 is flushed: by default by *reading* a 256 MiB buffer (L2 left full of clean lines of
    another tensor, as after unrelated work), or with `flush="write"` by a memset of it, which leaves the L2 full of
    dirty lines that the timed kernel must write back to HBM while it reads (about 60 MB of extra traffic, which
    weighs on a 100 MiB scan: the first version of this bench flushed that way).
    """

    def __init__(self, device: torch.device, flush: str = "read") -> None:
        self.cuda = device.type == "cuda"
        self.flush_mode = flush
        self.flush = torch.ones(256 << 18, dtype=torch.int32, device=device) if self.cuda else None

    def flush_l2(self) -> None:
        if self.flush is None:
            return
        if self.flush_mode == "write":
            self.flush.fill_(1)
        else:
            self.flush.sum(dtype=torch.int64)  # the result is not needed: the reads are

    def time_ms(self, call: Callable[[], object], warmup: int, repeats: int, inner: int = 1) -> list[float]:
        """Per-call times. inner > 1: `inner` calls back to back between two events and no L2 flush (hides the
        host's launch overhead, which a lone 0.05 ms kernel cannot); inner == 1: one call after an L2 flush."""
        for _ in range(warmup):
            call()
        times = []
        if inner > 1 and self.cuda:
            for _ in range(repeats):
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                start.record()
                for _ in range(inner):
                    call()
                end.record()
                end.synchronize()
                times.append(start.elapsed_time(end) / inner)
            return times
        for _ in range(repeats):
            self.flush_l2()  # evict the gradient from the 60 MB L2, so every read comes from HBM
            if self.cuda:
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                start.record()
                call()
                end.record()
                end.synchronize()
                times.append(start.elapsed_time(end))
            else:
                began = time.perf_counter()
                call()
                times.append((time.perf_counter() - began) * 1e3)
        return times


def sparse_gradient(values: int, device: torch.device, seed: int = 0) -> torch.Tensor:
    """`values` float32 zeros with DENSITY of the blocks filled with normal values."""
    generator = torch.Generator(device="cpu").manual_seed(seed)
    blocks = values // LANES
    chosen = torch.randperm(blocks, generator=generator)[: max(1, int(blocks * DENSITY))].to(device)
    flat = torch.zeros(values, dtype=torch.float32, device=device)
    block_view(flat)[chosen] = torch.randn(chosen.numel(), LANES, device=device)
    return flat


def select_and_copy(flat: torch.Tensor, pinned: torch.Tensor) -> int:
    """The hook's whole device side for natural sparsity: scan, pick, gather, copy the chosen blocks to the host."""
    indices = torch.nonzero(vector_norm_inf(flat)).reshape(-1)
    picked = block_view(flat).index_select(0, indices)
    host = pinned[: picked.numel()].view(-1, LANES)
    host.copy_(picked, non_blocking=True)
    return picked.numel()


class Report:
    def __init__(self, path: Path | None, header: dict[str, object]) -> None:
        self.path = path
        self.data: dict[str, object] = {**header, "results": []}

    def add(self, row: dict[str, object]) -> None:
        self.data["results"].append(row)  # type: ignore[union-attr]
        line = "  ".join(f"{key}={value:.4g}" if isinstance(value, float) else f"{key}={value}"
                         for key, value in row.items())
        print(line, flush=True)
        self.save()

    def save(self) -> None:
        if self.path is not None:
            self.path.write_text(json.dumps(self.data, indent=2) + "\n", encoding="utf-8")


def bench_size(size_bytes: int, device: torch.device, timer: Timer, report: Report, args: argparse.Namespace) -> None:
    values = size_bytes // 4 // LANES * LANES
    flat = sparse_gradient(values, device)
    read = values * 4
    peak = args.peak_gbps
    reference = ne_any(flat)

    def row(variant: str, times: list[float], moved: int, **extra: object) -> None:
        median = statistics.median(times)
        gbps = moved / (median * 1e-3) / 1e9
        report.add({"size_bytes": read, "variant": variant, "median_ms": median, "min_ms": min(times),
                    "bytes_counted": moved, "gbps": gbps, "pct_of_peak": 100.0 * gbps / peak, **extra})

    def measure(variant: str, call: Callable[[], object], moved: int, **extra: object) -> None:
        """Both timings of one variant: a lone call after an L2 flush, and the back-to-back per-call time."""
        row(variant, timer.time_ms(call, args.warmup, args.repeats), moved, timing="single_flushed", **extra)
        if device.type == "cuda":
            row(variant, timer.time_ms(call, args.warmup, args.repeats, inner=args.inner), moved,
                timing=f"batched_{args.inner}", **extra)

    measure("read_sum", lambda: flat.sum(), read)
    copy_target = torch.empty_like(flat)
    measure("copy", lambda: copy_target.copy_(flat), 2 * read, note="bytes read + written")
    del copy_target
    scans = dict(SCANS)
    library = library_scan()
    if library is not None:
        scans["library_block_scores"] = library
    for name, scan in scans.items():
        try:
            agrees = bool(torch.equal(scan(flat) != 0, reference))
            measure(name, lambda: scan(flat), read, mask_matches=agrees)
        except Exception as error:  # noqa: BLE001 -- one broken variant must not cost the others
            report.add({"size_bytes": read, "variant": name, "error": repr(error)[:500]})
    compiled_variants = {} if args.no_compile else {
        "compiled_max_abs": (amax_abs, None), "compiled_l2": (vector_norm_l2, None),
        "compiled_max_abs_autotuned": (amax_abs, "max-autotune-no-cudagraphs")}
    for name, (scan, mode) in compiled_variants.items():
        began = time.perf_counter()
        try:
            compiled = torch.compile(scan, dynamic=False, mode=mode)
            agrees = bool(torch.equal(compiled(flat) != 0, reference))
            compile_s = time.perf_counter() - began
            measure(name, lambda: compiled(flat), read, mask_matches=agrees, compile_s=compile_s)
        except Exception as error:  # noqa: BLE001 -- a compiler missing on the machine is a result, not a crash
            report.add({"size_bytes": read, "variant": name, "error": repr(error)[:500]})
    kernels = triton_module() if device.type == "cuda" and not args.no_triton else None
    if kernels is not None:
        blocks_view = block_view(flat)
        out = torch.empty(values // LANES, dtype=torch.float32, device=device)
        for squares, kind in ((False, "max_abs"), (True, "l2")):
            for rows, warps in TRITON_CONFIGS if not squares else ((kernels.DEFAULT_ROWS, kernels.DEFAULT_WARPS),):
                name = f"triton_{kind}_r{rows}_w{warps}"
                try:
                    def call(rows=rows, warps=warps, squares=squares):
                        return kernels.block_scores(blocks_view, squares, rows, warps, out)
                    agrees = bool(torch.equal(call() != 0, reference))
                    measure(name, call, read, mask_matches=agrees)
                except Exception as error:  # noqa: BLE001
                    report.add({"size_bytes": read, "variant": name, "error": repr(error)[:500]})
        del out
    pinned = torch.empty(values, dtype=torch.float32, pin_memory=device.type == "cuda")
    chosen = select_and_copy(flat, pinned)
    times = timer.time_ms(lambda: select_and_copy(flat, pinned), args.warmup, args.repeats)
    row("select_and_copy_1pct", times, read, chosen_values=chosen, timing="single_flushed",
        note="scan + nonzero + index_select + D2H of the chosen blocks; gbps counts the gradient read once")
    del flat, pinned
    if device.type == "cuda":
        torch.cuda.empty_cache()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda", help="cuda (default) or cpu (a smoke test)")
    parser.add_argument("--sizes-mb", type=float, nargs="+", default=[100.0, 1024.0],
                        help="gradient sizes in MiB of float32 (default: 100 MiB and 1024 MiB = 1 GiB)")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--peak-gbps", type=float, default=DEFAULT_PEAK_GBPS,
                        help=f"the memory's peak bandwidth, GB/s (default {DEFAULT_PEAK_GBPS:g}: H200 HBM3e)")
    parser.add_argument("--no-compile", action="store_true", help="skip the torch.compile variants")
    parser.add_argument("--no-triton", action="store_true", help="skip the hand-written Triton kernels")
    parser.add_argument("--flush", choices=("read", "write"), default="read",
                        help="how the L2 is flushed before a lone call: read a 256 MiB buffer (default), or write it")
    parser.add_argument("--inner", type=int, default=10, help="calls per event pair in the batched timing")
    parser.add_argument("--json", type=Path, help="write the results here (rewritten after every measurement)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("no CUDA device; use --device cpu for a smoke test", file=sys.stderr)
        return 2
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    header = {"device": name, "torch": torch.__version__, "peak_gbps": args.peak_gbps, "density": DENSITY,
              "warmup": args.warmup, "repeats": args.repeats,
              "flush": args.flush}
    print(json.dumps(header), flush=True)
    report = Report(args.json, header)
    timer = Timer(device, args.flush)
    for size_mb in args.sizes_mb:
        bench_size(int(size_mb * (1 << 20)), device, timer, report, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
