"""What a job's all-reduce puts on the wire, computed from its inputs: the loss-free OmniReduce exchange and the
dense (SwitchML-style) exchange it is compared with.

Packet sizes and the exchange follow docs/protocol.md: a CONTRIB or RESULT is 14+20+8+20+4*LANES bytes, a REQUEST
14+20+8+20. Every data tensor is preceded by a one-block scale round and followed by a one-block closing round,
in which every worker contributes once. For one tensor with send sets `send_w` (the blocks worker w sends: its
non-zero blocks plus the dense first round, or every block in dense mode):

- contributions C = sum_w |send_w|;
- results R = |union_w send_w| (each block sent by someone completes exactly once), each multicast to W workers;
- nothing else: no worker acknowledges anything (docs/protocol.md section 4).

Measured counters exceed this only through loss recovery (retransmissions, REQUESTs, replays, repairs) and drops.
docs/performance.md compares it with the *ideal* exchange, which has neither the dense first round nor the two
one-block rounds.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from omnireduce.p4src import constants

from .inputs import nonzero_block_mask

ETHERNET_BYTES = 14
HEADERS_BYTES = ETHERNET_BYTES + constants.IPV4_HEADER_BYTES + constants.UDP_HEADER_BYTES + constants.OMNI_HEADER_BYTES
DATA_PACKET_BYTES = HEADERS_BYTES + 4 * constants.LANES  # CONTRIB and RESULT
CONTROL_PACKET_BYTES = HEADERS_BYTES  # REQUEST


@dataclass(frozen=True, slots=True)
class Exchange:
    """Packets of one job's all-reduce (scale round included), by kind, and the bytes they make in each direction."""

    contributions: int
    results: int  # rounds completed; each leaves the switch once per worker
    workers: int

    @property
    def to_switch_packets(self) -> int:
        return self.contributions

    @property
    def to_switch_bytes(self) -> int:
        return self.contributions * DATA_PACKET_BYTES

    @property
    def from_switch_packets(self) -> int:
        return self.results * self.workers

    @property
    def from_switch_bytes(self) -> int:
        return self.from_switch_packets * DATA_PACKET_BYTES

    @property
    def total_bytes(self) -> int:
        return self.to_switch_bytes + self.from_switch_bytes

    def times(self, count: int) -> "Exchange":
        """The exchange of `count` all-reduces of the same tensors, one after the other."""
        return Exchange(self.contributions * count, self.results * count, self.workers)

    def __add__(self, other: "Exchange") -> "Exchange":
        if self.workers != other.workers:
            raise ValueError("cannot add exchanges of jobs with different worker counts")
        return Exchange(self.contributions + other.contributions, self.results + other.results, self.workers)


def exchange_of(send_sets: Sequence[np.ndarray], slots: int) -> Exchange:
    """The loss-free exchange of one tensor whose workers send the blocks marked in `send_sets` (bool masks)."""
    workers = len(send_sets)
    blocks = int(send_sets[0].size)
    contributions = int(sum(int(np.count_nonzero(mask)) for mask in send_sets))
    results = int(np.count_nonzero(np.logical_or.reduce(list(send_sets)))) if blocks else 0
    return Exchange(contributions, results, workers)


def one_block_rounds(workers: int) -> Exchange:
    """The scale round before and the closing round after every tensor: everyone contributes, one result each."""
    round_ = exchange_of([np.ones(1, dtype=bool)] * workers, slots=1)
    return round_ + round_


def send_set(tensor: np.ndarray, slots: int, dense: bool) -> np.ndarray:
    """The blocks one worker sends: all of them in dense mode, else its non-zero ones plus the first round."""
    mask = nonzero_block_mask(tensor)
    if dense:
        return np.ones_like(mask)
    mask[: min(slots, mask.size)] = True
    return mask


def omnireduce_exchange(inputs: Sequence[np.ndarray], slots: int, dense: bool = False) -> Exchange:
    """The loss-free exchange of an all-reduce of `inputs` (one tensor per worker), scale and closing rounds included."""
    data = exchange_of([send_set(tensor, slots, dense) for tensor in inputs], slots)
    return one_block_rounds(len(inputs)) + data


def ideal_exchange(inputs: Sequence[np.ndarray]) -> Exchange:
    """The ideal sparse exchange (docs/performance.md): each worker sends each of its non-zero blocks once, and each
    block non-zero in some worker comes back once to every worker; no first round, no scale or closing round."""
    masks = [nonzero_block_mask(tensor) for tensor in inputs]
    contributions = int(sum(int(np.count_nonzero(mask)) for mask in masks))
    results = int(np.count_nonzero(np.logical_or.reduce(masks))) if masks and masks[0].size else 0
    return Exchange(contributions, results, len(inputs))


def dense_exchange(workers: int, size: int, slots: int) -> Exchange:
    """The exchange of dense aggregation of `size` elements: every worker sends every block."""
    blocks = -(-size // constants.LANES)
    return one_block_rounds(workers) + exchange_of([np.ones(blocks, dtype=bool)] * workers, slots)
