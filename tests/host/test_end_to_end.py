# Run: .venv/bin/pytest tests/host/test_end_to_end.py
"""Agents all-reducing through a switch whose ports are UDP sockets on loopback (the frame transport).

Every case runs against the softswitch running the compiled P4 program (see conftest.py). Workers are threads of this process; each has its own socket and switch port.
"""

from __future__ import annotations

import random
import threading
import time

import numpy as np
import pytest

from omnireduce.host import (
    AgentClosed,
    DeadlineExceeded,
    InputError,
    JobMismatch,
    OverflowRisk,
    Pacing,
    PeerRefused,
    Stalled,
    SwitchUnreachable,
    Timeouts,
    WorkerMissing,
)
from omnireduce.host.quantize import error_bound
from omnireduce.host.synthetic import synthetic_tensor
from omnireduce.p4src import constants as C

from tests.p4.omniswitch import make_workers

from .harness import job_cluster

FAST = Timeouts(retransmit_initial=0.03, retransmit_max=0.3, join=10, stall=10)
SHORT_JOIN = Timeouts(retransmit_initial=0.03, retransmit_max=0.2, join=1.0, stall=1.0)


def tensors_for(workers: int, count: int, density: float, dtype: str = "float32", seed: int = 1):
    return [synthetic_tensor(count, density, seed, w, dtype) for w in range(workers)]


def assert_float_sums(results, tensors, agents):
    exact = np.sum(np.array(tensors, dtype=np.float64), axis=0)
    for result, agent in zip(results, agents):
        assert isinstance(result, np.ndarray), f"worker failed: {result!r}"
        assert result.dtype == np.float32 and result.shape == exact.shape
        bound = error_bound(agent.last_exponent, len(tensors)) + np.abs(exact) * 2.0**-24
        assert np.all(np.abs(result - exact) <= bound)
    for result in results[1:]:
        assert np.array_equal(result, results[0])  # every worker assembles the same sums


def expected_blocks_sent(tensor: np.ndarray, slots: int) -> int:
    blocks = -(-tensor.size // C.LANES)
    padded = np.zeros(blocks * C.LANES, dtype=tensor.dtype)
    padded[: tensor.size] = tensor
    nonzero = padded.reshape(blocks, C.LANES).any(axis=1)
    return min(slots, blocks) + int(np.count_nonzero(nonzero[slots:]))


@pytest.mark.parametrize("workers", [2, 4, 8])
def test_sparse_float32_within_the_bound(device, workers):
    tensors = tensors_for(workers, 64 * C.LANES, 0.1)
    with job_cluster(device, workers, slots=8, timeouts=FAST) as cluster:
        results = cluster.run(tensors)
        assert_float_sums(results, tensors, cluster.agents)
        for agent, tensor in zip(cluster.agents, tensors):
            stats = agent.last_stats
            assert stats.blocks_sent == expected_blocks_sent(tensor, 8)
            # The data exchange is timed inside the call, after every worker joined.
            assert 0 < stats.exchange_s < stats.elapsed_s - stats.joined_s


@pytest.mark.parametrize("density", [1.0, 0.1, 0.01, 0.001])
def test_densities(device, density):
    tensors = tensors_for(4, 512 * C.LANES - 5, density, seed=int(density * 1000))
    with job_cluster(device, 4, slots=16, timeouts=FAST) as cluster:
        assert_float_sums(cluster.run(tensors), tensors, cluster.agents)
        sent = sum(agent.last_stats.blocks_sent for agent in cluster.agents)
        assert sent == sum(expected_blocks_sent(t, 16) for t in tensors)


def test_int32_is_exact(device):
    tensors = tensors_for(4, 100 * C.LANES + 7, 0.3, dtype="int32")
    tensors[2][5] = -(2**20)
    with job_cluster(device, 4, slots=8, timeouts=FAST) as cluster:
        results = cluster.run(tensors)
    exact = np.sum(np.array(tensors, dtype=np.int64), axis=0)
    for result in results:
        assert result.dtype == np.int32 and np.array_equal(result, exact)


def test_dense_mode_sends_every_block(device):
    tensors = tensors_for(2, 40 * C.LANES, 0.05)
    with job_cluster(device, 2, slots=4, timeouts=FAST, dense=True) as cluster:
        assert_float_sums(cluster.run(tensors), tensors, cluster.agents)
        assert [agent.last_stats.blocks_sent for agent in cluster.agents] == [40, 40]


@pytest.mark.parametrize("options", [{"lookahead": 2}, {"pacing": Pacing(max_burst=3)}, {"pacing": Pacing(pps=2000)}])
def test_lookahead_and_pacing_keep_results_right(device, options):
    tensors = tensors_for(3, 60 * C.LANES, 0.1, seed=8)
    with job_cluster(device, 3, slots=8, timeouts=FAST, **options) as cluster:
        assert_float_sums(cluster.run(tensors), tensors, cluster.agents)


def test_threshold_drops_small_blocks_only(device):
    tensors = tensors_for(2, 50 * C.LANES, 0.5, seed=9)
    for tensor in tensors:
        tensor.reshape(50, C.LANES)[::3] *= 1e-4  # every third block becomes small
    kept = []
    for tensor in tensors:
        blocks = tensor.reshape(50, C.LANES).copy()
        blocks[np.abs(blocks).max(axis=1) <= 0.01] = 0
        kept.append(blocks.reshape(-1))
    with job_cluster(device, 2, slots=4, timeouts=FAST, zero_threshold=0.01) as cluster:
        results = cluster.run(tensors)
        # The result is the exact sum of the blocks above the threshold (within the quantisation bound); the
        # first row is sent whatever its size, so its small values are kept too.
        for tensor, kept_blocks in zip(tensors, kept):
            kept_blocks[: 4 * C.LANES] = tensor[: 4 * C.LANES]
        assert_float_sums(results, kept, cluster.agents)


def test_a_sequence_of_allreduces_on_one_job(device):
    """Shadow sets and tensor ids carry over: long, short (fewer blocks than slots), all-zero, in-place, int."""
    with job_cluster(device, 3, slots=8, timeouts=FAST) as cluster:
        for step, (count, density, dtype) in enumerate(
            [(50 * C.LANES, 0.2, "float32"), (3 * C.LANES, 1.0, "float32"), (20 * C.LANES, 0.0, "float32"),
             (33, 1.0, "int32"), (50 * C.LANES, 0.5, "float32")]
        ):
            tensors = tensors_for(3, count, density, dtype, seed=step)
            if dtype == "int32":
                results = cluster.run(tensors)
                assert all(np.array_equal(r, np.sum(tensors, axis=0)) for r in results)
            else:
                assert_float_sums(cluster.run(tensors), tensors, cluster.agents)
        copies = [t.copy() for t in tensors]
        outs = cluster.run_each(lambda index, agent: agent.allreduce(copies[index], out=copies[index]))
        assert all(out is copy for out, copy in zip(outs, copies))
        assert cluster.agents[0].tensor_id == 18  # 6 all-reduces, three tensor ids each (scale, data, closing)
        assert_float_sums(copies, tensors, cluster.agents)


def test_random_loss_in_both_directions_is_recovered(device):
    rng = random.Random(4)
    lock = threading.Lock()

    def lose(direction, port, frame):
        with lock:
            return rng.random() < 0.08

    tensors = tensors_for(4, 120 * C.LANES, 0.2)
    with job_cluster(device, 4, slots=8, lose=lose, timeouts=FAST) as cluster:
        for _ in range(2):
            assert_float_sums(cluster.run(tensors), tensors, cluster.agents)
        assert sum(a.total_stats.retransmissions + a.total_stats.requests_sent for a in cluster.agents) > 0


def test_a_result_lost_after_its_set_was_reused_is_repaired_by_a_peer(device):
    """Worker 2 loses the first results of column 0; by the time a later one reaches it, the switch has reused the
    missing rounds' sets, so its REQUESTs are forwarded to peers, which answer with REPAIRs."""
    dropped = []
    port_of_worker_2 = make_workers(3)[2].port  # job_cluster installs these workers

    def lose_results_to_worker_2(direction, port, frame):
        if (direction == "out" and port == port_of_worker_2 and len(frame) == 190 and frame[42] == C.MSG_RESULT
                and int.from_bytes(frame[48:50], "big") == 0 and len(dropped) < 2 * C.SETS):
            dropped.append(frame)
            return True
        return False

    # Workers 0 and 1 have data in every block, worker 2 in none: column 0 runs on without it.
    tensors = [synthetic_tensor(64 * C.LANES, 1.0 if w < 2 else 0.0, 3, w) for w in range(3)]
    with job_cluster(device, 3, slots=2, lose=lose_results_to_worker_2, timeouts=FAST) as cluster:
        assert_float_sums(cluster.run(tensors), tensors, cluster.agents)
        assert len(dropped) == 2 * C.SETS
        assert cluster.agents[2].last_stats.repairs_received > 0
        assert sum(agent.last_stats.repairs_sent for agent in cluster.agents[:2]) > 0
        assert cluster.switch.job_counter("forwards", 1) > 0


# --- bad input and failures: a clear error within a bounded time, never a hang, never a wrong result ------------


@pytest.mark.parametrize("bad_value, counts", [(np.nan, "(1 NaN, 0 Inf)"), (-np.inf, "(0 NaN, 1 Inf)")])
def test_a_bad_value_on_one_worker_is_refused_by_all_promptly_and_the_job_stays_usable(device, bad_value, counts):
    tensors = tensors_for(4, 10 * C.LANES, 1.0)
    tensors[2][17] = bad_value
    # The join timeout is long: refusing must not wait for it (it used to: the others stopped with WorkerMissing).
    patient = Timeouts(retransmit_initial=0.03, retransmit_max=0.3, join=20, stall=20)
    with job_cluster(device, 4, slots=4, timeouts=patient) as cluster:
        started = time.monotonic()
        results = cluster.run(tensors)
        assert time.monotonic() - started < patient.join / 4
        bad = results[2]
        assert bad.__class__ is InputError, bad
        assert str(bad).startswith(f"tensor holds 1 NaN/Inf value(s) {counts}, first at flat index 17")
        for other in results[:2] + results[3:]:
            assert other.__class__ is PeerRefused, other
            assert "1 of the job's workers (worker 2) refused their input (NaN or Inf values" in str(other)
        # Only the scale round reached the switch; every agent spent the same tensor ids and toggled the same bits.
        assert cluster.switch.job_counter("results", 1) == 1
        assert cluster.switch.job_counter("contributions", 1) == 4
        assert all(agent.last_stats.blocks_sent == 0 for agent in cluster.agents)
        assert len({(agent.tensor_id, tuple(agent.set_indexes)) for agent in cluster.agents}) == 1
        # The same agents go on, no reset: a correct all-reduce right after.
        good = tensors_for(4, 10 * C.LANES, 1.0, seed=2)
        assert_float_sums(cluster.run(good), good, cluster.agents)


def test_different_lengths_are_refused_by_every_worker_and_the_job_stays_usable(device):
    tensors = [np.ones(4 * C.LANES, np.float32), np.ones(5 * C.LANES, np.float32), np.ones(6 * C.LANES, np.float32)]
    with job_cluster(device, 3, slots=4, timeouts=FAST) as cluster:
        results = cluster.run(tensors)
        assert all(isinstance(r, JobMismatch) for r in results), results
        assert all(r.__class__ is JobMismatch and "disagree on the tensor" in str(r) for r in results)
        good = tensors_for(3, 9 * C.LANES, 1.0)
        assert_float_sums(cluster.run(good), good, cluster.agents)


def test_different_dtypes_are_refused(device):
    tensors = [np.ones(64, np.float32), np.ones(64, np.int32)]
    with job_cluster(device, 2, slots=2, timeouts=FAST) as cluster:
        results = cluster.run(tensors)
    assert all(isinstance(r, JobMismatch) for r in results), results


def test_int32_overflow_risk_is_refused_by_every_worker_and_the_job_stays_usable(device):
    tensors = [np.full(40, 2**29, np.int32), np.zeros(40, np.int32), np.zeros(40, np.int32)]
    with job_cluster(device, 3, slots=2, timeouts=FAST) as cluster:
        results = cluster.run(tensors)
        assert all(isinstance(r, OverflowRisk) for r in results), results
        small = [np.full(40, 7, np.int32)] * 3
        assert all(np.array_equal(r, np.full(40, 21)) for r in cluster.run(small))


def test_agents_configured_for_another_worker_count(device):
    with job_cluster(device, 2, slots=2, agent_workers=3, timeouts=FAST) as cluster:
        results = cluster.run([np.ones(64, np.float32)] * 2)
    assert all(isinstance(r, JobMismatch) and "aggregated 2 workers" in str(r) for r in results), results


def test_a_worker_that_never_shows_up(device):
    with job_cluster(device, 3, slots=4, agents=2, timeouts=SHORT_JOIN) as cluster:
        started = time.monotonic()
        results = cluster.run(tensors_for(2, 256, 1.0))
        elapsed = time.monotonic() - started
        assert all(isinstance(r, WorkerMissing) for r in results), results
        assert SHORT_JOIN.join <= elapsed < SHORT_JOIN.join + 2
        # The agent's state is now unknown to the switch: it refuses to go on.
        with pytest.raises(AgentClosed, match="reset the job"):
            cluster.agents[0].allreduce(np.ones(8, np.float32))


def test_a_silent_switch(device):
    with job_cluster(device, 2, slots=4, lose=lambda *_: True, timeouts=SHORT_JOIN) as cluster:
        results = cluster.run(tensors_for(2, 256, 1.0))
    assert all(isinstance(r, WorkerMissing) for r in results), results


def test_a_worker_that_vanishes_mid_tensor_stalls_the_others(device):
    frames_from_worker1 = []

    def vanish(direction, port, frame):
        if direction == "in" and port == 2:
            frames_from_worker1.append(1)
            return len(frames_from_worker1) > 4  # the scale round and a few data blocks get through
        return False

    tensors = tensors_for(2, 64 * C.LANES, 1.0)
    with job_cluster(device, 2, slots=2, lose=vanish, timeouts=SHORT_JOIN) as cluster:
        results = cluster.run(tensors)
    assert all(isinstance(r, Stalled) for r in results), results


def test_the_overall_deadline(device):
    deadline = Timeouts(retransmit_initial=0.03, retransmit_max=0.1, join=10, stall=10, deadline=0.5)
    with job_cluster(device, 2, slots=2, agents=1, timeouts=deadline) as cluster:
        started = time.monotonic()
        (result,) = cluster.run([np.ones(64, np.float32)])
        assert isinstance(result, DeadlineExceeded), result
        assert time.monotonic() - started < 2


def test_an_unreachable_switch_port(device):
    with job_cluster(device, 1, slots=2, timeouts=SHORT_JOIN) as cluster:
        port = cluster.server.address(1)
    # The server is gone: its port is closed, and the kernel answers with ICMP port unreachable.
    from omnireduce.host import AllReduce

    config = cluster.agents[0].config
    with AllReduce(config) as agent:
        assert agent.config.frame_link.peer == port
        started = time.monotonic()
        with pytest.raises(SwitchUnreachable, match="unreachable"):
            agent.allreduce(np.ones(64, np.float32))
        assert time.monotonic() - started < 1
