# Run: .venv/bin/pytest tests/host/test_engine.py
"""The worker state machine (docs/protocol.md section 4.2) against scripted RESULT packets.

Each test plays the switch: it feeds the exchange results built by hand and checks, packet by packet, what the
worker sends back (CONTRIB / REQUEST / REPAIR, on which set, for which block, announcing which next block, naming
which peer).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from omnireduce.host.blocks import plan_blocks
from omnireduce.host.config import Pacing, Timeouts
from omnireduce.host.columns import SlotChannels
from omnireduce.host.engine import (FIRST_ROUND_DRAIN_STRETCH, FIRST_TIMEOUT_STRETCH, PEAK_HALF_LIFE, PEAK_MARGIN,
                                    REQUEST_PATIENCE, RoundTripEstimator, TensorExchange, big_endian_lanes)
from omnireduce.host.errors import ProtocolError
from omnireduce.host.stats import Stats
from omnireduce.host.wire import FLAG_LATE, FLAGS_OFFSET, LANE_DTYPE, OmniHeader, decode_payload, encode_payload
from omnireduce.p4src import constants as C

END = C.END_OF_TENSOR
JOB = 9
RTO = 0.1
TIMEOUTS = Timeouts(retransmit_initial=RTO, retransmit_first=RTO, backoff=2.0, retransmit_max=0.3,
                    request_fallback=0.05)


class Script:
    """One exchange, the packets it sent, and helpers to answer as the switch."""

    def __init__(self, blocks: np.ndarray, slots: int, *, tensor: int = 5, channels=None, pacing=Pacing(),
                 expected_exponent=None, dense=False, round_trip=None, worker_id=0, workers=3, repair_source=None,
                 first_round_slack=0.0):
        self.values = blocks.astype(np.int32)
        significant = self.values.any(axis=1)
        self.plan = plan_blocks(significant, slots, dense=dense)
        self.channels = channels if channels is not None else SlotChannels.create(slots)
        self.sent: list[bytes] = []
        self.stats = Stats()
        self.sums = np.zeros(self.values.size, dtype=LANE_DTYPE)
        self.exchange = TensorExchange(
            job_id=JOB, tensor_id=tensor, plan=self.plan, lanes=memoryview(big_endian_lanes(self.values)).cast("B"),
            result=memoryview(self.sums).cast("B"), exponent=7, channels=self.channels,
            send=lambda payload: self.sent.append(bytes(payload)), stats=self.stats, timeouts=TIMEOUTS,
            pacing=pacing, expected_exponent=expected_exponent, round_trip=round_trip, worker_id=worker_id,
            workers=workers, repair_source=repair_source, first_round_slack=first_round_slack,
        )
        self.tensor = tensor

    def take(self) -> list[tuple]:
        """Packets sent since the last call, as (kind, set, slot, block, next, peer) tuples."""
        out = []
        for payload in self.sent:
            header, _ = decode_payload(payload)
            kind = C.MSG_TYPES[header.msg_type]
            out.append((kind, header.set_index, header.slot, header.block_index, header.next_block, header.peer))
        self.sent.clear()
        return out

    def result(self, shadow: int, block: int, next_block: int, lanes=None, *, tensor=None, exponent=7,
               slots=None, msg_type=C.MSG_RESULT, peer=0) -> bytes:
        slot = block % (slots or self.plan.slots)
        values = np.full(C.LANES, block + 100, dtype=np.int32) if lanes is None else np.asarray(lanes)
        header = OmniHeader(msg_type, shadow, JOB, self.tensor if tensor is None else tensor, slot, block,
                            next_block, exponent, C.LANES, peer)
        return encode_payload(header, values)

    def forwarded_request(self, shadow: int, block: int, requester: int, *, tensor=None) -> bytes:
        """A peer's REQUEST as the switch forwards it: `peer` names the worker that asked."""
        slot = block % self.plan.slots
        return OmniHeader(C.MSG_REQUEST, shadow, JOB, self.tensor if tensor is None else tensor, slot, block, 0, 0,
                          0, requester).pack()

    def feed(self, payload: bytes, now: float = 0.0) -> list[tuple]:
        self.exchange.on_payload(payload, now)
        return self.take()


def sparse_blocks(count: int, nonzero: list[int]) -> np.ndarray:
    blocks = np.zeros((count, C.LANES), dtype=np.int32)
    for b in nonzero:
        blocks[b] = np.arange(C.LANES) + b
    return blocks


def test_first_round_is_dense_and_contribs_carry_the_block_and_the_next():
    script = Script(sparse_blocks(6, [3, 4]), slots=2)
    script.exchange.start(0.0)
    assert script.take() == [("CONTRIB", 0, 0, 0, 4, 0), ("CONTRIB", 0, 1, 1, 3, 0)]
    first = decode_payload(script.exchange._columns.contrib[0])
    assert first[0].exponent == 7 and first[0].tensor_id == 5 and first[0].job_id == JOB
    assert first[1].tolist() == [0] * C.LANES  # block 0 is zero but sent


def test_a_whole_tensor_against_scripted_results_sends_nothing_but_contributions():
    script = Script(sparse_blocks(6, [3, 4]), slots=2)
    script.exchange.start(0.0)
    script.take()
    # Column 0: someone else has block 2; this worker (next 4) just waits: nothing is acknowledged.
    assert script.feed(script.result(0, 0, 2)) == []
    # Column 1: the column's next is this worker's next (3): it contributes on the slot's next set.
    assert script.feed(script.result(0, 1, 3)) == [("CONTRIB", 1, 1, 3, END, 0)]
    # A duplicate of a consumed result is ignored, nothing is sent.
    assert script.feed(script.result(0, 1, 3)) == []
    assert script.stats.duplicates == 1
    assert script.feed(script.result(1, 2, 4)) == [("CONTRIB", 2, 0, 4, END, 0)]
    assert script.feed(script.result(1, 3, END)) == []
    assert not script.exchange.done
    assert script.feed(script.result(2, 4, END)) == []
    assert script.exchange.done
    sums = script.sums.astype(np.int32).reshape(6, C.LANES)
    assert [int(row[0]) for row in sums] == [100, 101, 102, 103, 104, 0]  # block 5 never completed: zero
    # Every slot's set index advanced (mod SETS) once per consumed result: 3 results in column 0, 2 in column 1.
    assert [channel.set_index for channel in script.channels] == [3, 2]
    assert script.stats.results == 5 and script.stats.contribs_sent == 4
    assert script.stats.requests_sent == 0 and script.stats.retransmissions == 0


def test_set_indexes_wrap_around_after_sets_rounds():
    script = Script(sparse_blocks(C.SETS + 2, list(range(C.SETS + 2))), slots=1)
    script.exchange.start(0.0)
    script.take()
    for block in range(C.SETS + 1):
        sent = script.feed(script.result(block % C.SETS, block, block + 1))
        assert sent == [("CONTRIB", (block + 1) % C.SETS, 0, block + 1,
                         block + 2 if block + 2 < C.SETS + 2 else END, 0)]


def test_a_lost_contrib_is_retransmitted_with_the_same_bytes_marked_late_and_backoff():
    script = Script(sparse_blocks(2, [0]), slots=1)
    script.exchange.start(0.0)
    original = script.sent[:]
    script.take()
    assert script.exchange.next_wakeup() == pytest.approx(RTO)
    script.exchange.on_timer(RTO - 1e-6)
    assert script.sent == []
    script.exchange.on_timer(RTO)
    # The same bytes, marked late: if the retransmission completes the round, no worker samples its time.
    late = bytearray(original[0])
    late[FLAGS_OFFSET] |= FLAG_LATE
    assert script.sent == [bytes(late)] and not original[0][FLAGS_OFFSET] & FLAG_LATE
    script.sent.clear()
    assert script.exchange.next_wakeup() == pytest.approx(3 * RTO)  # backoff 2: 0.1 + 0.2
    script.exchange.on_timer(3 * RTO)
    # Still nothing after a retransmission: the round may be complete and its set reused since, which only a
    # REQUEST (forwarded to a peer) recovers; it goes out beside the retransmission.
    assert script.take() == [("CONTRIB", 0, 0, 0, END, 0), ("REQUEST", 0, 0, 0, 0, 2)]
    assert script.exchange.next_wakeup() == pytest.approx(3 * RTO + 0.3)  # capped at retransmit_max
    assert script.stats.retransmissions == 2 and script.stats.requests_sent == 1


def test_waiting_without_contribution_requests_after_patience_asking_a_different_peer_each_time():
    script = Script(sparse_blocks(4, [0]), slots=1, worker_id=1, workers=3)  # only block 0: announces END
    script.exchange.start(0.0)
    assert script.take() == [("CONTRIB", 0, 0, 0, END, 0)]
    assert script.feed(script.result(0, 0, 1), now=0.0) == []
    # Not having contributed, it gives the round's contributors time for a retransmission before it asks.
    patience = REQUEST_PATIENCE * RTO
    script.exchange.on_timer(patience - 1e-6)
    assert script.take() == []
    script.exchange.on_timer(patience)
    # Waiting for block 1 on set 1: the switch replays it if it holds it, else forwards to the named peer.
    assert script.take() == [("REQUEST", 1, 0, 1, 0, 2)]
    script.exchange.on_timer(10.0)
    assert script.take() == [("REQUEST", 1, 0, 1, 0, 0)]  # the next peer: 2 may have missed it too
    assert script.feed(script.result(1, 1, END), now=10.0) == []
    assert script.exchange.done and script.stats.requests_sent == 2


@pytest.mark.parametrize("path", ["per packet", "batch"])
def test_patience_never_exceeds_the_largest_retransmission_timeout(path):
    """Found by the fault suite at 5% loss: after losses had backed the timeout off to retransmit_max (4 s by
    default), a worker that lost a result whose next block was its own waited REQUEST_PATIENCE x 4 = 12 s before
    asking, past the agents' stall limit (10 s): the column waited for it, every worker stalled, the all-reduce
    failed. The first REQUEST comes within retransmit_max (and request_fallback) whatever the backoff."""
    estimate = RoundTripEstimator()
    estimate.timed_out(TIMEOUTS.retransmit_max, TIMEOUTS)  # heavy loss so far: backed off to the ceiling
    assert estimate.timeout(TIMEOUTS) == TIMEOUTS.retransmit_max
    script = Script(sparse_blocks(4, [0, 3]), slots=1, worker_id=1, workers=3, round_trip=estimate)
    script.exchange.start(0.0)
    script.take()
    result = script.result(0, 0, 1)  # someone else has block 1; this worker's next is 3: it waits
    if path == "per packet":
        script.exchange.on_payload(result, 1.0)
    else:
        script.exchange.on_batch(np.frombuffer(result, np.uint8).reshape(1, -1), np.array([len(result)]), 1.0)
    assert script.take() == []
    assert script.exchange.next_wakeup() == pytest.approx(1.0 + TIMEOUTS.retransmit_max)
    script.exchange.on_timer(1.0 + TIMEOUTS.retransmit_max)
    assert script.take() == [("REQUEST", 1, 0, 1, 0, 2)]


def test_a_result_that_overtakes_the_expected_one_is_kept_and_the_gap_requested_at_once():
    script = Script(sparse_blocks(3, [0]), slots=1)
    script.exchange.start(0.0)
    script.take()
    assert script.feed(script.result(0, 0, 1)) == []
    assert script.feed(script.result(2, 2, END)) == [("REQUEST", 1, 0, 1, 0, 1)]  # round 1 is missing
    assert script.stats.early == 1
    assert script.feed(script.result(2, 2, END)) == []  # asked once per gap, not per overtaking result
    assert script.feed(script.result(1, 1, 2)) == []
    assert script.exchange.done
    assert script.sums.astype(np.int32).reshape(3, C.LANES)[:, 0].tolist() == [100, 101, 102]


def test_a_peers_repair_is_consumed_like_the_result_it_copies():
    script = Script(sparse_blocks(3, [0, 2]), slots=1)
    script.exchange.start(0.0)
    script.take()
    assert script.feed(script.result(0, 0, 1)) == []
    repair = script.result(1, 1, 2, lanes=np.arange(C.LANES), msg_type=C.MSG_REPAIR, peer=2)
    assert script.feed(repair) == [("CONTRIB", 2, 0, 2, END, 0)]
    assert script.stats.repairs_received == 1
    assert script.sums.astype(np.int32).reshape(3, C.LANES)[1].tolist() == list(range(C.LANES))


def test_a_forwarded_request_is_answered_from_consumed_results_only():
    script = Script(sparse_blocks(3, [0]), slots=1, worker_id=2, workers=3)
    script.exchange.start(0.0)
    script.take()
    script.feed(script.result(0, 0, 1, lanes=np.arange(C.LANES) - 5))
    # Worker 0 missed round 0 after its set was reused: the switch forwards its REQUEST, naming it in `peer`.
    script.exchange.on_payload(script.forwarded_request(0, 0, requester=0), 0.0)
    assert len(script.sent) == 1
    header, lanes = decode_payload(script.sent[0])
    assert header == OmniHeader(C.MSG_REPAIR, 0, JOB, script.tensor, 0, 0, 1, 7, C.LANES, 0)
    assert lanes.tolist() == list(range(-5, C.LANES - 5))
    script.sent.clear()
    # A result it has not consumed (yet) cannot be repaired: it stays silent and the requester asks another peer.
    script.exchange.on_payload(script.forwarded_request(1, 1, requester=0), 0.0)
    assert script.sent == [] and script.stats.repairs_unknown == 1 and script.stats.repairs_sent == 1


def test_the_closing_round_serves_requests_for_the_data_tensor_it_follows():
    data = Script(sparse_blocks(1, [0]), slots=1, tensor=5)
    data.exchange.start(0.0)
    data.feed(data.result(0, 0, END))
    assert data.exchange.done
    closing = Script(sparse_blocks(1, [0]), slots=1, tensor=6, channels=data.channels,
                     repair_source=data.exchange)
    closing.exchange.start(0.0)
    assert closing.take() == [("CONTRIB", 1, 0, 0, END, 0)]
    closing.exchange.on_payload(data.forwarded_request(0, 0, requester=1), 0.0)
    assert [C.MSG_TYPES[decode_payload(p)[0].msg_type] for p in data.sent] == ["REPAIR"]


def test_unrelated_datagrams_are_ignored_and_counted():
    script = Script(sparse_blocks(2, [0]), slots=1)
    script.exchange.start(0.0)
    script.take()
    good = script.result(0, 0, 1)
    assert script.feed(good[:-4]) == []                                     # truncated
    assert script.feed(bytes([C.MSG_CONTRIB]) + good[1:]) == []              # not a result
    assert script.feed(good[:2] + (JOB + 1).to_bytes(2, "big") + good[4:]) == []  # another job
    assert script.stats.ignored == 3
    assert script.feed(script.result(0, 0, 1, tensor=4)) == []               # an earlier tensor's replay
    assert script.stats.duplicates == 1
    assert script.stats.results == 0


def test_results_that_break_the_protocol_stop_the_exchange():
    script = Script(sparse_blocks(4, [0, 2]), slots=2)
    script.exchange.start(0.0)
    with pytest.raises(ProtocolError, match="on set 1.*reset or reinstalled"):
        script.feed(script.result(1, 0, 2))
    skipping = Script(sparse_blocks(6, [0, 2]), slots=2)
    skipping.exchange.start(0.0)
    with pytest.raises(ProtocolError, match="skips to 4 past block 2"):
        skipping.feed(skipping.result(0, 0, 4))
    strict = Script(sparse_blocks(2, [0]), slots=1, expected_exponent=7)
    strict.exchange.start(0.0)
    with pytest.raises(ProtocolError, match="exponent 9"):
        strict.feed(strict.result(0, 0, END, exponent=9))


def test_set_indexes_carry_over_to_the_next_tensor():
    channels = SlotChannels.create(2)
    first = Script(sparse_blocks(2, [0, 1]), slots=2, channels=channels, tensor=1)
    first.exchange.start(0.0)
    first.feed(first.result(0, 0, END))
    first.feed(first.result(0, 1, END))
    assert first.exchange.done and [c.set_index for c in channels] == [1, 1]
    second = Script(sparse_blocks(2, [0, 1]), slots=2, channels=channels, tensor=2)
    second.exchange.start(1.0)
    assert second.take() == [("CONTRIB", 1, 0, 0, END, 0), ("CONTRIB", 1, 1, 1, END, 0)]


def test_max_burst_paces_the_first_round_by_results():
    script = Script(sparse_blocks(4, []), slots=4, pacing=Pacing(max_burst=2))
    script.exchange.start(0.0)
    assert [packet[3] for packet in script.take()] == [0, 1]
    assert script.feed(script.result(0, 0, END)) == [("CONTRIB", 0, 2, 2, END, 0)]


def test_pps_paces_the_first_round_by_time():
    script = Script(sparse_blocks(3, []), slots=3, pacing=Pacing(pps=40))
    script.exchange.start(0.0)
    assert [packet[3] for packet in script.take()] == [0]
    assert script.exchange.next_wakeup() == pytest.approx(0.025)
    script.exchange.on_timer(0.02)
    assert script.take() == []
    script.exchange.on_timer(0.025)
    assert [packet[3] for packet in script.take()] == [1]


def test_dense_plan_announces_every_block():
    script = Script(sparse_blocks(4, []), slots=2, dense=True)
    script.exchange.start(0.0)
    assert script.take() == [("CONTRIB", 0, 0, 0, 2, 0), ("CONTRIB", 0, 1, 1, 3, 0)]
    assert script.feed(script.result(0, 0, 2)) == [("CONTRIB", 1, 0, 2, END, 0)]


def test_round_trip_estimate_raises_the_first_timeout_but_never_below_the_configured_one():
    estimate = RoundTripEstimator()
    assert estimate.timeout(TIMEOUTS) == RTO
    estimate.sample(0.01, now=0.01)
    assert estimate.timeout(TIMEOUTS) == RTO  # fast path: the configured timeout
    for step in range(20):
        estimate.sample(0.2, now=0.2 * (step + 1))
    assert RTO < estimate.timeout(TIMEOUTS) <= TIMEOUTS.retransmit_max


def test_only_rounds_sent_once_are_timed():
    estimate = RoundTripEstimator()
    script = Script(sparse_blocks(3, [0, 1, 2]), slots=1, round_trip=estimate)
    script.exchange.start(0.0)
    script.exchange.on_timer(RTO)  # retransmitted: its result says nothing about the round trip
    script.feed(script.result(0, 0, 1), now=0.25)
    assert estimate.srtt is None
    script.feed(script.result(1, 1, 2), now=0.30)  # block 1 left at 0.25, sent once
    assert estimate.srtt == pytest.approx(0.05)


def test_a_timeout_backs_off_the_following_rounds_until_one_is_timed_again():
    estimate = RoundTripEstimator()
    script = Script(sparse_blocks(6, [0, 1, 2, 3, 4, 5]), slots=2, round_trip=estimate)
    script.exchange.start(0.0)
    script.exchange.on_timer(RTO)  # both columns time out in one burst: one backoff, not two
    assert estimate.timeout(TIMEOUTS) == pytest.approx(2 * RTO)
    script.take()
    script.feed(script.result(0, 0, 2), now=0.15)
    # The next round of column 0 starts with the backed-off timeout, not the configured one.
    assert script.exchange._columns.deadline[0] == pytest.approx(0.15 + 2 * RTO)
    script.feed(script.result(1, 2, 4), now=0.16)  # block 2 left at 0.15, sent once: a sample ends the backoff
    assert estimate.backed_off is None and estimate.srtt == pytest.approx(0.01)
    assert estimate.timeout(TIMEOUTS) == RTO


def test_the_timeout_is_at_least_twice_the_smoothed_round_trip():
    estimate = RoundTripEstimator()
    for step in range(50):
        estimate.sample(0.12, now=0.12 * step)  # steady: rttvar decays towards 0
    assert estimate.rttvar < 0.001
    assert estimate.timeout(TIMEOUTS) == pytest.approx(min(2 * 0.12, TIMEOUTS.retransmit_max))


def test_a_slow_round_raises_the_timeout_above_it_for_some_round_trips():
    estimate = RoundTripEstimator()
    for step in range(20):
        estimate.sample(0.05, now=0.05 * step)
    assert estimate.timeout(TIMEOUTS) == pytest.approx(0.1)  # twice the smoothed round trip
    now = 1.0
    estimate.sample(0.1, now=now)
    assert PEAK_MARGIN * 0.1 < TIMEOUTS.retransmit_max
    assert estimate.timeout(TIMEOUTS) >= PEAK_MARGIN * 0.1  # the slow tail, not the average, bounds it now
    # Half a life later (in smoothed round trips of about 0.05 s) the peak has shrunk by 1/sqrt(2).
    half_life = PEAK_HALF_LIFE * estimate.srtt
    estimate.sample(0.05, now=now + half_life / 2)
    assert estimate.peak == pytest.approx(0.1 * 0.5 ** 0.5)
    for step in range(200):
        estimate.sample(0.05, now=now + half_life + 0.05 * step)
    assert estimate.timeout(TIMEOUTS) == pytest.approx(0.1, rel=0.01)  # and it fades


def test_a_batch_of_fast_round_trips_does_not_erase_the_peak():
    # Results come in batches; the rounds of one batch were measured at one moment. Decaying the peak per sample,
    # 60 fast samples took a slow round's 25 ms below the 20 ms that rounds waiting for the same peer still took.
    estimate = RoundTripEstimator()
    estimate.sample_many([0.008] * 10 + [0.025], now=1.0, timeouts=TIMEOUTS)
    timeouts = estimate.sample_many([0.008] * 60, now=1.0005, timeouts=TIMEOUTS)
    assert estimate.peak > 0.9 * 0.025
    assert min(timeouts) > 0.025
    # One call per sample gives the same doubles (the per-packet path arms what the batch path arms).
    single = RoundTripEstimator()
    for seconds in [0.008] * 10 + [0.025]:
        single.sample(seconds, now=1.0)
    after = []
    for seconds in [0.008] * 60:
        single.sample(seconds, now=1.0005)
        after.append(single.timeout(TIMEOUTS))
    assert after == timeouts and (single.srtt, single.rttvar, single.peak, single.peak_at) == (
        estimate.srtt, estimate.rttvar, estimate.peak, estimate.peak_at)


def test_a_timeout_answered_by_the_original_is_spurious_and_times_the_original():
    estimate = RoundTripEstimator(srtt=0.1, rttvar=0.0, peak=0.1, peak_at=0.0)
    script = Script(sparse_blocks(2, [0, 1]), slots=1, round_trip=estimate)
    script.exchange.start(0.0)
    script.exchange.on_timer(0.2)  # the timeout (2 srtt) fires: a retransmission
    assert script.stats.retransmissions == 1
    script.feed(script.result(0, 0, 1), now=0.21)  # 10 ms after it: too soon to answer the retransmission
    assert script.stats.spurious_timeouts == 1
    assert estimate.peak == pytest.approx(0.21)  # the original's whole round trip is sampled
    assert estimate.timeout(dataclasses.replace(TIMEOUTS, retransmit_max=1.0)) >= PEAK_MARGIN * 0.21


def test_the_first_round_waits_longer_by_the_slack_for_peers_still_preparing():
    # The previous tensor's rounds took 2 ms; this tensor's first round also waits for peers still quantizing,
    # which the agent allows for with a slack (agent.FIRST_ROUND_SLACK times its own preparation).
    estimate = RoundTripEstimator()
    estimate.sample(0.002, now=0.5)
    script = Script(np.ones((8, C.LANES)), slots=4, round_trip=estimate, first_round_slack=0.05)
    exchange = script.exchange
    exchange.start(1.0)
    assert [packet[3] for packet in script.take()] == [0, 1, 2, 3]
    assert exchange._columns.deadline.tolist() == pytest.approx([1.0 + RTO + 0.05] * 4)
    exchange.on_timer(1.0 + RTO)  # the round-trip timeout alone would have fired for every column here
    assert script.take() == [] and script.stats.retransmissions == 0
    # The next round of a column is timed from the round trips again.
    assert script.feed(script.result(0, 0, 4), now=1.01) == [("CONTRIB", 1, 0, 4, END, 0)]
    assert exchange._columns.deadline[0] == pytest.approx(1.01 + estimate.timeout(TIMEOUTS))
    # The slack never takes a timeout past retransmit_max.
    capped = Script(np.ones((2, C.LANES)), slots=1, first_round_slack=60.0)
    capped.exchange.start(0.0)
    assert capped.exchange._columns.deadline[0] == pytest.approx(TIMEOUTS.retransmit_max)


def test_a_round_queued_behind_our_earlier_frames_waits_while_the_switch_answers_them():
    # A switch slower than the window: our CONTRIBs wait in its queue in the order they left, so while the rounds
    # of earlier ones keep being answered and none of a later one is, a round is still queued, not lost.
    script = Script(sparse_blocks(12, [0, 1, 2, 3]), slots=4)  # after the first round this worker only waits
    exchange, columns = script.exchange, script.exchange._columns
    exchange.start(0.0)
    assert len(script.take()) == 4
    assert columns.sent_seq.tolist() == [0, 1, 2, 3] and exchange.send_seq == 4
    assert script.feed(script.result(0, 0, 4), now=0.001) == []  # a fast first sample: the timeout stays RTO
    assert script.feed(script.result(0, 1, 5), now=0.06) == []  # the next of our CONTRIBs, answered in turn
    assert (exchange.answered_seq, exchange.answered_at) == (1, 0.06)
    assert script.feed(script.result(1, 4, 8), now=0.07) == []  # a round we did not join: not ours, no sign
    assert exchange.answered_at == 0.06
    exchange.on_timer(RTO)  # columns 2 and 3 are due, but the switch is still working through our frames
    assert script.take() == [] and script.stats.retransmissions == 0 and script.stats.timers_deferred == 2
    assert columns.deadline[2:].tolist() == pytest.approx([0.06 + RTO] * 2)  # a timeout after the last answer
    # Column 3's CONTRIB (sent last) is answered: the switch has passed column 2's, which is due now.
    assert script.feed(script.result(0, 3, END), now=0.08) == [] and exchange.answered_seq == 3
    exchange.on_timer(0.06 + RTO)
    assert script.take() == [("CONTRIB", 0, 2, 2, END, 0)]
    assert script.stats.retransmissions == 1 and script.stats.timers_deferred == 2


def test_a_queued_round_is_retransmitted_once_results_stop():
    script = Script(sparse_blocks(8, [0, 1, 2, 3]), slots=4)
    exchange = script.exchange
    exchange.start(0.0)
    script.take()
    script.feed(script.result(0, 0, 4), now=0.001)
    exchange.on_timer(RTO)  # deferred to one timeout after the result at 1 ms...
    assert script.take() == [] and exchange.next_wakeup() == pytest.approx(0.001 + RTO)
    exchange.on_timer(0.001 + RTO)  # ...and nothing came since: lost, or the switch stopped
    assert [packet[:4] for packet in script.take()] == [("CONTRIB", 0, 1, 1), ("CONTRIB", 0, 2, 2),
                                                        ("CONTRIB", 0, 3, 3)]
    assert script.stats.timers_deferred == 3


def test_a_timer_armed_before_the_round_trips_grew_is_judged_by_the_estimate_once():
    estimate = RoundTripEstimator()
    script = Script(sparse_blocks(4, [0, 1, 2, 3]), slots=2, round_trip=estimate)
    exchange, columns = script.exchange, script.exchange._columns
    exchange.start(0.0)  # both first-round CONTRIBs armed with RTO (no sample yet)
    script.take()
    assert script.feed(script.result(0, 0, 2), now=0.09) == [("CONTRIB", 1, 0, 2, END, 0)]  # a slow round
    stretched = FIRST_TIMEOUT_STRETCH * RTO
    assert estimate.srtt + max(4 * estimate.rttvar, estimate.srtt) > stretched
    exchange.on_timer(RTO)  # column 1 was armed before that sample: judged by the estimate, stretched at most
    assert script.take() == [] and columns.deadline[1] == pytest.approx(stretched)
    assert columns.rto[1] == RTO  # a retransmission still backs off from the armed timeout
    # Then the other sign: its CONTRIB left before column 0's second one (unanswered) and after column 0's first,
    # answered at 0.09: it is due one timeout after that answer, or at once if that has passed.
    exchange.on_timer(stretched)
    due = max(stretched, 0.09 + RTO)
    if due > stretched:
        assert script.take() == [] and columns.deadline[1] == pytest.approx(due)
        exchange.on_timer(due)
    assert script.take() == [("CONTRIB", 0, 1, 1, 3, 0)]
    assert script.stats.timers_deferred == 1 + (due > stretched) and script.stats.retransmissions == 1
    assert columns.deadline[1] == pytest.approx(due + 2 * RTO)  # backed off (x2) from the armed RTO


def test_a_timer_armed_before_a_slow_round_is_judged_by_the_peak_too():
    # Rounds waiting for a peer whose queue is longer take a multiple of the smoothed round trip; the peak of
    # recent round trips, not the average, says how long a round may take now.
    estimate = RoundTripEstimator()
    script = Script(sparse_blocks(4, [0, 1, 2, 3]), slots=2, round_trip=estimate)
    exchange, columns = script.exchange, script.exchange._columns
    exchange.start(0.0)  # both first-round CONTRIBs armed with RTO
    script.take()
    assert script.feed(script.result(0, 0, 2), now=0.001) == [("CONTRIB", 1, 0, 2, END, 0)]
    script.feed(script.result(1, 2, END), now=0.002)  # a CONTRIB sent after column 1's is answered: no queue sign
    assert exchange.answered_seq > columns.sent_seq[1]
    # Since then, a round took 0.12 s (its sample at 0.05 s), the smoothed estimate stays below RTO.
    estimate.srtt, estimate.rttvar, estimate.peak, estimate.peak_at = 0.01, 0.0, 0.12, 0.05
    assert estimate.srtt + max(4 * estimate.rttvar, estimate.srtt) < RTO < estimate.timeout(TIMEOUTS)
    exchange.on_timer(RTO)
    assert script.take() == [] and script.stats.timers_deferred == 1
    assert columns.deadline[1] == pytest.approx(estimate.timeout(TIMEOUTS))
    exchange.on_timer(float(columns.deadline[1]))  # judged once: then it fires
    assert script.take() == [("CONTRIB", 0, 1, 1, 3, 0)] and script.stats.retransmissions == 1


def test_a_round_completed_by_a_late_contrib_is_not_sampled():
    # A peer's retransmission (or its first CONTRIB after a recovery) completed the round: FLAG_LATE. Its time is
    # the peer's timer, not the path; at 5% loss such samples drove srtt and the peak to seconds.
    estimate = RoundTripEstimator(srtt=0.01, rttvar=0.001, peak=0.01, peak_at=0.0)
    script = Script(sparse_blocks(4, [0, 1, 2, 3]), slots=2, round_trip=estimate)
    script.exchange.start(0.0)
    script.take()
    before = (estimate.srtt, estimate.rttvar, estimate.peak, estimate.peak_at)
    late = bytearray(script.result(0, 0, 2))
    late[FLAGS_OFFSET] |= FLAG_LATE
    assert script.feed(bytes(late), now=0.09) == [("CONTRIB", 1, 0, 2, END, 0)]
    assert (estimate.srtt, estimate.rttvar, estimate.peak, estimate.peak_at) == before
    assert not script.sent and script.stats.results == 1
    script.feed(script.result(0, 1, 3), now=0.1)  # an ordinary round is sampled
    assert estimate.peak == pytest.approx(0.1)


def test_a_late_result_ends_the_backoff_of_a_prompt_retransmission_but_times_nothing():
    estimate = RoundTripEstimator(srtt=0.05, rttvar=0.0, peak=0.05, peak_at=0.0)
    script = Script(sparse_blocks(2, [0, 1]), slots=1, round_trip=estimate)
    script.exchange.start(0.0)
    script.take()
    script.exchange.on_timer(RTO)
    assert script.stats.retransmissions == 1 and estimate.backed_off is not None
    late = bytearray(script.result(0, 0, 1))
    late[FLAGS_OFFSET] |= FLAG_LATE  # our retransmission completed the round: the original was lost
    script.feed(bytes(late), now=RTO + 0.001)
    assert estimate.backed_off is None and script.stats.spurious_timeouts == 0 and estimate.peak == 0.05


def test_the_contrib_after_a_recovered_result_leaves_late():
    # Recovered by a REQUEST: block 5 is a peer's, its result is lost, the replay comes after our REQUEST; block 9
    # is ours and leaves late (if it completes its round, nobody samples it).
    script = Script(sparse_blocks(12, [1, 9]), slots=4)
    exchange = script.exchange
    exchange.start(0.0)
    script.take()
    assert script.feed(script.result(0, 1, 5), now=0.001) == []
    exchange.on_timer(1.0)  # (the other columns' first rounds are retransmitted too)
    assert [packet for packet in script.take() if packet[2] == 1] == [("REQUEST", 1, 1, 5, 0, 1)]
    exchange.on_payload(script.result(1, 5, 9), 1.01)
    assert len(script.sent) == 1 and script.sent[0][FLAGS_OFFSET] == 2 | FLAG_LATE
    # Recovered by a retransmission: the CONTRIB after the answer leaves late too; one after an on-time result not.
    script = Script(sparse_blocks(3, [0, 1, 2]), slots=1)
    script.exchange.start(0.0)
    script.take()
    script.exchange.on_timer(RTO)
    assert script.stats.retransmissions == 1
    script.take()
    script.exchange.on_payload(script.result(0, 0, 1), RTO + 0.01)
    assert len(script.sent) == 1 and script.sent[0][FLAGS_OFFSET] == 1 | FLAG_LATE
    script.take()
    script.exchange.on_payload(script.result(1, 1, 2), RTO + 0.02)
    assert len(script.sent) == 1 and script.sent[0][FLAGS_OFFSET] == 2


def test_a_round_sent_while_the_first_round_drains_waits_for_the_peers_bursts():
    # Every worker's dense first round is a burst of S frames. A round sent while it drains may wait behind a peer's
    # burst though the switch has passed our own frame; the first round's own CONTRIBs are not covered (every
    # worker sent block s in the same place of its burst: a later one answered means the switch passed it).
    script = Script(sparse_blocks(12, list(range(12))), slots=4)  # every block non-zero: next = block + 4
    exchange, columns = script.exchange, script.exchange._columns
    exchange.start(0.0)
    assert len(script.take()) == 4
    assert script.feed(script.result(0, 0, 4), now=0.001) == [("CONTRIB", 1, 0, 4, 8, 0)]
    assert script.feed(script.result(0, 1, 5), now=0.002) == [("CONTRIB", 1, 1, 5, 9, 0)]
    assert script.feed(script.result(1, 5, 9), now=0.003) == [("CONTRIB", 2, 1, 9, END, 0)]
    assert exchange.answered_seq > columns.sent_seq[0]  # column 0's CONTRIB was passed: no queue sign for it
    assert script.feed(script.result(0, 2, 6), now=0.06) == [("CONTRIB", 1, 2, 6, 10, 0)]  # the burst drains
    assert exchange.first_answered_at == 0.06
    assert PEAK_MARGIN * 0.06 < RTO  # column 3's timer gets no first sign
    exchange.on_timer(0.101)
    # Column 3's first-round CONTRIB is due and retransmitted; column 0's round waits one timeout after the
    # latest first-round result.
    assert script.take() == [("CONTRIB", 0, 3, 3, 7, 0)]
    assert columns.deadline[0] == pytest.approx(0.06 + RTO) and script.stats.timers_deferred == 1
    exchange.on_timer(0.06 + RTO)  # no first-round result since: lost, or the switch stopped
    assert ("CONTRIB", 1, 0, 4, 8, 0) in script.take()


def test_a_round_sent_before_the_first_round_drained_waits_after_its_last_result_too():
    # The first round has drained by the time the timer fires, but the peers sent their second rounds as the last
    # first-round results reached them: those queue ahead of them still (seen on 16 idle cores: 30 of 38 spurious
    # timeouts fired 3-70 ms after the first round's last result).
    script = Script(sparse_blocks(8, list(range(8))), slots=4)  # every block non-zero: next = block + 4
    exchange, columns = script.exchange, script.exchange._columns
    exchange.start(0.0)
    assert len(script.take()) == 4
    assert script.feed(script.result(0, 0, 4), now=0.001) == [("CONTRIB", 1, 0, 4, END, 0)]
    assert script.feed(script.result(0, 1, 5), now=0.002) == [("CONTRIB", 1, 1, 5, END, 0)]
    assert script.feed(script.result(1, 5, END), now=0.003) == []
    assert exchange.answered_seq > columns.sent_seq[0]  # column 0's CONTRIB was passed: no queue sign for it
    script.feed(script.result(0, 2, 6), now=0.05)
    script.feed(script.result(0, 3, 7), now=0.08)  # the last first-round result: the first round has drained
    script.take()
    assert exchange._awaiting_first == 0 and exchange.first_answered_at == 0.08
    exchange.on_timer(0.101)  # the round trips grew since it was armed (the first sign): put off once
    exchange.on_timer(float(columns.deadline[0]))
    timeout = max(RTO, exchange._round_trip.smoothed())
    assert script.take() == [] and columns.deadline[0] == pytest.approx(0.08 + timeout)
    assert script.feed(script.result(1, 4, END), now=0.15) == []  # the round was slow, not lost
    assert script.stats.retransmissions == 0


def test_the_drain_sign_waits_by_the_round_trips_the_drain_showed_not_the_armed_timeout():
    estimate = RoundTripEstimator()
    script = Script(sparse_blocks(12, list(range(12))), slots=4, round_trip=estimate)
    exchange, columns = script.exchange, script.exchange._columns
    exchange.start(0.0)
    script.take()
    script.feed(script.result(0, 0, 4), now=0.001)  # column 0's second round leaves, armed with RTO
    script.feed(script.result(0, 1, 5), now=0.002)
    script.feed(script.result(1, 5, 9), now=0.003)  # answered after it: no queue sign for column 0
    script.feed(script.result(0, 2, 6), now=0.05)
    assert columns.rto[0] == RTO
    estimate.srtt, estimate.rttvar, estimate.peak, estimate.peak_at = 0.12, 0.0, 0.12, 0.05  # the drain's trips
    exchange.on_timer(0.101)  # the first sign: judged once by the timeout now, at most twice the armed one
    exchange.on_timer(float(columns.deadline[0]))
    assert columns.deadline[0] == pytest.approx(0.05 + 0.24)  # one smoothed timeout after the latest result
    exchange.on_timer(0.25)
    assert ("CONTRIB", 1, 0, 4, 8, 0) not in script.take()  # (columns 1 and 3 are retransmitted meanwhile)
    assert script.feed(script.result(1, 4, 8), now=0.26) == [("CONTRIB", 2, 0, 8, END, 0)]


def test_a_round_sent_after_the_first_round_drained_gets_no_drain_sign():
    script = Script(sparse_blocks(12, list(range(12))), slots=4)
    exchange, columns = script.exchange, script.exchange._columns
    exchange.start(0.0)
    script.take()
    for slot in range(4):
        script.feed(script.result(0, slot, slot + 4), now=0.001 * (slot + 1))
    script.take()
    script.feed(script.result(1, 5, 9), now=0.01)  # column 1's second round answered; its third leaves at 0.01
    script.feed(script.result(1, 6, 10), now=0.011)
    script.feed(script.result(1, 7, 11), now=0.012)
    script.take()
    assert exchange.first_answered_at == 0.004 and columns.first_sent_at[1] == 0.01
    assert exchange.answered_seq > columns.sent_seq[0]  # no queue sign for column 0 either
    exchange.on_timer(0.004 + RTO)  # column 0's second round (sent at 1 ms) is due
    assert ("CONTRIB", 1, 0, 4, 8, 0) in script.take() and script.stats.retransmissions == 1


def test_a_round_sent_while_the_first_round_drains_is_retransmitted_a_timeout_after_the_drain():
    # A lost CONTRIB is still found: at most one timeout (the larger of the armed one and the smoothed estimate)
    # after the first round's last result, and at most FIRST_ROUND_DRAIN_STRETCH such timeouts after it left.
    script = Script(sparse_blocks(32, list(range(32))), slots=16)
    exchange, estimate = script.exchange, script.exchange._round_trip
    exchange.start(0.0)
    script.take()
    script.feed(script.result(0, 0, 16), now=0.001)  # column 0's second round leaves at 1 ms
    script.feed(script.result(0, 1, 17), now=0.002)
    script.feed(script.result(1, 17, END), now=0.003)  # answered after it: no queue sign for column 0
    now = 0.003
    for slot in range(2, 16):  # first-round results keep coming, every 50 ms, until 0.703 s
        now += 0.05
        exchange.on_timer(now)
        assert ("CONTRIB", 1, 0, 16, END, 0) not in script.take()
        script.feed(script.result(0, slot, slot + 16), now=now)
    drained, timeout = now, max(RTO, estimate.smoothed())
    retransmitted_at = None
    while retransmitted_at is None and now < 10:
        now += 0.01
        exchange.on_timer(now)
        if ("CONTRIB", 1, 0, 16, END, 0) in script.take():
            retransmitted_at = now
    assert retransmitted_at is not None
    assert retransmitted_at <= min(drained + timeout, 0.001 + FIRST_ROUND_DRAIN_STRETCH * timeout) + 0.01


def test_a_retransmission_answered_in_a_round_trip_ends_the_backoff():
    # The timeout was a loss, not a slow switch: the following rounds are armed by the estimate again. Without
    # this, independent losses in different columns each doubled the backoff of every round after them.
    estimate = RoundTripEstimator(srtt=0.05, rttvar=0.0, peak=0.05, peak_at=0.0)
    script = Script(sparse_blocks(4, [0, 1, 2, 3]), slots=2, round_trip=estimate)
    exchange, columns = script.exchange, script.exchange._columns
    exchange.start(0.0)
    script.take()
    exchange.on_timer(RTO)  # both CONTRIBs lost: retransmitted, the timeout backed off
    assert [packet[3] for packet in script.take()] == [0, 1]
    assert script.stats.retransmissions == 2 and estimate.backed_off == pytest.approx(2 * RTO)
    # Column 0's retransmission is answered 60 ms later: more than half a round trip (not the original's answer),
    # within srtt + max(4 rttvar, srtt) = 100 ms.
    assert script.feed(script.result(0, 0, 2), now=RTO + 0.06) == [("CONTRIB", 1, 0, 2, END, 0)]
    assert estimate.backed_off is None and script.stats.spurious_timeouts == 0
    assert columns.deadline[0] == pytest.approx(RTO + 0.06 + estimate.timeout(TIMEOUTS))


def test_a_retransmission_answered_late_keeps_the_backoff():
    # Answered later than a round trip after the retransmission: the switch may be slower than the timeout.
    estimate = RoundTripEstimator(srtt=0.05, rttvar=0.0, peak=0.05, peak_at=0.0)
    script = Script(sparse_blocks(4, [0, 1, 2, 3]), slots=2, round_trip=estimate)
    exchange = script.exchange
    exchange.start(0.0)
    script.take()
    exchange.on_timer(RTO)
    script.feed(script.result(0, 0, 2), now=RTO + 0.15)
    assert estimate.backed_off == pytest.approx(2 * RTO)
