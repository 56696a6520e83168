"""Reproducible sparse tensors for demos, benchmarks and checks.

Worker w of a run with seed s draws from ``default_rng([s, w])``, so any worker can regenerate every other
worker's tensor and verify the all-reduce on its own (``omnireduce-agent --synthetic ... --verify``).
"""

from __future__ import annotations

import numpy as np

from omnireduce.p4src import constants as C

#: int32 synthetic values lie in [-INT_RANGE, INT_RANGE], far from overflow for any worker count.
INT_RANGE = 1000


def synthetic_tensor(count: int, density: float, seed: int, worker_id: int, dtype: str = "float32") -> np.ndarray:
    """`count` values in which about a fraction `density` of the LANES-value blocks is non-zero.

    float32 values are standard normal, int32 values uniform in [-INT_RANGE, INT_RANGE] (a non-zero block may
    still hold zero values).
    """
    if not 0.0 <= density <= 1.0:
        raise ValueError(f"density must be in [0, 1], got {density}")
    if dtype not in ("float32", "int32"):
        raise ValueError(f"dtype must be float32 or int32, got {dtype}")
    rng = np.random.default_rng([seed, worker_id])
    blocks = -(-count // C.LANES)
    keep = rng.random(blocks) < density
    if dtype == "float32":
        values = rng.standard_normal(blocks * C.LANES, dtype=np.float32)
    else:
        values = rng.integers(-INT_RANGE, INT_RANGE, size=blocks * C.LANES, endpoint=True, dtype=np.int32)
    values.reshape(blocks, C.LANES)[~keep] = 0
    return values[:count]


def synthetic_sum(count: int, density: float, seed: int, workers: int, dtype: str = "float32") -> np.ndarray:
    """The exact sum over `workers` workers' synthetic tensors (float64 for float32, int64 for int32)."""
    wide = np.float64 if dtype == "float32" else np.int64
    total = np.zeros(count, dtype=wide)
    for worker in range(workers):
        total += synthetic_tensor(count, density, seed, worker, dtype)
    return total
