# Run: /work/main/.venv/bin/pytest tests/testbed/test_inputs.py -q
"""Synthetic inputs: block sparsity, reproducibility, value ranges."""

from __future__ import annotations

import numpy as np
import pytest

from omnireduce.p4src import constants
from omnireduce.testbed.inputs import INT_RANGE, InputSpec, make_input, nonzero_block_mask


def test_density_is_per_block_and_reproducible():
    spec = InputSpec(workers=2, size=32 * 4000 + 7, density=0.1, dtype="float32", seed=11)
    first = make_input(spec, 0)
    assert first.shape == (spec.size,) and first.dtype == np.float32
    mask = nonzero_block_mask(first)
    assert mask.size == 4001
    assert 0.07 < mask.mean() < 0.13
    # A non-zero block is non-zero in every lane (normal values are never exactly 0 in practice).
    blocks = np.zeros(4001 * constants.LANES, dtype=np.float32)
    blocks[: first.size] = first
    full = blocks.reshape(-1, constants.LANES)[mask[:-1].nonzero()[0]]
    assert np.count_nonzero(full) > 0.99 * full.size
    assert np.array_equal(first, make_input(spec, 0))
    assert not np.array_equal(first, make_input(spec, 1))


def test_int32_inputs_stay_in_range():
    spec = InputSpec(workers=1, size=10000, density=0.5, dtype="int32", seed=1)
    values = make_input(spec, 0)
    assert values.dtype == np.int32
    assert np.abs(values).max() <= INT_RANGE


@pytest.mark.parametrize("kwargs", [dict(workers=0), dict(size=0), dict(density=1.5), dict(dtype="float64")])
def test_bad_specs_are_refused(kwargs):
    base = dict(workers=2, size=10, density=0.5, dtype="float32", seed=0)
    with pytest.raises(ValueError):
        InputSpec(**{**base, **kwargs})
