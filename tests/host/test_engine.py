# Run: .venv/bin/pytest tests/host/test_engine.py
"""The worker state machine (docs/protocol.md section 4.2) against scripted RESULT packets.

Each test plays the switch: it feeds the exchange results built by hand and checks, packet by packet, what the
worker sends back (CONTRIB / ACK / REQUEST, on which set, for which block, announcing which next block).
"""

from __future__ import annotations

import numpy as np
import pytest

from omnireduce.host.blocks import plan_blocks
from omnireduce.host.config import Pacing, Timeouts
from omnireduce.host.engine import REQUEST_PATIENCE, RoundTripEstimator, SlotChannel, TensorExchange, big_endian_lanes
from omnireduce.host.errors import ProtocolError
from omnireduce.host.stats import Stats
from omnireduce.host.wire import LANE_DTYPE, OmniHeader, decode_payload, encode_payload
from omnireduce.p4src import constants as C

END = C.END_OF_TENSOR
JOB = 9
RTO = 0.1
TIMEOUTS = Timeouts(retransmit_initial=RTO, backoff=2.0, retransmit_max=0.3)


class Script:
    """One exchange, the packets it sent, and helpers to answer as the switch."""

    def __init__(self, blocks: np.ndarray, slots: int, *, tensor: int = 5, channels=None, pacing=Pacing(),
                 expected_exponent=None, dense=False, round_trip=None):
        self.values = blocks.astype(np.int32)
        significant = self.values.any(axis=1)
        self.plan = plan_blocks(significant, slots, dense=dense)
        self.channels = channels if channels is not None else [SlotChannel() for _ in range(slots)]
        self.sent: list[bytes] = []
        self.stats = Stats()
        self.sums = np.zeros(self.values.size, dtype=LANE_DTYPE)
        self.exchange = TensorExchange(
            job_id=JOB, tensor_id=tensor, plan=self.plan, lanes=memoryview(big_endian_lanes(self.values)).cast("B"),
            result=memoryview(self.sums).cast("B"), exponent=7, channels=self.channels,
            send=lambda payload: self.sent.append(bytes(payload)), stats=self.stats, timeouts=TIMEOUTS,
            pacing=pacing, expected_exponent=expected_exponent, round_trip=round_trip,
        )
        self.tensor = tensor

    def take(self) -> list[tuple]:
        """Packets sent since the last call, as (kind, set, slot, block, next) tuples."""
        out = []
        for payload in self.sent:
            header, _ = decode_payload(payload)
            kind = C.MSG_TYPES[header.msg_type]
            out.append((kind, header.set_bit, header.slot, header.block_index, header.next_block))
        self.sent.clear()
        return out

    def result(self, shadow: int, block: int, next_block: int, lanes=None, *, tensor=None, exponent=7,
               slots=None) -> bytes:
        slot = block % (slots or self.plan.slots)
        values = np.full(C.LANES, block + 100, dtype=np.int32) if lanes is None else np.asarray(lanes)
        header = OmniHeader(C.MSG_RESULT, shadow, JOB, self.tensor if tensor is None else tensor, slot, block,
                            next_block, exponent, C.LANES)
        return encode_payload(header, values)

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
    assert script.take() == [("CONTRIB", 0, 0, 0, 4), ("CONTRIB", 0, 1, 1, 3)]
    first = decode_payload(script.exchange._columns[0].contrib)
    assert first[0].exponent == 7 and first[0].tensor_id == 5 and first[0].job_id == JOB
    assert first[1].tolist() == [0] * C.LANES  # block 0 is zero but sent


def test_a_whole_tensor_against_scripted_results():
    script = Script(sparse_blocks(6, [3, 4]), slots=2)
    script.exchange.start(0.0)
    script.take()
    # Column 0: someone else has block 2; this worker (next 4) acknowledges and waits.
    assert script.feed(script.result(0, 0, 2)) == [("ACK", 0, 0, 0, 0)]
    # Column 1: the column's next is this worker's next (3): it contributes on the other set, no ACK.
    assert script.feed(script.result(0, 1, 3)) == [("CONTRIB", 1, 1, 3, END)]
    # A duplicate of a consumed result is ignored, nothing is sent.
    assert script.feed(script.result(0, 1, 3)) == []
    assert script.stats.duplicates == 1
    assert script.feed(script.result(1, 2, 4)) == [("CONTRIB", 0, 0, 4, END)]
    assert script.feed(script.result(1, 3, END)) == [("ACK", 1, 1, 3, 0)]
    assert not script.exchange.done
    assert script.feed(script.result(0, 4, END)) == [("ACK", 0, 0, 4, 0)]
    assert script.exchange.done
    sums = script.sums.astype(np.int32).reshape(6, C.LANES)
    assert [int(row[0]) for row in sums] == [100, 101, 102, 103, 104, 0]  # block 5 never completed: zero
    # Every slot toggled once per consumed result: 3 results in column 0, 2 in column 1.
    assert [channel.set_bit for channel in script.channels] == [1, 0]
    assert script.stats.results == 5 and script.stats.acks_sent == 3 and script.stats.contribs_sent == 4


def test_a_lost_contrib_is_retransmitted_with_the_same_bytes_and_backoff():
    script = Script(sparse_blocks(2, [0]), slots=1)
    script.exchange.start(0.0)
    original = script.sent[:]
    script.take()
    assert script.exchange.next_wakeup() == pytest.approx(RTO)
    script.exchange.on_timer(RTO - 1e-6)
    assert script.sent == []
    script.exchange.on_timer(RTO)
    assert script.sent == original
    script.sent.clear()
    assert script.exchange.next_wakeup() == pytest.approx(3 * RTO)  # backoff 2: 0.1 + 0.2
    script.exchange.on_timer(3 * RTO)
    assert script.exchange.next_wakeup() == pytest.approx(3 * RTO + 0.3)  # capped at retransmit_max
    assert script.stats.retransmissions == 2


def test_waiting_without_contribution_requests_and_repeats_the_ack_of_the_awaited_set():
    script = Script(sparse_blocks(4, [0]), slots=1)  # this worker has only block 0: announces END
    script.exchange.start(0.0)
    assert script.take() == [("CONTRIB", 0, 0, 0, END)]
    assert script.feed(script.result(0, 0, 1), now=0.0) == [("ACK", 0, 0, 0, 0)]
    # Not having contributed, it gives the round's contributors time for a retransmission before it asks.
    patience = REQUEST_PATIENCE * RTO
    script.exchange.on_timer(patience - 1e-6)
    assert script.take() == []
    script.exchange.on_timer(patience)
    # Waiting for block 1 on set 1: a REQUEST; set 1 has no earlier ACK of ours to repeat.
    assert script.take() == [("REQUEST", 1, 0, 1, 0)]
    assert script.feed(script.result(1, 1, 2), now=patience) == [("ACK", 1, 0, 1, 0)]
    script.exchange.on_timer(2 * patience)
    # Waiting for block 2 on set 0, which still holds round 0 until every worker confirmed it: if our ACK of round
    # 0 was lost the switch refuses round 2 forever (SET_BUSY), so the ACK is repeated with the REQUEST.
    assert script.take() == [("REQUEST", 0, 0, 2, 0), ("ACK", 0, 0, 0, 0)]
    assert script.stats.requests_sent == 2 and script.stats.acks_resent == 1


def test_contributing_drops_the_pending_ack_of_the_consumed_set():
    script = Script(sparse_blocks(5, [0, 2, 4]), slots=1)
    script.exchange.start(0.0)
    script.take()
    assert script.feed(script.result(0, 0, 1)) == [("ACK", 0, 0, 0, 0)]
    # Contributing block 2 on set 0 confirms round 1 (set 1) implicitly; round 0's ACK is still what set 0 needs.
    assert script.feed(script.result(1, 1, 2)) == [("CONTRIB", 0, 0, 2, 4)]
    assert script.channels[0].last_ack[1] is None and script.channels[0].last_ack[0] is not None
    script.exchange.on_timer(RTO)
    assert script.take() == [("CONTRIB", 0, 0, 2, 4), ("ACK", 0, 0, 0, 0)]
    # Contributing block 4 on set 1 confirms round 2 (set 0): round 0's ACK is moot, nothing is repeated.
    assert script.feed(script.result(0, 2, 4), now=RTO) == [("CONTRIB", 1, 0, 4, END)]
    assert script.channels[0].last_ack == [None, None]
    script.exchange.on_timer(10.0)
    assert script.take() == [("CONTRIB", 1, 0, 4, END)]


def test_a_result_that_overtakes_the_expected_one_is_kept_and_used_in_turn():
    script = Script(sparse_blocks(3, [0]), slots=1)
    script.exchange.start(0.0)
    script.take()
    assert script.feed(script.result(0, 0, 1)) == [("ACK", 0, 0, 0, 0)]
    assert script.feed(script.result(0, 2, END)) == []  # round 2 arrives before round 1
    assert script.stats.early == 1
    assert script.feed(script.result(1, 1, 2)) == [("ACK", 1, 0, 1, 0), ("ACK", 0, 0, 2, 0)]
    assert script.exchange.done
    assert script.sums.astype(np.int32).reshape(3, C.LANES)[:, 0].tolist() == [100, 101, 102]


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


def test_set_bits_carry_over_to_the_next_tensor():
    channels = [SlotChannel(), SlotChannel()]
    first = Script(sparse_blocks(2, [0, 1]), slots=2, channels=channels, tensor=1)
    first.exchange.start(0.0)
    first.feed(first.result(0, 0, END))
    first.feed(first.result(0, 1, END))
    assert first.exchange.done and [c.set_bit for c in channels] == [1, 1]
    second = Script(sparse_blocks(2, [0, 1]), slots=2, channels=channels, tensor=2)
    second.exchange.start(1.0)
    assert second.take() == [("CONTRIB", 1, 0, 0, END), ("CONTRIB", 1, 1, 1, END)]


def test_max_burst_paces_the_first_round_by_results():
    script = Script(sparse_blocks(4, []), slots=4, pacing=Pacing(max_burst=2))
    script.exchange.start(0.0)
    assert [packet[3] for packet in script.take()] == [0, 1]
    assert script.feed(script.result(0, 0, END)) == [("ACK", 0, 0, 0, 0), ("CONTRIB", 0, 2, 2, END)]


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
    assert script.take() == [("CONTRIB", 0, 0, 0, 2), ("CONTRIB", 0, 1, 1, 3)]
    assert script.feed(script.result(0, 0, 2)) == [("CONTRIB", 1, 0, 2, END)]


def test_round_trip_estimate_raises_the_first_timeout_but_never_below_the_configured_one():
    estimate = RoundTripEstimator()
    assert estimate.timeout(TIMEOUTS) == RTO
    estimate.sample(0.01)
    assert estimate.timeout(TIMEOUTS) == RTO  # fast path: the configured timeout
    for _ in range(20):
        estimate.sample(0.2)
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
    assert script.exchange._columns[0].deadline == pytest.approx(0.15 + 2 * RTO)
    script.feed(script.result(1, 2, 4), now=0.16)  # block 2 left at 0.15, sent once: a sample ends the backoff
    assert estimate.backed_off is None and estimate.srtt == pytest.approx(0.01)
    assert estimate.timeout(TIMEOUTS) == RTO


def test_the_timeout_is_at_least_twice_the_smoothed_round_trip():
    estimate = RoundTripEstimator()
    for _ in range(50):
        estimate.sample(0.12)  # steady: rttvar decays towards 0
    assert estimate.rttvar < 0.001
    assert estimate.timeout(TIMEOUTS) == pytest.approx(min(2 * 0.12, TIMEOUTS.retransmit_max))
