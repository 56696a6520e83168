# Run: /work/main/.venv/bin/pytest tests/testbed/test_traffic.py -q
"""The closed-form wire accounting (traffic.py) against a step-by-step simulation of docs/protocol.md's rounds."""

from __future__ import annotations

import numpy as np
import pytest

from omnireduce.p4src import constants
from omnireduce.testbed.traffic import (
    CONTROL_PACKET_BYTES,
    DATA_PACKET_BYTES,
    dense_exchange,
    exchange_of,
    ideal_exchange,
    omnireduce_exchange,
    one_block_rounds,
)

END = constants.END_OF_TENSOR


def simulate(send_sets: list[np.ndarray], slots: int) -> tuple[int, int]:
    """Contributions and results of one tensor, round by round, column by column (section 1 and 4.2)."""
    blocks = send_sets[0].size
    contributions = results = 0
    for column in range(min(slots, blocks)):
        queues = [[b for b in range(column, blocks, slots) if mask[b]] for mask in send_sets]
        pending = [queue[0] for queue in queues]  # every worker sends the column's first block (dense first round)
        position = [0] * len(queues)
        current = column
        while True:
            contributors = [w for w, block in enumerate(pending) if block == current]
            assert contributors, "a round nobody contributes to cannot exist"
            for w in contributors:
                position[w] += 1
                pending[w] = queues[w][position[w]] if position[w] < len(queues[w]) else END
            result_next = min(pending)
            contributions += len(contributors)
            results += 1
            if result_next == END:
                break
            current = result_next
    return contributions, results


@pytest.mark.parametrize("workers,blocks,slots,density", [(2, 10, 3, 0.3), (4, 50, 8, 0.1), (3, 7, 16, 0.5),
                                                          (8, 200, 4, 0.02), (1, 33, 5, 0.4)])
def test_closed_form_matches_simulation(workers, blocks, slots, density):
    rng = np.random.default_rng(workers * 1000 + blocks)
    send_sets = []
    for _ in range(workers):
        mask = rng.random(blocks) < density
        mask[: min(slots, blocks)] = True
        send_sets.append(mask)
    exchange = exchange_of(send_sets, slots)
    assert (exchange.contributions, exchange.results) == simulate(send_sets, slots)


def test_dense_exchange_sends_every_block_from_every_worker():
    workers, size, slots = 4, 32 * 100 + 5, 8  # 101 blocks, the last one partial
    dense = dense_exchange(workers, size, slots)
    assert dense.contributions == workers * (101 + 2)  # + the scale and closing rounds
    assert dense.results == 101 + 2
    assert dense.from_switch_packets == workers * dense.results
    # Nothing but contributions travels to the switch: no acknowledgements.
    assert dense.to_switch_packets == dense.contributions
    assert dense.to_switch_bytes == dense.contributions * DATA_PACKET_BYTES


def test_packet_sizes_follow_the_protocol():
    assert DATA_PACKET_BYTES == 190 and CONTROL_PACKET_BYTES == 62


def test_omnireduce_exchange_of_sparse_inputs_is_below_dense():
    rng = np.random.default_rng(1)
    inputs = []
    for _ in range(4):
        values = np.zeros(32 * 64, dtype=np.float32)
        values[32 * rng.integers(0, 64, 3)] = 1.0
        inputs.append(values)
    sparse = omnireduce_exchange(inputs, slots=4)
    dense = dense_exchange(4, inputs[0].size, slots=4)
    assert sparse.total_bytes < dense.total_bytes
    assert omnireduce_exchange(inputs, slots=4, dense=True) == dense
    assert sparse.contributions >= 4 * (4 + 2)  # at least the first round, the scale and closing rounds


def test_scale_and_closing_rounds_are_one_block_each_for_everyone():
    exchange = one_block_rounds(3)
    assert (exchange.contributions, exchange.results) == (6, 2)


def test_ideal_exchange_counts_only_non_zero_blocks():
    blocks = np.zeros((3, 10, 32), dtype=np.float32)
    blocks[0, [1, 4]] = 1.0
    blocks[1, [4, 7, 9]] = 2.0
    # worker 2 has nothing at all
    ideal = ideal_exchange([tensor.reshape(-1) for tensor in blocks])
    assert (ideal.contributions, ideal.results, ideal.workers) == (5, 4, 3)  # union {1, 4, 7, 9}
    assert ideal.to_switch_bytes == 5 * DATA_PACKET_BYTES
    assert ideal.from_switch_packets == 3 * 4 and ideal.from_switch_bytes == 12 * DATA_PACKET_BYTES
    # The protocol's own loss-free exchange adds the dense first round and the two one-block rounds, no more.
    loss_free = omnireduce_exchange([tensor.reshape(-1) for tensor in blocks], slots=2)
    # First round: blocks 0 and 1 of every worker (block 1 of worker 0 is one of its non-zero blocks anyway).
    assert loss_free.contributions == (ideal.contributions - 1) + 3 * 2 + 3 * 2
