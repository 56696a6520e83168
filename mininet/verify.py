"""Checking an all-reduce result against numpy's sum of the inputs.

int32 results must be exact. float32 results travel as fixed point with a shared scale (docs/protocol.md section 5):
with `E = max_w E_w`, `E_w = floor(log2 max|x_w|) + 1`, and `s = 30 - E - ceil(log2 W)`, every value is rounded by
at most 2^-(s+1), so the integer sum is within `W 2^-(s+1)` of the exact sum; converting it back to float32 adds at
most half an ulp of the result. The bound is computed here from the protocol, independently of the agent's code.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

# Fixed-point headroom of docs/protocol.md section 5: sums stay below 2^30.
SUM_BITS = 30
# float32 has a 24-bit significand: rounding to it moves a value by at most 2^-24 of its magnitude.
FLOAT32_HALF_ULP = 2.0**-24


@dataclass(frozen=True, slots=True)
class Verdict:
    """How one worker's result compares with the expected sum."""

    ok: bool
    max_error: float  # largest |result - exact| over the elements (0 for an exact match)
    bound: float  # the largest error allowed for the worst element (0 for int32)
    message: str  # empty when ok


def exponent_of(tensor: np.ndarray) -> int | None:
    """E_w = floor(log2 max|x|) + 1, so max|x| < 2^E_w; None for an all-zero (or empty) tensor."""
    if tensor.size == 0:
        return None
    magnitude = float(np.max(np.abs(tensor.astype(np.float64))))
    if magnitude == 0.0:
        return None
    return math.frexp(magnitude)[1]


def fixed_point_shift(inputs: Sequence[np.ndarray]) -> int | None:
    """The scale shift s every worker uses for these inputs (None when every input is zero)."""
    exponents = [exponent for exponent in map(exponent_of, inputs) if exponent is not None]
    if not exponents:
        return None
    workers = len(inputs)
    return SUM_BITS - max(exponents) - (workers - 1).bit_length()


def expected_sum(inputs: Sequence[np.ndarray]) -> np.ndarray:
    """The exact sum: int64 for integers (no wrap), float64 for floats (exact enough: see `float32_bounds`)."""
    wide = np.int64 if inputs[0].dtype.kind == "i" else np.float64
    total = np.zeros(inputs[0].shape, dtype=wide)
    for tensor in inputs:
        total += tensor.astype(wide)
    return total


def float32_bounds(inputs: Sequence[np.ndarray], exact: np.ndarray) -> np.ndarray:
    """Per element, the largest difference allowed between a float32 all-reduce result and `exact`."""
    shift = fixed_point_shift(inputs)
    quantisation = 0.0 if shift is None else len(inputs) * 2.0 ** -(shift + 1)
    # The float64 reference sum of W float32 values is itself off by at most W 2^-53 of the magnitudes' sum.
    reference = len(inputs) * 2.0**-53 * sum(np.abs(tensor.astype(np.float64)) for tensor in inputs)
    return quantisation + np.abs(exact) * FLOAT32_HALF_ULP + reference


def check_result(result: np.ndarray, inputs: Sequence[np.ndarray]) -> Verdict:
    """Compare one worker's all-reduce result with the sum of `inputs` (the job's workers' tensors, in order)."""
    if not inputs:
        raise ValueError("no inputs to compare with")
    reference = inputs[0]
    if result.dtype != reference.dtype:
        return Verdict(False, math.inf, 0.0, f"result dtype {result.dtype}, expected {reference.dtype}")
    if result.shape != reference.shape:
        return Verdict(False, math.inf, 0.0, f"result shape {result.shape}, expected {reference.shape}")
    exact = expected_sum(inputs)
    if reference.dtype.kind == "i":
        wrong = np.flatnonzero(result.astype(np.int64) != exact)
        if wrong.size:
            first = int(wrong[0])
            return Verdict(False, float(np.max(np.abs(result.astype(np.int64) - exact))), 0.0,
                           f"{wrong.size} of {result.size} elements differ from the exact int32 sum; first at index "
                           f"{first}: got {int(result[first])}, expected {int(exact[first])}")
        return Verdict(True, 0.0, 0.0, "")
    if not np.all(np.isfinite(result)):
        bad = int(np.flatnonzero(~np.isfinite(result))[0])
        return Verdict(False, math.inf, 0.0, f"result holds NaN/Inf, first at index {bad} ({result[bad]})")
    error = np.abs(result.astype(np.float64) - exact)
    bounds = float32_bounds(inputs, exact)
    over = np.flatnonzero(error > bounds)
    max_error = float(error.max()) if error.size else 0.0
    worst_bound = float(bounds.max()) if bounds.size else 0.0
    if over.size:
        first = int(over[0])
        return Verdict(False, max_error, worst_bound,
                       f"{over.size} of {result.size} elements are off by more than the protocol's bound; first at "
                       f"index {first}: got {float(result[first])!r}, expected {float(exact[first])!r} "
                       f"(error {float(error[first]):.3g} > bound {float(bounds[first]):.3g})")
    return Verdict(True, max_error, worst_bound, "")


def results_agree(results: Sequence[np.ndarray]) -> str:
    """'' when every worker holds bit-identical results (they all received the same RESULT packets), else why not."""
    first = results[0]
    for worker, result in enumerate(results[1:], start=1):
        if result.shape != first.shape or result.dtype != first.dtype or result.tobytes() != first.tobytes():
            return f"worker {worker}'s result differs from worker 0's"
    return ""
