"""A tensor's quantized lanes by block, stored only where a block has any.

A sparse tensor's lanes are mostly zero blocks. Laid out tensor-sized, they cost a page fault for every page a
non-zero block lands on: at 1% of 100 MB's blocks, scattered at random, that is a quarter of the 25,600 pages and
most of what quantizing costs. BlockLanes keeps the non-zero blocks' lanes back to back instead and finds a
block's row through a per-block index (4 bytes a block, zero-initialised, so the kernel hands it over as zero pages
and only the entries written are faulted in).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from omnireduce.p4src import constants as C

from .wire import LANE_DTYPE
#: dtype of BlockLanes.row_of.
ROW_INDEX_DTYPE = np.dtype(np.int32)
#: The row every block without lanes of its own reads: all zero.
ZERO_ROW = 0


@dataclass(frozen=True, slots=True)
class BlockLanes:
    """Lanes of `count` blocks (big-endian int32, LANES a block): block b's are rows[b] where row_of is None (a
    tensor-sized layout), else rows[row_of[b]], with rows[ZERO_ROW] all zero for every block not given a row."""

    rows: np.ndarray  # (n, LANES) LANE_DTYPE, C-contiguous
    row_of: np.ndarray | None  # (count,) ROW_INDEX_DTYPE, or None: row = block
    count: int

    def __post_init__(self) -> None:
        if self.rows.dtype != LANE_DTYPE or self.rows.ndim != 2 or self.rows.shape[1] != C.LANES \
                or not self.rows.flags.c_contiguous:
            raise ValueError(f"rows must be a C-contiguous (n, {C.LANES}) array of {LANE_DTYPE}")
        if self.row_of is None:
            if len(self.rows) != self.count:
                raise ValueError(f"{len(self.rows)} rows for {self.count} blocks laid out tensor-sized")
        elif self.row_of.dtype != ROW_INDEX_DTYPE or self.row_of.shape != (self.count,) \
                or not self.row_of.flags.c_contiguous or not len(self.rows):
            raise ValueError(f"row_of must be a contiguous array of {self.count} {ROW_INDEX_DTYPE}, and rows hold "
                             f"the zero row")

    @classmethod
    def tensor_sized(cls, lanes: np.ndarray) -> "BlockLanes":
        """Lanes laid out block after block (any 1-D or 2-D big-endian int32 array of whole blocks, or its bytes)."""
        rows = np.frombuffer(lanes, dtype=LANE_DTYPE) if not isinstance(lanes, np.ndarray) else lanes
        if rows.dtype != LANE_DTYPE:
            rows = rows.view(LANE_DTYPE)
        if rows.size % C.LANES:
            raise ValueError(f"{rows.size} lanes are not whole blocks of {C.LANES}")
        rows = np.ascontiguousarray(rows).reshape(-1, C.LANES)
        return cls(rows, None, len(rows))

    @classmethod
    def compact(cls, count: int, blocks: np.ndarray) -> "BlockLanes":
        """Room for the lanes of `blocks` (distinct indices below count), rows[1 + k] for blocks[k], uninitialised
        except the zero row; every other block reads the zero row."""
        rows = np.empty((len(blocks) + 1, C.LANES), dtype=LANE_DTYPE)
        rows[ZERO_ROW] = 0
        row_of = np.zeros(count, dtype=ROW_INDEX_DTYPE)
        row_of[blocks] = np.arange(1, len(blocks) + 1, dtype=ROW_INDEX_DTYPE)
        return cls(rows, row_of, count)

    def gather(self, blocks: np.ndarray) -> np.ndarray:
        """The lanes of `blocks`, (len(blocks), LANES) (a copy)."""
        return self.rows[blocks if self.row_of is None else self.row_of[blocks]]

    def row(self, block: int) -> int:
        """The row that holds block's lanes."""
        return block if self.row_of is None else int(self.row_of[block])

    def tensor(self) -> np.ndarray:
        """Every block's lanes, block after block (count * LANES values; a copy unless tensor-sized already)."""
        if self.row_of is None:
            return self.rows.reshape(-1)
        return self.rows[self.row_of].reshape(-1)
