# Run: .venv/bin/pytest tests/p4/test_trust_boundary.py
"""The trust boundary of docs/reliability.md, packet by packet: a sender that can forge a registered worker's
address and UDP port on that worker's switch port *is* that worker to the switch (it can falsify the job's sums),
and nothing more (another port, another job, a second copy of a contribution, an address the controller did not
install: all refused or harmless). The fuzzer (omnireduce-bench fuzz) sends only what is outside the boundary."""

from __future__ import annotations

from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Ether

from omnireduce.p4src import constants as C

from .omniswitch import contrib, expected_forward, expected_result, lanes, make_workers, repair

END = C.END_OF_TENSOR
JOB, OTHER_JOB = 3, 4


def test_a_forged_contribution_from_a_registered_address_is_that_workers_and_counts_once(switch):
    w0, w1 = workers = make_workers(2)
    switch.add_job(JOB, workers, slot_base=0, slot_count=1, mcast_grp=1)
    assert switch.send(w0.port, contrib(w0, JOB, 1, 0, 0, 0, END, lanes(1, 2))) == []
    # From another port, w1's address and UDP port are nobody's.
    assert switch.send(w0.port, contrib(w1, JOB, 1, 0, 0, 0, END, lanes(666))) == []
    assert switch.drops(C.DROP_UNKNOWN_WORKER) == 1
    # On w1's port, they are w1's: the forged values go into the sum, which every worker receives.
    outputs = switch.send(w1.port, contrib(w1, JOB, 1, 0, 0, 0, END, lanes(666)))
    assert sorted(outputs) == sorted((w.port, expected_result(w, JOB, 1, 0, 0, 0, END, lanes(667, 2)))
                                     for w in workers)
    # The real w1's contribution is now a retransmission of one already added: replayed, never added twice.
    replay = switch.send(w1.port, contrib(w1, JOB, 1, 0, 0, 0, END, lanes(5)))
    assert replay == [(w1.port, expected_result(w1, JOB, 1, 0, 0, 0, END, lanes(667, 2)))]
    assert switch.job_counter("contributions", JOB) == 2 and switch.job_counter("replays", JOB) == 1


def test_a_forged_repair_reaches_its_addressee_only_at_its_installed_address(switch):
    w0, w1, w2 = workers = make_workers(3)
    switch.add_job(JOB, workers, slot_base=0, slot_count=1, mcast_grp=1)
    # A REPAIR carries whatever lanes its sender puts in: forwarded as they are (a forged answer falsifies the
    # result its addressee is missing), but only to w0's installed address and port.
    outputs = switch.send(w1.port, repair(w1, JOB, 1, 0, 0, 0, END, lanes(13), requester=0))
    expected = expected_forward(w0, C.MSG_REPAIR, JOB, 1, 0, 0, 0, sender=1, next_block=END, values=lanes(13))
    assert outputs == [(w0.port, expected)]
    # Whatever the frame's own destination says: the switch takes the aggregation traffic by UDP port and sends a
    # forward to the installed destination. (It does leave from the address the sender wrote as its destination,
    # the aggregator's for a real worker: a forger picks the source address of what w0 receives.)
    forged = repair(w1, JOB, 1, 0, 0, 0, END, lanes(13), requester=0)
    forged[IP].dst, forged[Ether].dst = "192.0.2.9", "02:99:99:99:99:99"
    ((port, frame),) = switch.send(w1.port, forged)
    delivered = Ether(frame)
    assert port == w0.port and delivered[Ether].dst == w0.mac
    assert (delivered[IP].dst, delivered[UDP].dport) == (w0.ip, w0.udp_port)
    assert (delivered[IP].src, delivered[Ether].src) == ("192.0.2.9", "02:99:99:99:99:99")
    assert switch.job_counter("forwards", JOB) == 2


def test_a_registered_worker_cannot_reach_another_jobs_slots(switch):
    w0, w1 = make_workers(2)
    other = make_workers(2, first_port=3, host_base=3)
    switch.add_job(JOB, [w0, w1], slot_base=0, slot_count=2, mcast_grp=1)
    switch.add_job(OTHER_JOB, other, slot_base=2, slot_count=2, mcast_grp=2)
    # Naming the other job, or the slots past its own (where the other job's are), is refused.
    assert switch.send(w0.port, contrib(w0, OTHER_JOB, 1, 0, 0, 0, END, lanes(1))) == []
    assert switch.send(w0.port, contrib(w0, JOB, 1, 2, 0, 2, END, lanes(1))) == []
    assert switch.drops(C.DROP_JOB_MISMATCH) == 1 and switch.drops(C.DROP_SLOT_OUT_OF_RANGE) == 1
    assert switch.register("slot_tensor", 2) == 0 and switch.job_counter("contributions", OTHER_JOB) == 0
