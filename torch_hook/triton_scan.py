"""The block scan on a CUDA GPU as one hand-written Triton kernel: one score per 32-value block.

Why a kernel of our own: the scan reads every byte of every gradient bucket, so it is memory-bound and the only
question is how close it gets to the HBM's bandwidth. PyTorch's eager reduction over millions of 32-value rows
reaches about 11% of an H200's; torch.compile's fused kernel reaches 85% on a 1 GiB gradient but about 63% on a
100 MiB one, where the kernel is short and how the reads are issued matters (bench/bench_gpu_scan.py measures all of
them side by side). This kernel reads its tile with `evict_first` (the gradient is read once and must not push the
scores or the next bucket out of L2) and lets the caller choose the tile height and warps per program.

Triton ships with PyTorch's CUDA wheels; where it is missing, `available()` is False and the caller uses torch.
"""

from __future__ import annotations

import torch

try:
    import triton
    import triton.language as tl
except ImportError:  # a CPU-only torch, or a CUDA torch without Triton
    triton = None

LANES = 32


def available() -> bool:
    return triton is not None


#: The tile (blocks per program) and warps the library uses: the fastest of bench_gpu_scan's grid on an H200 for
#: 100 MiB and 1 GiB gradients (docs/performance.md, GPU scan).
DEFAULT_ROWS = 32
DEFAULT_WARPS = 2

if triton is not None:

    @triton.jit
    def _block_scores_kernel(x_ptr, out_ptr, blocks, ROWS: tl.constexpr, LANES_: tl.constexpr,
                             SQUARES: tl.constexpr):
        # int64 offsets: a gradient of more than 2**31 values (8 GiB of float32) is a valid bucket.
        rows = tl.program_id(0).to(tl.int64) * ROWS + tl.arange(0, ROWS)
        inside = rows < blocks
        tile = tl.load(x_ptr + rows[:, None] * LANES_ + tl.arange(0, LANES_)[None, :], mask=inside[:, None],
                       other=0.0, eviction_policy="evict_first").to(tl.float32)
        if SQUARES:
            scores = tl.sqrt(tl.sum(tile * tile, axis=1))
        else:
            # max(|x|) propagates NaN as torch's amax does: a NaN block must score NaN (the hook keeps such blocks).
            # (Triton's max, like fmaxf, would skip it.)
            scores = tl.max(tl.abs(tile), axis=1)
            has_nan = tl.max((tile != tile).to(tl.int32), axis=1) > 0
            scores = tl.where(has_nan, float("nan"), scores)
        tl.store(out_ptr + rows, scores, mask=inside)


def block_scores(blocks: torch.Tensor, squares: bool, rows: int = DEFAULT_ROWS, warps: int = DEFAULT_WARPS,
                 out: torch.Tensor | None = None) -> torch.Tensor:
    """Scores of a contiguous (n, 32) CUDA tensor: max |x| per row, or the L2 norm when `squares`. float32 out."""
    if triton is None:
        raise RuntimeError("Triton is not installed")
    if blocks.dim() != 2 or blocks.shape[1] != LANES or not blocks.is_contiguous() or not blocks.is_cuda:
        raise ValueError(f"expected a contiguous (n, {LANES}) CUDA tensor, got {tuple(blocks.shape)} "
                         f"on {blocks.device}")
    count = blocks.shape[0]
    if out is None:
        out = torch.empty(count, dtype=torch.float32, device=blocks.device)
    if count:
        _block_scores_kernel[(triton.cdiv(count, rows),)](blocks, out, count, ROWS=rows, LANES_=LANES,
                                                          SQUARES=squares, num_warps=warps)
    return out
