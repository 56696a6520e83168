# Run: .venv/bin/pytest tests/host/test_quantize.py
"""Fixed point with a shared scale (docs/protocol.md section 5): claims, shift, error bound, no overflow."""

import math

import numpy as np
import pytest

from omnireduce.host.errors import InputError, OverflowRisk
from omnireduce.host.quantize import (
    ceil_log2,
    check_dtype,
    check_int_sum,
    check_values,
    dequantize,
    quantize_blocks,
    describe_non_finite,
    error_bound,
    exponent_claim,
    from_wire_in_place,
    quantize,
    scale_shift,
)
from omnireduce.host.blocks import nonzero_blocks
from omnireduce.host.wire import LANE_DTYPE
from omnireduce.p4src import constants as C
from omnireduce.p4src.constants import EXPONENT_BIAS as BIAS


@pytest.mark.parametrize(
    "values, unbiased",
    [
        ([1.0], 1),            # 1 < 2^1
        ([0.75, -0.1], 0),     # 0.75 < 2^0
        ([-4.0], 3),           # exactly a power of two needs the next exponent
        ([3.9999], 2),
        ([1e-3], -9),          # 2^-10 <= 1e-3 < 2^-9
        ([3.0e38], 128),
    ],
)
def test_float_exponent_claim(values, unbiased):
    claim = exponent_claim(np.array(values, dtype=np.float32))
    assert claim == unbiased + BIAS
    assert np.max(np.abs(values)) < 2.0 ** (claim - BIAS)


def test_float_claim_of_zero_is_zero_and_tiny_values_clamp_to_zero():
    assert exponent_claim(np.zeros(5, dtype=np.float32)) == 0
    assert exponent_claim(np.array([1e-45], dtype=np.float32)) == 0  # 2^-149 would be -148 + 127 < 0


@pytest.mark.parametrize("values, unbiased", [([0], 0), ([5, -1], 3), ([-8], 4), ([-(2**31)], 32), ([2**31 - 1], 31)])
def test_int_exponent_claim_is_the_bit_length(values, unbiased):
    assert exponent_claim(np.array(values, dtype=np.int32)) == unbiased + BIAS


def test_shift_follows_the_formula():
    assert ceil_log2(1) == 0 and ceil_log2(2) == 1 and ceil_log2(3) == 2 and ceil_log2(8) == 3 and ceil_log2(9) == 4
    assert scale_shift(BIAS + 1, 8) == 30 - 1 - 3
    assert scale_shift(0, 1) == 30 + BIAS  # all-zero job


@pytest.mark.parametrize("workers", [1, 2, 3, 8, 32])
@pytest.mark.parametrize("magnitude", [1e-6, 1.0, 3.5e3, 1e30])
def test_quantised_sums_stay_within_the_error_bound_and_never_overflow(workers, magnitude):
    rng = np.random.default_rng(workers)
    tensors = [(rng.standard_normal(4096) * magnitude).astype(np.float32) for _ in range(workers)]
    tensors[0][7] = magnitude * 3  # a value that sets the largest exponent
    agreed = max(exponent_claim(t) for t in tensors)
    shift = scale_shift(agreed, workers)
    quantised = [quantize(t, shift) for t in tensors]
    # Every partial sum, in any order the switch may add them, fits in 31 bits: check the worst case.
    assert sum(np.abs(q.astype(np.int64)) for q in quantised).max() <= 2**30
    total = np.sum(np.array(quantised, dtype=np.int64), axis=0).astype(np.int32)
    result = dequantize(total, shift)
    exact = np.sum(np.array(tensors, dtype=np.float64), axis=0)
    bound = error_bound(agreed, workers)
    # section 5: within W 2^-(s+1) before the final float32 rounding (half an ulp of the result).
    assert np.all(np.abs(result - exact) <= bound + np.abs(exact) * 2.0**-24)
    # ... and that bound is at most 2 W^2 2^-31 of the job's largest magnitude.
    assert bound <= 2 * workers**2 * 2.0**-31 * 2.0 ** (agreed - BIAS)


def test_quantize_rounds_to_nearest():
    values = np.array([0.5, 1.5, -2.5, 0.25, 1.0 / 3], dtype=np.float32)
    assert quantize(values, 0).tolist() == [0, 2, -2, 0, 0]  # half to even
    assert quantize(values, 2).tolist() == [2, 6, -10, 1, 1]


def test_dequantize_rounds_once():
    assert dequantize(np.array([3, -1, 2**30], dtype=np.int32), 2).tolist() == [0.75, -0.25, 2.0**28]


def test_int_overflow_check_is_the_protocol_rule():
    check_int_sum(BIAS + 28, 4)  # 4 * 2^28 = 2^30 <= 2^31 - 1
    check_int_sum(BIAS + 29, 3)  # 3 * 2^29 < 2^31 - 1
    with pytest.raises(OverflowRisk, match="could overflow"):
        check_int_sum(BIAS + 29, 4)  # 4 * 2^29 = 2^31
    with pytest.raises(OverflowRisk):
        check_int_sum(BIAS + 31, 1)


def test_check_dtype_refuses_other_dtypes():
    check_dtype(np.zeros(3, dtype=np.float32))
    check_dtype(np.zeros(3, dtype=np.int32))
    with pytest.raises(InputError, match="float64 is not supported"):
        check_dtype(np.zeros(3))
    with pytest.raises(InputError, match="int64"):
        check_dtype(np.zeros(3, dtype=np.int64))


def test_non_finite_values_are_described_with_their_counts():
    assert describe_non_finite(np.zeros(3, dtype=np.float32)) is None
    assert describe_non_finite(np.zeros(0, dtype=np.float32)) is None
    assert describe_non_finite(np.array([2**31 - 1], dtype=np.int32)) is None
    values = np.array([[1, 2, np.nan], [np.inf, np.nan, -np.inf]], dtype=np.float32)
    assert describe_non_finite(values) == ("tensor holds 4 NaN/Inf value(s) (2 NaN, 2 Inf), first at flat index 2 "
                                           "(nan)")
    assert "(0 NaN, 1 Inf), first at flat index 0 (-inf)" in describe_non_finite(np.array([-np.inf], np.float32))


def test_check_values_raises_both_checks():
    check_values(np.zeros(3, dtype=np.float32))
    with pytest.raises(InputError, match="NaN/Inf.*index 2"):
        check_values(np.array([1, 2, np.nan], dtype=np.float32))
    with pytest.raises(InputError, match="float64 is not supported"):
        check_values(np.zeros(3))


@pytest.mark.parametrize("dtype", [np.float32, np.int32])
# sparse: only those blocks; dense: one pass; none; every one
@pytest.mark.parametrize("result_blocks", [[1, 4], [0, 1, 2, 4, 5], [], [0, 1, 2, 3, 4, 5]])
def test_from_wire_in_place_gives_what_converting_all_the_sums_gives(dtype, result_blocks, kernels):
    rng = np.random.default_rng(len(result_blocks))
    sums = np.zeros(C.LANES * 6, dtype=LANE_DTYPE)
    for block in result_blocks:
        sums[block * C.LANES:(block + 1) * C.LANES] = rng.integers(-2**30, 2**30, C.LANES)
    # The blocks that received no result hold whatever the buffer held (here: garbage bits, NaNs among them).
    out = np.frombuffer(rng.integers(0, 256, sums.size * 4, dtype=np.uint8).tobytes(), dtype=dtype).copy()
    received = np.zeros(6, dtype=bool)
    received[result_blocks] = True
    out.view(LANE_DTYPE).reshape(6, C.LANES)[received] = sums.reshape(6, C.LANES)[received]
    from_wire_in_place(out, 9 if dtype is np.float32 else None, np.array(result_blocks, dtype=np.int64))
    expected = dequantize(sums, 9) if dtype is np.float32 else sums.astype(np.int32)
    assert out.dtype == dtype and out.tobytes() == expected.tobytes()


@pytest.mark.parametrize("size, blocks, density", [(C.LANES * 40, 40, 0.05), (C.LANES * 40 + 7, 41, 0.05),
                                                   (C.LANES * 3 + 1, 16, 0.05), (C.LANES * 40 + 7, 41, 0.5),
                                                   (C.LANES * 400 + 7, 401, 0.001)])
def test_quantize_blocks_gives_what_quantize_and_the_block_scan_give(size, blocks, density, kernels):
    rng = np.random.default_rng(size)
    values = np.where(rng.random(size) < density, rng.standard_normal(size), 0).astype(np.float32)
    values[3] = -0.0
    values[size // 2] = 1e-30  # rounds to zero: its block is not significant (unless it holds another value)
    values[5], values[6], values[7] = 2.5 / 4096, -3.5 / 4096, 0.5 / 4096  # ties: round half to even
    expected = quantize(values, 12, blocks * C.LANES)
    from omnireduce.host.quantize import scan_float32

    for candidates in (None, scan_float32(values).candidates):
        lanes, significant = quantize_blocks(values, 12, blocks * C.LANES, candidates)
        # Sparse tensors keep only the candidates' rows (and the zero row); dense ones are laid out tensor-sized.
        dense = np.count_nonzero(scan_float32(values).candidates) * 2 > blocks
        assert (lanes.row_of is None) == dense
        assert lanes.count == blocks and lanes.gather(np.arange(blocks)).tobytes() == expected.tobytes()
        assert lanes.tensor().dtype == expected.dtype and lanes.tensor().tobytes() == expected.tobytes()
        assert significant.tolist() == nonzero_blocks(expected.reshape(blocks, C.LANES)).tolist()


@pytest.mark.parametrize("size", [C.LANES * 5, C.LANES * 5 + 7, 3])
@pytest.mark.parametrize("special", [None, "nan", "inf", "-inf", "-0.0", "tiny"])
def test_scan_float32_finds_the_blocks_the_magnitude_and_non_finite_values(size, special, kernels):
    from omnireduce.host.quantize import scan_float32

    rng = np.random.default_rng(size)
    values = np.where(rng.random(size) < 0.3, rng.standard_normal(size) * 100, 0).astype(np.float32)
    last = size - 1
    values[last] = {None: values[last], "nan": np.nan, "inf": np.inf, "-inf": -np.inf, "-0.0": -0.0,
                    "tiny": 1e-44}[special]
    scan = scan_float32(values)
    padded = np.zeros(-(-size // C.LANES) * C.LANES, dtype=np.float32)
    padded[:size] = values
    assert scan.candidates.tolist() == (padded.view(np.uint32).reshape(-1, C.LANES) != 0).any(axis=1).tolist()
    assert scan.finite == bool(np.isfinite(values).all())
    if scan.finite:
        assert scan.magnitude == float(np.abs(values).max())
        assert exponent_claim(values, scan.magnitude) == exponent_claim(values)
    else:
        assert not math.isfinite(scan.magnitude)
