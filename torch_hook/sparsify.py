"""Which blocks of a gradient bucket a rank sends, and what it keeps back for the next step (error feedback).

NONE sends every block that holds a non-zero value (natural sparsity, e.g. an embedding table's untouched rows):
the job's sum is exact up to the fixed point. THRESHOLD sends blocks whose largest magnitude is above a threshold;
TOP_K sends the `fraction` of blocks with the largest L2 norm (OmniReduce's block top-k). With error feedback the
blocks held back are added to the next step's gradient of the same bucket, so nothing is lost, only delayed.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass

import torch

from .blocks import Score, block_scores, blocks_above, nonzero_block_indices, top_blocks


class SparsifyKind(enum.Enum):
    NONE = "none"
    THRESHOLD = "threshold"
    TOP_K = "top_k"


@dataclass(frozen=True, slots=True)
class Sparsification:
    """How the hook thins each bucket before it goes to the switch.

    threshold: THRESHOLD sends blocks whose max |x| exceeds it. fraction: TOP_K sends ceil(fraction * blocks)
    blocks (0.01 is 1%). error_feedback: blocks held back are added to the bucket's next gradient (THRESHOLD and
    TOP_K; NONE holds nothing back).
    """

    kind: SparsifyKind = SparsifyKind.NONE
    threshold: float = 0.0
    fraction: float = 1.0
    error_feedback: bool = True

    def __post_init__(self) -> None:
        if not isinstance(self.kind, SparsifyKind):
            raise ValueError(f"kind must be a SparsifyKind, got {self.kind!r}")
        if not (math.isfinite(self.threshold) and self.threshold >= 0):
            raise ValueError(f"threshold must be a finite number >= 0, got {self.threshold!r}")
        if not (0 < self.fraction <= 1):
            raise ValueError(f"fraction must be in (0, 1] (0.01 keeps 1% of the blocks), got {self.fraction!r}")

    @classmethod
    def none(cls) -> "Sparsification":
        return cls()

    @classmethod
    def block_threshold(cls, threshold: float, error_feedback: bool = True) -> "Sparsification":
        return cls(SparsifyKind.THRESHOLD, threshold=threshold, error_feedback=error_feedback)

    @classmethod
    def block_top_k(cls, fraction: float, error_feedback: bool = True) -> "Sparsification":
        return cls(SparsifyKind.TOP_K, fraction=fraction, error_feedback=error_feedback)

    @property
    def holds_back(self) -> bool:
        """Whether blocks with non-zero values may stay unsent (and error feedback applies)."""
        return self.kind is not SparsifyKind.NONE

    def select(self, flat: torch.Tensor) -> torch.Tensor:
        """Indices (ascending, on flat's device) of the blocks of `flat` to send."""
        if self.kind is SparsifyKind.TOP_K:
            return top_blocks(block_scores(flat, Score.L2), self.fraction)
        scores = block_scores(flat, Score.MAX_ABS)
        if self.kind is SparsifyKind.THRESHOLD:
            return blocks_above(scores, self.threshold)
        return nonzero_block_indices(scores)


class ErrorFeedback:
    """The residual of each bucket (by DDP's bucket index): what was held back, added to the next gradient.

    DDP rebuilds its buckets after the first step, so a bucket index may come back with another size; its residual
    is then dropped (once, at that rebuild) rather than added to values it does not belong to.
    """

    def __init__(self) -> None:
        self._residuals: dict[int, torch.Tensor] = {}

    def compensate(self, index: int, flat: torch.Tensor) -> None:
        """Add bucket `index`'s residual to `flat`, in place."""
        residual = self._residuals.get(index)
        if residual is None:
            return
        if residual.shape != flat.shape or residual.device != flat.device:
            del self._residuals[index]
            return
        flat.add_(residual.to(flat.dtype))

    def keep(self, index: int, residual: torch.Tensor) -> None:
        """Remember `residual` (the compensated gradient with the sent blocks zeroed) for the bucket's next step."""
        self._residuals[index] = residual

    def forget(self, index: int) -> None:
        """Nothing was held back (the bucket went dense, e.g. through the fallback)."""
        self._residuals.pop(index, None)

    def residual(self, index: int) -> torch.Tensor | None:
        return self._residuals.get(index)
