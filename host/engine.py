"""The worker side of one tensor's exchange (docs/protocol.md section 4.2), without sockets.

:class:`TensorExchange` reacts to RESULT, REPAIR and forwarded REQUEST payloads and to the clock, and emits CONTRIB,
REQUEST and REPAIR payloads
through a callback, so tests drive it with scripted results and the agent drives it with a transport. Per slot
it keeps one outstanding round: S packets in flight at most.

Per slot and across tensors (:class:`SlotChannel`) the worker keeps its shadow-set index, advanced (mod SETS) on
every result of the slot it consumes. Nothing is acknowledged: a worker that misses a result (a gap in its column's
chain of next blocks, or a timer) sends a REQUEST, which the switch answers with a replay while it holds the round
and forwards to a peer worker once the set is reused; every exchange serves such forwarded REQUESTs from the
results it has consumed (REPAIR), until the closing round shows that every worker is done (host/agent.py).
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
#: A worker waiting for a round it did not contribute to waits this many retransmission timeouts, and at least
#: Timeouts.request_fallback, before its first REQUEST. Its first evidence of a lost result is a gap: the column's
#: next result arriving (then it REQUESTs at once). Only two losses leave no gap: the column's last result, and the
#: one whose next block is this worker's own (the column then waits for it). The timer is the fallback for those;
#: an RTT-based one fired for rounds that were merely slow, and each such REQUEST is only dropped by the switch.
REQUEST_PATIENCE = 3
_SET_MASK = C.SET_MASK
#: The timeout is at least this many times the decaying peak of recent round trips (RoundTripEstimator).
PEAK_MARGIN = 1.25
#: The peak shrinks by this factor per sample: a slow round counts for some tens of samples, then fades.
PEAK_DECAY = 0.97


@dataclass(slots=True)
class SlotChannel:
    """A slot's worker state that outlives a tensor: the shadow set its next round uses."""

    set_index: int = 0
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

    Karn's rule alone hides the slow tail: the rounds that time out are exactly the slow ones, and fast clean
    samples then pull the timeout back under the tail, which times out again (a storm of 5 packets per block was
    seen with 16 workers on 2 loaded cores). So the timeout is also at least PEAK_MARGIN times a decaying peak of
    the samples, and a timeout shown to be spurious (the result came sooner after the retransmission than any round
    trip could: it answers the original) samples the original's full time (`spurious`).
    """

    srtt: float | None = None
    rttvar: float = 0.0
    backed_off: float | None = None
    peak: float = 0.0

    def sample(self, seconds: float) -> None:
        if self.srtt is None:
            self.srtt, self.rttvar = seconds, seconds / 2
        else:
            self.rttvar = 0.75 * self.rttvar + 0.25 * abs(self.srtt - seconds)
            self.srtt = 0.875 * self.srtt + 0.125 * seconds
        self.peak = max(seconds, self.peak * PEAK_DECAY)
        self.backed_off = None

    def answers_original(self, since_retransmission: float) -> bool:
        """Whether a result that came `since_retransmission` seconds after a retransmission must answer the
        original CONTRIB: sooner than half a smoothed round trip, the retransmission cannot have been answered."""
        return self.srtt is not None and since_retransmission < 0.5 * self.srtt

    def spurious(self, seconds: float) -> None:
        """The original CONTRIB of a retransmitted round was answered after `seconds`: a real (slow) round trip."""
        self.sample(seconds)

    def timed_out(self, timeout: float, timeouts: Timeouts) -> None:
        """A round sent with `timeout` was not answered in time. Columns that time out together (one burst) back
        off once, not once each: the new value is the larger of the current one and `timeout` backed off."""
        backed_off = min(timeout * timeouts.backoff, timeouts.retransmit_max)
        self.backed_off = max(self.backed_off or 0.0, backed_off)

    def timeout(self, timeouts: Timeouts) -> float:
        if self.backed_off is not None:
            return self.backed_off
        if self.srtt is None:
            return min(max(timeouts.retransmit_first, timeouts.retransmit_initial), timeouts.retransmit_max)
        margin = max(4 * self.rttvar, self.srtt)
        smoothed = max(self.srtt + margin, PEAK_MARGIN * self.peak)
        return min(max(timeouts.retransmit_initial, smoothed), timeouts.retransmit_max)


@dataclass(slots=True)
class _Column:
    """One slot's progress through this tensor's column."""

    slot: int
    contrib: bytearray
    expected: int = END          # block whose result is awaited next (END: column closed)
    own_next: int = END          # the next block this worker sends in the column
    contributed: bool = False    # whether this worker contributed to the awaited round
    sent_at: float | None = None  # when our CONTRIB for the awaited round left, if it was never retransmitted
    first_sent_at: float = 0.0   # when our CONTRIB for the awaited round first left
    retransmitted_at: float | None = None  # when it was last retransmitted
    rto: float = 0.0
    deadline: float = _NO_DEADLINE
    timeouts: int = 0            # timer expiries for the awaited round
    gap_requested: bool = False  # a REQUEST for the awaited round already went out on a gap
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
        worker_id: int = 0,
        workers: int = 1,
        repair_source: "TensorExchange | None" = None,
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
        self._worker_id = worker_id
        #: the exchange before this one, which serves peers' REQUESTs for its results while this one runs.
        self._repair_source = repair_source
        self._peers = [(worker_id + k) % workers for k in range(1, workers)] or [worker_id]
        self._next_block = plan.next_block.tolist()  # Python ints: indexed once per sent block
        # What this worker can tell a peer about each consumed round (served on forwarded REQUESTs): its next
        # block and set index; -1: not consumed (yet).
        self._result_next = np.full(plan.count, -1, dtype=np.int64)
        self._result_set = np.zeros(plan.count, dtype=np.uint8)
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

    def forget_repair_source(self) -> None:
        """Stop serving the exchange before this one (a peer is never two tensors behind)."""
        self._repair_source = None

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
            buffer, 0, C.MSG_CONTRIB, channel.set_index, self.job_id, self.tensor_id, column.slot, block, following,
            self._exponent, C.LANES, 0, 0,
        )
        start = block * LANES_BYTES
        buffer[_HEADER_BYTES:] = self._lanes[start:start + LANES_BYTES]
        column.own_next = following
        column.contributed = True
        column.sent_at = now
        column.first_sent_at = now
        column.retransmitted_at = None
        column.timeouts = 0
        column.gap_requested = False
        self._send(buffer)
        self.stats.contribs_sent += 1
        if self._count_blocks:
            self.stats.blocks_sent += 1
        self._arm(column, now, self._round_trip.timeout(self._timeouts))

    def _request(self, column: _Column) -> None:
        """REQUEST the awaited round of `column`: replayed by the switch while held, else forwarded to a peer (a
        different one on every try, since a peer may have missed the result too)."""
        attempt = column.timeouts + (1 if column.gap_requested else 0)
        peer = self._peers[attempt % len(self._peers)]
        channel = self._channels[column.slot]
        self._send(HEADER.pack(C.MSG_REQUEST, channel.set_index, self.job_id, self.tensor_id, column.slot,
                               column.expected, 0, 0, 0, peer, 0))
        self.stats.requests_sent += 1

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
            log.debug("%s: tensor %d slot %d: no result for block %d after %.3f s (%s)", self._name, self.tensor_id,
                      slot, column.expected, column.rto, "retransmit" if column.contributed else "request")
            column.sent_at = None  # Karn: this round's time no longer measures anything
            if column.contributed:
                self._round_trip.timed_out(column.rto, self._timeouts)
                column.retransmitted_at = now
                self._send(column.contrib)
                self.stats.retransmissions += 1
                if column.timeouts > 0:
                    # Still nothing after a retransmission: the round may be complete and its set reused since
                    # (our result lost, the column moved on without us); only a REQUEST reaches a peer then.
                    self._request(column)
            else:
                self._request(column)
            column.timeouts += 1
            self._arm(column, now, min(column.rto * self._timeouts.backoff, self._timeouts.retransmit_max))
        if self._to_launch:
            self._launch(now)

    # --- results -------------------------------------------------------------------------------------------------

    def on_payload(self, payload: memoryview | bytes, now: float) -> None:
        """Handle one datagram payload from the switch: a RESULT, a peer's REPAIR, or a peer's forwarded REQUEST."""
        size = len(payload)
        if size == C.OMNI_HEADER_BYTES:
            self._serve(payload)
            return
        if size != DATA_PAYLOAD_BYTES:
            self.stats.ignored += 1
            return
        (msg_type, flags, job_id, tensor_id, slot, block, next_block, exponent, lane_count, _peer,
         _reserved) = HEADER.unpack_from(payload)
        if (msg_type != C.MSG_RESULT and msg_type != C.MSG_REPAIR) or lane_count != C.LANES or job_id != self.job_id:
            self.stats.ignored += 1
            return
        if tensor_id != self.tensor_id:
            self.stats.duplicates += 1  # a replay of an earlier tensor's round
            return
        if slot >= len(self._columns) or block % self.plan.slots != slot or block >= self.plan.count:
            self.stats.ignored += 1
            return
        if msg_type == C.MSG_REPAIR:
            self.stats.repairs_received += 1
        column = self._columns[slot]
        if column.expected == END or block < column.expected:
            self.stats.duplicates += 1
            return
        if block > column.expected:
            # A later round of the column completed first from our point of view: we missed the one expected.
            # Keep this one for its turn, and ask for the missing one now rather than at the timer.
            column.early[block] = bytes(payload)
            self.stats.early += 1
            if not column.gap_requested:
                self._request(column)
                column.gap_requested = True
            return
        self._consume(column, flags & _SET_MASK, block, next_block, exponent, payload, now)
        while column.expected in column.early:
            early = column.early.pop(column.expected)
            header = HEADER.unpack_from(early)
            self._consume(column, header[1] & _SET_MASK, header[5], header[6], header[7], early, now)

    def _serve(self, payload: memoryview | bytes) -> None:
        """A peer's REQUEST, forwarded by the switch because the set no longer holds the round: answer with a
        REPAIR if this worker has consumed that result (else stay silent: the peer asks another)."""
        (msg_type, flags, job_id, tensor_id, slot, block, _next, _exponent, lane_count, requester,
         _reserved) = HEADER.unpack_from(payload)
        if msg_type != C.MSG_REQUEST or lane_count != 0 or job_id != self.job_id:
            self.stats.ignored += 1
            return
        if tensor_id != self.tensor_id and self._repair_source is not None:
            self._repair_source._serve(payload)
            return
        if tensor_id != self.tensor_id or block >= self.plan.count or self._result_next[block] < 0:
            self.stats.repairs_unknown += 1
            return
        start = block * LANES_BYTES
        repair = HEADER.pack(C.MSG_REPAIR, int(self._result_set[block]), self.job_id, tensor_id, slot, block,
                             int(self._result_next[block]), self.result_exponent, C.LANES, requester, 0)
        self._send(repair + bytes(self._result[start:start + LANES_BYTES]))
        self.stats.repairs_sent += 1

    def _consume(self, column: _Column, set_bit: int, block: int, next_block: int, exponent: int,
                 payload: memoryview | bytes, now: float) -> None:
        slot = column.slot
        channel = self._channels[slot]
        if set_bit != channel.set_index:
            raise ProtocolError(
                f"{self._name}: result of tensor {self.tensor_id} block {block} on set {set_bit}, but slot {slot} "
                f"is on set {channel.set_index} here: the job was reset or reinstalled while this agent kept its state"
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
        elif (column.contributed and column.retransmitted_at is not None
              and self._round_trip.answers_original(now - column.retransmitted_at)):
            self._round_trip.spurious(now - column.first_sent_at)
            self.stats.spurious_timeouts += 1
        start = block * LANES_BYTES
        self._result[start:start + LANES_BYTES] = payload[_HEADER_BYTES:]
        self._result_next[block] = next_block
        self._result_set[block] = set_bit
        self.stats.results += 1
        self.result_exponent = exponent
        self.last_progress = now
        if block < self.plan.slots:
            self._awaiting_first -= 1
        channel.set_index = (set_bit + 1) & _SET_MASK
        column.expected = next_block
        column.timeouts = 0
        column.gap_requested = False
        if next_block == END:
            column.deadline = _NO_DEADLINE
            self._open -= 1
        elif next_block == column.own_next:
            self._contribute(column, next_block, now)
        else:
            column.contributed = False
            column.sent_at = None
            patience = max(REQUEST_PATIENCE * self._round_trip.timeout(self._timeouts), self._timeouts.request_fallback)
            self._arm(column, now, patience)
        if self._to_launch:
            self._launch(now)


def big_endian_lanes(values: np.ndarray) -> np.ndarray:
    """int32 values as a contiguous big-endian array, whose buffer the exchange slices per block."""
    return np.ascontiguousarray(values, dtype=np.dtype(">i4"))
