"""Synthetic inputs for a testbed run: one sparse tensor per worker, reproducible from the run's seed.

Sparsity is by block, as OmniReduce sees it: each LANES-value block of a worker's tensor is non-zero with
probability `density`, independently per worker, so the union of the workers' non-zero blocks (what the switch
aggregates) is denser than any one worker's. The runner keeps every input, so the result can be checked against
numpy's sum.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from omnireduce.p4src import constants

SUPPORTED_DTYPES = ("float32", "int32")
# int32 inputs stay within +-INT_RANGE so that no sum of MAX_WORKERS of them comes near 2^31 (the agent refuses an
# all-reduce whose sum could overflow, docs/protocol.md section 5).
INT_RANGE = 1000


@dataclass(frozen=True, slots=True)
class InputSpec:
    """What to generate for one job: `workers` tensors of `size` elements of `dtype`, `density` of blocks non-zero."""

    workers: int
    size: int
    density: float
    dtype: str
    seed: int
    job_index: int = 0

    def __post_init__(self) -> None:
        if self.workers < 1:
            raise ValueError(f"need at least one worker, got {self.workers}")
        if self.size < 1:
            raise ValueError(f"tensor size must be at least 1 element, got {self.size}")
        if not 0.0 <= self.density <= 1.0:
            raise ValueError(f"density must be in [0, 1], got {self.density}")
        if self.dtype not in SUPPORTED_DTYPES:
            raise ValueError(f"dtype must be one of {', '.join(SUPPORTED_DTYPES)}, got {self.dtype!r}")


def block_count(size: int) -> int:
    return -(-size // constants.LANES)


def make_input(spec: InputSpec, worker: int) -> np.ndarray:
    """Worker `worker`'s tensor: a fresh generator per (seed, job, worker), so each one is reproducible alone."""
    rng = np.random.default_rng([spec.seed, spec.job_index, worker])
    blocks = block_count(spec.size)
    nonzero = rng.random(blocks) < spec.density
    padded = np.zeros((blocks, constants.LANES), dtype=spec.dtype)
    chosen = int(np.count_nonzero(nonzero))
    if spec.dtype == "float32":
        padded[nonzero] = rng.standard_normal((chosen, constants.LANES), dtype=np.float32)
    else:
        padded[nonzero] = rng.integers(-INT_RANGE, INT_RANGE + 1, size=(chosen, constants.LANES), dtype=np.int32)
    flat = padded.reshape(-1)
    # A copy only where the last block is cut short (a 100 MB copy costs the run most of a second for nothing).
    return flat if flat.size == spec.size else flat[: spec.size].copy()


def make_inputs(spec: InputSpec) -> list[np.ndarray]:
    return [make_input(spec, worker) for worker in range(spec.workers)]


def save_inputs(tensors: list[np.ndarray], directory: Path, prefix: str) -> list[Path]:
    """Write each tensor as `<directory>/<prefix>w<i>.npy`; returns the paths in worker order."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for worker, tensor in enumerate(tensors):
        path = directory / f"{prefix}w{worker}.npy"
        np.save(path, tensor, allow_pickle=False)
        paths.append(path)
    return paths


#: Blocks tested at a time by nonzero_block_mask: its temporaries stay a few MB, where a whole 100 MB tensor's
#: padded copy and comparison cost fresh memory the size of the tensor (slow to fault in on a VM) at every call.
MASK_CHUNK_BLOCKS = 1 << 15


def nonzero_block_mask(tensor: np.ndarray) -> np.ndarray:
    """Which LANES-value blocks of `tensor` hold a non-zero value (the last block zero-padded)."""
    flat = tensor.reshape(-1)
    blocks = block_count(flat.size)
    mask = np.empty(blocks, dtype=bool)
    full = flat.size // constants.LANES
    rows = flat[: full * constants.LANES].reshape(full, constants.LANES)
    for start in range(0, full, MASK_CHUNK_BLOCKS):
        stop = min(start + MASK_CHUNK_BLOCKS, full)
        np.any(rows[start:stop], axis=1, out=mask[start:stop])
    if full < blocks:
        mask[full] = bool(np.any(flat[full * constants.LANES:]))
    return mask
