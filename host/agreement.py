"""What the scale round's lanes carry: a check that the job's workers agree, and may go ahead, before any data flows.

docs/protocol.md section 5 gives the scale round's lanes this purpose; the switch needs no change for it, since it
only sums lanes. Every worker takes part in the scale round, also one whose own input is bad, so that every worker
reaches the same verdict from the same sums and a refusal leaves the job usable (set bits stay in step):

* lane 0 = 1 + 2^16 if this worker refuses its input, else 1. The low half sums to the number of workers the switch
  aggregated (must equal the agent's worker count W), the high half to the number of workers that refuse. With
  W <= MAX_WORKERS = 32 neither half can carry into the other, so the refusal count is exact and every worker sees
  any refusal. It costs no lane of its own.
* lane 1 = the tensor's block count n: sums to W * n (mod 2^32) when all agree.
* lane 2 = 2^worker_id if this worker refuses, else 0: sums to the set of refusing workers, so the others can name
  them. Only a diagnostic: ids come from the agents' configurations, which the switch never sees, and two agents
  configured with the same id would add up to a wrong set (or to 0, for two at id 31). The verdict therefore
  comes from lane 0's count, and the names are given only where the set's size matches that count.
* lanes 3..31 = the bits of a 29-bit fingerprint of (element count, dtype, slot count): every lane sums to 0 or W
  when all agree. A lane strictly between 0 and W shows a disagreement to *every* worker, not just to those whose
  value differs from the mean (a plain sum would miss, e.g., lengths 4, 5 and 6 at the worker holding 5); two
  different tensors escape only if their fingerprints collide (probability 2^-29: giving lane 2 a bit of the
  former 30-bit fingerprint doubles a chance that stays negligible for accidental disagreements).

Why a count and a set rather than one of them: a count alone makes the other workers say "1 worker refused" and
leaves the operator to search every worker's log; a set alone fails silently when configured ids collide.

Verdict, identical on every worker in whether the all-reduce goes ahead (only if the worker count matches, nobody
refuses and the fingerprints agree): a refusing worker raises InputError naming its bad values; the others raise
JobMismatch for a worker count the switch does not share, else PeerRefused if any worker refused, else JobMismatch
if the tensors disagree.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

from omnireduce.p4src import constants as C

from .errors import InputError, JobMismatch, PeerRefused

PRESENCE_LANE = 0
BLOCKS_LANE = 1
REFUSER_IDS_LANE = 2
FINGERPRINT_FIRST_LANE = 3
FINGERPRINT_BITS = C.LANES - FINGERPRINT_FIRST_LANE
#: A refusing worker adds this to the presence lane: the lane's high half counts refusals.
REFUSAL_UNIT = 1 << 16
assert C.MAX_WORKERS < REFUSAL_UNIT and C.MAX_WORKERS * (REFUSAL_UNIT + 1) < 2**31, "halves of lane 0 would carry"
assert C.MAX_WORKERS <= 32, "the refusing workers' ids are a 32-bit set"
#: The one reason a worker announces today (a mistake in the call is raised before the scale round).
REFUSAL_REASON = "NaN or Inf values"


@dataclass(frozen=True, slots=True)
class TensorClaim:
    """What a worker is about to all-reduce, as the other workers must see it too."""

    element_count: int
    dtype: str
    slot_count: int
    block_count: int

    def fingerprint(self) -> int:
        text = f"{self.element_count}:{self.dtype}:{self.slot_count}".encode()
        digest = hashlib.blake2b(text, digest_size=8).digest()
        return int.from_bytes(digest, "big") & ((1 << FINGERPRINT_BITS) - 1)


@dataclass(frozen=True, slots=True)
class Announcement:
    """What one worker puts into the scale round: the tensor it claims and, if it refuses its own input, why.

    refusal: the description of its bad values (quantize.describe_non_finite), None when it goes ahead.
    """

    claim: TensorClaim
    worker_id: int
    refusal: str | None = None

    @property
    def refuses(self) -> bool:
        return self.refusal is not None


def announcement_lanes(announcement: Announcement) -> np.ndarray:
    """The LANES int32 values this worker contributes to the scale round."""
    claim = announcement.claim
    lanes = np.zeros(C.LANES, dtype=np.int32)
    lanes[PRESENCE_LANE] = 1 + (REFUSAL_UNIT if announcement.refuses else 0)
    lanes[BLOCKS_LANE] = np.uint32(claim.block_count & 0xFFFFFFFF).view(np.int32)
    if announcement.refuses:
        lanes[REFUSER_IDS_LANE] = np.uint32(1 << announcement.worker_id).view(np.int32)
    bits = (claim.fingerprint() >> np.arange(FINGERPRINT_BITS)) & 1
    lanes[FINGERPRINT_FIRST_LANE:] = bits
    return lanes


def _as_uint32(value: np.int32 | int) -> int:
    return int(np.int32(value).view(np.uint32))


def _refusers(sums: np.ndarray, refusals: int) -> str:
    """'1 of the job's workers (worker 2)', naming the ids only where the set of ids is consistent with the count."""
    ids = _as_uint32(sums[REFUSER_IDS_LANE])
    named = [worker for worker in range(32) if ids >> worker & 1]
    text = f"{refusals} of the job's workers"
    if len(named) == refusals:
        return f"{text} (worker{'s' if refusals > 1 else ''} {', '.join(map(str, named))})"
    return f"{text} (which ones is unknown: the agents' configured worker ids are not distinct)"


def _disagreement(sums: np.ndarray, announcement: Announcement, workers: int) -> str | None:
    """How the workers' claims of the tensor differ, seen from this worker; None when they all agree."""
    claim = announcement.claim
    block_sum = _as_uint32(sums[BLOCKS_LANE])
    expected_block_sum = (workers * claim.block_count) & 0xFFFFFFFF
    ones = sums[FINGERPRINT_FIRST_LANE:].astype(np.int64)
    disagreeing_bits = int(np.count_nonzero((ones != 0) & (ones != workers)))
    mine = announcement_lanes(announcement)[FINGERPRINT_FIRST_LANE:].astype(np.int64)
    differs_from_mine = bool(np.any(ones != mine * workers))
    if block_sum == expected_block_sum and not disagreeing_bits and not differs_from_mine:
        return None
    return (f"the {workers} workers of the job disagree on the tensor: this worker has {claim.element_count} "
            f"{claim.dtype} values in {claim.block_count} blocks over {claim.slot_count} slots, the block counts "
            f"sum to {block_sum} (all equal would give {expected_block_sum}), {disagreeing_bits} of "
            f"{FINGERPRINT_BITS} fingerprint bits differ between workers")


def check_agreement(sums: np.ndarray, announcement: Announcement, workers: int, *, tensor_id: int) -> None:
    """Raise unless the scale round's sums show that all `workers` workers go ahead with the same tensor.

    InputError on a worker that refused its own input; JobMismatch or PeerRefused on the others (module docstring).
    """
    presence = _as_uint32(sums[PRESENCE_LANE])
    aggregated, refusals = presence % REFUSAL_UNIT, presence // REFUSAL_UNIT
    where = f"scale round of tensor {tensor_id}"
    if announcement.refuses:
        raise InputError(
            f"{announcement.refusal}; announced in the {where}, where {_refusers(sums, refusals)} refused their "
            f"input: every worker of the job refused the all-reduce and nothing was aggregated"
        )
    if aggregated != workers:
        raise JobMismatch(
            f"{where}: the switch aggregated {aggregated} workers but this agent was configured for {workers}: the "
            f"job's worker count on the switch and on the agents differ"
        )
    disagreement = _disagreement(sums, announcement, workers)
    if refusals:
        besides = f"; besides, {disagreement}" if disagreement else ""
        raise PeerRefused(
            f"{where}: {_refusers(sums, refusals)} refused their input ({REFUSAL_REASON}, see their logs): every "
            f"worker of the job refused the all-reduce and nothing was aggregated{besides}"
        )
    if disagreement:
        raise JobMismatch(f"{where}: {disagreement}; every worker refused the all-reduce")
