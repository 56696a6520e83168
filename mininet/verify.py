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


#: Elements checked at a time: the sums and bounds of a chunk live in a few MB that stay in cache, where whole-tensor
#: float64 temporaries of a 100 MB all-reduce cost seconds of page faults (20 s for 4 workers on a 2-core VM).
CHUNK_ELEMENTS = 1 << 20


def exponent_of(tensor: np.ndarray) -> int | None:
    """E_w = floor(log2 max|x|) + 1, so max|x| < 2^E_w; None for an all-zero (or empty) tensor."""
    if tensor.size == 0:
        return None
    # max and min are exact in the tensor's own type: no float64 copy of the tensor for one number. NaN and
    # infinities propagate (frexp gives them exponent 0, as the float64 copy did).
    magnitude = max(abs(float(tensor.max())), abs(float(tensor.min())))
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
        np.add(total, tensor, out=total)
    return total


def float32_bounds(inputs: Sequence[np.ndarray], exact: np.ndarray, shift: int | None = None) -> np.ndarray:
    """Per element, the largest difference allowed between a float32 all-reduce result and `exact`; `shift` is
    fixed_point_shift(inputs), of the whole tensors (pass it when `inputs` are chunks of them)."""
    if shift is None:
        shift = fixed_point_shift(inputs)
    quantisation = 0.0 if shift is None else len(inputs) * 2.0 ** -(shift + 1)
    # The float64 reference sum of W float32 values is itself off by at most W 2^-53 of the magnitudes' sum.
    magnitudes = np.zeros(exact.shape, dtype=np.float64)
    for tensor in inputs:
        np.add(magnitudes, np.abs(tensor), out=magnitudes)
    magnitudes *= len(inputs) * 2.0**-53
    bounds = np.abs(exact)
    bounds *= FLOAT32_HALF_ULP
    bounds += magnitudes
    bounds += quantisation
    return bounds


@dataclass(slots=True)
class _Tally:
    """One result's findings so far, over the chunks checked."""

    wrong: int = 0  # elements off (int32: any difference; float32: beyond the bound)
    first: int = -1  # the first such element: index, got, expected, error, bound
    got: float = 0.0
    expected: float = 0.0
    error: float = 0.0
    bound: float = 0.0
    max_error: float = 0.0
    worst_bound: float = 0.0
    nonfinite: int = -1  # the first NaN/Inf element of a float result

    def verdict(self, result: np.ndarray, integer: bool) -> Verdict:
        if integer:
            if self.wrong:
                return Verdict(False, self.max_error, 0.0,
                               f"{self.wrong} of {result.size} elements differ from the exact int32 sum; first at "
                               f"index {self.first}: got {int(self.got)}, expected {int(self.expected)}")
            return Verdict(True, 0.0, 0.0, "")
        if self.nonfinite >= 0:
            return Verdict(False, math.inf, 0.0,
                           f"result holds NaN/Inf, first at index {self.nonfinite} ({result[self.nonfinite]})")
        if self.wrong:
            return Verdict(False, self.max_error, self.worst_bound,
                           f"{self.wrong} of {result.size} elements are off by more than the protocol's bound; first "
                           f"at index {self.first}: got {self.got!r}, expected {self.expected!r} "
                           f"(error {self.error:.3g} > bound {self.bound:.3g})")
        return Verdict(True, self.max_error, self.worst_bound, "")


def check_results(results: Sequence[np.ndarray], inputs: Sequence[np.ndarray]) -> list[Verdict]:
    """Compare each worker's all-reduce result with the sum of `inputs` (the job's workers' tensors, in order),
    in one pass over the inputs: each chunk's sum and bounds are computed once for every result."""
    if not inputs:
        raise ValueError("no inputs to compare with")
    reference = inputs[0]
    verdicts: list[Verdict | None] = []
    for result in results:
        if result.dtype != reference.dtype:
            verdicts.append(Verdict(False, math.inf, 0.0, f"result dtype {result.dtype}, expected {reference.dtype}"))
        elif result.shape != reference.shape:
            verdicts.append(Verdict(False, math.inf, 0.0, f"result shape {result.shape}, expected {reference.shape}"))
        else:
            verdicts.append(None)
    checked = [index for index, verdict in enumerate(verdicts) if verdict is None]
    if not checked:
        return verdicts
    integer = reference.dtype.kind == "i"
    shift = None if integer else fixed_point_shift(inputs)
    flat_inputs = [tensor.reshape(-1) for tensor in inputs]
    flat_results = {index: results[index].reshape(-1) for index in checked}
    tallies = {index: _Tally() for index in checked}
    for start in range(0, reference.size, CHUNK_ELEMENTS):
        stop = min(start + CHUNK_ELEMENTS, reference.size)
        chunk = [tensor[start:stop] for tensor in flat_inputs]
        exact = expected_sum(chunk)
        bounds = None if integer else float32_bounds(chunk, exact, shift)
        for index in checked:
            _tally_chunk(tallies[index], flat_results[index][start:stop], exact, bounds, start)
    for index in checked:
        verdicts[index] = tallies[index].verdict(results[index], integer)
    return verdicts


def _tally_chunk(tally: _Tally, result: np.ndarray, exact: np.ndarray, bounds: np.ndarray | None,
                 offset: int) -> None:
    if bounds is None:
        wrong = np.flatnonzero(result != exact)
        if wrong.size:
            if not tally.wrong:
                first = int(wrong[0])
                tally.first, tally.got, tally.expected = offset + first, int(result[first]), int(exact[first])
            tally.wrong += int(wrong.size)
            tally.max_error = max(tally.max_error, float(np.max(np.abs(result[wrong] - exact[wrong]))))
        return
    if tally.nonfinite >= 0:
        return  # the verdict is already NaN/Inf
    finite = np.isfinite(result)
    if not finite.all():
        tally.nonfinite = offset + int(np.flatnonzero(~finite)[0])
        return
    error = np.subtract(result, exact, dtype=np.float64)
    np.abs(error, out=error)
    if error.size:
        tally.max_error = max(tally.max_error, float(error.max()))
        tally.worst_bound = max(tally.worst_bound, float(bounds.max()))
    over = np.flatnonzero(error > bounds)
    if over.size:
        if not tally.wrong:
            first = int(over[0])
            tally.first, tally.got, tally.expected = offset + first, float(result[first]), float(exact[first])
            tally.error, tally.bound = float(error[first]), float(bounds[first])
        tally.wrong += int(over.size)


def check_result(result: np.ndarray, inputs: Sequence[np.ndarray]) -> Verdict:
    """Compare one worker's all-reduce result with the sum of `inputs` (the job's workers' tensors, in order)."""
    return check_results([result], inputs)[0]


def results_agree(results: Sequence[np.ndarray]) -> str:
    """'' when every worker holds bit-identical results (they all received the same RESULT packets), else why not."""
    first = results[0]
    for worker, result in enumerate(results[1:], start=1):
        # Bit for bit: NaN payloads and signed zeros included.
        if result.shape != first.shape or result.dtype != first.dtype or not _same_bits(result, first):
            return f"worker {worker}'s result differs from worker 0's"
    return ""


def _same_bits(first: np.ndarray, second: np.ndarray) -> bool:
    """Bit for bit, a chunk at a time (no bytes copy or tensor-sized comparison of 100 MB results)."""
    first_bytes = np.ascontiguousarray(first).reshape(-1).view(np.uint8)
    second_bytes = np.ascontiguousarray(second).reshape(-1).view(np.uint8)
    if first_bytes.size != second_bytes.size:
        return False
    step = CHUNK_ELEMENTS * 4
    return all(np.array_equal(first_bytes[start:start + step], second_bytes[start:start + step])
               for start in range(0, first_bytes.size, step))
