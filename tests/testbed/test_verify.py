# Run: /work/main/.venv/bin/pytest tests/testbed/test_verify.py -q
"""Result checks: exact int32, float32 within the protocol's fixed-point bound, workers agreeing."""

from __future__ import annotations

import numpy as np

from omnireduce.testbed.inputs import InputSpec, make_inputs
from omnireduce.testbed import verify
from omnireduce.testbed.verify import check_result, check_results, fixed_point_shift, results_agree


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



def test_every_result_checked_in_one_pass_over_chunks(monkeypatch):
    """check_results walks the tensors in chunks: findings in later chunks, first indices and counts across chunks,
    and each result's own verdict, as check_result gives it one tensor at a time."""
    monkeypatch.setattr(verify, "CHUNK_ELEMENTS", 64)
    inputs = make_inputs(InputSpec(workers=4, size=1000, density=0.4, dtype="float32", seed=9))
    good = quantised_allreduce(inputs)
    bad = good.copy()
    bad[[700, 130, 999]] += np.float32(1.0)  # three chunks; the first reported is the lowest index
    nan = good.copy()
    nan[500] = np.nan
    nan[2] += np.float32(1.0)  # off in an earlier chunk, but NaN anywhere decides the verdict
    results = [good, bad, np.zeros(999, dtype=np.float32), nan, np.zeros(1000, dtype=np.int32)]
    verdicts = check_results(results, inputs)
    assert verdicts[0].ok and 0 < verdicts[0].max_error <= verdicts[0].bound
    assert not verdicts[1].ok and verdicts[1].message.startswith("3 of 1000 elements")
    assert "index 130" in verdicts[1].message
    assert verdicts[1].max_error >= 1.0 - 1e-3
    assert "shape" in verdicts[2].message and "NaN" in verdicts[3].message and "index 500" in verdicts[3].message
    assert "dtype" in verdicts[4].message
    monkeypatch.setattr(verify, "CHUNK_ELEMENTS", 1 << 20)
    assert check_results(results, inputs) == verdicts  # the chunk size changes nothing
    ints = make_inputs(InputSpec(workers=3, size=500, density=0.5, dtype="int32", seed=2))
    exact = np.sum(np.stack(ints).astype(np.int64), axis=0).astype(np.int32)
    off = exact.copy()
    off[[499, 250]] += [3, -5]
    monkeypatch.setattr(verify, "CHUNK_ELEMENTS", 64)
    good_int, off_int = check_results([exact, off], ints)
    assert good_int.ok and not off_int.ok and off_int.max_error == 5.0
    assert off_int.message.startswith("2 of 500 elements") and "index 250" in off_int.message


def test_results_agree_bit_for_bit():
    a = np.array([0.0, 1.0, np.nan], dtype=np.float32)
    negative_zero = a.copy()
    negative_zero[0] = -0.0  # equal as a number, not as bits: two workers that differ so did not see the same RESULTs
    assert "worker 1" in results_agree([a, negative_zero])
    assert results_agree([a, a.copy()]) == ""  # NaN equals itself bit for bit
    assert "worker 1" in results_agree([a, a.astype(np.float64)])
