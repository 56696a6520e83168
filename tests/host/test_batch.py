# Run: .venv/bin/pytest tests/host/test_batch.py
"""The batch path (TensorExchange.on_batch, host/batch.py) against the per-packet path (on_payload).

Differential: the same stream of datagrams (in-order results, results that overtake a lost one, the lost one coming
back as a peer's REPAIR, duplicates, forwarded REQUESTs, other tensors and jobs, odd sizes) is fed to one exchange
packet by packet and to another in batches of random sizes, with the same clock and timer calls; both must send the
same bytes in the same order and end in the same state.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from omnireduce.host.blocks import next_in_column, plan_blocks
from omnireduce.host.columns import SlotChannels
from omnireduce.host.config import Timeouts
from omnireduce.host.engine import RoundTripEstimator, TensorExchange, big_endian_lanes
from omnireduce.host.errors import ProtocolError
from omnireduce.host.lanes import BlockLanes
from omnireduce.host.stats import Stats
from omnireduce.host.wire import DATA_PAYLOAD_BYTES, FLAG_LATE, LANE_DTYPE, OmniHeader, encode_payload
from omnireduce.p4src import constants as C

END = C.END_OF_TENSOR
JOB = 3
TENSOR = 11
TIMEOUTS = Timeouts(retransmit_initial=0.01, retransmit_first=0.02, retransmit_max=0.2)


class Worker:
    """One exchange of worker 0 of a 3-worker job, recording what it sends."""

    def __init__(self, values: np.ndarray, slots: int, *, expected_exponent: int | None = None,
                 compiled: bool = False, compact: bool = False) -> None:
        self.plan = plan_blocks(values.any(axis=1), slots)
        self.sent: list[bytes] = []
        self.stats = Stats()
        self.channels = SlotChannels.create(slots)
        self.sums = np.zeros(values.size, dtype=LANE_DTYPE)
        self.round_trip = RoundTripEstimator()
        lanes = big_endian_lanes(values)
        if compact:  # only the non-zero blocks' rows (host/lanes.py), as quantize_blocks stores a sparse tensor
            stored = np.flatnonzero(values.any(axis=1))
            compact_lanes = BlockLanes.compact(len(values), stored)
            compact_lanes.rows[1:] = lanes.reshape(-1, C.LANES)[stored]
        self.exchange = TensorExchange(
            job_id=JOB, tensor_id=TENSOR, plan=self.plan,
            lanes=compact_lanes if compact else memoryview(lanes).cast("B"),
            result=memoryview(self.sums).cast("B"), exponent=5, channels=self.channels,
            send=lambda payload: self.sent.append(bytes(payload)), stats=self.stats, timeouts=TIMEOUTS,
            round_trip=self.round_trip, expected_exponent=expected_exponent, workers=3, compiled=compiled,
        )
        assert self.exchange.compiled == compiled

    def state(self) -> dict:
        exchange = self.exchange
        columns = exchange._columns
        return {
            "sent": self.sent, "stats": self.stats.as_dict(), "sums": self.sums.tobytes(),
            "sets": self.channels.set_index.tolist(), "last_tensor": self.channels.last_tensor.tolist(),
            "expected": columns.expected.tolist(), "own_next": columns.own_next.tolist(),
            "contributed": columns.contributed.tolist(),
            "sent_at": [None if math.isnan(t) else t for t in columns.sent_at.tolist()],
            "rto": columns.rto.tolist(), "deadline": columns.deadline.tolist(), "timeouts": columns.timeouts.tolist(),
            "gap_requested": columns.gap_requested.tolist(), "contrib": columns.contrib.tobytes(),
            "early": [sorted(early.items()) for early in columns.early], "open": exchange.open_columns,
            "result_next": exchange._result_next.tolist(), "result_set": exchange._result_set.tolist(),
            "result_exponent": exchange.result_exponent, "last_progress": exchange.last_progress,
            "round_trip": (self.round_trip.srtt, self.round_trip.rttvar, self.round_trip.peak,
                           self.round_trip.peak_at, self.round_trip.backed_off),
            "first_sent_at": columns.first_sent_at.tolist(),
            "retransmitted_at": [None if math.isnan(t) else t for t in columns.retransmitted_at.tolist()],
            "has_early": columns.has_early.tolist(), "awaiting_first": exchange._awaiting_first,
            "sent_seq": columns.sent_seq.tolist(), "send_seq": exchange.send_seq, "answered_seq": exchange.answered_seq,
            "answered_at": exchange.answered_at, "first_answered_at": exchange.first_answered_at,
        }


def result(set_index: int, slot: int, block: int, next_block: int, *, msg_type=C.MSG_RESULT, tensor=TENSOR,
           job=JOB, exponent=5) -> bytes:
    header = OmniHeader(msg_type, set_index, job, tensor, slot, block, next_block, exponent, C.LANES,
                        1 if msg_type == C.MSG_REPAIR else 0)
    return encode_payload(header, np.full(C.LANES, block * 3 + 1, dtype=np.int32))


def stream(rng: np.random.Generator, mine: np.ndarray, slots: int) -> list[bytes]:
    """What a worker of a job could receive: every column's chain of results (over the union of the workers'
    blocks), interleaved across columns, with losses repaired later by a peer, duplicates and stray datagrams."""
    count = len(mine)
    union = mine | (rng.random(count) < 0.2)
    union[:slots] = True
    following = next_in_column(union, slots)
    columns: list[list[bytes]] = []
    for slot in range(min(slots, count)):
        chain = []
        block, set_index = slot, 0
        while block != END:
            chain.append((set_index, block, int(following[block])))
            set_index = (set_index + 1) % C.SETS
            block = int(following[block])
        events: list[bytes] = []
        late: list[tuple[int, bytes]] = []
        for position, (set_index, block, nxt) in enumerate(chain):
            roll = rng.random()
            if roll < 0.15 and position + 1 < len(chain):  # lost: a peer's REPAIR arrives a few results later
                late.append((position + int(rng.integers(1, 4)), result(set_index, slot, block, nxt,
                                                                        msg_type=C.MSG_REPAIR)))
            else:
                # Now and then a late CONTRIB (a peer's retransmission) completed the round: FLAG_LATE.
                flags = set_index | (FLAG_LATE if roll > 0.8 else 0)
                events.append(result(flags, slot, block, nxt))
                if roll > 0.9:
                    late.append((position + int(rng.integers(0, 3)), result(set_index, slot, block, nxt)))
            events += [payload for due, payload in late if due == position]
            late = [(due, payload) for due, payload in late if due != position]
        events += [payload for _, payload in late]
        columns.append(events)
    merged: list[bytes] = []
    while any(columns):
        pending = [column for column in columns if column]
        merged.append(pending[int(rng.integers(len(pending)))].pop(0))
        if rng.random() < 0.05:
            block = int(rng.integers(count))
            merged.append(OmniHeader(C.MSG_REQUEST, 0, JOB, TENSOR, block % slots, block, 0, 0, 0, 2).pack())
        if rng.random() < 0.03:
            merged.append([result(0, 0, 0, END, tensor=TENSOR - 1), result(0, 0, 0, END, job=JOB + 1),
                           b"\x02" * 7, result(0, 0, 0, END) + b"\x00" * 60][int(rng.integers(4))])
    return merged


def as_batch(payloads: list[bytes]) -> tuple[np.ndarray, np.ndarray]:
    rows = np.zeros((len(payloads), DATA_PAYLOAD_BYTES), dtype=np.uint8)
    for row, payload in enumerate(payloads):
        cut = payload[:DATA_PAYLOAD_BYTES]
        rows[row, :len(cut)] = np.frombuffer(cut, dtype=np.uint8)
    return rows, np.array([len(payload) for payload in payloads], dtype=np.int64)


def feed_both(one: Worker, batched: Worker, payloads: list[bytes], rng: np.random.Generator) -> None:
    now = 0.0
    one.exchange.start(now)
    batched.exchange.start(now)
    index = 0
    while index < len(payloads):
        size = int(rng.integers(1, 40))
        chunk = payloads[index:index + size]
        index += size
        now += float(rng.choice([0.001, 0.004, 0.03]))
        for payload in chunk:
            one.exchange.on_payload(payload, now)
        batched.exchange.on_batch(*as_batch(chunk), now)
        if rng.random() < 0.3:
            now += 0.01
            one.exchange.on_timer(now)
            batched.exchange.on_timer(now)


def compiled_available() -> bool:
    from omnireduce.host import native

    return native.available() is not None


#: numpy's batch path, and the compiled one (host/exchange.c) where a C compiler and cffi are installed.
BATCH_PATHS = [
    pytest.param(False, id="numpy"),
    pytest.param(True, id="compiled", marks=pytest.mark.skipif(
        not compiled_available(), reason="the compiled exchange does not build here (no C compiler or cffi)")),
]


@pytest.mark.parametrize("compiled", BATCH_PATHS)
@pytest.mark.parametrize("seed", range(40))
def test_batches_leave_the_same_state_and_send_the_same_packets_as_one_by_one(seed, compiled):
    rng = np.random.default_rng(seed)
    slots = int(rng.choice([1, 3, 8, 16]))
    count = int(rng.integers(slots, 12 * slots + 2))
    values = np.where(rng.random((count, 1)) < 0.3, rng.integers(-9, 9, (count, C.LANES)), 0).astype(np.int32)
    # The reference: one by one, tensor-sized lanes; the batch path reads compact lanes on every other seed.
    one, batched = Worker(values, slots), Worker(values, slots, compiled=compiled, compact=bool(seed % 2))
    payloads = stream(rng, one.plan.send.copy(), slots)
    feed_both(one, batched, payloads, rng)
    assert batched.state() == one.state()
    assert batched.stats.results > 0


@pytest.mark.parametrize("compiled", BATCH_PATHS)
def test_an_in_order_batch_is_consumed_whole_and_answers_with_one_batch_of_contribs(compiled):
    values = np.ones((8, C.LANES), dtype=np.int32)
    worker = Worker(values, slots=4, compiled=compiled)
    sent_batches: list[int] = []
    worker.exchange._send_batch = lambda rows: sent_batches.append(len(rows))
    worker.exchange.start(0.0)
    worker.sent.clear()
    rows, sizes = as_batch([result(0, slot, slot, slot + 4) for slot in range(4)])
    worker.exchange.on_batch(rows, sizes, 0.01)
    assert sent_batches == [4] and worker.sent == []  # nothing went the per-packet way
    assert worker.stats.results == 4 and worker.round_trip.srtt == pytest.approx(0.01)
    assert worker.channels.set_index.tolist() == [1, 1, 1, 1]


@pytest.mark.parametrize("compiled", BATCH_PATHS)
def test_a_late_result_in_a_batch_is_not_sampled(compiled):
    values = np.ones((8, C.LANES), dtype=np.int32)
    worker = Worker(values, slots=4, compiled=compiled)
    worker.exchange.start(0.0)
    worker.sent.clear()
    rows, sizes = as_batch([result(0, 0, 0, 4), result(FLAG_LATE, 1, 1, 5), result(0, 2, 2, 6)])
    worker.exchange.on_batch(rows, sizes, 0.01)
    assert worker.stats.results == 3
    # Two samples of 10 ms: srtt 10 ms, rttvar 5 ms then 3.75 ms (a third sample would have made it 2.8 ms).
    assert worker.round_trip.srtt == pytest.approx(0.01) and worker.round_trip.rttvar == pytest.approx(0.00375)


@pytest.mark.parametrize("compiled", BATCH_PATHS)
def test_a_protocol_error_in_a_batch_stops_where_one_by_one_would(compiled):
    values = np.ones((8, C.LANES), dtype=np.int32)
    one = Worker(values, slots=4, expected_exponent=5)
    batched = Worker(values, slots=4, expected_exponent=5, compiled=compiled)
    payloads = [result(0, 0, 0, 4), result(0, 1, 1, 5), result(0, 2, 2, 6, exponent=9), result(0, 3, 3, 7)]
    for worker in (one, batched):
        worker.exchange.start(0.0)
    with pytest.raises(ProtocolError, match="exponent 9"):
        for payload in payloads:
            one.exchange.on_payload(payload, 0.01)
    with pytest.raises(ProtocolError, match="exponent 9"):
        batched.exchange.on_batch(*as_batch(payloads), 0.01)
    assert batched.state() == one.state()
