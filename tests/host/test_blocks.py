# Run: .venv/bin/pytest tests/host/test_blocks.py
"""Block scanning: send masks and next-block hints (docs/protocol.md section 1)."""

import numpy as np
import pytest

from omnireduce.host.blocks import (
    as_blocks,
    block_count,
    blocks_above,
    next_in_column,
    nonzero_blocks,
    plan_blocks,
)
from omnireduce.p4src.constants import END_OF_TENSOR as END
from omnireduce.p4src.constants import LANES

#: Every test here runs with the compiled kernels and with numpy's (tests/host/conftest.py).
pytestmark = pytest.mark.usefixtures("kernels")


def reference_next(send: np.ndarray, slots: int) -> list[int]:
    """The definition, one block at a time."""
    out = []
    for b in range(send.size):
        later = [c for c in range(b + slots, send.size, slots) if send[c]]
        out.append(later[0] if later else END)
    return out


def test_next_in_column_on_a_crafted_mask():
    # 10 blocks over 3 slots: columns {0,3,6,9}, {1,4,7}, {2,5,8}.
    send = np.zeros(10, dtype=bool)
    send[[0, 1, 2, 6, 5, 9]] = True
    assert next_in_column(send, 3).tolist() == [6, END, 5, 6, END, END, 9, END, END, END]


def test_next_in_column_single_slot_and_all_sent():
    assert next_in_column(np.array([True, False, True, True]), 1).tolist() == [2, 2, 3, END]
    assert next_in_column(np.ones(5, dtype=bool), 2).tolist() == [2, 3, 4, END, END]


def test_next_in_column_empty_and_all_zero():
    assert next_in_column(np.zeros(0, dtype=bool), 4).tolist() == []
    assert next_in_column(np.zeros(7, dtype=bool), 4).tolist() == [END] * 7


@pytest.mark.parametrize("slots", [1, 2, 5, 64])
@pytest.mark.parametrize("density", [0.0, 0.05, 0.5, 1.0])
def test_next_in_column_matches_the_definition(slots, density):
    rng = np.random.default_rng(slots * 100 + int(density * 100))
    send = rng.random(301) < density
    result = next_in_column(send, slots)
    assert result.dtype == np.uint32
    assert result.tolist() == reference_next(send, slots)


def test_as_blocks_pads_with_zeros_and_keeps_views_when_aligned():
    values = np.arange(1, 2 * LANES + 4, dtype=np.int32)
    blocks = as_blocks(values)
    assert blocks.shape == (3, LANES)
    assert blocks[2, :3].tolist() == [2 * LANES + 1, 2 * LANES + 2, 2 * LANES + 3]
    assert not blocks[2, 3:].any()
    aligned = np.ones(2 * LANES, dtype=np.float32)
    assert np.shares_memory(as_blocks(aligned), aligned)
    assert as_blocks(aligned, 4).shape == (4, LANES)
    assert block_count(0) == 0 and block_count(1) == 1 and block_count(LANES) == 1 and block_count(LANES + 1) == 2


def test_nonzero_blocks_sees_a_single_value_and_ignores_negative_zero():
    blocks = np.zeros((4, LANES), dtype=np.float32)
    blocks[1, 31] = 1e-30
    blocks[2, 0] = -0.0
    blocks[3, 5] = -2
    assert nonzero_blocks(blocks).tolist() == [False, True, False, True]


def test_blocks_above_threshold_uses_magnitude_and_handles_int32_minimum():
    blocks = np.zeros((3, LANES), dtype=np.int32)
    blocks[0, 0] = -5
    blocks[1, 0] = 3
    blocks[2, 0] = np.iinfo(np.int32).min
    assert blocks_above(blocks, 4).tolist() == [True, False, True]
    floats = np.zeros((2, LANES), dtype=np.float32)
    floats[0, 3] = -0.25
    floats[1, 3] = 0.5
    assert blocks_above(floats, 0.25).tolist() == [False, True]


def test_plan_sends_the_first_round_densely_then_only_significant_blocks():
    significant = np.zeros(9, dtype=bool)
    significant[[4, 8]] = True
    plan = plan_blocks(significant, 3)
    assert plan.columns == 3
    assert np.flatnonzero(plan.send).tolist() == [0, 1, 2, 4, 8]
    assert plan.next_block[[0, 1, 2, 4, 8]].tolist() == [END, 4, 8, END, END]
    assert plan.blocks_to_send == 5


def test_plan_dense_sends_every_block_with_next_b_plus_s():
    plan = plan_blocks(np.zeros(7, dtype=bool), 3, dense=True)
    assert plan.send.all()
    assert plan.next_block.tolist() == [3, 4, 5, 6, END, END, END]


def test_plan_lookahead_bounds_the_announced_next():
    significant = np.zeros(40, dtype=bool)
    significant[39] = True
    plan = plan_blocks(significant, 2, lookahead=4)
    sent = np.flatnonzero(plan.send)
    # rows 0, 4, 8, ... of both columns, plus block 39.
    assert sent.tolist() == [0, 1, 8, 9, 16, 17, 24, 25, 32, 33, 39]
    gaps = [int(plan.next_block[b]) - b for b in sent if plan.next_block[b] != END]
    assert max(gaps) <= 4 * 2


def test_plan_of_a_tensor_shorter_than_the_slot_count_uses_one_column_per_block():
    plan = plan_blocks(np.zeros(2, dtype=bool), 8)
    assert plan.columns == 2
    assert plan.send.tolist() == [True, True]
    assert plan.next_block.tolist() == [END, END]
