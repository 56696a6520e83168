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


@pytest.mark.parametrize("size", [32 * 100, 32 * 100 + 5, 7])
def test_block_mask_over_chunks_matches_a_padded_copy(monkeypatch, size):
    """nonzero_block_mask works a chunk of blocks at a time: the same mask as testing a zero-padded copy whole, for
    a short last block, negative zero (zero) and NaN (non-zero)."""
    from omnireduce.testbed import inputs

    monkeypatch.setattr(inputs, "MASK_CHUNK_BLOCKS", 8)
    rng = np.random.default_rng(3)
    tensor = np.where(rng.random(size) < 0.02, rng.standard_normal(size), 0.0).astype(np.float32)
    tensor[min(40, size - 1)] = -0.0
    tensor[size // 2] = np.nan
    tensor[-1] = 1.5  # the last (maybe short) block is non-zero
    blocks = -(-size // constants.LANES)
    padded = np.zeros(blocks * constants.LANES, dtype=np.float32)
    padded[:size] = tensor
    expected = (padded.reshape(blocks, constants.LANES) != 0).any(axis=1)
    assert np.array_equal(nonzero_block_mask(tensor), expected)
    assert nonzero_block_mask(tensor)[-1] and nonzero_block_mask(tensor)[(size // 2) // constants.LANES]
