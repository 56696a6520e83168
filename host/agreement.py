"""What the scale round's lanes carry: a check that the job's workers agree before any data flows.

docs/protocol.md section 5 sends the scale round with all lanes zero; the agent gives them a purpose (proposed for
the protocol, see the host report) that the switch needs no change for, since it only sums lanes:

* lane 0 = 1: sums to the number of workers the switch aggregated; must equal the agent's worker count W.
* lane 1 = the tensor's block count n: sums to W * n (mod 2^32) when all agree.
* lanes 2..31 = the bits of a 30-bit fingerprint of (element count, dtype, slot count): every lane sums to 0 or W
  when all agree. A lane strictly between 0 and W shows a disagreement to *every* worker, not just to those whose
  value differs from the mean (a plain sum would miss, e.g., lengths 4, 5 and 6 at the worker holding 5); two
  different tensors escape only if their fingerprints collide (probability 2^-30).

Every worker therefore reaches the same verdict from the same result, and a mismatch leaves the job usable.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

from omnireduce.p4src import constants as C

from .errors import JobMismatch

WORKERS_LANE = 0
BLOCKS_LANE = 1
FINGERPRINT_FIRST_LANE = 2
FINGERPRINT_BITS = C.LANES - FINGERPRINT_FIRST_LANE


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


def claim_lanes(claim: TensorClaim) -> np.ndarray:
    """The LANES int32 values this worker contributes to the scale round."""
    lanes = np.zeros(C.LANES, dtype=np.int32)
    lanes[WORKERS_LANE] = 1
    lanes[BLOCKS_LANE] = np.uint32(claim.block_count & 0xFFFFFFFF).view(np.int32)
    bits = (claim.fingerprint() >> np.arange(FINGERPRINT_BITS)) & 1
    lanes[FINGERPRINT_FIRST_LANE:] = bits
    return lanes


def check_agreement(sums: np.ndarray, claim: TensorClaim, workers: int, *, tensor_id: int) -> None:
    """Raise JobMismatch unless the scale round's sums show that all `workers` workers claimed the same tensor."""
    aggregated = int(sums[WORKERS_LANE])
    if aggregated != workers:
        raise JobMismatch(
            f"scale round of tensor {tensor_id}: the switch aggregated {aggregated} workers but this agent was "
            f"configured for {workers}: the job's worker count on the switch and on the agents differ"
        )
    block_sum = int(np.int32(sums[BLOCKS_LANE]).view(np.uint32))
    expected_block_sum = (workers * claim.block_count) & 0xFFFFFFFF
    ones = sums[FINGERPRINT_FIRST_LANE:].astype(np.int64)
    disagreeing_bits = int(np.count_nonzero((ones != 0) & (ones != workers)))
    mine = claim_lanes(claim)[FINGERPRINT_FIRST_LANE:].astype(np.int64)
    differs_from_mine = bool(np.any(ones != mine * workers))
    if block_sum != expected_block_sum or disagreeing_bits or differs_from_mine:
        raise JobMismatch(
            f"scale round of tensor {tensor_id}: the {workers} workers of the job disagree on the tensor: this worker "
            f"has {claim.element_count} {claim.dtype} values in {claim.block_count} blocks over {claim.slot_count} "
            f"slots, the block counts sum to {block_sum} (all equal would give {expected_block_sum}), "
            f"{disagreeing_bits} of {FINGERPRINT_BITS} fingerprint bits differ between workers; every worker refused "
            f"the all-reduce"
        )
