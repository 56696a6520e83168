# Run: .venv/bin/pytest tests/host/test_agreement.py
"""The scale round's lanes: every worker detects any disagreement on the tensor or on the worker count, and any
worker's refusal of its input, from the same sums."""

import numpy as np
import pytest

from omnireduce.host.agreement import (
    FINGERPRINT_BITS,
    REFUSAL_UNIT,
    Announcement,
    TensorClaim,
    announcement_lanes,
    check_agreement,
)
from omnireduce.host.errors import InputError, JobMismatch, PeerRefused
from omnireduce.p4src.constants import LANES, MAX_WORKERS

NAN_TEXT = "tensor holds 1 NaN/Inf value(s) (1 NaN, 0 Inf), first at flat index 3 (nan)"


def claim(length: int, dtype: str = "float32", slots: int = 8) -> TensorClaim:
    return TensorClaim(element_count=length, dtype=dtype, slot_count=slots, block_count=-(-length // LANES))


def announce(claims: list[TensorClaim], refusing: frozenset[int] = frozenset(), *,
             ids: list[int] | None = None) -> list[Announcement]:
    """Worker i announces claims[i] under id ids[i] (default i), refusing its input when i is in `refusing`."""
    ids = ids if ids is not None else list(range(len(claims)))
    return [Announcement(c, worker_id, NAN_TEXT if index in refusing else None)
            for index, (c, worker_id) in enumerate(zip(claims, ids))]


def switch_sum(announcements: list[Announcement]) -> np.ndarray:
    """What the switch returns: the lane-wise int32 sum, wrapping like the switch's 32-bit adders."""
    total = np.sum([announcement_lanes(a).astype(np.int64) for a in announcements], axis=0)
    return (total & 0xFFFFFFFF).astype(np.uint32).view(np.int32)


def test_lanes_carry_presence_block_count_refuser_id_and_fingerprint_bits():
    going = announcement_lanes(Announcement(claim(1000), worker_id=5))
    assert going.dtype == np.int32 and going.shape == (LANES,)
    assert going[0] == 1 and going[1] == 32 and going[2] == 0
    assert set(going[3:].tolist()) <= {0, 1} and FINGERPRINT_BITS == 29
    refusing = announcement_lanes(Announcement(claim(1000), worker_id=5, refusal=NAN_TEXT))
    assert refusing[0] == 1 + REFUSAL_UNIT and refusing[2] == 1 << 5
    # A refusal changes nothing else: the claim's lanes are the same, so disagreements are still seen.
    assert np.array_equal(np.delete(refusing, [0, 2]), np.delete(going, [0, 2]))


def test_agreeing_workers_pass():
    announcements = announce([claim(1000)] * 4)
    for mine in announcements:
        check_agreement(switch_sum(announcements), mine, 4, tensor_id=0)


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
    announcements = announce(claims)
    sums = switch_sum(announcements)
    for mine in announcements:
        with pytest.raises(JobMismatch, match="disagree on the tensor"):
            check_agreement(sums, mine, len(claims), tensor_id=3)


def test_worker_count_mismatch_is_named():
    announcements = announce([claim(64)] * 3)
    with pytest.raises(JobMismatch, match="aggregated 3 workers but this agent was configured for 4"):
        check_agreement(switch_sum(announcements), announcements[0], 4, tensor_id=0)


def test_block_count_lane_wraps_like_the_switch():
    huge = TensorClaim(element_count=2**31 * 8, dtype="float32", slot_count=8, block_count=2**31 // 4)
    announcements = announce([huge] * 8)
    check_agreement(switch_sum(announcements), announcements[0], 8, tensor_id=0)


@pytest.mark.parametrize("refusing", [{1}, {0, 3}, {0, 1, 2, 3}])
def test_every_worker_refuses_alike_when_any_refuses(refusing):
    announcements = announce([claim(1000)] * 4, frozenset(refusing))
    sums = switch_sum(announcements)
    names = ", ".join(map(str, sorted(refusing)))
    for index, mine in enumerate(announcements):
        if index in refusing:
            with pytest.raises(InputError) as raised:
                check_agreement(sums, mine, 4, tensor_id=6)
            assert str(raised.value).startswith(NAN_TEXT + "; announced in the scale round of tensor 6")
        else:
            with pytest.raises(PeerRefused) as raised:
                check_agreement(sums, mine, 4, tensor_id=6)
            assert "disagree" not in str(raised.value)
        assert f"{len(refusing)} of the job's workers (worker{'s' if len(refusing) > 1 else ''} {names}) refused " \
               f"their input" in str(raised.value)
        assert "nothing was aggregated" in str(raised.value)


def test_the_highest_worker_id_is_named_through_the_sign_bit():
    announcements = announce([claim(64)] * MAX_WORKERS, frozenset({MAX_WORKERS - 1}))
    with pytest.raises(PeerRefused, match=rf"\(worker {MAX_WORKERS - 1}\) refused"):
        check_agreement(switch_sum(announcements), announcements[0], MAX_WORKERS, tensor_id=0)


def test_a_refusal_is_seen_even_when_configured_ids_collide():
    # Two agents both configured as worker 31: their ids add up to 2^32, which wraps to 0; the count still holds.
    announcements = announce([claim(64)] * 3, frozenset({0, 1}), ids=[31, 31, 2])
    sums = switch_sum(announcements)
    assert sums[2] == 0
    with pytest.raises(PeerRefused, match="2 of the job's workers .which ones is unknown: the agents' configured "
                                          "worker ids are not distinct"):
        check_agreement(sums, announcements[2], 3, tensor_id=0)


def test_a_refusal_and_a_disagreement_are_both_reported():
    announcements = announce([claim(1000), claim(2000), claim(1000)], frozenset({1}))
    sums = switch_sum(announcements)
    with pytest.raises(InputError, match="1 of the job's workers .worker 1. refused"):
        check_agreement(sums, announcements[1], 3, tensor_id=0)
    for mine in (announcements[0], announcements[2]):
        with pytest.raises(PeerRefused, match="refused their input.*; besides, the 3 workers of the job disagree"):
            check_agreement(sums, mine, 3, tensor_id=0)
