"""Blocks of a flat gradient on its own device: score them, pick the ones to send, copy only those to the host, and
write the job's result back.

A bucket of n values is cut into the protocol's blocks of LANES (32) values: a (n // 32, 32) view of the tensor
itself (no copy) and, when n is not a multiple of 32, one short tail block. Every step is a torch op on the
tensor's device, so on a GPU the whole tensor is read once (the score), and only the chosen blocks cross PCIe;
on the CPU the same code runs unchanged.
"""

from __future__ import annotations

import enum
import logging
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from omnireduce.p4src import constants as C

log = logging.getLogger(__name__)

LANES = C.LANES


class Score(enum.Enum):
    """How a block is measured. MAX_ABS: its largest magnitude (0 exactly when the block is all zeros; what natural
    sparsity and the threshold use). L2: its Euclidean norm (what top-k ranks by)."""

    MAX_ABS = "max_abs"
    L2 = "l2"


def full_block_count(length: int) -> int:
    return length // LANES


def block_count(length: int) -> int:
    return -(-length // LANES)


def _max_abs_scores(blocks: torch.Tensor) -> torch.Tensor:
    # The expression bench/bench_gpu_scan.py measured as compiled_max_abs; NaN propagates through amax.
    return blocks.abs().amax(dim=1).to(torch.float32)


def _l2_scores(blocks: torch.Tensor) -> torch.Tensor:
    return torch.linalg.vector_norm(blocks, ord=2, dim=1, dtype=torch.float32)


_EAGER_SCANS = {Score.MAX_ABS: _max_abs_scores, Score.L2: _l2_scores}


class ScanKind(enum.Enum):
    """How a CUDA tensor's blocks are scored, fastest first; a kind that fails once is not tried again."""

    TRITON = "triton kernel (omnireduce.torch.triton_scan)"
    COMPILED = "torch.compile"
    EAGER = "eager torch"


_compiled_scans: dict[Score, Callable[[torch.Tensor], torch.Tensor]] = {}
_failed_kinds: dict[ScanKind, str] = {}


def _triton_scan(score: Score) -> Callable[[torch.Tensor], torch.Tensor]:
    from omnireduce.torch import triton_scan

    if not triton_scan.available():
        raise RuntimeError("Triton is not installed")
    squares = score is Score.L2
    return lambda view: triton_scan.block_scores(view, squares)


def _compiled_scan(score: Score) -> Callable[[torch.Tensor], torch.Tensor]:
    compiled = _compiled_scans.get(score)
    if compiled is None:
        # NOTE: dynamic=False. A kernel compiled for symbolic sizes ran at 35% of HBM bandwidth on an H200 where
        # the static one ran at 85% (1 GiB); DDP has few distinct bucket sizes, each compiled once (past
        # torch._dynamo's cache limit of 8 sizes, new sizes run eager).
        compiled = torch.compile(_EAGER_SCANS[score], dynamic=False)
        _compiled_scans[score] = compiled
    return compiled


_SCAN_BUILDERS: dict[ScanKind, Callable[[Score], Callable[[torch.Tensor], torch.Tensor]]] = {
    ScanKind.TRITON: _triton_scan,
    ScanKind.COMPILED: _compiled_scan,
    ScanKind.EAGER: lambda score: _EAGER_SCANS[score],
}


def _give_up(kind: ScanKind, error: BaseException) -> None:
    _failed_kinds[kind] = f"{type(error).__name__}: {error}"
    log.warning("omnireduce: block scan by %s failed, using a slower one from now on: %s", kind.value,
                _failed_kinds[kind])


def _scan_blocks(view: torch.Tensor, score: Score) -> torch.Tensor:
    """Scores of a contiguous (n, 32) view by the fastest scan that works on its device.

    NOTE: on a GPU, PyTorch's own reduction over a (n/32, 32) view reaches only about 11% of an H200's HBM bandwidth
    (its reduction kernel is built for long rows, not millions of 32-value ones); torch.compile's fused kernel and
    our Triton kernel read a 1 GiB gradient at about 85% of the H200's 4.8 TB/s, as fast as torch's own sum() of
    it, and the Triton kernel is the faster one on a 100 MiB gradient (bench/bench_gpu_scan.py,
    docs/performance.md). So CUDA tensors go through the Triton kernel, then torch.compile, then eager torch, each
    tried only while it has never failed (each failure is logged once). On the CPU eager is as good.
    """
    if view.device.type != "cuda":
        return _EAGER_SCANS[score](view)
    for kind in ScanKind:
        if kind in _failed_kinds:
            continue
        try:
            return _SCAN_BUILDERS[kind](score)(view)
        except Exception as error:  # noqa: BLE001 -- no Triton, no compiler, a kernel that fails: the next kind
            if kind is ScanKind.EAGER:
                raise
            _give_up(kind, error)
    raise AssertionError("unreachable: eager torch is always tried")


def block_scores(flat: torch.Tensor, score: Score) -> torch.Tensor:
    """One float32 score per block (the tail block, if any, last), computed on the tensor's device.

    One reduction over the (n/32, 32) view: it reads every value once and writes one value per 32. NaN in a block
    gives a NaN score; callers keep such blocks so that the agent sees the NaN and the whole job refuses the bucket.
    """
    _check_flat(flat)
    full = full_block_count(flat.numel())
    main = _scan_blocks(flat[: full * LANES].view(full, LANES), score)
    if full * LANES == flat.numel():
        return main
    tail = _EAGER_SCANS[score](flat[full * LANES:].reshape(1, -1))
    return torch.cat([main, tail])


def _check_flat(flat: torch.Tensor) -> None:
    if flat.dim() != 1 or not flat.is_contiguous():
        raise ValueError(f"expected a flat contiguous tensor, got shape {tuple(flat.shape)}")


def nonzero_block_indices(scores: torch.Tensor) -> torch.Tensor:
    """Indices (int64, ascending, on the scores' device) of blocks with any non-zero value; NaN counts as non-zero."""
    return torch.nonzero(scores != 0).reshape(-1)


def blocks_above(scores: torch.Tensor, threshold: float) -> torch.Tensor:
    """Indices of blocks whose score is above `threshold` (NaN scores included, see block_scores)."""
    return torch.nonzero(~(scores <= threshold)).reshape(-1)


def top_blocks(scores: torch.Tensor, fraction: float) -> torch.Tensor:
    """Indices (ascending) of the ceil(fraction * blocks) highest-scoring blocks, leaving out all-zero ones.

    torch.topk ranks NaN above every number, so a NaN block is always kept.
    """
    count = scores.numel()
    keep = min(count, max(1, int(np.ceil(fraction * count))))
    chosen = torch.topk(scores, keep, sorted=False).indices
    chosen = chosen[scores[chosen] != 0]
    return torch.sort(chosen).values


@dataclass(frozen=True, slots=True)
class HostBlocks:
    """A bucket's chosen blocks scattered into a zeroed host array of the bucket's length, ready for the agent.

    indices: the chosen block indices (host, int64); copied_bytes: what crossed from the device to the host.
    """

    values: np.ndarray
    indices: np.ndarray
    copied_bytes: int


def copy_blocks_to_host(flat: torch.Tensor, indices: torch.Tensor) -> HostBlocks:
    """Gather the blocks `indices` of `flat` on its device, copy only them to the host, scatter them into zeros."""
    _check_flat(flat)
    length = flat.numel()
    full = full_block_count(length)
    host_indices = indices.to("cpu", torch.int64).numpy()
    values = np.zeros(block_count(length) * LANES, dtype=np.float32)
    host_blocks = values.reshape(-1, LANES)
    has_tail = full < block_count(length) and host_indices.size > 0 and host_indices[-1] == full
    main_indices = indices[:-1] if has_tail else indices
    main = flat[: full * LANES].view(full, LANES)
    picked = main.index_select(0, main_indices.to(flat.device)).to("cpu", torch.float32)
    copied = picked.numel() * picked.element_size() + host_indices.nbytes
    host_blocks[host_indices[: main_indices.numel()]] = picked.numpy()
    if has_tail:
        tail = flat[full * LANES:].to("cpu", torch.float32)
        values[full * LANES: length] = tail.numpy()
        copied += tail.numel() * tail.element_size()
    return HostBlocks(values[:length], host_indices, copied)


def copy_result_to_device(result: np.ndarray, out: torch.Tensor, divisor: int) -> int:
    """Write `result / divisor` (host, float32 or int32, out's length) into `out` on its device, copying only the
    result's non-zero blocks; every other value of `out` becomes zero. Returns the bytes copied to the device."""
    _check_flat(out)
    length = out.numel()
    if result.shape != (length,):
        raise ValueError(f"result has shape {result.shape}, out has {length} values")
    padded = np.zeros(block_count(length) * LANES, dtype=result.dtype)
    padded[:length] = result
    blocks = padded.reshape(-1, LANES)
    indices = np.flatnonzero(np.any(blocks != 0, axis=1))
    # Divide only the blocks that travel: exact for a power-of-two divisor, as DDP's own (divide, then sum) is.
    picked = torch.from_numpy(blocks[indices].astype(np.float32, copy=False) / np.float32(divisor))
    out.zero_()
    full = full_block_count(length)
    in_main = int(np.searchsorted(indices, full))
    device_picked = picked.to(out.device, out.dtype)
    main = out[: full * LANES].view(full, LANES)
    main.index_copy_(0, torch.from_numpy(indices[:in_main]).to(out.device), device_picked[:in_main])
    if in_main < indices.size:
        out[full * LANES:] = device_picked[in_main, : length - full * LANES]
    return picked.numel() * picked.element_size() + indices.nbytes


def zero_blocks(flat: torch.Tensor, indices: torch.Tensor) -> None:
    """Set the blocks `indices` of `flat` to zero, in place (the error-feedback residual keeps what was not sent)."""
    _check_flat(flat)
    length = flat.numel()
    full = full_block_count(length)
    main_indices = indices[indices < full]
    flat[: full * LANES].view(full, LANES).index_fill_(0, main_indices, 0)
    if main_indices.numel() < indices.numel():
        flat[full * LANES:] = 0
