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

import numpy as np

from omnireduce.p4src import constants as C

from .columns import END, ColumnState, contrib_fields
from .wire import DATA_PAYLOAD_BYTES


def fast_rows(payloads: np.ndarray, sizes: np.ndarray, *, job_id: int, tensor_id: int, slots: int, count: int,
              columns: ColumnState, set_index: np.ndarray, expected_exponent: int | None,
              early_slots: set[int]) -> np.ndarray:
    """Mask of the rows of `payloads` (n, DATA_PAYLOAD_BYTES) that the batch path may consume (see above)."""
    fields = contrib_fields(payloads)
    slot = fields["slot"].astype(np.int64)
    block = fields["block_index"].astype(np.int64)
    following = fields["next_block"].astype(np.int64)
    passed = ((sizes == DATA_PAYLOAD_BYTES) & (fields["msg_type"] == C.MSG_RESULT)
              & (fields["lane_count"] == C.LANES) & (fields["job_id"] == job_id)
              & (fields["tensor_id"] == tensor_id) & (slot < len(columns.expected)) & (block < count)
              & (block % slots == slot))
    safe_slot = np.where(passed, slot, 0)  # gathers below index only real columns
    expected = columns.expected[safe_slot]
    passed &= (expected != END) & (block == expected)
    passed &= (fields["flags"] & C.SET_MASK) == set_index[safe_slot]
    passed &= (following == END) | ((following > block) & (following % slots == slot) & (following < count))
    passed &= following <= columns.own_next[safe_slot]
    if expected_exponent is not None:
        passed &= fields["exponent"] == expected_exponent
    if early_slots:
        passed &= ~np.isin(slot, np.fromiter(early_slots, dtype=np.int64))
    # Only the first row of a column in the batch (whatever that row is) can be consumed with the others.
    first = np.zeros(len(slot), dtype=bool)
    first[np.unique(slot, return_index=True)[1]] = True
    return passed & first
