# Run: /work/main/.venv/bin/pytest tests/testbed/test_verify.py -q
"""Result checks: exact int32, float32 within the protocol's fixed-point bound, workers agreeing."""

from __future__ import annotations

import numpy as np

from omnireduce.testbed.inputs import InputSpec, make_inputs
from omnireduce.testbed.verify import check_result, fixed_point_shift, results_agree


def quantised_allreduce(inputs: list[np.ndarray]) -> np.ndarray:
    """What a correct switch and agents produce (docs/protocol.md section 5), computed here independently."""
    shift = fixed_point_shift(inputs)
    total = sum(np.rint(np.ldexp(tensor.astype(np.float64), shift)).astype(np.int64) for tensor in inputs)
    assert np.all(np.abs(total) < 2**31)
    return np.ldexp(total.astype(np.float64), -shift).astype(np.float32)


def test_int32_exact_sum_passes_and_one_wrong_value_fails():
    inputs = make_inputs(InputSpec(workers=3, size=1000, density=0.3, dtype="int32", seed=5))
    exact = np.sum(np.stack(inputs).astype(np.int64), axis=0).astype(np.int32)
    assert check_result(exact, inputs).ok
    wrong = exact.copy()
    wrong[123] += 1
    verdict = check_result(wrong, inputs)
    assert not verdict.ok
    assert "index 123" in verdict.message


def test_float32_fixed_point_result_is_within_bound():
    inputs = make_inputs(InputSpec(workers=8, size=5000, density=0.2, dtype="float32", seed=3))
    result = quantised_allreduce(inputs)
    verdict = check_result(result, inputs)
    assert verdict.ok, verdict.message
    assert 0 < verdict.max_error <= verdict.bound


def test_float32_error_beyond_bound_fails():
    inputs = make_inputs(InputSpec(workers=4, size=2000, density=0.5, dtype="float32", seed=4))
    result = quantised_allreduce(inputs)
    shift = fixed_point_shift(inputs)
    result[7] += np.float32(4 * 4 * 2.0 ** -(shift + 1)) + np.float32(1e-3)
    verdict = check_result(result, inputs)
    assert not verdict.ok and "index 7" in verdict.message


def test_wrong_shape_dtype_and_nan_fail():
    inputs = make_inputs(InputSpec(workers=2, size=100, density=1.0, dtype="float32", seed=0))
    assert not check_result(np.zeros(99, dtype=np.float32), inputs).ok
    assert not check_result(np.zeros(100, dtype=np.int32), inputs).ok
    with_nan = quantised_allreduce(inputs)
    with_nan[0] = np.nan
    assert "NaN" in check_result(with_nan, inputs).message


def test_all_zero_inputs_need_an_exact_zero():
    inputs = [np.zeros(64, dtype=np.float32)] * 3
    assert check_result(np.zeros(64, dtype=np.float32), inputs).ok
    assert not check_result(np.full(64, 1e-30, dtype=np.float32), inputs).ok


def test_results_agree():
    a = np.arange(10, dtype=np.float32)
    assert results_agree([a, a.copy()]) == ""
    b = a.copy()
    b[3] = -1
    assert "worker 1" in results_agree([a, b])
