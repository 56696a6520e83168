# Run: .venv/bin/pytest tests/host/test_agreement.py
"""The scale round's lanes: every worker detects any disagreement on the tensor or on the worker count."""

import numpy as np
import pytest

from omnireduce.host.agreement import TensorClaim, check_agreement, claim_lanes
from omnireduce.host.errors import JobMismatch
from omnireduce.p4src.constants import LANES


def claim(length: int, dtype: str = "float32", slots: int = 8) -> TensorClaim:
    return TensorClaim(element_count=length, dtype=dtype, slot_count=slots, block_count=-(-length // LANES))


def switch_sum(claims: list[TensorClaim]) -> np.ndarray:
    """What the switch returns: the lane-wise int32 sum."""
    return np.sum([claim_lanes(c).astype(np.int64) for c in claims], axis=0).astype(np.int32)


def test_lanes_carry_one_the_block_count_and_fingerprint_bits():
    lanes = claim_lanes(claim(1000))
    assert lanes.dtype == np.int32 and lanes.shape == (LANES,)
    assert lanes[0] == 1 and lanes[1] == 32
    assert set(lanes[2:].tolist()) <= {0, 1}


def test_agreeing_workers_pass():
    claims = [claim(1000)] * 4
    for mine in claims:
        check_agreement(switch_sum(claims), mine, 4, tensor_id=0)


@pytest.mark.parametrize(
    "claims",
    [
        [claim(4 * LANES), claim(5 * LANES), claim(6 * LANES)],  # block counts sum to 3 x 5: a plain sum misses it
        [claim(1000), claim(1001)],                              # same block count, different length
        [claim(1000), claim(1000, dtype="int32")],
        [claim(1000), claim(1000, slots=16)],
    ],
)
def test_every_worker_detects_a_disagreement(claims):
    sums = switch_sum(claims)
    for mine in claims:
        with pytest.raises(JobMismatch, match="disagree on the tensor"):
            check_agreement(sums, mine, len(claims), tensor_id=3)


def test_worker_count_mismatch_is_named():
    claims = [claim(64)] * 3
    with pytest.raises(JobMismatch, match="aggregated 3 workers but this agent was configured for 4"):
        check_agreement(switch_sum(claims), claims[0], 4, tensor_id=0)


def test_block_count_lane_wraps_like_the_switch():
    huge = TensorClaim(element_count=2**31 * 8, dtype="float32", slot_count=8, block_count=2**31 // 4)
    claims = [huge] * 8
    check_agreement(switch_sum(claims), huge, 8, tensor_id=0)
