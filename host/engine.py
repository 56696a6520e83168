"""The worker side of one tensor's exchange (docs/protocol.md section 4.2), without sockets.

:class:`TensorExchange` reacts to RESULT payloads and to the clock, and emits CONTRIB, ACK and REQUEST payloads
through a callback, so tests drive it with scripted results and the agent drives it with a transport. Per slot
it keeps one outstanding round: S packets in flight at most.

Per slot and across tensors (:class:`SlotChannel`) the worker keeps its shadow-set bit, toggled on every result of
the slot it consumes, and the last ACK it sent in each set. The protocol sends an ACK once; if it is lost, the
set stays "unconfirmed" and the round after next in that slot is refused (SET_BUSY) for good, by every worker, so
the agent repeats the ACK of a set whenever it waits on that set and its timer fires (see host report).
"""

from __future__ import annotations

import heapq
import logging
import math
from collections import deque
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from omnireduce.p4src import constants as C

from .blocks import BlockPlan
from .config import Pacing, Timeouts
from .errors import ProtocolError
from .stats import Stats
from .wire import DATA_PAYLOAD_BYTES, HEADER, LANES_BYTES

log = logging.getLogger(__name__)

END = C.END_OF_TENSOR
_HEADER_BYTES = C.OMNI_HEADER_BYTES
_NO_DEADLINE = math.inf
#: A worker waiting for a round it did not contribute to waits this many retransmission timeouts before its first
#: REQUEST: that round's contributors may need a retransmission themselves (their CONTRIB refused as SET_BUSY
#: while a slow worker's ACK was under way), and a REQUEST before the round completes is only dropped.
REQUEST_PATIENCE = 2


@dataclass(slots=True)
class SlotChannel:
    """A slot's worker state that outlives a tensor: the shadow-set bit and the last ACK sent in each set."""

    set_bit: int = 0
    last_ack: list[bytes | None] = field(default_factory=lambda: [None, None])
    #: tensor id of the last tensor whose rounds used this slot (None: not used since the agent started).
    last_tensor: int | None = None


@dataclass(slots=True)
class RoundTripEstimator:
    """Smoothed time from a CONTRIB to its result, and the timeout it gives (RFC 6298).

    It includes waiting for the other workers of the round, which is what a retransmission must not beat. A
    round's first timeout is max(retransmit_initial, srtt + max(4 rttvar, srtt)), capped at retransmit_max: at
    least twice the smoothed time, because a busy pipeline of S rounds per worker has a steady round trip (tiny
    rttvar) that still drifts by more than 4 rttvar, and every premature retransmission loads the switch further
    (in a dense run on BMv2, srtt + 4 rttvar alone retransmitted 12% of the rounds). Karn's rule: a
    retransmitted round gives no sample, and a timeout backs the timeout off for the *following* rounds too until
    a round sent once is timed again; otherwise, once the switch is slower than the timeout (BMv2 under a dense
    burst), every round would be retransmitted, never sampled, and the duplicates would keep the switch slow.
    """

    srtt: float | None = None
    rttvar: float = 0.0
    backed_off: float | None = None

    def sample(self, seconds: float) -> None:
        if self.srtt is None:
            self.srtt, self.rttvar = seconds, seconds / 2
        else:
            self.rttvar = 0.75 * self.rttvar + 0.25 * abs(self.srtt - seconds)
            self.srtt = 0.875 * self.srtt + 0.125 * seconds
        self.backed_off = None

    def timed_out(self, timeout: float, timeouts: Timeouts) -> None:
        """A round sent with `timeout` was not answered in time. Columns that time out together (one burst) back
        off once, not once each: the new value is the larger of the current one and `timeout` backed off."""
        backed_off = min(timeout * timeouts.backoff, timeouts.retransmit_max)
        self.backed_off = max(self.backed_off or 0.0, backed_off)

    def timeout(self, timeouts: Timeouts) -> float:
        if self.backed_off is not None:
            return self.backed_off
        if self.srtt is None:
            return timeouts.retransmit_initial
        margin = max(4 * self.rttvar, self.srtt)
        return min(max(timeouts.retransmit_initial, self.srtt + margin), timeouts.retransmit_max)


@dataclass(slots=True)
class _Column:
    """One slot's progress through this tensor's column."""

    slot: int
    contrib: bytearray
    expected: int = END          # block whose result is awaited next (END: column closed)
    own_next: int = END          # the next block this worker sends in the column
    contributed: bool = False    # whether this worker contributed to the awaited round
    sent_at: float | None = None  # when our CONTRIB for the awaited round left, if it was never retransmitted
    rto: float = 0.0
    deadline: float = _NO_DEADLINE
    early: dict[int, bytes] = field(default_factory=dict)


Send = Callable[[bytes | bytearray], None]


class TensorExchange:
    """All-reduce one tensor of `plan.count` blocks over `plan.slots` slots.

    lanes: the worker's values, big-endian int32, plan.count * LANES of them. result: writable buffer of the same
    size that receives the sums (big-endian), blocks never completed (zero in every worker) are left untouched.
    exponent: the exponent field of this worker's CONTRIBs; expected_exponent: if given, every RESULT must carry
    it (the data tensor after a scale round), else the exchange stops with ProtocolError.
    """

    def __init__(
        self,
        *,
        job_id: int,
        tensor_id: int,
        plan: BlockPlan,
        lanes: memoryview,
        result: memoryview,
        exponent: int,
        channels: list[SlotChannel],
        send: Send,
        stats: Stats,
        timeouts: Timeouts,
        pacing: Pacing = Pacing(),
        round_trip: RoundTripEstimator | None = None,
        expected_exponent: int | None = None,
        count_blocks: bool = True,
        name: str = "",
    ) -> None:
        if len(lanes) != plan.count * LANES_BYTES or len(result) != plan.count * LANES_BYTES:
            raise ValueError("lanes and result must hold plan.count blocks of big-endian int32 lanes")
        if len(channels) < plan.slots:
            raise ValueError(f"{len(channels)} slot channels for {plan.slots} slots")
        self.job_id = job_id
        self.tensor_id = tensor_id
        self.plan = plan
        self._lanes = lanes
        self._result = result
        self._exponent = exponent
        self._expected_exponent = expected_exponent
        self._channels = channels
        self._send = send
        self.stats = stats
        self._timeouts = timeouts
        self._pacing = pacing
        self._round_trip = round_trip if round_trip is not None else RoundTripEstimator()
        self._count_blocks = count_blocks
        self._name = name or f"job{job_id}"
        self._next_block = plan.next_block.tolist()  # Python ints: indexed once per sent block
        self._columns = [_Column(slot, bytearray(DATA_PAYLOAD_BYTES)) for slot in range(plan.columns)]
        self._timers: list[tuple[float, int]] = []
        self._open = len(self._columns)
        self._to_launch: deque[int] = deque()
        self._awaiting_first = 0  # launched columns still waiting for their first result (max_burst)
        self._tokens = float(pacing.max_burst or 1)
        self._token_time = 0.0
        self.started_at = 0.0
        self.last_progress = 0.0
        #: exponent field of the last result consumed (the scale round's agreed exponent).
        self.result_exponent = 0

    # --- state ---------------------------------------------------------------------------------------------------

    @property
    def done(self) -> bool:
        """Every column closed (its last result, next = END_OF_TENSOR, consumed)."""
        return self._open == 0

    @property
    def open_columns(self) -> int:
        return self._open

    def progress(self) -> float:
        """Fraction of the tensor's blocks whose column has moved past them (0..1)."""
        if not self._columns:
            return 1.0
        count = self.plan.count
        passed = sum(count if column.expected == END else column.expected for column in self._columns)
        return min(1.0, passed / (count * len(self._columns)))

    def next_wakeup(self) -> float:
        """Monotonic time of the next timer or paced launch (inf if none)."""
        soonest = self._timers[0][0] if self._timers else _NO_DEADLINE
        if self._to_launch and self._pacing.pps is not None and self._tokens < 1:
            soonest = min(soonest, self._token_time + (1 - self._tokens) / self._pacing.pps)
        return soonest

    # --- sending -------------------------------------------------------------------------------------------------

    def start(self, now: float) -> None:
        """Queue the dense first round (block s on slot s) and send what pacing allows."""
        self.started_at = self.last_progress = now
        self._token_time = now
        for column in self._columns:
            channel = self._channels[column.slot]
            channel.last_tensor = self.tensor_id
            column.expected = column.slot
            self._to_launch.append(column.slot)
        self._launch(now)

    def _launch(self, now: float) -> None:
        pacing = self._pacing
        if pacing.pps is not None:
            self._tokens = min(self._tokens + (now - self._token_time) * pacing.pps, float(pacing.max_burst or 1))
            self._token_time = now
        while self._to_launch:
            if pacing.max_burst is not None and self._awaiting_first >= pacing.max_burst:
                return
            if pacing.pps is not None:
                if self._tokens < 1:
                    return
                self._tokens -= 1
            column = self._columns[self._to_launch.popleft()]
            self._awaiting_first += 1
            self._contribute(column, column.slot, now)

    def _contribute(self, column: _Column, block: int, now: float) -> None:
        """Send `block` with this worker's next block in the column, on the slot's current set."""
        channel = self._channels[column.slot]
        following = self._next_block[block]
        buffer = column.contrib
        HEADER.pack_into(
            buffer, 0, C.MSG_CONTRIB, channel.set_bit, self.job_id, self.tensor_id, column.slot, block, following,
            self._exponent, C.LANES, 0,
        )
        start = block * LANES_BYTES
        buffer[_HEADER_BYTES:] = self._lanes[start:start + LANES_BYTES]
        column.own_next = following
        column.contributed = True
        column.sent_at = now
        self._send(buffer)
        self.stats.contribs_sent += 1
        if self._count_blocks:
            self.stats.blocks_sent += 1
        self._arm(column, now, self._round_trip.timeout(self._timeouts))

    def _control(self, msg_type: int, set_bit: int, slot: int, block: int) -> bytes:
        return HEADER.pack(msg_type, set_bit, self.job_id, self.tensor_id, slot, block, 0, 0, 0, 0)

    def _arm(self, column: _Column, now: float, rto: float) -> None:
        column.rto = rto
        column.deadline = now + rto
        heapq.heappush(self._timers, (column.deadline, column.slot))

    # --- timers --------------------------------------------------------------------------------------------------

    def on_timer(self, now: float) -> None:
        """Retransmit or request for every column whose timer expired; launch paced first-round blocks."""
        timers = self._timers
        while timers and timers[0][0] <= now:
            deadline, slot = heapq.heappop(timers)
            column = self._columns[slot]
            if column.deadline != deadline or column.expected == END:
                continue  # superseded by a later arm, or the column closed
            channel = self._channels[slot]
            log.debug("%s: tensor %d slot %d: no result for block %d after %.3f s (%s)", self._name, self.tensor_id,
                      slot, column.expected, column.rto, "retransmit" if column.contributed else "request")
            column.sent_at = None  # Karn: this round's time no longer measures anything
            if column.contributed:
                self._round_trip.timed_out(column.rto, self._timeouts)
                self._send(column.contrib)
                self.stats.retransmissions += 1
            else:
                self._send(self._control(C.MSG_REQUEST, channel.set_bit, slot, column.expected))
                self.stats.requests_sent += 1
            # The round awaited in this set may be refused (SET_BUSY) because our ACK of the set's previous round
            # was lost; repeating it is harmless (ROUND_NOT_READY at worst) and unblocks the set if it was.
            pending_ack = channel.last_ack[channel.set_bit]
            if pending_ack is not None:
                self._send(pending_ack)
                self.stats.acks_resent += 1
            self._arm(column, now, min(column.rto * self._timeouts.backoff, self._timeouts.retransmit_max))
        if self._to_launch:
            self._launch(now)

    # --- results -------------------------------------------------------------------------------------------------

    def on_payload(self, payload: memoryview | bytes, now: float) -> None:
        """Handle one datagram payload from the switch."""
        if len(payload) != DATA_PAYLOAD_BYTES:
            self.stats.ignored += 1
            return
        (msg_type, flags, job_id, tensor_id, slot, block, next_block, exponent, lane_count,
         _reserved) = HEADER.unpack_from(payload)
        if msg_type != C.MSG_RESULT or lane_count != C.LANES or job_id != self.job_id:
            self.stats.ignored += 1
            return
        if tensor_id != self.tensor_id:
            self.stats.duplicates += 1  # a replay of an earlier tensor's round
            return
        if slot >= len(self._columns) or block % self.plan.slots != slot or block >= self.plan.count:
            self.stats.ignored += 1
            return
        column = self._columns[slot]
        if column.expected == END or block < column.expected:
            self.stats.duplicates += 1
            return
        if block > column.expected:
            # A later round of the column completed first from our point of view (we missed the one expected);
            # keep it for when its turn comes instead of requesting it again.
            column.early[block] = bytes(payload)
            self.stats.early += 1
            return
        self._consume(column, flags & C.FLAG_SET, block, next_block, exponent, payload, now)
        while column.expected in column.early:
            early = column.early.pop(column.expected)
            header = HEADER.unpack_from(early)
            self._consume(column, header[1] & C.FLAG_SET, header[5], header[6], header[7], early, now)

    def _consume(self, column: _Column, set_bit: int, block: int, next_block: int, exponent: int,
                 payload: memoryview | bytes, now: float) -> None:
        slot = column.slot
        channel = self._channels[slot]
        if set_bit != channel.set_bit:
            raise ProtocolError(
                f"{self._name}: result of tensor {self.tensor_id} block {block} on set {set_bit}, but slot {slot} "
                f"is on set {channel.set_bit} here: the job was reset or reinstalled while this agent kept its state"
            )
        if next_block != END and (next_block <= block or next_block % self.plan.slots != slot
                                  or next_block >= self.plan.count):
            raise ProtocolError(f"{self._name}: result for block {block} announces impossible next {next_block}")
        if next_block > column.own_next:
            raise ProtocolError(
                f"{self._name}: result for block {block} skips to {next_block} past block {column.own_next} that "
                f"this worker announced: the switch lost this worker's announcement"
            )
        if self._expected_exponent is not None and exponent != self._expected_exponent:
            raise ProtocolError(
                f"{self._name}: result for block {block} carries exponent {exponent}, the job agreed on "
                f"{self._expected_exponent}"
            )
        if column.contributed and column.sent_at is not None:
            self._round_trip.sample(now - column.sent_at)
        start = block * LANES_BYTES
        self._result[start:start + LANES_BYTES] = payload[_HEADER_BYTES:]
        self.stats.results += 1
        self.result_exponent = exponent
        self.last_progress = now
        if block < self.plan.slots:
            self._awaiting_first -= 1
        channel.set_bit ^= 1
        column.expected = next_block
        if next_block == END:
            self._acknowledge(channel, set_bit, slot, block)
            column.deadline = _NO_DEADLINE
            self._open -= 1
        elif next_block == column.own_next:
            # Our contribution to the next round confirms this result implicitly (switch: clears our bit in the
            # other set), so no ACK, and any older ACK of this set is moot.
            channel.last_ack[set_bit] = None
            self._contribute(column, next_block, now)
        else:
            self._acknowledge(channel, set_bit, slot, block)
            column.contributed = False
            column.sent_at = None
            self._arm(column, now, REQUEST_PATIENCE * self._round_trip.timeout(self._timeouts))
        if self._to_launch:
            self._launch(now)

    def _acknowledge(self, channel: SlotChannel, set_bit: int, slot: int, block: int) -> None:
        ack = self._control(C.MSG_ACK, set_bit, slot, block)
        channel.last_ack[set_bit] = ack
        self._send(ack)
        self.stats.acks_sent += 1


def big_endian_lanes(values: np.ndarray) -> np.ndarray:
    """int32 values as a contiguous big-endian array, whose buffer the exchange slices per block."""
    return np.ascontiguousarray(values, dtype=np.dtype(">i4"))
