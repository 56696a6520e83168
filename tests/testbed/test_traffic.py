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
    omnireduce_exchange,
    scale_round,
)

END = constants.END_OF_TENSOR


def simulate(send_sets: list[np.ndarray], slots: int) -> tuple[int, int, int]:
    """Contributions, results and ACKs of one tensor, round by round, column by column (section 1 and 4.2)."""
    blocks = send_sets[0].size
    contributions = results = acks = 0
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
            acks += sum(1 for block in pending if not (result_next != END and block == result_next))
            if result_next == END:
                break
            current = result_next
    return contributions, results, acks


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
    assert (exchange.contributions, exchange.results, exchange.acks) == simulate(send_sets, slots)


def test_dense_exchange_sends_every_block_from_every_worker():
    workers, size, slots = 4, 32 * 100 + 5, 8  # 101 blocks, the last one partial
    dense = dense_exchange(workers, size, slots)
    assert dense.contributions == workers * (101 + 1)  # + the scale round
    assert dense.results == 101 + 1
    # Only the last result of each column (and the scale round's) is acknowledged, by everyone.
    assert dense.acks == workers * (slots + 1)
    assert dense.from_switch_packets == workers * dense.results
    assert dense.to_switch_bytes == dense.contributions * DATA_PACKET_BYTES + dense.acks * CONTROL_PACKET_BYTES


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
    assert sparse.contributions >= 4 * (4 + 1)  # at least the first round and the scale round


def test_scale_round_is_one_block_for_everyone():
    exchange = scale_round(3)
    assert (exchange.contributions, exchange.results, exchange.acks) == (3, 1, 3)
