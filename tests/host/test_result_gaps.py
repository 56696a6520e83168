# Run: .venv/bin/pytest tests/host/test_result_gaps.py -q
"""The result's empty blocks zeroed while the exchange waits (host/result_gaps.py): only final blocks without a
result, a step at a time; the all-reduce's result is the same, also when results are lost and repaired by peers
(which are answered from the blocks that did get a result, left as received)."""

from __future__ import annotations

import random
import threading
from types import SimpleNamespace

import numpy as np

from omnireduce.host import agent as agent_module
from omnireduce.host.result_gaps import STEP_BLOCKS, ResultGaps
from omnireduce.p4src import constants as C

from .harness import job_cluster
from .test_end_to_end import FAST, assert_float_sums, tensors_for


def test_steps_zero_the_final_blocks_without_a_result_in_order():
    blocks = 3 * STEP_BLOCKS
    buffer = np.full(blocks * C.LANES, 9, dtype=np.int32)
    result_next = np.full(blocks, -1, dtype=np.int64)
    result_next[[5, STEP_BLOCKS + 1]] = 7  # two blocks that received a result
    exchange = SimpleNamespace(final_below=lambda: final[0], result_next=result_next)
    gaps = ResultGaps(buffer)
    final = [0]
    assert not gaps.step(exchange) and gaps.zeroed_below == 0  # nothing final yet
    final[0] = STEP_BLOCKS + 10
    assert gaps.step(exchange) and gaps.zeroed_below == STEP_BLOCKS  # one step at most
    assert gaps.step(exchange) and gaps.zeroed_below == STEP_BLOCKS + 10
    assert not gaps.step(exchange)  # caught up
    by_block = buffer.reshape(blocks, C.LANES)
    assert (by_block[[5, STEP_BLOCKS + 1]] == 9).all()  # received results untouched
    untouched = np.ones(blocks, dtype=bool)
    untouched[:STEP_BLOCKS + 10] = False
    untouched[[5, STEP_BLOCKS + 1]] = True
    assert not by_block[~untouched].any() and (by_block[untouched] == 9).all()


def test_the_all_reduce_zeroes_gaps_during_the_exchange_and_stays_exact_under_loss(device, monkeypatch):
    """A result buffer full of NaN bits, sparse inputs over several steps' worth of blocks, 5% loss both ways: every
    worker's result is exact, and part of the zeroing happened before the exchange ended."""
    zeroed = []
    convert = agent_module.from_wire_in_place

    def from_wire(out, shift, blocks, zeroed_below=0):
        zeroed.append(zeroed_below)
        return convert(out, shift, blocks, zeroed_below)

    monkeypatch.setattr(agent_module, "from_wire_in_place", from_wire)
    rng = random.Random(5)
    lock = threading.Lock()

    def lose(direction, port, frame):
        with lock:
            return rng.random() < 0.05

    size = 4 * STEP_BLOCKS * C.LANES
    tensors = tensors_for(3, size, 0.02)
    outs = [np.full(size, np.nan, dtype=np.float32) for _ in tensors]
    with job_cluster(device, 3, slots=8, lose=lose, timeouts=FAST) as cluster:
        results = cluster.run_each(lambda index, agent: agent.allreduce(tensors[index], out=outs[index]))
        assert_float_sums(results, tensors, cluster.agents)
        assert all(result is out for result, out in zip(results, outs))
    assert len(zeroed) == 3 and all(0 < value <= size // C.LANES for value in zeroed), zeroed
