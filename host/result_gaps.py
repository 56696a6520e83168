"""The result's empty blocks, zeroed while the exchange waits for the switch.

A sparse all-reduce's result is mostly blocks that no worker sent: from_wire_in_place writes them zero once the
exchange is over, a pass over the whole buffer (15 ms per 100 MB on the device machine, d = 0.01) during which the
switch has nothing to do. But every block below TensorExchange.final_below() is final (each column has moved past
it), and one that got no result then never will: the agent zeroes those between batches of results, a step at a
time, so that the pass overlaps the switch's work, and from_wire_in_place skips what is done. Blocks that did get a
result are left as they are, still big-endian sums: a peer's REQUEST may be answered from them until the
exchange ends.
"""

from __future__ import annotations

import numpy as np

from .engine import TensorExchange
from .quantize import zero_gaps

#: blocks zeroed in one step (64 KiB: a few microseconds), so that a result that arrives meanwhile waits little
STEP_BLOCKS = 512


class ResultGaps:
    """Zeroes `buffer`'s final blocks that got no result, in order; `zeroed_below`: how far it has come."""

    def __init__(self, buffer: np.ndarray) -> None:
        self.buffer = buffer
        self.zeroed_below = 0

    def step(self, exchange: TensorExchange) -> bool:
        """Zero up to STEP_BLOCKS more of the final blocks without a result; whether there was any to do."""
        stop = min(exchange.final_below(), self.zeroed_below + STEP_BLOCKS)
        if stop <= self.zeroed_below:
            return False
        zero_gaps(self.buffer, exchange.result_next, self.zeroed_below, stop)
        self.zeroed_below = stop
        return True
