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
    return padded.reshape(-1)[: spec.size].copy()


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


def nonzero_block_mask(tensor: np.ndarray) -> np.ndarray:
    """Which LANES-value blocks of `tensor` hold a non-zero value (the last block zero-padded)."""
    blocks = block_count(tensor.size)
    padded = np.zeros(blocks * constants.LANES, dtype=tensor.dtype)
    padded[: tensor.size] = tensor.reshape(-1)
    return padded.reshape(blocks, constants.LANES).any(axis=1)
