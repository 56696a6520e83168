"""The worker side of one tensor's exchange (docs/protocol.md section 4.2), without sockets.

:class:`TensorExchange` reacts to RESULT, REPAIR and forwarded REQUEST payloads and to the clock, and emits CONTRIB,
REQUEST and REPAIR payloads
through a callback, so tests drive it with scripted results and the agent drives it with a transport. Per slot
it keeps one outstanding round: S packets in flight at most.

Per slot and across tensors (:class:`SlotChannels`) the worker keeps its shadow-set index, advanced (mod SETS) on
every result of the slot it consumes. Nothing is acknowledged: a worker that misses a result (a gap in its column's
chain of next blocks, or a timer) sends a REQUEST, which the switch answers with a replay while it holds the round
and forwards to a peer worker once the set is reused; every exchange serves such forwarded REQUESTs from the
results it has consumed (REPAIR), until the closing round shows that every worker is done (host/agent.py).
"""

from __future__ import annotations

import logging
import math
from collections import deque
from dataclasses import dataclass
from typing import Callable

import numpy as np

from omnireduce.p4src import constants as C

from . import native
from .batch import Headers, fast_rows, result_constant
from .blocks import BlockPlan
from .columns import END, NO_DEADLINE, ColumnState, SlotChannels, contrib_fields
from .config import Pacing, Timeouts
from .errors import ProtocolError
from .lanes import BlockLanes
from .stats import Stats
from .wire import DATA_PAYLOAD_BYTES, FLAG_LATE, FLAGS_OFFSET, HEADER, LANE_DTYPE, LANES_BYTES

log = logging.getLogger(__name__)

_HEADER_BYTES = C.OMNI_HEADER_BYTES
_NO_DEADLINE = NO_DEADLINE
#: A worker waiting for a round it did not contribute to waits this many retransmission timeouts, and at least
#: Timeouts.request_fallback, before its first REQUEST. Its first evidence of a lost result is a gap: the column's
#: next result arriving (then it REQUESTs at once). Only two losses leave no gap: the column's last result, and the
#: one whose next block is this worker's own (the column then waits for it). The timer is the fallback for those;
#: an RTT-based one fired for rounds that were merely slow, and each such REQUEST is only dropped by the switch.
REQUEST_PATIENCE = 3
_SET_MASK = C.SET_MASK
#: The timeout is at least this many times the decaying peak of recent round trips (RoundTripEstimator). A round
#: that waits for a peer takes the longest of its contributors' queues at the switch, which the peak of our own
#: samples trails: on 16 idle cores, 8 workers into the Python pipeline, the spurious timeouts of rounds in the middle
#: of a tensor came at 1.48-1.52 times the peak. 1.25 left 8-15 of them per run; 1.6 none in 8 runs (with the drain
#: sign of _defer_first_timeout; docs/performance.md, efficiency).
PEAK_MARGIN = 1.6
#: The peak halves every this many smoothed round trips: a slow round counts for some round trips, then fades.
#: Per time, not per sample: results come in batches of tens, and a batch of fast samples used to erase the peak
#: (a factor 0.97 per sample: 0.16 over 60) between two slow rounds a few milliseconds apart.
PEAK_HALF_LIFE = 2.0
#: A first timeout armed before the round trips grew waits at most this many times as long (_defer_first_timeout).
FIRST_TIMEOUT_STRETCH = 2.0
#: A CONTRIB sent while the dense first round drains waits at most this many times its timeout for it
#: (_defer_first_timeout).
FIRST_ROUND_DRAIN_STRETCH = 4.0


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
    The backoff also ends when a retransmission is answered as fast as the smoothed estimate says a round trip
    takes (`recovered`): that timeout was a loss, not a slow switch. Without it, independent losses in different
    columns compounded the backoff (each round armed with it that lost a packet doubled it), and near a tensor's
    end, when few rounds give samples, the timeouts and REQUEST waits grew to seconds: at 5% loss the median run
    took 9.3 s, with it 5.6 s (docs/reliability.md).

    Karn's rule alone hides the slow tail: the rounds that time out are exactly the slow ones, and fast clean
    samples then pull the timeout back under the tail, which times out again (a storm of 5 packets per block was
    seen with 16 workers on 2 loaded cores). So the timeout is also at least PEAK_MARGIN times a decaying peak of
    the samples, and a timeout shown to be spurious (the result came sooner after the retransmission than any round
    trip could: it answers the original) samples the original's full time (`spurious`). The round trips of one
    worker are a mixture: rounds it alone joined take its own queue's time, rounds a peer joined wait for the
    peer's queue too (3x as long was seen with 2 workers into the Python pipeline), so the peak fades with time,
    PEAK_HALF_LIFE smoothed round trips, not with the number of fast samples in between.
    """

    srtt: float | None = None
    rttvar: float = 0.0
    backed_off: float | None = None
    peak: float = 0.0
    peak_at: float | None = None  # when the peak was last decayed

    def sample(self, seconds: float, now: float) -> None:
        """A round trip of `seconds`, measured at `now` (the clock the agent reads)."""
        self.peak = max(seconds, decayed_peak(self.peak, self.peak_at, self.srtt, now))
        self.peak_at = now
        if self.srtt is None:
            self.srtt, self.rttvar = seconds, seconds / 2
        else:
            self.rttvar = 0.75 * self.rttvar + 0.25 * abs(self.srtt - seconds)
            self.srtt = 0.875 * self.srtt + 0.125 * seconds
        self.backed_off = None

    def answers_original(self, since_retransmission: float) -> bool:
        """Whether a result that came `since_retransmission` seconds after a retransmission must answer the
        original CONTRIB: sooner than half a smoothed round trip, the retransmission cannot have been answered."""
        return self.srtt is not None and since_retransmission < 0.5 * self.srtt

    def spurious(self, seconds: float, now: float) -> None:
        """The original CONTRIB of a retransmitted round was answered after `seconds`: a real (slow) round trip."""
        self.sample(seconds, now)

    def recovered(self, since_retransmission: float) -> None:
        """A retransmitted round was answered `since_retransmission` seconds after the retransmission, no later than
        a round trip takes by the smoothed estimate (srtt + max(4 rttvar, srtt)): the path answers as fast as
        before, so the timeout was a loss, not a switch slower than the timeout, and the backoff ends (the next
        rounds are armed by the estimate). A round the switch is merely slow with is answered later than that after
        its retransmission, or sooner than half a round trip (`answers_original`: the timeout was spurious)."""
        if self.backed_off is not None and self.srtt is not None and since_retransmission <= self.smoothed():
            self.backed_off = None

    def sample_many(self, samples: list[float], now: float, timeouts: Timeouts) -> list[float]:
        """sample() each of `samples` (all measured at `now`) in turn; the timeout() after each. The same arithmetic
        in the same order as one call each (the batch path must arm exactly the timers the per-packet path arms),
        without a call per sample: only the first decays the peak, the others come no later."""
        if not samples:
            return []
        srtt, rttvar = self.srtt, self.rttvar
        peak = decayed_peak(self.peak, self.peak_at, srtt, now)
        initial, ceiling = timeouts.retransmit_initial, timeouts.retransmit_max
        after: list[float] = []
        for seconds in samples:
            peak = max(seconds, peak)
            if srtt is None:
                srtt, rttvar = seconds, seconds / 2
            else:
                rttvar = 0.75 * rttvar + 0.25 * abs(srtt - seconds)
                srtt = 0.875 * srtt + 0.125 * seconds
            margin = 4 * rttvar if 4 * rttvar > srtt else srtt
            timeout = max(srtt + margin, PEAK_MARGIN * peak)
            after.append(min(max(initial, timeout), ceiling))
        self.srtt, self.rttvar, self.peak, self.peak_at, self.backed_off = srtt, rttvar, peak, now, None
        return after

    def smoothed(self) -> float:
        """srtt + max(4 rttvar, srtt): the timeout without the peak, the floor and the backoff (0 before a sample)."""
        if self.srtt is None:
            return 0.0
        return self.srtt + max(4 * self.rttvar, self.srtt)

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
        smoothed = max(self.smoothed(), PEAK_MARGIN * self.peak)
        return min(max(timeouts.retransmit_initial, smoothed), timeouts.retransmit_max)


def decayed_peak(peak: float, peak_at: float | None, srtt: float | None, now: float) -> float:
    """`peak`, last decayed at `peak_at`, decayed to `now`: halved every PEAK_HALF_LIFE smoothed round trips
    (exchange.c's decayed_peak does the same operations)."""
    if peak_at is None or srtt is None or not srtt > 0 or not now > peak_at:
        return peak
    return peak * 0.5 ** ((now - peak_at) / (PEAK_HALF_LIFE * srtt))


Send = Callable[[bytes | bytearray | memoryview], None]
#: Sends a (k, DATA_PAYLOAD_BYTES) uint8 array of payloads, row after row, in order.
SendBatch = Callable[[np.ndarray], None]


def send_rows(send: Send) -> SendBatch:
    """A SendBatch that hands each row to `send` (for callers that only have a per-packet send)."""

    def send_batch(rows: np.ndarray) -> None:
        for row in rows:
            send(memoryview(row))

    return send_batch


class TensorExchange:
    """All-reduce one tensor of `plan.count` blocks over `plan.slots` slots.

    lanes: the worker's values by block (BlockLanes), or their bytes laid out block after block (big-endian int32,
    plan.count * LANES of them). result: writable buffer of plan.count blocks that receives the sums (big-endian);
    a block that never receives a result (zero in every worker) is left untouched.
    exponent: the exponent field of this worker's CONTRIBs; expected_exponent: if given, every RESULT must carry
    it (the data tensor after a scale round), else the exchange stops with ProtocolError. send_batch: sends the
    CONTRIBs that one batch of results triggers (default: each through `send`). count_blocks: False for the one-block
    rendezvous rounds (scale, closing), whose block is no data block and whose resends are rendezvous_resends.

    Results come one at a time (:meth:`on_payload`) or as a batch (:meth:`on_batch`); both give exactly the same
    state and the same packets in the same order (host/batch.py explains how the batch path keeps that).
    """

    def __init__(
        self,
        *,
        job_id: int,
        tensor_id: int,
        plan: BlockPlan,
        lanes: BlockLanes | memoryview,
        result: memoryview,
        exponent: int,
        channels: SlotChannels,
        send: Send,
        stats: Stats,
        timeouts: Timeouts,
        send_batch: SendBatch | None = None,
        pacing: Pacing = Pacing(),
        round_trip: RoundTripEstimator | None = None,
        expected_exponent: int | None = None,
        count_blocks: bool = True,
        name: str = "",
        worker_id: int = 0,
        workers: int = 1,
        repair_source: "TensorExchange | None" = None,
        compiled: bool = True,
        first_round_slack: float = 0.0,
    ) -> None:
        if not isinstance(lanes, BlockLanes):
            if len(lanes) != plan.count * LANES_BYTES:
                raise ValueError("lanes must hold plan.count blocks of big-endian int32 lanes")
            lanes = BlockLanes.tensor_sized(np.frombuffer(lanes, dtype=LANE_DTYPE))
        if lanes.count != plan.count or len(result) != plan.count * LANES_BYTES:
            raise ValueError("lanes and result must hold plan.count blocks of big-endian int32 lanes")
        if len(channels) < plan.slots:
            raise ValueError(f"{len(channels)} slot channels for {plan.slots} slots")
        self.job_id = job_id
        self.tensor_id = tensor_id
        self.plan = plan
        self._lanes = lanes
        self._lane_bytes = memoryview(lanes.rows.reshape(-1).view(np.uint8))  # for one-at-a-time packing
        self._result = result
        # The result buffer as (block, lane), for the batch path's scatters.
        self._result_by_block = np.frombuffer(result, dtype=LANE_DTYPE).reshape(plan.count, C.LANES)
        self._exponent = exponent
        self._expected_exponent = expected_exponent
        self._channels = channels
        self._send = send
        self._send_batch = send_batch if send_batch is not None else send_rows(send)
        self.stats = stats
        self._timeouts = timeouts
        self._pacing = pacing
        self._round_trip = round_trip if round_trip is not None else RoundTripEstimator()
        self._count_blocks = count_blocks
        self._name = name or f"job{job_id}"
        self._worker_id = worker_id
        #: the exchange before this one, which serves peers' REQUESTs for its results while this one runs.
        self._repair_source = repair_source
        #: added to the first round's timeouts: that round also waits for peers still preparing their tensor
        self._first_round_slack = first_round_slack
        self._peers = [(worker_id + k) % workers for k in range(1, workers)] or [worker_id]
        # uint32 as planned (END_OF_TENSOR fits): no int64 copy of a per-block array.
        self._next_block_array = np.ascontiguousarray(plan.next_block, dtype=np.uint32)
        # What this worker can tell a peer about each consumed round (served on forwarded REQUESTs): its next
        # block and set index; -1: not consumed (yet).
        self._result_next = np.full(plan.count, -1, dtype=np.int64)
        self._result_set = np.zeros(plan.count, dtype=np.uint8)
        self._columns = ColumnState.create(plan.columns, job_id=job_id, tensor_id=tensor_id, exponent=exponent)
        self._contrib_fields = contrib_fields(self._columns.contrib)
        self._result_constant = result_constant(job_id, tensor_id)
        self._contrib_views = [memoryview(row) for row in self._columns.contrib]  # for one-at-a-time packing
        self._open = plan.columns
        self._to_launch: deque[int] = deque()
        self._awaiting_first = 0  # launched columns still waiting for their first result (max_burst)
        self.first_answered_at = -math.inf  # when the latest result of the dense first round was consumed
        self._tokens = float(pacing.max_burst or 1)
        self._token_time = 0.0
        self.started_at = 0.0
        self.last_progress = 0.0
        #: CONTRIBs sent so far (the next one's sent_seq), the largest sent_seq of a round answered since, and when
        #: it last grew: frames leave a worker and are switched in order, so a round whose CONTRIB came after that
        #: is still queued (on_timer).
        self.send_seq = 0
        self.answered_seq = -1
        self.answered_at = 0.0
        #: exponent field of the last result consumed (the scale round's agreed exponent).
        self.result_exponent = 0
        #: the compiled common case (host/exchange.c) bound to this exchange's arrays, or None: numpy's batch path.
        self._compiled = CompiledConsumer.bind(self) if compiled else None

    @property
    def compiled(self) -> bool:
        """Whether batches are consumed by the compiled path (host/exchange.c) rather than numpy's."""
        return self._compiled is not None

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
        columns = self.plan.columns
        if not columns:
            return 1.0
        count = self.plan.count
        expected = self._columns.expected
        passed = int(np.where(expected == END, count, expected).sum())
        return min(1.0, passed / (count * columns))

    def next_wakeup(self) -> float:
        """Monotonic time of the next timer or paced launch (inf if none)."""
        soonest = float(self._columns.deadline.min()) if self.plan.columns else _NO_DEADLINE
        if self._to_launch and self._pacing.pps is not None and self._tokens < 1:
            soonest = min(soonest, self._token_time + (1 - self._tokens) / self._pacing.pps)
        return soonest

    def result_blocks(self) -> np.ndarray:
        """Indices of the blocks whose result was consumed (every other block of the result buffer is untouched)."""
        return np.flatnonzero(self._result_next >= 0)

    def forget_repair_source(self) -> None:
        """Stop serving the exchange before this one (a peer is never two tensors behind)."""
        self._repair_source = None

    # --- sending -------------------------------------------------------------------------------------------------

    def start(self, now: float) -> None:
        """Queue the dense first round (block s on slot s) and send what pacing allows."""
        self.started_at = self.last_progress = now
        self._token_time = now
        columns = self.plan.columns
        self._channels.last_tensor[:columns] = self.tensor_id
        self._columns.expected[:] = np.arange(columns)
        self._to_launch.extend(range(columns))
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
            slot = self._to_launch.popleft()
            self._awaiting_first += 1
            self._contribute(slot, slot, now, first_round=True)

    def _contribute(self, slot: int, block: int, now: float, *, first_round: bool = False, late: bool = False) -> None:
        """Send `block` with this worker's next block in the column, on the slot's current set. first_round: the
        tensor's dense first round, whose timeout is longer by first_round_slack. late: it leaves after a result
        this worker had to recover, so it carries FLAG_LATE (a round it completes is not sampled)."""
        # NOTE: indexed here, not through a list of Python ints made up front: that list took 20-25 ms per 100 MB
        # tensor, more than all the blocks the per-packet path ever sends.
        following = int(self._next_block_array[block])
        buffer = self._contrib_views[slot]
        HEADER.pack_into(
            buffer, 0, C.MSG_CONTRIB, int(self._channels.set_index[slot]) | (FLAG_LATE if late else 0), self.job_id,
            self.tensor_id, slot, block,
            following, self._exponent, C.LANES, 0, 0,
        )
        start = self._lanes.row(block) * LANES_BYTES
        buffer[_HEADER_BYTES:] = self._lane_bytes[start:start + LANES_BYTES]
        columns = self._columns
        columns.own_next[slot] = following
        columns.contributed[slot] = True
        columns.sent_at[slot] = now
        columns.first_sent_at[slot] = now
        columns.retransmitted_at[slot] = math.nan
        columns.sent_seq[slot] = self.send_seq
        self.send_seq += 1
        columns.timeouts[slot] = 0
        columns.gap_requested[slot] = False
        self._send(buffer)
        self.stats.contribs_sent += 1
        if self._count_blocks:
            self.stats.blocks_sent += 1
        timeout = self._round_trip.timeout(self._timeouts)
        if first_round:
            timeout = min(timeout + self._first_round_slack, max(timeout, self._timeouts.retransmit_max))
        self._arm(slot, now, timeout)

    def _request(self, slot: int) -> None:
        """REQUEST the awaited round of column `slot`: replayed by the switch while held, else forwarded to a peer
        (a different one on every try, since a peer may have missed the result too)."""
        columns = self._columns
        attempt = int(columns.timeouts[slot]) + (1 if columns.gap_requested[slot] else 0)
        peer = self._peers[attempt % len(self._peers)]
        self._send(HEADER.pack(C.MSG_REQUEST, int(self._channels.set_index[slot]), self.job_id, self.tensor_id, slot,
                               int(columns.expected[slot]), 0, 0, 0, peer, 0))
        self.stats.requests_sent += 1

    def _arm(self, slot: int, now: float, rto: float) -> None:
        self._columns.rto[slot] = rto
        self._columns.deadline[slot] = now + rto

    # --- timers --------------------------------------------------------------------------------------------------

    def on_timer(self, now: float) -> None:
        """Retransmit or request for every column whose timer expired; launch paced first-round blocks."""
        columns = self._columns
        expired = np.flatnonzero(columns.deadline <= now)
        # Earliest deadline first, then by slot: the order a heap of (deadline, slot) would give.
        for slot in expired[np.lexsort((expired, columns.deadline[expired]))].tolist():
            if columns.expected[slot] == END:
                continue
            rto = float(columns.rto[slot])
            contributed = bool(columns.contributed[slot])
            if contributed and columns.timeouts[slot] == 0 and self._defer_first_timeout(slot, now, rto):
                continue
            if log.isEnabledFor(logging.DEBUG):
                self._log_timeout(slot, now, rto, contributed)
            columns.sent_at[slot] = math.nan  # Karn: this round's time no longer measures anything
            if contributed:
                self._round_trip.timed_out(rto, self._timeouts)
                columns.retransmitted_at[slot] = now
                buffer = self._contrib_views[slot]
                buffer[FLAGS_OFFSET] |= FLAG_LATE  # if it completes the round, nobody samples the round's time
                self._send(buffer)
                if self._count_blocks:
                    self.stats.retransmissions += 1
                else:  # a rendezvous round: the timer cannot tell a lost CONTRIB from a peer not there yet
                    self.stats.rendezvous_resends += 1
                if columns.timeouts[slot] > 0:
                    # Still nothing after a retransmission: the round may be complete and its set reused since
                    # (our result lost, the column moved on without us); only a REQUEST reaches a peer then.
                    self._request(slot)
            else:
                self._request(slot)
            columns.timeouts[slot] += 1
            self._arm(slot, now, min(rto * self._timeouts.backoff, self._timeouts.retransmit_max))
        if self._to_launch:
            self._launch(now)

    def _defer_first_timeout(self, slot: int, now: float, rto: float) -> bool:
        """Put off the first timeout of column `slot`, whose round our CONTRIB joined, where the time is queueing
        at a busy switch rather than a loss (a window of many columns into a switch slower than the window, a
        burst like the dense first round: every premature retransmission only queues behind the rest). Returns
        whether it was put off. Three signs (the first is tried once per timer):

        - The round trips grew since the timer was armed: it is judged by the timeout now (the estimator's, its
          peak included), at most FIRST_TIMEOUT_STRETCH times the timeout it was armed with, which trailed a
          growing queue. The round trip includes waiting for the peers, whose frames queue at the switch too.
        - Our CONTRIB may still wait in the switch's queue behind our earlier frames: a worker's frames reach
          the switch and are switched in order, so while no round whose CONTRIB left after this one has been
          answered, and the rounds of CONTRIBs that left before it keep being answered in turn (answered_seq
          grows), the switch is still working through what we sent before it. As RFC 6298 (5.3) restarts the
          timer on new acknowledgements, the deadline becomes one timeout after answered_seq last grew. Results
          of other rounds (recoveries, rounds we did not join) do not count: under loss they trickle in while a
          lost CONTRIB waits.
        - The dense first round drained after the CONTRIB left: a round after it (not one of its own, whose frames
          sit in the same place of every worker's burst) may wait behind a peer's burst, which we cannot see, and
          behind the CONTRIBs that every peer sent as the burst's results reached it. The deadline is one timeout
          after the latest first-round result, at most FIRST_ROUND_DRAIN_STRETCH timeouts after the CONTRIB left
          (under loss, recoveries of the first round trickle in too); the timeout is the larger of the armed one and
          the smoothed estimate now (the drain's round trips grow as it goes: a CONTRIB armed early got 20 ms where
          its round took 93 ms). Not only while the first round drains: of 38 spurious timeouts on 16 idle cores
          (4 and 8 workers into the Python pipeline), 30 were rounds sent during the drain whose timers fired 3-70
          ms after its last result, the peers' second rounds still queued.

        A lost CONTRIB is still found: at most one armed timeout later by the first sign, by the second as soon
        as a frame sent after it is answered, or when no earlier one has been for a timeout, by the third at most
        FIRST_ROUND_DRAIN_STRETCH timeouts after it left. Measured (docs/performance.md, efficiency): 8 workers
        into the Python pipeline retransmitted 1,350-2,430 times a run before, 365-546 with the second sign alone,
        14-71 with both, 0-8 with all three and the peak in the first (2 workers: 0 in 4 runs, against 0-84);
        100 MB with 8 workers on the native pipeline 0 (a stretch of 1.5: 357-545; before: 315). On 16 idle
        cores, with the third sign past the drain and PEAK_MARGIN 1.6: 0 in 8 runs at 4 and at 8 workers, against
        0-15 a run. Under 5% loss a lost CONTRIB is found later: the median run took a second or two longer
        (RoundTripEstimator.recovered took more than that back); BMv2 on veth (burst losses) runs take 8.4-12.2 s
        either way. With the peak and no stretch limit, a quarter of the 5%-loss runs took 23-52 s."""
        columns = self._columns
        sent = float(columns.first_sent_at[slot])
        round_trip = self._round_trip
        if round_trip.backed_off is None and round_trip.srtt is not None and columns.deadline[slot] == sent + rto:
            smoothed = min(round_trip.timeout(self._timeouts), FIRST_TIMEOUT_STRETCH * rto)
            if smoothed > rto and sent + smoothed > now:
                return self._put_off(slot, sent + smoothed)
        if columns.sent_seq[slot] > self.answered_seq and self.answered_at > sent and self.answered_at + rto > now:
            return self._put_off(slot, self.answered_at + rto)
        if self.first_answered_at > sent and columns.expected[slot] >= self.plan.slots:
            # The timeout armed early in the drain trailed the round trips the drain then showed.
            timeout = max(rto, round_trip.smoothed())
            deadline = min(self.first_answered_at + timeout, sent + FIRST_ROUND_DRAIN_STRETCH * timeout)
            if deadline > now:
                return self._put_off(slot, deadline)
        return False

    def _log_timeout(self, slot: int, now: float, rto: float, contributed: bool) -> None:
        """What a timer saw when it fired: enough to tell a loss from a queue the signs above did not see."""
        columns, round_trip = self._columns, self._round_trip
        sent = float(columns.first_sent_at[slot])
        log.debug(
            "%s: tensor %d slot %d: no result for block %d after %.4f s (%s; armed %.4f s; srtt %s rttvar %.4f "
            "peak %.4f backed off %s; %d of our later CONTRIBs ahead of the answered one, last answered %.4f s ago; "
            "first round: %d awaited, last answered %.4f s ago)",
            self._name, self.tensor_id, slot, columns.expected[slot], now - sent,
            "retransmit" if contributed else "request", rto, round_trip.srtt, round_trip.rttvar,
            decayed_peak(round_trip.peak, round_trip.peak_at, round_trip.srtt, now), round_trip.backed_off,
            int(columns.sent_seq[slot]) - self.answered_seq, now - self.answered_at, self._awaiting_first,
            now - self.first_answered_at)

    def _put_off(self, slot: int, deadline: float) -> bool:
        self._columns.deadline[slot] = deadline
        self.stats.timers_deferred += 1
        return True

    # --- results -------------------------------------------------------------------------------------------------

    def on_batch(self, payloads: np.ndarray, sizes: np.ndarray, now: float) -> None:
        """Handle a batch of datagram payloads as :meth:`on_payload` would, one after the other.

        payloads: (n, DATA_PAYLOAD_BYTES) uint8, C-contiguous; row i holds a payload of sizes[i] bytes (a row of a
        payload longer than a row is cut short, and such a payload is ignored as on_payload would).
        """
        if self._compiled is not None:
            self._on_batch_compiled(payloads, sizes, now)
            return
        count = len(sizes)
        headers = Headers.parse(payloads)
        index = 0
        while index < count:
            fast = self._fast_rows(headers.rows(index), sizes[index:])
            run = int(fast.argmin()) if not fast.all() else len(fast)
            if run:
                self._consume_batch(headers.rows(index, index + run), now)
                index += run
            if index >= count:
                return
            # The rows up to the next one that looked fast go one by one; then the rest is classified again
            # against the state they left.
            slow = fast[run:]
            stop = index + (int(slow.argmax()) if slow.any() else len(slow))
            for row in range(index, stop):
                size = int(sizes[row])
                if size > DATA_PAYLOAD_BYTES:
                    self.stats.ignored += 1
                else:
                    self.on_payload(memoryview(payloads[row, :size]), now)
            index = stop

    def _on_batch_compiled(self, payloads: np.ndarray, sizes: np.ndarray, now: float) -> None:
        """on_batch through exchange.c: it consumes rows up to the first that is not the plain case, which goes
        through on_payload, and so on. While first-round launches are queued, rows go one by one (as in numpy's
        batch path: launches under pacing interleave with consumption)."""
        payloads = np.ascontiguousarray(payloads)
        sizes = np.ascontiguousarray(sizes, dtype=np.int64)
        count = len(sizes)
        index = 0
        while index < count:
            if not self._to_launch:
                index += self._compiled.consume(self, payloads[index:], sizes[index:], now)
                if index >= count:
                    return
            size = int(sizes[index])
            if size > DATA_PAYLOAD_BYTES:
                self.stats.ignored += 1
            else:
                self.on_payload(memoryview(payloads[index, :size]), now)
            index += 1

    def _fast_rows(self, headers: Headers, sizes: np.ndarray) -> np.ndarray:
        if self._to_launch:
            return np.zeros(len(sizes), dtype=bool)
        fast = fast_rows(headers, sizes, constant=self._result_constant, slots=self.plan.slots,
                         count=self.plan.count, columns=self._columns, set_index=self._channels.set_index,
                         expected_exponent=self._expected_exponent)
        if fast.any():
            # A result for a retransmitted round may show the timeout spurious (a sample of the original's time):
            # rare, and order-dependent, so such rows take the per-packet path.
            columns = self._columns
            rows = np.flatnonzero(fast)
            slots = headers.slot[rows]
            retried = columns.contributed[slots] & ~np.isnan(columns.retransmitted_at[slots])
            fast[rows[retried]] = False
        return fast

    def _consume_batch(self, headers: Headers, now: float) -> None:
        """Consume in-order RESULTs of distinct columns that every check of _consume has passed (host/batch.py)."""
        slots, blocks, nexts, sets = headers.slot, headers.block, headers.following, headers.set_index
        rows = headers.lanes
        columns = self._columns
        stats = self.stats
        closing = nexts == END
        contributing = ~closing & (nexts == columns.own_next[slots])
        waiting = ~closing & ~contributing
        # The timeout each row arms is the estimator's after the samples of the rows before it and its own, as
        # one at a time; only rows whose round was timed change it.
        timed = columns.contributed[slots] & ~np.isnan(columns.sent_at[slots])
        round_trip = self._round_trip
        timeouts = self._timeouts
        rtos = np.full(len(rows), round_trip.timeout(timeouts))
        if timed.any():
            timed_rows = np.flatnonzero(timed)
            after = round_trip.sample_many((now - columns.sent_at[slots[timed_rows]]).tolist(), now, timeouts)
            # Each row arms the timeout after the last sample at or before it (rows before the first sample keep
            # the one from before the batch).
            latest = np.full(len(rows), -1)
            latest[timed_rows] = np.arange(len(timed_rows))
            latest = np.maximum.accumulate(latest)
            sampled = latest >= 0
            rtos[sampled] = np.asarray(after)[latest[sampled]]
        answered = columns.contributed[slots]
        if answered.any():
            latest = int(columns.sent_seq[slots[answered]].max())
            if latest > self.answered_seq:
                self.answered_seq, self.answered_at = latest, now
        self._result_by_block[blocks] = rows
        self._result_next[blocks] = nexts
        self._result_set[blocks] = sets
        stats.results += len(rows)
        self.result_exponent = int(headers.exponent[-1])
        self.last_progress = now
        first_round = int(np.count_nonzero(blocks < self.plan.slots))
        if first_round:
            self._awaiting_first -= first_round
            self.first_answered_at = now
        new_sets = (sets + 1) & _SET_MASK
        self._channels.set_index[slots] = new_sets
        columns.expected[slots] = nexts
        columns.timeouts[slots] = 0
        columns.gap_requested[slots] = False
        if closing.any():
            columns.deadline[slots[closing]] = _NO_DEADLINE
            self._open -= int(np.count_nonzero(closing))
        if waiting.any():
            waiting_slots = slots[waiting]
            columns.contributed[waiting_slots] = False
            columns.sent_at[waiting_slots] = math.nan
            patience = request_patience(rtos[waiting], timeouts)
            columns.rto[waiting_slots] = patience
            columns.deadline[waiting_slots] = now + patience
        if contributing.any():
            sending = slots[contributing]
            sent_blocks = nexts[contributing]
            following = self._next_block_array[sent_blocks].astype(np.int64)
            contrib = self._contrib_fields
            contrib["flags"][sending] = new_sets[contributing]
            contrib["block_index"][sending] = sent_blocks
            contrib["next_block"][sending] = following
            contrib["lanes"][sending] = self._lanes.gather(sent_blocks)
            columns.own_next[sending] = following
            columns.contributed[sending] = True
            columns.sent_at[sending] = now
            columns.first_sent_at[sending] = now
            columns.retransmitted_at[sending] = math.nan
            columns.sent_seq[sending] = np.arange(self.send_seq, self.send_seq + len(sending))
            self.send_seq += len(sending)
            sent_rtos = rtos[contributing]
            columns.rto[sending] = sent_rtos
            columns.deadline[sending] = now + sent_rtos
            self._send_batch(columns.contrib[sending])
            sent = len(sending)
            stats.contribs_sent += sent
            if self._count_blocks:
                stats.blocks_sent += sent

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
        if slot >= self.plan.columns or block % self.plan.slots != slot or block >= self.plan.count:
            self.stats.ignored += 1
            return
        if msg_type == C.MSG_REPAIR:
            self.stats.repairs_received += 1
        columns = self._columns
        expected = int(columns.expected[slot])
        if expected == END or block < expected:
            self.stats.duplicates += 1
            return
        if block > expected:
            # A later round of the column completed first from our point of view: we missed the one expected.
            # Keep this one for its turn, and ask for the missing one now rather than at the timer.
            columns.early[slot][block] = bytes(payload)
            columns.has_early[slot] = 1
            self.stats.early += 1
            if not columns.gap_requested[slot]:
                self._request(slot)
                columns.gap_requested[slot] = True
            return
        # A column we acted for (a timer, a gap) was in recovery: the CONTRIB that follows leaves late.
        recovering = bool(columns.timeouts[slot] > 0 or columns.gap_requested[slot])
        self._consume(slot, flags & _SET_MASK, block, next_block, exponent, payload, now,
                      late_result=bool(flags & FLAG_LATE), recovering=recovering)
        early = columns.early[slot]
        while early and int(columns.expected[slot]) in early:
            kept = early.pop(int(columns.expected[slot]))
            header = HEADER.unpack_from(kept)
            self._consume(slot, header[1] & _SET_MASK, header[5], header[6], header[7], kept, now,
                          late_result=bool(header[1] & FLAG_LATE), recovering=recovering)
        if not early:
            columns.has_early[slot] = 0

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

    def _consume(self, slot: int, set_bit: int, block: int, next_block: int, exponent: int,
                 payload: memoryview | bytes, now: float, *, late_result: bool = False,
                 recovering: bool = False) -> None:
        """Consume the result the column awaits. late_result: a late CONTRIB completed its round (FLAG_LATE), so its
        time measures a recovery (a peer's timer, or a peer that had to recover the round before): Karn's rule,
        extended to the peers, takes no sample of it. Without it, at 5% loss every worker sampled its peers' timeouts,
        srtt and the peak grew to seconds, and the timeouts built on them (retransmissions, REQUEST patience) sat at
        retransmit_max: a 4,096-value all-reduce took 9.4 s at the median. recovering: this worker acted (a timer, a
        gap) to get this result, so its next CONTRIB leaves late."""
        columns = self._columns
        set_index = int(self._channels.set_index[slot])
        if set_bit != set_index:
            raise ProtocolError(
                f"{self._name}: result of tensor {self.tensor_id} block {block} on set {set_bit}, but slot {slot} "
                f"is on set {set_index} here: the job was reset or reinstalled while this agent kept its state"
            )
        if next_block != END and (next_block <= block or next_block % self.plan.slots != slot
                                  or next_block >= self.plan.count):
            raise ProtocolError(f"{self._name}: result for block {block} announces impossible next {next_block}")
        own_next = int(columns.own_next[slot])
        if next_block > own_next:
            raise ProtocolError(
                f"{self._name}: result for block {block} skips to {next_block} past block {own_next} that "
                f"this worker announced: the switch lost this worker's announcement"
            )
        if self._expected_exponent is not None and exponent != self._expected_exponent:
            raise ProtocolError(
                f"{self._name}: result for block {block} carries exponent {exponent}, the job agreed on "
                f"{self._expected_exponent}"
            )
        sent_at = float(columns.sent_at[slot])
        retransmitted_at = float(columns.retransmitted_at[slot])
        if late_result:
            if columns.contributed[slot] and not math.isnan(retransmitted_at):
                self._round_trip.recovered(now - retransmitted_at)
        elif columns.contributed[slot] and not math.isnan(sent_at):
            self._round_trip.sample(now - sent_at, now)
        elif columns.contributed[slot] and not math.isnan(retransmitted_at):
            if self._round_trip.answers_original(now - retransmitted_at):
                self._round_trip.spurious(now - float(columns.first_sent_at[slot]), now)
                self.stats.spurious_timeouts += 1
                log.debug("%s: tensor %d slot %d: block %d answered %.4f s after its CONTRIB, %.4f s after the "
                          "retransmission: spurious", self._name, self.tensor_id, slot, block,
                          now - float(columns.first_sent_at[slot]), now - retransmitted_at)
            else:
                self._round_trip.recovered(now - retransmitted_at)
        if columns.contributed[slot] and columns.sent_seq[slot] > self.answered_seq:
            self.answered_seq, self.answered_at = int(columns.sent_seq[slot]), now
        start = block * LANES_BYTES
        self._result[start:start + LANES_BYTES] = payload[_HEADER_BYTES:]
        self._result_next[block] = next_block
        self._result_set[block] = set_bit
        self.stats.results += 1
        self.result_exponent = exponent
        self.last_progress = now
        if block < self.plan.slots:
            self._awaiting_first -= 1
            self.first_answered_at = now
        self._channels.set_index[slot] = (set_bit + 1) & _SET_MASK
        columns.expected[slot] = next_block
        columns.timeouts[slot] = 0
        columns.gap_requested[slot] = False
        if next_block == END:
            columns.deadline[slot] = _NO_DEADLINE
            self._open -= 1
        elif next_block == own_next:
            self._contribute(slot, next_block, now, late=recovering)
        else:
            columns.contributed[slot] = False
            columns.sent_at[slot] = math.nan
            patience = float(request_patience(np.float64(self._round_trip.timeout(self._timeouts)), self._timeouts))
            self._arm(slot, now, patience)
        if self._to_launch:
            self._launch(now)


class CompiledConsumer:
    """One exchange's arrays bound to host/exchange.c's orx_consume (the structs point into them: they must not be
    reallocated while the exchange runs, and they are not).

    NOTE: it holds no reference to the exchange (consume() is given it), and points only into numpy arrays: a
    reference cycle through cffi's buffers would let the garbage collector clear a memoryview that still exports
    its buffer, which crashes the interpreter.
    """

    def __init__(self, module, exchange: TensorExchange) -> None:
        ffi = module.ffi
        self._ffi, self._lib = ffi, module.lib
        self._keep: list[object] = []  # the buffers' cdata, alive as long as the structs point into them
        plan, timeouts = exchange.plan, exchange._timeouts
        x = ffi.new("orx_exchange *")
        x.constant = int(exchange._result_constant)
        x.slots, x.count, x.columns = plan.slots, plan.count, plan.columns
        x.expected_exponent = -1 if exchange._expected_exponent is None else exchange._expected_exponent
        x.initial, x.ceiling = timeouts.retransmit_initial, timeouts.retransmit_max
        x.first, x.fallback = timeouts.retransmit_first, timeouts.request_fallback
        columns = exchange._columns
        c = ffi.new("orx_columns *")
        for field, kind, array in (
            ("expected", "int64_t[]", columns.expected), ("own_next", "int64_t[]", columns.own_next),
            ("timeouts", "int64_t[]", columns.timeouts), ("contributed", "uint8_t[]", columns.contributed),
            ("gap_requested", "uint8_t[]", columns.gap_requested), ("has_early", "uint8_t[]", columns.has_early),
            ("sent_at", "double[]", columns.sent_at), ("first_sent_at", "double[]", columns.first_sent_at),
            ("retransmitted_at", "double[]", columns.retransmitted_at), ("sent_seq", "int64_t[]", columns.sent_seq),
            ("rto", "double[]", columns.rto),
            ("deadline", "double[]", columns.deadline), ("contrib", "uint8_t[]", columns.contrib),
            ("set_index", "uint8_t[]", exchange._channels.set_index),
            ("lanes", "uint8_t[]", exchange._lanes.rows),
            ("next_block", "uint32_t[]", exchange._next_block_array),
            ("result", "uint8_t[]", exchange._result_by_block), ("result_next", "int64_t[]", exchange._result_next),
            ("result_set", "uint8_t[]", exchange._result_set),
        ):
            pointer = ffi.from_buffer(kind, array)
            self._keep.append(pointer)
            setattr(c, field, pointer)
        row_of = exchange._lanes.row_of
        if row_of is not None:
            pointer = ffi.from_buffer("int32_t[]", row_of)
            self._keep.append(pointer)
            c.lane_row = pointer  # else NULL: tensor-sized lanes
        self._x, self._c = x, c
        self._out = np.zeros((0, DATA_PAYLOAD_BYTES), dtype=np.uint8)
        self._out_pointer = ffi.from_buffer("uint8_t[]", self._out)

    @classmethod
    def bind(cls, exchange: TensorExchange) -> "CompiledConsumer | None":
        module = native.available()
        return cls(module, exchange) if module is not None else None

    def consume(self, exchange: TensorExchange, payloads: np.ndarray, sizes: np.ndarray, now: float) -> int:
        """Consume the leading plain rows (all of exchange.c's checks passed) into `exchange` (the one bound);
        returns how many."""
        count = len(sizes)
        if count > len(self._out):
            self._out = np.zeros((max(count, 2 * len(self._out)), DATA_PAYLOAD_BYTES), dtype=np.uint8)
            self._out_pointer = self._ffi.from_buffer("uint8_t[]", self._out)
        x = self._x
        estimator = exchange._round_trip
        x.srtt = math.nan if estimator.srtt is None else estimator.srtt
        x.rttvar, x.peak = estimator.rttvar, estimator.peak
        x.peak_at = math.nan if estimator.peak_at is None else estimator.peak_at
        x.backed_off = math.nan if estimator.backed_off is None else estimator.backed_off
        x.send_seq, x.answered_seq, x.answered_at = exchange.send_seq, exchange.answered_seq, exchange.answered_at
        ffi = self._ffi
        consumed = self._lib.orx_consume(x, self._c, ffi.from_buffer("uint8_t[]", payloads),
                                         ffi.from_buffer("int64_t[]", sizes), count, now, self._out_pointer)
        if not consumed:
            return 0
        estimator.srtt = None if math.isnan(x.srtt) else x.srtt
        estimator.rttvar, estimator.peak = x.rttvar, x.peak
        estimator.peak_at = None if math.isnan(x.peak_at) else x.peak_at
        estimator.backed_off = None if math.isnan(x.backed_off) else x.backed_off
        exchange.send_seq, exchange.answered_seq, exchange.answered_at = x.send_seq, x.answered_seq, x.answered_at
        stats = exchange.stats
        stats.results += consumed
        exchange.result_exponent = x.exponent
        exchange.last_progress = now
        if x.first_round:
            exchange._awaiting_first -= x.first_round
            exchange.first_answered_at = now
        exchange._open -= x.closed
        sent = x.sent
        if sent:
            exchange._send_batch(self._out[:sent])
            stats.contribs_sent += sent
            if exchange._count_blocks:
                stats.blocks_sent += sent
        return consumed


def request_patience(rto: np.ndarray, timeouts: Timeouts) -> np.ndarray:
    """How long a worker that did not contribute to the round it awaits waits before its first REQUEST:
    REQUEST_PATIENCE timeouts, at least request_fallback, and at most retransmit_max (unless the fallback is
    longer). Without the ceiling, a timeout backed off to retransmit_max (4 s) made it 12 s, past the stall limit
    (10 s): a worker that lost the result whose next block was its own never asked before every worker of the job
    gave up (the fault suite at 5% loss)."""
    return np.maximum(np.minimum(REQUEST_PATIENCE * rto, timeouts.retransmit_max), timeouts.request_fallback)


def big_endian_lanes(values: np.ndarray) -> np.ndarray:
    """int32 values as a contiguous big-endian array, whose buffer the exchange slices per block."""
    return np.ascontiguousarray(values, dtype=np.dtype(">i4"))
