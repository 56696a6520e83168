"""Per-slot worker state as arrays, so that a batch of results is checked and applied with numpy.

:class:`SlotChannels` outlives a tensor (the shadow set each slot's next round uses, docs/protocol.md section 4.6);
:class:`ColumnState` is one tensor's progress through its columns. Both hold one array per field, indexed by slot,
instead of one object per slot: the batch path (host/batch.py) gathers and scatters whole batches of slots at once,
and the timers are a deadline array checked in one comparison instead of a heap push per packet.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterator

import numpy as np

from omnireduce.p4src import constants as C

from .wire import DATA_PAYLOAD_BYTES, PAYLOAD_DTYPE

END = C.END_OF_TENSOR
NO_DEADLINE = math.inf
#: last_tensor of a slot not used since the agent started.
NEVER_USED = -1


@dataclass(frozen=True, slots=True)
class SlotChannel:
    """One slot's channel state, read out of :class:`SlotChannels` (diagnostics and tests)."""

    set_index: int
    last_tensor: int | None


@dataclass(slots=True)
class SlotChannels:
    """Per slot, across tensors: the shadow set its next round uses (advanced mod SETS on every result consumed),
    and the id of the last tensor whose rounds used it (NEVER_USED: none since the agent started)."""

    set_index: np.ndarray    # uint8
    last_tensor: np.ndarray  # int64

    @classmethod
    def create(cls, slots: int) -> "SlotChannels":
        return cls(np.zeros(slots, dtype=np.uint8), np.full(slots, NEVER_USED, dtype=np.int64))

    def __len__(self) -> int:
        return len(self.set_index)

    def __getitem__(self, slot: int) -> SlotChannel:
        last = int(self.last_tensor[slot])
        return SlotChannel(int(self.set_index[slot]), None if last == NEVER_USED else last)

    def __iter__(self) -> Iterator[SlotChannel]:
        return (self[slot] for slot in range(len(self)))


@dataclass(slots=True)
class ColumnState:
    """Each column's progress through one tensor (index: slot).

    expected: block whose result is awaited next (END: column closed); own_next: the next block this worker sends
    in the column; contributed: whether this worker contributed to the awaited round; sent_at: when our CONTRIB for
    the awaited round left if it was never retransmitted (NaN: not timed, Karn); first_sent_at, retransmitted_at: when
    it first left and was last retransmitted (NaN: not), to recognise a spurious timeout; sent_seq: the place of our
    CONTRIB for it among all this exchange's CONTRIBs, in sending order (-1: none), to tell a round still queued
    behind our earlier frames at the switch from one the switch has passed (TensorExchange.on_timer); rto, deadline: the
    awaited round's timer; timeouts: its expiries; gap_requested: a REQUEST for it already went out on a gap; contrib: each column's
    last CONTRIB payload, resent as it is on a timeout; early: results that overtook the awaited one, by block;
    has_early: whether early holds any.
    """

    expected: np.ndarray
    own_next: np.ndarray
    contributed: np.ndarray
    sent_at: np.ndarray
    first_sent_at: np.ndarray
    retransmitted_at: np.ndarray
    sent_seq: np.ndarray
    rto: np.ndarray
    deadline: np.ndarray
    timeouts: np.ndarray
    gap_requested: np.ndarray
    contrib: np.ndarray
    early: list[dict[int, bytes]]
    has_early: np.ndarray  # uint8: 1 where early[slot] is not empty (both batch paths leave such columns alone)

    @classmethod
    def create(cls, columns: int, *, job_id: int, tensor_id: int, exponent: int) -> "ColumnState":
        contrib = np.zeros((columns, DATA_PAYLOAD_BYTES), dtype=np.uint8)
        fields = contrib_fields(contrib)
        # What never changes in a column's CONTRIBs is written once; set, block, next and lanes per round.
        fields["msg_type"] = C.MSG_CONTRIB
        fields["job_id"] = job_id
        fields["tensor_id"] = tensor_id
        fields["slot"] = np.arange(columns)
        fields["exponent"] = exponent
        fields["lane_count"] = C.LANES
        return cls(
            expected=np.full(columns, END, dtype=np.int64),
            own_next=np.full(columns, END, dtype=np.int64),
            contributed=np.zeros(columns, dtype=bool),
            sent_at=np.full(columns, math.nan),
            first_sent_at=np.zeros(columns),
            retransmitted_at=np.full(columns, math.nan),
            sent_seq=np.full(columns, -1, dtype=np.int64),
            rto=np.zeros(columns),
            deadline=np.full(columns, NO_DEADLINE),
            timeouts=np.zeros(columns, dtype=np.int64),
            gap_requested=np.zeros(columns, dtype=bool),
            contrib=contrib,
            early=[{} for _ in range(columns)],
            has_early=np.zeros(columns, dtype=np.uint8),
        )


def contrib_fields(rows: np.ndarray) -> np.ndarray:
    """A (n, DATA_PAYLOAD_BYTES) uint8 array seen as n structured payloads (a view: writes go to the bytes)."""
    return rows.view(PAYLOAD_DTYPE)[:, 0]
