# Run: .venv/bin/pytest tests/p4/test_packets.py
"""Packet tests of the omnireduce P4 program (p4src/build/omnireduce.json) on the softswitch.

Each test sends frames built field by field, compares the output frames with expected frames written out the same
way, and checks the switch's registers and counters. docs/protocol.md is the specification being tested.
"""

from __future__ import annotations

import numpy as np
import pytest
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import ARP, Ether

from omnireduce.host.wire import FLAG_LATE
from omnireduce.p4src import constants as C
from omnireduce.p4src.scapy_omni import Omni

from .omniswitch import (
    SWITCH_IP,
    SWITCH_MAC,
    as_int32,
    contrib,
    expected_forward,
    expected_result,
    lanes,
    make_workers,
    omni_frame,
    repair,
    request,
    run_allreduce,
)

END = C.END_OF_TENSOR
JOB = 3


def multicast_to_all(outputs, workers, **result_fields) -> None:
    """`outputs` is exactly one RESULT per worker of the job, each written out as expected_result() says."""
    assert sorted(outputs) == sorted((w.port, expected_result(w, **result_fields)) for w in workers)


def assert_no_drops(switch) -> None:
    """A loss-free exchange of correct workers drops nothing (docs/protocol.md section 6)."""
    assert {C.DROP_REASONS[r]: switch.drops(r) for r in C.DROP_REASONS if switch.drops(r)} == {}


# --- the completion rule and the next hint --------------------------------------------------------------------

def test_block_completes_when_every_worker_has_moved_past_it(switch):
    workers = make_workers(3)
    switch.add_job(JOB, workers, slot_base=0, slot_count=1, mcast_grp=7)
    w0, w1, w2 = workers

    # First (dense) round, block 0: each worker announces its next non-zero block of the column. The new tensor
    # sets every announcement to block 0 ("will send the first block"); lanes past the job's 3 workers hold END.
    assert switch.send(w0.port, contrib(w0, JOB, 1, 0, 0, 0, 2, lanes(1, 2))) == []
    assert switch.send(w1.port, contrib(w1, JOB, 1, 0, 0, 0, 1, lanes(10, -20))) == []
    assert switch.worker_next(0, 4) == [2, 1, 0, END]
    assert switch.round_register("round_next", 0, 0) == 0  # aggregating
    assert switch.round_register("round_tensor", 0, 0) == C.TENSOR_VALID | 1
    assert switch.register("slot_tensor", 0) == C.TENSOR_VALID | 1

    out = switch.send(w2.port, contrib(w2, JOB, 1, 0, 0, 0, END, lanes(100, 200, 300)))
    multicast_to_all(out, workers, job=JOB, tensor=1, slot=0, shadow_set=0, block=0, next_block=1,
                     values=lanes(111, 182, 300))
    assert switch.round_register("round_next", 0, 0) == 1

    # Block 1: only w1 has it, on the slot's next set. Its new next is END, w0 waits at 2: min = 2 > 1, complete at
    # once. Nobody acknowledged anything in between.
    out = switch.send(w1.port, contrib(w1, JOB, 1, 0, 1, 1, END, lanes(5)))
    multicast_to_all(out, workers, job=JOB, tensor=1, slot=0, shadow_set=1, block=1, next_block=2, values=lanes(5))

    # Block 2: only w0, set 2. Then the column is closed (next = END).
    out = switch.send(w0.port, contrib(w0, JOB, 1, 0, 2, 2, END, lanes(-7)))
    multicast_to_all(out, workers, job=JOB, tensor=1, slot=0, shadow_set=2, block=2, next_block=END, values=lanes(-7))
    assert switch.worker_next(0, 3) == [END, END, END]
    assert switch.job_counter("results", JOB) == 3
    assert switch.job_counter("contributions", JOB) == 5  # every accepted contribution, completing ones too
    assert_no_drops(switch)


def test_the_completing_contributions_flag_bits_reach_the_result(switch):
    # Flags bits 2-7 are ignored by the program and left as they are, so the RESULT, built from the CONTRIB that
    # completes the round, carries that CONTRIB's: the agent's FLAG_LATE (a late CONTRIB completed the round,
    # nobody samples its time) relies on it (docs/protocol.md section 2).
    workers = make_workers(2)
    switch.add_job(JOB, workers, slot_base=0, slot_count=1, mcast_grp=7)
    w0, w1 = workers
    assert switch.send(w0.port, contrib(w0, JOB, 1, 0, 0, 0, 1, lanes(1))) == []
    outputs = switch.send(w1.port, contrib(w1, JOB, 1, 0, FLAG_LATE | 0, 0, 1, lanes(2)))
    multicast_to_all(outputs, workers, job=JOB, tensor=1, slot=0, shadow_set=FLAG_LATE | 0, block=0, next_block=1,
                     values=lanes(3))
    # A late CONTRIB that does not complete the round leaves no mark: the one that completes it is on time.
    assert switch.send(w1.port, contrib(w1, JOB, 1, 0, FLAG_LATE | 1, 1, END, lanes(5))) == []
    outputs = switch.send(w0.port, contrib(w0, JOB, 1, 0, 1, 1, END, lanes(4)))
    multicast_to_all(outputs, workers, job=JOB, tensor=1, slot=0, shadow_set=1, block=1, next_block=END,
                     values=lanes(9))
    assert_no_drops(switch)


@pytest.mark.parametrize("worker_count,slots,blocks_per_worker", [(3, 2, 12), (4, 4, 32), (8, 3, 20), (32, 2, 8)])
def test_sparse_allreduce_sums_every_block(switch, worker_count, slots, blocks_per_worker):
    rng = np.random.default_rng(worker_count)
    workers = make_workers(worker_count)
    switch.add_job(JOB, workers, slot_base=5, slot_count=slots, mcast_grp=9)
    tensors = []
    for w in range(worker_count):
        values = rng.integers(-(2**20), 2**20, size=(blocks_per_worker, C.LANES))
        values[rng.random(blocks_per_worker) < 0.7] = 0  # each worker has its own non-zero blocks
        tensors.append(values.reshape(-1))
    trace = run_allreduce(switch, JOB, tensors, slots)
    expected = np.sum(tensors, axis=0)
    for w in range(worker_count):
        np.testing.assert_array_equal(trace.sums[w], expected)
    # Exactly one round per block that is non-zero somewhere, plus the dense first round.
    nonzero = {b for t in tensors for b in range(blocks_per_worker) if t.reshape(-1, C.LANES)[b].any()}
    assert sorted(b for _, b in trace.rounds) == sorted(nonzero | set(range(min(slots, blocks_per_worker))))
    # Only contributions went in: one per non-zero block of each worker, plus the first round.
    contributed = sum(min(slots, blocks_per_worker) + sum(1 for b in range(slots, blocks_per_worker)
                                                          if t.reshape(-1, C.LANES)[b].any()) for t in tensors)
    assert trace.packets_sent == contributed
    assert_no_drops(switch)


def test_dense_mode_sends_every_block_through_the_same_program(switch):
    workers = make_workers(3)
    switch.add_job(JOB, workers, slot_base=0, slot_count=2, mcast_grp=1)
    tensors = [np.zeros(8 * C.LANES, dtype=np.int64) for _ in workers]
    tensors[1][3 * C.LANES] = 42
    trace = run_allreduce(switch, JOB, tensors, slots=2, dense=True)
    assert sorted(b for _, b in trace.rounds) == list(range(8))
    assert trace.sums[0][3 * C.LANES] == 42 and trace.sums[2].sum() == 42
    assert trace.packets_sent == 8 * 3
    assert switch.job_counter("results", JOB) == 8
    assert_no_drops(switch)


def test_several_tensors_in_a_row_on_the_same_job(switch):
    workers = make_workers(2)
    switch.add_job(JOB, workers, slot_base=0, slot_count=2, mcast_grp=1)
    rng = np.random.default_rng(0)
    sets = {0: 0, 1: 0}
    for tensor_id in (1, 2, 3):
        tensors = [rng.integers(-100, 100, size=6 * C.LANES) * (rng.random(6 * C.LANES) < 0.05) for _ in workers]
        trace = run_allreduce(switch, JOB, tensors, slots=2, tensor_id=tensor_id, start_sets=sets)
        np.testing.assert_array_equal(trace.sums[1], np.sum(tensors, axis=0))
        # Agents keep advancing their set index across tensors: count each slot's rounds.
        for slot in (0, 1):
            sets[slot] = (sets[slot] + sum(1 for s, _ in trace.rounds if s == slot)) % C.SETS
    assert_no_drops(switch)


def test_int32_sums_wrap_around_like_the_hardware(switch):
    workers = make_workers(2)
    switch.add_job(JOB, workers, slot_base=0, slot_count=1, mcast_grp=1)
    w0, w1 = workers
    switch.send(w0.port, contrib(w0, JOB, 1, 0, 0, 0, END, lanes(2**31 - 1, -(2**31))))
    out = switch.send(w1.port, contrib(w1, JOB, 1, 0, 0, 0, END, lanes(1, -1)))
    assert Ether(out[0][1])[Omni].values[:2] == as_int32([2**31, -(2**31) - 1])


def test_exponent_is_the_max_of_the_claims(switch):
    workers = make_workers(3)
    switch.add_job(JOB, workers, slot_base=0, slot_count=1, mcast_grp=1)
    for w, claim in zip(workers, (130, 140, 127)):
        out = switch.send(w.port, contrib(w, JOB, 1, 0, 0, 0, END, lanes(), exponent=claim))
    multicast_to_all(out, workers, job=JOB, tensor=1, slot=0, shadow_set=0, block=0, next_block=END,
                     values=lanes(), exponent=140)
    assert switch.round_register("round_exponent", 0, 0) == 140


# --- loss recovery -------------------------------------------------------------------------------------------

def test_retransmitted_contribution_is_not_added_twice(switch):
    workers = make_workers(2)
    switch.add_job(JOB, workers, slot_base=0, slot_count=1, mcast_grp=1)
    w0, w1 = workers
    frame = contrib(w0, JOB, 1, 0, 0, 0, END, lanes(5, 6))
    assert switch.send(w0.port, frame) == []
    assert switch.send(w0.port, frame) == []  # the retransmission: its announcement already moved on to END
    assert switch.drops(C.DROP_DUPLICATE) == 1
    out = switch.send(w1.port, contrib(w1, JOB, 1, 0, 0, 0, END, lanes(1, 1)))
    multicast_to_all(out, workers, job=JOB, tensor=1, slot=0, shadow_set=0, block=0, next_block=END,
                     values=lanes(6, 7))


def test_completed_result_is_replayed_to_a_worker_that_retransmits_or_requests(switch):
    workers = make_workers(2)
    switch.add_job(JOB, workers, slot_base=0, slot_count=1, mcast_grp=1)
    w0, w1 = workers
    switch.send(w0.port, contrib(w0, JOB, 1, 0, 0, 0, END, lanes(1)))
    switch.send(w1.port, contrib(w1, JOB, 1, 0, 0, 0, END, lanes(2)))
    # w0 lost the multicast copy and retransmits: only w0 gets the result again, unicast, same sums.
    out = switch.send(w0.port, contrib(w0, JOB, 1, 0, 0, 0, END, lanes(1)))
    assert out == [(w0.port, expected_result(w0, JOB, 1, 0, 0, 0, END, lanes(3)))]
    assert switch.job_counter("replays", JOB) == 1
    # A REQUEST (no lanes) is answered the same way; nothing is added.
    out = switch.send(w1.port, request(w1, JOB, 1, 0, 0, 0, peer=0))
    assert out == [(w1.port, expected_result(w1, JOB, 1, 0, 0, 0, END, lanes(3)))]
    assert switch.round_register("round_value_0", 0, 0) == 3
    assert switch.job_counter("replays", JOB) == 2


def test_request_recovers_a_result_for_a_block_the_worker_did_not_send(switch):
    workers = make_workers(2)
    switch.add_job(JOB, workers, slot_base=0, slot_count=1, mcast_grp=1)
    w0, w1 = workers
    switch.send(w0.port, contrib(w0, JOB, 1, 0, 0, 0, 1, lanes(1)))
    switch.send(w1.port, contrib(w1, JOB, 1, 0, 0, 0, 2, lanes(2)))
    assert switch.send(w1.port, request(w1, JOB, 1, 0, 1, 1, peer=0)) == []  # block 1 not complete yet
    assert switch.drops(C.DROP_ROUND_NOT_READY) == 1
    switch.send(w0.port, contrib(w0, JOB, 1, 0, 1, 1, 2, lanes(9)))  # round for block 1, w1 not in it
    assert switch.send(w1.port, request(w1, JOB, 1, 0, 1, 1, peer=0)) == [
        (w1.port, expected_result(w1, JOB, 1, 0, 1, 1, 2, lanes(9)))]


def test_a_set_is_reused_without_confirmation_and_a_peer_repairs_what_it_no_longer_holds(switch):
    workers = make_workers(2)
    switch.add_job(JOB, workers, slot_base=0, slot_count=1, mcast_grp=1)
    w0, w1 = workers
    # w0 has blocks 0..5, w1 only block 0: rounds 0..5 use sets 0,1,2,3,0,1 with nobody confirming anything.
    switch.send(w1.port, contrib(w1, JOB, 1, 0, 0, 0, END, lanes(100)))
    for block in range(6):
        following = block + 1 if block < 5 else END
        out = switch.send(w0.port, contrib(w0, JOB, 1, 0, block % C.SETS, block, following, lanes(block)))
        assert len(out) == 2, f"block {block} must complete at once"
    assert_no_drops(switch)
    assert switch.round_register("round_block", 0, 0) == 4  # round 0 was overwritten by round 4
    # Round 3 is still held in set 3: a REQUEST from w1 is replayed by the switch.
    assert switch.send(w1.port, request(w1, JOB, 1, 0, 3, 3, peer=0)) == [
        (w1.port, expected_result(w1, JOB, 1, 0, 3, 3, 4, lanes(3)))]
    # Round 0 is not: the REQUEST goes to the peer w1 names (w0), which learns who asked from `peer`.
    out = switch.send(w1.port, request(w1, JOB, 1, 0, 0, 0, peer=0))
    assert out == [(w0.port, expected_forward(w0, C.MSG_REQUEST, JOB, 1, 0, 0, 0, sender=1))]
    # w0 answers with its copy of the result; the switch forwards the REPAIR to w1, naming w0.
    out = switch.send(w0.port, repair(w0, JOB, 1, 0, 0, 0, 1, lanes(100), requester=1))
    assert out == [(w1.port, expected_forward(w1, C.MSG_REPAIR, JOB, 1, 0, 0, 0, sender=0, next_block=1,
                                              values=lanes(100)))]
    assert switch.job_counter("forwards", JOB) == 2
    # A peer must be another worker of the job.
    assert switch.send(w1.port, request(w1, JOB, 1, 0, 0, 0, peer=1)) == []
    assert switch.send(w0.port, repair(w0, JOB, 1, 0, 0, 0, 1, lanes(100), requester=2)) == []
    assert switch.drops(C.DROP_BAD_PEER) == 2


def test_a_request_for_the_slots_previous_tensor_goes_to_a_peer(switch):
    workers = make_workers(2)
    switch.add_job(JOB, workers, slot_base=0, slot_count=1, mcast_grp=1)
    w0, w1 = workers
    for w in workers:  # tensor 1 (say a scale round): one block, complete
        switch.send(w.port, contrib(w, JOB, 1, 0, 0, 0, END, lanes(1)))
    # w0 got the result and starts tensor 2 in the slot; w1 lost it and can only ask w0, which serves tensor 1 still.
    assert switch.send(w0.port, contrib(w0, JOB, 2, 0, 1, 0, END, lanes(1))) == []
    out = switch.send(w1.port, request(w1, JOB, 1, 0, 0, 0, peer=0))
    assert out == [(w0.port, expected_forward(w0, C.MSG_REQUEST, JOB, 1, 0, 0, 0, sender=1))]
    # A REQUEST for a tensor newer than the slot's is just stale, and a forward needs a real peer.
    assert switch.send(w1.port, request(w1, JOB, 3, 0, 1, 0, peer=0)) == []
    assert switch.send(w1.port, request(w1, JOB, 1, 0, 0, 0, peer=5)) == []
    assert (switch.drops(C.DROP_STALE), switch.drops(C.DROP_BAD_PEER)) == (1, 1)


def test_an_accepted_contribution_on_a_set_that_holds_an_unfinished_round_is_refused(switch):
    workers = make_workers(3)
    switch.add_job(JOB, workers, slot_base=0, slot_count=1, mcast_grp=1)
    w0, w1, w2 = workers
    switch.send(w0.port, contrib(w0, JOB, 1, 0, 0, 0, 1, lanes(1)))
    switch.send(w1.port, contrib(w1, JOB, 1, 0, 0, 0, 1, lanes(1)))
    assert len(switch.send(w2.port, contrib(w2, JOB, 1, 0, 0, 0, 2, lanes(1)))) == 3  # round 0, next 1
    assert switch.send(w0.port, contrib(w0, JOB, 1, 0, 1, 1, 2, lanes(1))) == []   # round 1 on set 1, waits for w1
    # w2 is out of step (set 1 instead of 2 for block 2, which it announced): set 1 holds unfinished round 1.
    assert switch.send(w2.port, contrib(w2, JOB, 1, 0, 1, 2, END, lanes(1))) == []
    assert switch.drops(C.DROP_SET_BUSY) == 1
    assert switch.round_register("round_block", 0, 1) == 1


def test_stale_and_unannounced_contributions_are_dropped(switch):
    workers = make_workers(1)
    switch.add_job(JOB, workers, slot_base=0, slot_count=1, mcast_grp=1)
    (w0,) = workers
    switch.send(w0.port, contrib(w0, JOB, 2, 0, 0, 0, 1, lanes(1)))   # tensor 2: round block 0, complete (alone)
    switch.send(w0.port, contrib(w0, JOB, 2, 0, 1, 1, 3, lanes(1)))   # block 1 on set 1, announces 3
    assert switch.send(w0.port, contrib(w0, JOB, 2, 0, 0, 0, 1, lanes(1))) == []  # block 0 is long gone
    assert switch.send(w0.port, contrib(w0, JOB, 1, 0, 0, 0, END, lanes(1))) == []  # an older tensor
    assert switch.drops(C.DROP_STALE) == 2
    assert switch.send(w0.port, contrib(w0, JOB, 2, 0, 2, 5, END, lanes(1))) == []  # it announced 3, not 5
    assert switch.drops(C.DROP_NOT_ANNOUNCED) == 1
    assert switch.worker_next(0, 1) == [3]


def test_new_tensor_resets_the_announced_next_blocks(switch):
    workers = make_workers(2)
    switch.add_job(JOB, workers, slot_base=0, slot_count=1, mcast_grp=1)
    w0, w1 = workers
    for w in workers:  # tensor 1: one block, both say END
        out = switch.send(w.port, contrib(w, JOB, 1, 0, 0, 0, END, lanes(1)))
    assert switch.worker_next(0, 2) == [END, END]
    # Tensor 2 on the next set: w0's contribution alone must not complete it, although w1's old next was END.
    assert switch.send(w0.port, contrib(w0, JOB, 2, 0, 1, 0, END, lanes(1))) == []
    assert switch.worker_next(0, 2) == [END, 0]
    assert switch.register("slot_tensor", 0) == C.TENSOR_VALID | 2
    out = switch.send(w1.port, contrib(w1, JOB, 2, 0, 1, 0, END, lanes(1)))
    assert len(out) == 2


# --- isolation -----------------------------------------------------------------------------------------------

def test_two_jobs_share_the_switch_without_seeing_each_other(switch):
    job_a, job_b = make_workers(2, first_port=1, host_base=1), make_workers(2, first_port=3, host_base=11)
    switch.add_job(1, job_a, slot_base=0, slot_count=2, mcast_grp=11)
    switch.add_job(2, job_b, slot_base=2, slot_count=2, mcast_grp=12)
    switch.send(job_a[0].port, contrib(job_a[0], 1, 1, 0, 0, 0, END, lanes(1)))
    switch.send(job_b[0].port, contrib(job_b[0], 2, 1, 0, 0, 0, END, lanes(100)))
    out_b = switch.send(job_b[1].port, contrib(job_b[1], 2, 1, 0, 0, 0, END, lanes(200)))
    multicast_to_all(out_b, job_b, job=2, tensor=1, slot=0, shadow_set=0, block=0, next_block=END, values=lanes(300))
    out_a = switch.send(job_a[1].port, contrib(job_a[1], 1, 1, 0, 0, 0, END, lanes(2)))
    multicast_to_all(out_a, job_a, job=1, tensor=1, slot=0, shadow_set=0, block=0, next_block=END, values=lanes(3))
    # A worker of job 1 naming job 2 in its header is refused, and job 2's state is untouched.
    assert switch.send(job_a[0].port, contrib(job_a[0], 2, 2, 1, 0, 1, END, lanes(9))) == []
    assert switch.drops(C.DROP_JOB_MISMATCH) == 1
    assert switch.round_register("round_tensor", 3, 0) == 0 and switch.register("slot_tensor", 3) == 0
    assert switch.job_counter("results", 1) == 1 and switch.job_counter("results", 2) == 1


# --- every drop reason is counted ----------------------------------------------------------------------------

def _drop_case(switch, reason, port, frame):
    before = switch.drops(reason)
    assert switch.send(port, bytes(frame)) == []
    assert switch.drops(reason) == before + 1, C.DROP_REASONS[reason]


def test_malformed_and_unknown_packets_are_counted_drops(switch):
    workers = make_workers(2)
    switch.add_job(JOB, workers, slot_base=0, slot_count=2, mcast_grp=1)
    w0, w1 = workers
    good = contrib(w0, JOB, 1, 0, 0, 0, END, lanes(1))

    _drop_case(switch, C.DROP_PARSER_ERROR, w0.port, bytes(good)[:100])  # lanes cut short
    _drop_case(switch, C.DROP_PARSER_ERROR, w0.port, bytes(Ether(src=w0.mac, dst=SWITCH_MAC, type=0x0800))
               + b"\x45\x00\x00")  # an IPv4 header cut short
    bad_checksum = good.copy()
    bad_checksum[IP].chksum = 0x1234
    _drop_case(switch, C.DROP_BAD_CHECKSUM, w0.port, bad_checksum)
    _drop_case(switch, C.DROP_BAD_LENGTH, w0.port, _with_udp_length(good, 8 + 20 + 4 * C.LANES - 4))
    _drop_case(switch, C.DROP_BAD_LANE_COUNT, w0.port, omni_frame(w0, C.MSG_CONTRIB, JOB, 1, 0, 0, 0, END, [1, 2]))
    _drop_case(switch, C.DROP_BAD_LANE_COUNT, w0.port, omni_frame(w0, C.MSG_REQUEST, JOB, 1, 0, 0, 0, 0, lanes()))
    _drop_case(switch, C.DROP_BAD_LANE_COUNT, w0.port, omni_frame(w0, C.MSG_REPAIR, JOB, 1, 0, 0, 0, 0, [], peer=1))
    _drop_case(switch, C.DROP_BAD_MSG_TYPE, w0.port, omni_frame(w0, C.MSG_RESULT, JOB, 1, 0, 0, 0, END, lanes()))
    _drop_case(switch, C.DROP_BAD_MSG_TYPE, w0.port, omni_frame(w0, 99, JOB, 1, 0, 0, 0, 0, []))
    _drop_case(switch, C.DROP_BAD_MSG_TYPE, w0.port, omni_frame(w0, 3, JOB, 1, 0, 0, 0, 0, []))  # the former ACK
    _drop_case(switch, C.DROP_UNKNOWN_WORKER, w1.port, good)  # w0's address on w1's port
    _drop_case(switch, C.DROP_JOB_MISMATCH, w0.port, contrib(w0, JOB + 1, 1, 0, 0, 0, END, lanes(1)))
    _drop_case(switch, C.DROP_SLOT_OUT_OF_RANGE, w0.port, contrib(w0, JOB, 1, 2, 0, 2, END, lanes(1)))
    # A REQUEST in a slot that holds no tensor yet (ROUND_NOT_READY is tested with the rounds above).
    _drop_case(switch, C.DROP_STALE, w0.port, request(w0, JOB, 1, 0, 0, 0, peer=1))
    _drop_case(switch, C.DROP_BAD_PEER, w0.port, repair(w0, JOB, 1, 0, 0, 0, END, lanes(1), requester=0))
    _drop_case(switch, C.DROP_NOT_IPV4, w0.port, Ether(src=w0.mac, dst="ff:ff:ff:ff:ff:ff") / ARP(pdst=SWITCH_IP))
    _drop_case(switch, C.DROP_NO_ROUTE, w0.port, Ether(src=w0.mac, dst=SWITCH_MAC) / IP(src=w0.ip, dst="192.0.2.1")
               / UDP(sport=1, dport=2))
    switch.add_route("192.0.2.0", 24, port=9, dst_mac="02:00:00:00:09:09")
    _drop_case(switch, C.DROP_TTL_EXPIRED, w0.port, Ether(src=w0.mac, dst=SWITCH_MAC)
               / IP(src=w0.ip, dst="192.0.2.1", ttl=1) / UDP(sport=1, dport=2))
    # None of it touched the aggregation state.
    assert switch.round_register("round_tensor", 0, 0) == 0
    assert switch.job_counter("contributions", JOB) == 0


def test_result_copy_without_destination_is_counted_in_egress(switch):
    workers = make_workers(2)
    switch.add_job(JOB, workers, slot_base=0, slot_count=1, mcast_grp=1)
    stranger = make_workers(1, first_port=5, host_base=50)[0]
    switch.device.mc_group_modify(1, [(w.port, w.worker_id) for w in workers] + [(stranger.port, 17)])
    switch.send(workers[0].port, contrib(workers[0], JOB, 1, 0, 0, 0, END, lanes(1)))
    out = switch.send(workers[1].port, contrib(workers[1], JOB, 1, 0, 0, 0, END, lanes(1)))
    assert sorted(port for port, _ in out) == [1, 2]
    assert switch.drops(C.DROP_NO_RESULT_DESTINATION) == 1


def test_plain_ipv4_is_routed(switch):
    (w0,) = make_workers(1)
    switch.add_route("10.0.9.0", 24, port=4, dst_mac="02:00:00:00:00:44")
    frame = Ether(src=w0.mac, dst=SWITCH_MAC) / IP(src=w0.ip, dst="10.0.9.9", ttl=10, id=0) / UDP(sport=1, dport=2)
    expected = Ether(src=SWITCH_MAC, dst="02:00:00:00:00:44") / IP(src=w0.ip, dst="10.0.9.9", ttl=9, id=0) / UDP(
        sport=1, dport=2)
    assert switch.send(w0.port, frame) == [(4, bytes(expected))]


def _with_udp_length(frame: Ether, udp_length: int) -> Ether:
    """The frame with a UDP length that disagrees with its lane count (IPv4 length kept consistent)."""
    frame = frame.copy()
    frame[UDP].len = udp_length
    frame[IP].len = 20 + udp_length
    frame[IP].chksum = None
    return Ether(bytes(frame))
