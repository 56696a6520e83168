"""What a job's all-reduce puts on the wire, computed from its inputs: the loss-free OmniReduce exchange and the
dense (SwitchML-style) exchange it is compared with.

Packet sizes and the exchange follow docs/protocol.md: a CONTRIB or RESULT is 14+20+8+20+4*LANES bytes, an ACK
14+20+8+20. Every tensor is preceded by a one-block scale round. For one tensor with send sets `send_w` (the blocks
worker w sends: its non-zero blocks plus the dense first round, or every block in dense mode):

- contributions C = sum_w |send_w|;
- results R = |union_w send_w| (each block sent by someone completes exactly once), each multicast to W workers;
- ACKs: a worker acknowledges every result except those whose next block it contributes to; the next block of a
  result is every sent block except the first of each column, so A = W R - (C - W columns).

Measured counters exceed this only through loss recovery (retransmissions, REQUESTs, replays) and drops.
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
CONTROL_PACKET_BYTES = HEADERS_BYTES  # ACK and REQUEST


@dataclass(frozen=True, slots=True)
class Exchange:
    """Packets of one job's all-reduce (scale round included), by kind, and the bytes they make in each direction."""

    contributions: int
    results: int  # rounds completed; each leaves the switch once per worker
    acks: int
    workers: int

    @property
    def to_switch_packets(self) -> int:
        return self.contributions + self.acks

    @property
    def to_switch_bytes(self) -> int:
        return self.contributions * DATA_PACKET_BYTES + self.acks * CONTROL_PACKET_BYTES

    @property
    def from_switch_packets(self) -> int:
        return self.results * self.workers

    @property
    def from_switch_bytes(self) -> int:
        return self.from_switch_packets * DATA_PACKET_BYTES

    @property
    def total_bytes(self) -> int:
        return self.to_switch_bytes + self.from_switch_bytes

    def __add__(self, other: "Exchange") -> "Exchange":
        if self.workers != other.workers:
            raise ValueError("cannot add exchanges of jobs with different worker counts")
        return Exchange(self.contributions + other.contributions, self.results + other.results,
                        self.acks + other.acks, self.workers)


def exchange_of(send_sets: Sequence[np.ndarray], slots: int) -> Exchange:
    """The loss-free exchange of one tensor whose workers send the blocks marked in `send_sets` (bool masks)."""
    workers = len(send_sets)
    blocks = int(send_sets[0].size)
    columns = min(slots, blocks)
    contributions = int(sum(int(np.count_nonzero(mask)) for mask in send_sets))
    results = int(np.count_nonzero(np.logical_or.reduce(list(send_sets)))) if blocks else 0
    acks = workers * results - (contributions - workers * columns)
    return Exchange(contributions, results, acks, workers)


def scale_round(workers: int) -> Exchange:
    """The one-block scale round before every tensor: everyone contributes, one result, everyone acknowledges."""
    return exchange_of([np.ones(1, dtype=bool)] * workers, slots=1)


def send_set(tensor: np.ndarray, slots: int, dense: bool) -> np.ndarray:
    """The blocks one worker sends: all of them in dense mode, else its non-zero ones plus the first round."""
    mask = nonzero_block_mask(tensor)
    if dense:
        return np.ones_like(mask)
    mask[: min(slots, mask.size)] = True
    return mask


def omnireduce_exchange(inputs: Sequence[np.ndarray], slots: int, dense: bool = False) -> Exchange:
    """The loss-free exchange of an all-reduce of `inputs` (one tensor per worker), scale round included."""
    data = exchange_of([send_set(tensor, slots, dense) for tensor in inputs], slots)
    return scale_round(len(inputs)) + data


def dense_exchange(workers: int, size: int, slots: int) -> Exchange:
    """The exchange of dense aggregation of `size` elements: every worker sends every block."""
    blocks = -(-size // constants.LANES)
    return scale_round(workers) + exchange_of([np.ones(blocks, dtype=bool)] * workers, slots)
