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

from omnireduce.p4src import constants as C
from omnireduce.p4src.scapy_omni import Omni

from .omniswitch import (
    SWITCH_IP,
    SWITCH_MAC,
    ack,
    as_int32,
    contrib,
    expected_result,
    lanes,
    make_workers,
    omni_frame,
    request,
    run_allreduce,
)

END = C.END_OF_TENSOR
JOB = 3


def multicast_to_all(outputs, workers, **result_fields) -> None:
    """`outputs` is exactly one RESULT per worker of the job, each written out as expected_result() says."""
    assert sorted(outputs) == sorted((w.port, expected_result(w, **result_fields)) for w in workers)


# --- the completion rule and the next hint --------------------------------------------------------------------

def test_block_completes_when_every_worker_has_moved_past_it(switch):
    workers = make_workers(3)
    switch.add_job(JOB, workers, slot_base=0, slot_count=1, mcast_grp=7)
    w0, w1, w2 = workers

    # First (dense) round, block 0: each worker announces its next non-zero block of the column.
    assert switch.send(w0.port, contrib(w0, JOB, 1, 0, 0, 0, 2, lanes(1, 2))) == []
    assert switch.send(w1.port, contrib(w1, JOB, 1, 0, 0, 0, 1, lanes(10, -20))) == []
    assert switch.round_register("round_contributed", 0, 0) == 0b011
    assert switch.round_register("round_state", 0, 0) == C.ROUND_AGGREGATING
    assert [switch.register("worker_next", w) for w in range(3)] == [2, 1, 0]

    out = switch.send(w2.port, contrib(w2, JOB, 1, 0, 0, 0, END, lanes(100, 200, 300)))
    multicast_to_all(out, workers, job=JOB, tensor=1, slot=0, shadow_set=0, block=0, next_block=1,
                     values=lanes(111, 182, 300))
    assert switch.round_register("round_state", 0, 0) == C.ROUND_COMPLETE
    assert switch.round_register("round_next", 0, 0) == 1
    assert switch.round_register("round_unacked", 0, 0) == 0b111

    # Block 1: only w1 has it. Its new next is END, w0 still waits at 2: min = 2 > 1, complete at once.
    assert switch.send(w0.port, ack(w0, JOB, 1, 0, 0, 0)) == []
    assert switch.send(w2.port, ack(w2, JOB, 1, 0, 0, 0)) == []
    out = switch.send(w1.port, contrib(w1, JOB, 1, 0, 1, 1, END, lanes(5)))
    multicast_to_all(out, workers, job=JOB, tensor=1, slot=0, shadow_set=1, block=1, next_block=2, values=lanes(5))
    # w1's contribution confirmed round 0 for it: nobody is left unconfirmed there.
    assert switch.round_register("round_unacked", 0, 0) == 0

    # Block 2: only w0. Then the column is closed (next = END).
    switch.send(w1.port, ack(w1, JOB, 1, 0, 1, 1))
    switch.send(w2.port, ack(w2, JOB, 1, 0, 1, 1))
    out = switch.send(w0.port, contrib(w0, JOB, 1, 0, 0, 2, END, lanes(-7)))
    multicast_to_all(out, workers, job=JOB, tensor=1, slot=0, shadow_set=0, block=2, next_block=END, values=lanes(-7))
    assert switch.job_counter("results", JOB) == 3
    assert switch.job_counter("contributions", JOB) == 5
    assert switch.job_counter("acks", JOB) == 4


@pytest.mark.parametrize("worker_count,slots,blocks_per_worker", [(3, 2, 12), (4, 4, 32), (8, 3, 20)])
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
    assert switch.drops(C.DROP_SET_BUSY) == 0 and switch.drops(C.DROP_DUPLICATE) == 0


def test_dense_mode_sends_every_block_through_the_same_program(switch):
    workers = make_workers(3)
    switch.add_job(JOB, workers, slot_base=0, slot_count=2, mcast_grp=1)
    tensors = [np.zeros(8 * C.LANES, dtype=np.int64) for _ in workers]
    tensors[1][3 * C.LANES] = 42
    trace = run_allreduce(switch, JOB, tensors, slots=2, dense=True)
    assert sorted(b for _, b in trace.rounds) == list(range(8))
    assert trace.sums[0][3 * C.LANES] == 42 and trace.sums[2].sum() == 42
    assert switch.job_counter("contributions", JOB) == 8 * 3


def test_several_tensors_in_a_row_on_the_same_job(switch):
    workers = make_workers(2)
    switch.add_job(JOB, workers, slot_base=0, slot_count=2, mcast_grp=1)
    rng = np.random.default_rng(0)
    sets = {0: 0, 1: 0}
    for tensor_id in (1, 2, 3):
        tensors = [rng.integers(-100, 100, size=6 * C.LANES) * (rng.random(6 * C.LANES) < 0.05) for _ in workers]
        trace = run_allreduce(switch, JOB, tensors, slots=2, tensor_id=tensor_id, start_sets=sets)
        np.testing.assert_array_equal(trace.sums[1], np.sum(tensors, axis=0))
        # Agents keep toggling their set bit across tensors: count each slot's rounds.
        for slot in (0, 1):
            sets[slot] ^= sum(1 for s, _ in trace.rounds if s == slot) & 1


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


# --- loss recovery -------------------------------------------------------------------------------------------

def test_retransmitted_contribution_is_not_added_twice(switch):
    workers = make_workers(2)
    switch.add_job(JOB, workers, slot_base=0, slot_count=1, mcast_grp=1)
    w0, w1 = workers
    frame = contrib(w0, JOB, 1, 0, 0, 0, END, lanes(5, 6))
    assert switch.send(w0.port, frame) == []
    assert switch.send(w0.port, frame) == []  # the retransmission
    assert switch.drops(C.DROP_DUPLICATE) == 1
    out = switch.send(w1.port, contrib(w1, JOB, 1, 0, 0, 0, END, lanes(1, 1)))
    multicast_to_all(out, workers, job=JOB, tensor=1, slot=0, shadow_set=0, block=0, next_block=END,
                     values=lanes(6, 7))


def test_completed_result_is_replayed_to_a_worker_that_retransmits(switch):
    workers = make_workers(2)
    switch.add_job(JOB, workers, slot_base=0, slot_count=1, mcast_grp=1)
    w0, w1 = workers
    switch.send(w0.port, contrib(w0, JOB, 1, 0, 0, 0, END, lanes(1)))
    switch.send(w1.port, contrib(w1, JOB, 1, 0, 0, 0, END, lanes(2)))
    # w0 lost the multicast copy and retransmits: only w0 gets the result again, unicast, same sums.
    out = switch.send(w0.port, contrib(w0, JOB, 1, 0, 0, 0, END, lanes(1)))
    assert out == [(w0.port, expected_result(w0, JOB, 1, 0, 0, 0, END, lanes(3)))]
    assert switch.job_counter("replays", JOB) == 1
    # A REQUEST (no lanes) is answered the same way.
    out = switch.send(w1.port, request(w1, JOB, 1, 0, 0, 0))
    assert out == [(w1.port, expected_result(w1, JOB, 1, 0, 0, 0, END, lanes(3)))]
    assert switch.round_register("round_contributed", 0, 0) == 0b11


def test_request_recovers_a_result_for_a_block_the_worker_did_not_send(switch):
    workers = make_workers(2)
    switch.add_job(JOB, workers, slot_base=0, slot_count=1, mcast_grp=1)
    w0, w1 = workers
    switch.send(w0.port, contrib(w0, JOB, 1, 0, 0, 0, 1, lanes(1)))
    switch.send(w1.port, contrib(w1, JOB, 1, 0, 0, 0, END, lanes(2)))
    switch.send(w1.port, ack(w1, JOB, 1, 0, 0, 0))
    switch.send(w0.port, contrib(w0, JOB, 1, 0, 1, 1, END, lanes(9)))  # round for block 1, w1 not in it
    # Before the round completes a REQUEST has nothing to replay; after, it gets block 1.
    assert switch.send(w1.port, request(w1, JOB, 1, 0, 1, 1)) == [
        (w1.port, expected_result(w1, JOB, 1, 0, 1, 1, END, lanes(9)))]
    assert switch.send(w1.port, request(w1, JOB, 1, 0, 0, 5)) == []
    assert switch.drops(C.DROP_ROUND_NOT_READY) == 1


def test_shadow_set_is_reused_only_after_every_worker_confirmed(switch):
    workers = make_workers(2)
    switch.add_job(JOB, workers, slot_base=0, slot_count=1, mcast_grp=1)
    w0, w1 = workers
    # Round A (set 0, block 0): w0 continues at block 1, w1 has nothing more.
    switch.send(w0.port, contrib(w0, JOB, 1, 0, 0, 0, 1, lanes(1)))
    switch.send(w1.port, contrib(w1, JOB, 1, 0, 0, 0, 2, lanes(1)))
    # Round B (set 1, block 1): w0 alone; w1 (next = 2) does not confirm round A yet (its ACK is "lost").
    out = switch.send(w0.port, contrib(w0, JOB, 1, 0, 1, 1, 2, lanes(4)))
    assert len(out) == 2
    assert switch.round_register("round_unacked", 0, 0) == 0b10
    # Round C (set 0 again, block 2) would overwrite round A, which w1 may still need: refused.
    assert switch.send(w0.port, contrib(w0, JOB, 1, 0, 0, 2, END, lanes(8))) == []
    assert switch.drops(C.DROP_SET_BUSY) == 1
    # w1 can still recover round A, then confirms it; w0's retransmission now starts round C.
    assert switch.send(w1.port, request(w1, JOB, 1, 0, 0, 0))[0][1] == expected_result(
        w1, JOB, 1, 0, 0, 0, 1, lanes(2))
    switch.send(w1.port, ack(w1, JOB, 1, 0, 0, 0))
    assert switch.send(w0.port, contrib(w0, JOB, 1, 0, 0, 2, END, lanes(8))) == []  # absorbed: w1 has 2 too
    out = switch.send(w1.port, contrib(w1, JOB, 1, 0, 0, 2, END, lanes(1)))
    multicast_to_all(out, workers, job=JOB, tensor=1, slot=0, shadow_set=0, block=2, next_block=END,
                     values=lanes(9))


def test_stale_contribution_is_dropped(switch):
    workers = make_workers(1)
    switch.add_job(JOB, workers, slot_base=0, slot_count=1, mcast_grp=1)
    (w0,) = workers
    switch.send(w0.port, contrib(w0, JOB, 1, 0, 0, 0, 1, lanes(1)))   # round block 0, complete (alone)
    switch.send(w0.port, contrib(w0, JOB, 1, 0, 1, 1, 2, lanes(1)))   # block 1 on set 1
    switch.send(w0.port, contrib(w0, JOB, 1, 0, 0, 2, END, lanes(1)))  # block 2 on set 0
    assert switch.round_register("round_block", 0, 0) == 2
    assert switch.send(w0.port, contrib(w0, JOB, 1, 0, 0, 0, 1, lanes(1))) == []  # block 0 is long gone
    assert switch.drops(C.DROP_STALE) == 1


def test_new_tensor_resets_the_announced_next_blocks(switch):
    workers = make_workers(2)
    switch.add_job(JOB, workers, slot_base=0, slot_count=1, mcast_grp=1)
    w0, w1 = workers
    for w in workers:  # tensor 1: one block, both say END
        out = switch.send(w.port, contrib(w, JOB, 1, 0, 0, 0, END, lanes(1)))
    for w in workers:
        switch.send(w.port, ack(w, JOB, 1, 0, 0, 0))
    # Tensor 2 on the other set: w0's contribution alone must not complete it, although w1's old next was END.
    assert switch.send(w0.port, contrib(w0, JOB, 2, 0, 1, 0, END, lanes(1))) == []
    assert switch.register("worker_next", 1) == 0
    out = switch.send(w1.port, contrib(w1, JOB, 2, 0, 1, 0, END, lanes(1)))
    assert len(out) == 2


def test_late_contribution_to_a_complete_round_is_dropped(switch):
    workers = make_workers(2)
    switch.add_job(JOB, workers, slot_base=0, slot_count=1, mcast_grp=1)
    w0, w1 = workers
    switch.send(w0.port, contrib(w0, JOB, 1, 0, 0, 0, 1, lanes(1)))
    switch.send(w1.port, contrib(w1, JOB, 1, 0, 0, 0, 2, lanes(1)))
    for w in workers:
        switch.send(w.port, ack(w, JOB, 1, 0, 0, 0))
    switch.send(w0.port, contrib(w0, JOB, 1, 0, 1, 1, END, lanes(1)))  # block 1 completes with w0 alone
    assert switch.send(w1.port, contrib(w1, JOB, 1, 0, 1, 1, END, lanes(1))) == []
    assert switch.drops(C.DROP_LATE_CONTRIBUTION) == 1


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
    assert switch.round_register("round_state", 3, 0) == C.ROUND_IDLE
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
    _drop_case(switch, C.DROP_BAD_LANE_COUNT, w0.port, omni_frame(w0, C.MSG_ACK, JOB, 1, 0, 0, 0, 0, lanes()))
    _drop_case(switch, C.DROP_BAD_MSG_TYPE, w0.port, omni_frame(w0, C.MSG_RESULT, JOB, 1, 0, 0, 0, END, lanes()))
    _drop_case(switch, C.DROP_BAD_MSG_TYPE, w0.port, omni_frame(w0, 99, JOB, 1, 0, 0, 0, 0, []))
    _drop_case(switch, C.DROP_UNKNOWN_WORKER, w1.port, good)  # w0's address on w1's port
    _drop_case(switch, C.DROP_JOB_MISMATCH, w0.port, contrib(w0, JOB + 1, 1, 0, 0, 0, END, lanes(1)))
    _drop_case(switch, C.DROP_SLOT_OUT_OF_RANGE, w0.port, contrib(w0, JOB, 1, 2, 0, 2, END, lanes(1)))
    _drop_case(switch, C.DROP_ROUND_NOT_READY, w0.port, ack(w0, JOB, 1, 0, 0, 0))
    _drop_case(switch, C.DROP_NOT_IPV4, w0.port, Ether(src=w0.mac, dst="ff:ff:ff:ff:ff:ff") / ARP(pdst=SWITCH_IP))
    _drop_case(switch, C.DROP_NO_ROUTE, w0.port, Ether(src=w0.mac, dst=SWITCH_MAC) / IP(src=w0.ip, dst="192.0.2.1")
               / UDP(sport=1, dport=2))
    switch.add_route("192.0.2.0", 24, port=9, dst_mac="02:00:00:00:09:09")
    _drop_case(switch, C.DROP_TTL_EXPIRED, w0.port, Ether(src=w0.mac, dst=SWITCH_MAC)
               / IP(src=w0.ip, dst="192.0.2.1", ttl=1) / UDP(sport=1, dport=2))
    # None of it touched the aggregation state.
    assert switch.round_register("round_state", 0, 0) == C.ROUND_IDLE
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
