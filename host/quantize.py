"""Values on the wire: int32 lanes, float32 as fixed point with a scale the job agrees on (docs/protocol.md section 5).

Each worker claims an exponent ``e_w = E_w + EXPONENT_BIAS`` with ``max|x| < 2^E_w``; the switch returns the max,
``E``. A float32 tensor is then sent as ``round(x * 2^s)`` with ``s = 30 - E - ceil(log2 W)``, so no partial or
full sum of W workers' values exceeds 2^30 in magnitude; every value's rounding error is at most ``2^-(s+1)``.
An int32 tensor is sent unchanged, after a check that W of them cannot overflow.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from omnireduce.p4src import constants as C

from . import native
from .blocks import block_count

from .errors import InputError, OverflowRisk
from .lanes import BlockLanes
from .wire import LANE_DTYPE

#: Exponent claims travel in an 8-bit field.
EXPONENT_FIELD_MAX = 0xFF
#: Headroom of the fixed-point format: sums stay within 2^30 < 2^31.
SUM_BITS = 30
INT32_MAX = 2**31 - 1
#: Shifts whose power of two is a normal float32 (the fast path of quantize multiplies by it).
FLOAT32_MIN_EXPONENT = -126
FLOAT32_MAX_EXPONENT = 127
SUPPORTED_DTYPES = (np.dtype(np.float32), np.dtype(np.int32))


def check_dtype(values: np.ndarray) -> None:
    """Refuse a dtype the protocol cannot carry (a mistake in the call, raised before anything is sent)."""
    if values.dtype not in SUPPORTED_DTYPES:
        hint = "float32" if values.dtype.kind in "fc" else "int32"
        raise InputError(f"dtype {values.dtype} is not supported: the switch adds float32 or int32 values; convert "
                         f"the tensor first, e.g. values.astype(numpy.{hint})")


def describe_non_finite(values: np.ndarray) -> str | None:
    """What makes a float tensor's values unfit for fixed point (how many NaN and Inf, the first one), or None.

    The agent does not raise this itself: it announces it in the scale round so that the whole job refuses alike.
    """
    if values.dtype.kind != "f" or not values.size:
        return None
    # max/min propagate NaN and show Inf, without a temporary the size of the tensor.
    if np.isfinite(values.max()) and np.isfinite(values.min()):
        return None
    flat = values.reshape(-1)
    nans = int(np.count_nonzero(np.isnan(flat)))
    infs = int(np.count_nonzero(np.isinf(flat)))
    first = int(np.flatnonzero(~np.isfinite(flat))[0])
    return (f"tensor holds {nans + infs} NaN/Inf value(s) ({nans} NaN, {infs} Inf), first at flat index {first} "
            f"({flat[first]})")


@dataclass(frozen=True, slots=True)
class FloatScan:
    """What one pass over a float32 tensor tells before it is quantized: candidates, per block of LANES values,
    whether any bit is set (-0.0 counts; the last block may be partial); magnitude, max |x| (Inf or NaN where the
    tensor holds one); finite, whether every value is."""

    candidates: np.ndarray
    magnitude: float
    finite: bool


#: Bits of float32 +Inf: a magnitude's bits at or above it are an Inf or a NaN.
_INF_BITS = 0x7F800000


def scan_float32(values: np.ndarray) -> FloatScan:
    """FloatScan of a float32 tensor: one pass in C (host/exchange.c) where it builds, else three with numpy."""
    flat = np.ascontiguousarray(values.reshape(-1), dtype=np.float32)
    count = block_count(flat.size)
    words = flat.view(np.uint32)
    module = native.available()
    if module is not None:
        candidates = np.empty(count, dtype=np.bool_)
        ffi = module.ffi
        bits = module.lib.orx_scan_f32(ffi.from_buffer("uint32_t[]", words), flat.size,
                                       ffi.from_buffer("uint8_t[]", candidates))
        return FloatScan(candidates, float(np.uint32(bits).view(np.float32)), bits < _INF_BITS)
    candidates = candidate_blocks(words)
    if not flat.size:
        return FloatScan(candidates, 0.0, True)
    highest, lowest = flat.max(), flat.min()  # max/min propagate NaN and show Inf
    finite = bool(np.isfinite(highest) and np.isfinite(lowest))
    return FloatScan(candidates, float(max(highest, -lowest)) if finite else math.inf, finite)


def candidate_blocks(words: np.ndarray) -> np.ndarray:
    """Per block of LANES of these 32-bit words (a float32 tensor's bits; the last block may be partial), whether
    any bit is set: one OR over the raw bits, cheaper than a float comparison (-0.0 just counts as a candidate)."""
    count = block_count(words.size)
    full = words.size // C.LANES
    candidates = np.zeros(count, dtype=bool)
    candidates[:full] = np.bitwise_or.reduce(words[:full * C.LANES].reshape(full, C.LANES), axis=1) != 0
    if full < count:
        candidates[full] = bool(np.any(words[full * C.LANES:]))
    return candidates


def check_values(values: np.ndarray) -> None:
    """Both checks at once, raising InputError: for callers outside a job (bench/bench_agent.py times them)."""
    check_dtype(values)
    problem = describe_non_finite(values)
    if problem is not None:
        raise InputError(problem)


def largest_magnitude(values: np.ndarray) -> float | int:
    """max |x| over the tensor (a Python int for int32, so |-2^31| does not wrap)."""
    if values.size == 0:
        return 0
    if values.dtype.kind == "i":
        return max(int(values.max()), -int(values.min()))
    return float(max(values.max(), -values.min()))


def exponent_claim(values: np.ndarray, magnitude: float | int | None = None) -> int:
    """This worker's biased exponent claim e_w for the scale round, in [0, 255].

    float32: E_w = floor(log2 max|x|) + 1 (so max|x| < 2^E_w), e_w = 0 for an all-zero tensor.
    int32: E_w = bit length of max|x|. magnitude: max|x| where already known (FloatScan), else computed.
    """
    if magnitude is None:
        magnitude = largest_magnitude(values)
    if values.dtype.kind == "i":
        unbiased = int(magnitude).bit_length()
    elif magnitude == 0:
        return 0
    else:
        # frexp: magnitude = m * 2^e with 0.5 <= m < 1, hence floor(log2 magnitude) + 1 = e, exactly.
        unbiased = int(np.frexp(magnitude)[1])
    return min(max(unbiased + C.EXPONENT_BIAS, 0), EXPONENT_FIELD_MAX)


def ceil_log2(count: int) -> int:
    return (count - 1).bit_length()


def scale_shift(agreed_exponent: int, workers: int) -> int:
    """s = 30 - E - ceil(log2 W), E the unbiased agreed exponent: values travel as round(x * 2^s)."""
    return SUM_BITS - (agreed_exponent - C.EXPONENT_BIAS) - ceil_log2(workers)


def check_int_sum(agreed_exponent: int, workers: int) -> None:
    """Refuse an int32 all-reduce whose sum could overflow: W * 2^E > 2^31 - 1 (conservative by at most 2x)."""
    unbiased = agreed_exponent - C.EXPONENT_BIAS
    if unbiased > 0 and workers * 2**unbiased > INT32_MAX:
        raise OverflowRisk(
            f"int32 sum of {workers} workers could overflow: the largest magnitude in the job is below 2^{unbiased} "
            f"and {workers} * 2^{unbiased} > 2^31 - 1; the all-reduce was refused by every worker of the job"
        )


def quantize(values: np.ndarray, shift: int, length: int | None = None) -> np.ndarray:
    """round(x * 2^shift) as big-endian int32 lanes (round half to even), zero-padded to `length` values.

    Scaling by a power of two only moves the exponent, so it is exact (a result below 2^-126 may lose bits, but it
    rounds to 0 anyway), and rint of a float32 is exact: no float64 temporary is needed. The result is in wire
    byte order so that packets copy lanes without converting them.
    """
    flat = values.reshape(-1)
    total = flat.size if length is None else length
    scaled = np.empty(total, dtype=np.float32)
    head = scaled[: flat.size]
    if FLOAT32_MIN_EXPONENT <= shift <= FLOAT32_MAX_EXPONENT:
        np.multiply(flat, np.float32(2.0**shift), out=head)  # a little faster than ldexp
    else:
        np.ldexp(flat.astype(np.float32, copy=False), shift, out=head)
    scaled[flat.size:] = 0
    np.rint(scaled, out=scaled)
    return scaled.astype(LANE_DTYPE)


def quantize_blocks(values: np.ndarray, shift: int, length: int,
                    candidates: np.ndarray | None = None) -> tuple[BlockLanes, np.ndarray]:
    """quantize(values, shift, length) by block, and the mask of its non-zero blocks, touching only the blocks
    that hold a non-zero bit.

    A sparse tensor is mostly zero blocks, which quantize to zero lanes: they are found with one OR over the raw
    bits (cheaper than a float comparison, and -0.0 just counts as a candidate), and only the candidates are
    scaled, rounded and byte-swapped (the byte-swapping cast alone costs more than everything else over a dense
    100 MB tensor). Where at most half the blocks are candidates, only theirs are stored (BlockLanes.compact: no
    page of a tensor-sized buffer to fault in); the other blocks read the zero row. The same lanes
    (BlockLanes.tensor()) and mask as quantize() followed by nonzero_blocks(). candidates: FloatScan.candidates of
    `values`, where already known.
    """
    flat = np.ascontiguousarray(values.reshape(-1), dtype=np.float32)
    count = length // C.LANES
    full = flat.size // C.LANES
    scanned = candidates if candidates is not None else candidate_blocks(flat.view(np.uint32))
    candidates = np.zeros(count, dtype=bool)  # `length` may pad the tensor with whole zero blocks
    candidates[:len(scanned)] = scanned
    chosen = np.flatnonzero(candidates)
    module = native.available()
    compiled = module is not None and FLOAT32_MIN_EXPONENT <= shift <= FLOAT32_MAX_EXPONENT
    dense = len(chosen) * 2 > count
    if dense and not compiled:  # numpy's gather and scatter would cost more than they save
        lanes = quantize(flat, shift, length)
        return BlockLanes.tensor_sized(lanes), lanes.reshape(count, C.LANES).any(axis=1)
    significant = np.zeros(count, dtype=bool)
    if dense:
        lanes = BlockLanes.tensor_sized(np.zeros(length, dtype=LANE_DTYPE))
    else:
        lanes = BlockLanes.compact(count, chosen)
    if not len(chosen):
        return lanes, significant
    if compiled:  # one pass over the chosen blocks, however many, with no temporaries
        blocks = chosen.astype(np.int64, copy=False)
        ffi = module.ffi
        # Tensor-sized: block b's row is b; compact: blocks[k]'s row is 1 + k (after the zero row).
        rows = lanes.rows if dense else lanes.rows[1:]
        module.lib.orx_quantize_f32(ffi.from_buffer("float[]", flat), flat.size, ffi.from_buffer("int64_t[]", blocks),
                                    len(blocks), 2.0**shift, ffi.from_buffer("uint8_t[]", rows), int(dense),
                                    ffi.from_buffer("uint8_t[]", significant))
        return lanes, significant
    padded = np.zeros((len(chosen), C.LANES), dtype=np.float32)
    whole = chosen[chosen < full]
    padded[:len(whole)] = flat[:full * C.LANES].reshape(full, C.LANES)[whole]
    if len(whole) < len(chosen):  # the last, partial block
        tail = flat[full * C.LANES:]
        padded[-1, :tail.size] = tail
    quantized = quantize(padded, shift).reshape(len(chosen), C.LANES)
    lanes.rows[1:] = quantized
    significant[chosen] = quantized.any(axis=1)
    return lanes, significant


def int_lanes(values: np.ndarray, length: int | None = None) -> np.ndarray:
    """int32 values as big-endian lanes, zero-padded to `length` values."""
    flat = values.reshape(-1)
    lanes = np.empty(flat.size if length is None else length, dtype=LANE_DTYPE)
    lanes[: flat.size] = flat
    lanes[flat.size:] = 0
    return lanes


def dequantize(sums: np.ndarray, shift: int, out: np.ndarray | None = None) -> np.ndarray:
    """sum * 2^-shift as float32 (sums: int32 in either byte order), rounded once: through float64, which holds
    any int32 exactly. Written into `out` (float32, same size) when given."""
    wide = np.ldexp(sums.astype(np.float64), -shift)
    if out is None:
        return wide.astype(np.float32)
    np.copyto(out, wide.reshape(out.shape), casting="same_kind")
    return out


def from_wire_in_place(out: np.ndarray, shift: int | None, blocks: np.ndarray) -> np.ndarray:
    """Turn the all-reduce's sums, received into `out`'s own bytes, into `out`'s values, in place.

    out: float32 or int32, flat, contiguous, a whole number of blocks; its bytes hold big-endian int32 sums in
    `blocks` (sorted block indices: the blocks that received a result) and anything elsewhere: every other block is
    written zero (0.0 or 0), so the buffer need not be cleared before the sums arrive. shift: the float32 scale
    (dequantize's), None for int32. The same values as dequantize() (float32) or a byte-order conversion (int32) of
    the sums, with zero sums everywhere else, would give.
    """
    count = out.size // C.LANES
    blocks = np.ascontiguousarray(blocks, dtype=np.int64)
    module = native.available()
    if module is not None:  # one pass from start to end: zero the gaps, convert the blocks
        ffi = module.ffi
        module.lib.orx_from_wire(ffi.from_buffer("uint8_t[]", out), count, ffi.from_buffer("int64_t[]", blocks),
                                 len(blocks), shift is not None, shift if shift is not None else 0)
        return out
    by_block = out.reshape(count, C.LANES)
    sums = by_block.view(LANE_DTYPE)
    rows = sums[blocks]  # gathered before the gaps are cleared: a copy
    received = np.zeros(count, dtype=bool)
    received[blocks] = True
    if len(blocks) * 2 > count:
        sums[~received] = 0
        wide = dequantize(sums, shift) if shift is not None else sums.astype(np.int32)  # a copy, then written back
        np.copyto(out, wide.reshape(-1), casting="same_kind")
        return out
    by_block[~received] = 0
    by_block[blocks] = dequantize(rows, shift) if shift is not None else rows.astype(np.int32)
    return out


def error_bound(agreed_exponent: int, workers: int) -> float:
    """Largest difference between the all-reduced float32 result and the exact sum, before float32 rounding.

    Every value is rounded by at most 2^-(s+1); the sum of W of them by W 2^-(s+1) (section 5).
    """
    return workers * 2.0 ** -(scale_shift(agreed_exponent, workers) + 1)
