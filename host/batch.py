"""Which results of a batch the agent may consume all at once: the common case, found with numpy.

On a loss-free path nearly every datagram a worker receives is the RESULT its column awaits next. Checking those
one by one in Python (unpack, compare, copy 128 bytes, maybe build a CONTRIB) costs more than everything else the
agent does, so :meth:`TensorExchange.on_batch` views a whole batch as structured arrays and marks the rows that
:meth:`TensorExchange.on_payload` would consume without any side path: a RESULT (not a REPAIR: those count apart)
of this job and tensor, of a column with nothing kept early, for exactly the block the column awaits, on the set
the slot is on, announcing a possible next block no later than this worker's own, with the agreed exponent.

Exactness. The batch path must leave the same state and send the same packets in the same order as feeding the
rows one by one. Rows are therefore taken as runs: the leading rows that pass are consumed together (they are of
distinct columns, since a second row of a column in the batch never passes: a column's second result depends on
the first one's consumption); the first row that fails, and the rows after it up to the next one that passed, go
through on_payload one at a time; then the rest of the batch is classified again against the state they left.
Rows of distinct columns touch disjoint state, except the round-trip estimator, which the batch feeds in row order.
First-round launches under pacing interleave with consumption, so while any are queued no row passes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from omnireduce.p4src import constants as C

from .columns import END, ColumnState
from .wire import DATA_PAYLOAD_BYTES, FLAG_LATE, LANE_DTYPE


#: Bytes 0..7 of the header (msg_type, flags, job_id, tensor_id, slot) as one big-endian word, and the bits of it
#: that are the same in every RESULT of one exchange (msg_type, job_id, tensor_id): one comparison checks all three.
_CONSTANT_BITS = 0xFF00_FFFF_FFFF_0000


@dataclass(frozen=True, slots=True)
class Headers:
    """The header fields of a batch of payloads that the batch path looks at, one array each (int64 where they are
    compared with column state), and the lanes as (n, LANES) big-endian int32."""

    constant: np.ndarray   # uint64: bytes 0..7 masked with _CONSTANT_BITS
    set_index: np.ndarray  # flags & SET_MASK
    late: np.ndarray       # flags & FLAG_LATE set: a late CONTRIB completed the round
    slot: np.ndarray
    block: np.ndarray
    following: np.ndarray  # next_block
    exponent: np.ndarray
    lane_count: np.ndarray
    lanes: np.ndarray

    @classmethod
    def parse(cls, payloads: np.ndarray) -> "Headers":
        """payloads: (n, DATA_PAYLOAD_BYTES) uint8 with contiguous rows."""
        first = payloads[:, :8].view(">u8")[:, 0]
        words = payloads[:, 8:16].view(">u4")
        return cls(
            constant=first & np.uint64(_CONSTANT_BITS),
            set_index=payloads[:, 1] & C.SET_MASK,
            late=(payloads[:, 1] & FLAG_LATE) != 0,
            slot=payloads[:, 6:8].view(">u2")[:, 0].astype(np.int64),
            block=words[:, 0].astype(np.int64),
            following=words[:, 1].astype(np.int64),
            exponent=payloads[:, 16],
            lane_count=payloads[:, 17],
            lanes=payloads[:, C.OMNI_HEADER_BYTES:DATA_PAYLOAD_BYTES].view(LANE_DTYPE),
        )

    def rows(self, start: int, stop: int | None = None) -> "Headers":
        part = slice(start, stop)
        return Headers(self.constant[part], self.set_index[part], self.late[part], self.slot[part], self.block[part],
                       self.following[part], self.exponent[part], self.lane_count[part], self.lanes[part])


def result_constant(job_id: int, tensor_id: int) -> np.uint64:
    """What Headers.constant holds for a RESULT of this job and tensor."""
    return np.uint64((C.MSG_RESULT << 56) | (job_id << 32) | (tensor_id << 16))


def fast_rows(headers: Headers, sizes: np.ndarray, *, constant: np.uint64, slots: int, count: int,
              columns: ColumnState, set_index: np.ndarray, expected_exponent: int | None) -> np.ndarray:
    """Mask of the rows that the batch path may consume (see above); constant: result_constant() of the exchange."""
    slot, block, following = headers.slot, headers.block, headers.following
    column_count = len(columns.expected)
    passed = ((sizes == DATA_PAYLOAD_BYTES) & (headers.constant == constant) & (headers.lane_count == C.LANES)
              & (slot < column_count) & (block < count) & (block % slots == slot))
    safe_slot = np.where(passed, slot, 0)  # gathers below index only real columns
    expected = columns.expected[safe_slot]
    passed &= (expected != END) & (block == expected)
    passed &= headers.set_index == set_index[safe_slot]
    passed &= (following == END) | ((following > block) & (following % slots == slot) & (following < count))
    passed &= following <= columns.own_next[safe_slot]
    if expected_exponent is not None:
        passed &= headers.exponent == expected_exponent
    passed &= columns.has_early[safe_slot] == 0
    # A round completed late is not sampled, and a column in recovery sends its next CONTRIB late: per packet.
    passed &= ~headers.late & (columns.timeouts[safe_slot] == 0) & ~columns.gap_requested[safe_slot]
    # Only the first row of a column in the batch can be consumed with the others (for the leading run that is all
    # that matters: a failing row ends the run anyway). Written backwards, the first row of each slot wins.
    rows = np.arange(len(slot))
    first_row = np.empty(column_count, dtype=np.int64)
    first_row[safe_slot[::-1]] = rows[::-1]
    return passed & (first_row[safe_slot] == rows)
