"""Block scanning: which blocks a worker sends, and each block's next block in its column.

A tensor of L values is cut into ``n = ceil(L / LANES)`` blocks (the last one zero-padded). Block b belongs to slot
``b mod S``; the blocks of one slot form a *column*. OmniReduce sends a block only when it is non-zero, and every
packet announces the sender's next block to send in the same column (docs/protocol.md section 1). This module
computes, for the whole tensor at once and without a Python loop over blocks, the send mask and that next block.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from omnireduce.p4src import constants as C

from . import native

#: dtype of block indices and announced next blocks (END_OF_TENSOR = 0xFFFFFFFF fits).
BLOCK_INDEX_DTYPE = np.dtype(np.uint32)


def block_count(length: int) -> int:
    """Number of LANES-value blocks that hold `length` values."""
    return -(-length // C.LANES)


def as_blocks(values: np.ndarray, blocks: int | None = None) -> np.ndarray:
    """The values as a (blocks, LANES) array, zero-padded at the end (a copy only when padding is needed)."""
    flat = values.reshape(-1)
    count = block_count(flat.size) if blocks is None else blocks
    padded_length = count * C.LANES
    if padded_length < flat.size:
        raise ValueError(f"{count} blocks cannot hold {flat.size} values")
    if padded_length != flat.size:
        padded = np.zeros(padded_length, dtype=flat.dtype)
        padded[: flat.size] = flat
        flat = padded
    return flat.reshape(count, C.LANES)


def nonzero_blocks(blocks: np.ndarray) -> np.ndarray:
    """Mask of the blocks that hold at least one non-zero value (shape (n,), bool).

    For contiguous 4-byte integers (any byte order) the block's 128 bytes are OR-ed as 16 uint64 words, which is
    several times faster than any() over 32 int32s. Floats go through any(), for which -0.0 counts as zero.
    """
    if blocks.dtype.kind in "iu" and blocks.dtype.itemsize == 4 and blocks.flags.c_contiguous:
        words = blocks.view(np.uint64)
        return np.bitwise_or.reduce(words, axis=1) != 0
    return blocks.any(axis=1)


def blocks_above(blocks: np.ndarray, threshold: float) -> np.ndarray:
    """Mask of the blocks whose largest magnitude exceeds `threshold`.

    A block below the threshold is not sent at all, so its small values are dropped from the sum: the threshold
    trades accuracy for traffic and is off (None) by default.
    """
    # float64 so that negating an int32 minimum cannot wrap.
    highest = blocks.max(axis=1).astype(np.float64)
    lowest = blocks.min(axis=1).astype(np.float64)
    return np.maximum(highest, -lowest) > threshold


def next_in_column(send: np.ndarray, slots: int) -> np.ndarray:
    """next[b] = the smallest b' > b with b' = b (mod slots) and send[b'], or END_OF_TENSOR if there is none.

    Vectorised: the blocks are laid out as rows of `slots` columns, and a reversed running minimum down each column
    gives every block the first sent block at or after it; shifting that by one row gives the next one. The
    compiled path (host/exchange.c) makes one pass backwards instead.
    """
    if slots < 1:
        raise ValueError(f"slot count must be positive, got {slots}")
    count = send.size
    if count >= C.END_OF_TENSOR:
        raise ValueError(f"{count} blocks do not fit 32-bit block indices")
    if count == 0:
        return np.empty(0, dtype=BLOCK_INDEX_DTYPE)
    module = native.available()
    if module is not None:  # one pass in C (host/exchange.c), without the grid's temporaries
        mask = np.ascontiguousarray(send, dtype=np.bool_)
        following = np.empty(count, dtype=BLOCK_INDEX_DTYPE)
        ffi = module.ffi
        module.lib.orx_next_in_column(ffi.from_buffer("uint8_t[]", mask), count, slots,
                                      ffi.from_buffer("uint32_t[]", following),
                                      ffi.from_buffer("uint32_t[]", np.empty(slots, dtype=BLOCK_INDEX_DTYPE)))
        return following
    rows = -(-count // slots)
    candidates = np.full(rows * slots, C.END_OF_TENSOR, dtype=BLOCK_INDEX_DTYPE)
    sent_indices = np.flatnonzero(send).astype(BLOCK_INDEX_DTYPE)
    candidates[sent_indices] = sent_indices
    grid = candidates.reshape(rows, slots)
    at_or_after = np.minimum.accumulate(grid[::-1], axis=0)[::-1]
    following = np.empty_like(grid)
    following[:-1] = at_or_after[1:]
    following[-1] = C.END_OF_TENSOR
    return following.reshape(-1)[:count]


def forced_rows(count: int, slots: int, lookahead: int) -> np.ndarray:
    """Mask of the blocks in every `lookahead`-th row (row 0 included): sent even when zero.

    With it, no announced next block is more than ``lookahead * slots`` blocks ahead; lookahead 1 is dense mode.
    """
    if lookahead < 1:
        raise ValueError(f"look-ahead bound must be at least 1 row, got {lookahead}")
    rows = np.arange(count, dtype=np.int64) // slots
    return rows % lookahead == 0


@dataclass(frozen=True, slots=True)
class BlockPlan:
    """What one worker sends of one tensor: a send mask and the next block every sent block announces.

    The first round is dense (docs/protocol.md section 1): blocks 0 .. min(S, n)-1 are sent whether zero or not, so
    ``send`` is True there; ``next_block[b]`` is meaningful wherever ``send[b]``.
    """

    count: int
    slots: int
    send: np.ndarray
    next_block: np.ndarray

    @property
    def columns(self) -> int:
        """Slots that carry at least one block of this tensor (fewer than S for a tensor shorter than S blocks)."""
        return min(self.slots, self.count)

    @property
    def blocks_to_send(self) -> int:
        return int(np.count_nonzero(self.send))


def plan_blocks(significant: np.ndarray, slots: int, *, dense: bool = False, lookahead: int | None = None) -> BlockPlan:
    """Plan a tensor from the mask of its significant (non-zero) blocks.

    dense: send every block (next = b + S), as SwitchML does; lookahead: see :func:`forced_rows`.
    """
    count = int(significant.size)
    if dense:
        send = np.ones(count, dtype=bool)
    else:
        send = significant.astype(bool, copy=True)
        send[: min(slots, count)] = True  # the dense first round
        if lookahead is not None:
            send |= forced_rows(count, slots, lookahead)
    return BlockPlan(count=count, slots=slots, send=send, next_block=next_in_column(send, slots))
