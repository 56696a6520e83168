# Run: .venv/bin/pytest tests/bench/test_ideal_and_model.py -q
"""The ideal exchange's formula and the line-rate model's arithmetic on inputs whose answers are known."""

from __future__ import annotations

import math

import numpy as np
import pytest

from omnireduce.bench import linerate
from omnireduce.bench.gloo import dense_received_bytes, sparse_received_bytes
from omnireduce.bench.ideal import IdealExchange, expected_ideal, ideal_exchange, ideal_of_inputs, ideal_of_job
from omnireduce.bench.linerate import Network, WorkerTraffic, omnireduce_time, ring_time
from omnireduce.p4src import constants as C
from omnireduce.testbed.inputs import InputSpec


def test_ideal_exchange_counts_each_nonzero_block_once_up_and_the_union_once_down_per_worker():
    masks = [np.array([1, 1, 0, 0, 0], bool), np.array([0, 1, 1, 0, 0], bool), np.array([0, 0, 0, 0, 1], bool)]
    ideal = ideal_exchange(masks)
    assert (ideal.contributions, ideal.results, ideal.workers) == (5, 4, 3)
    assert ideal.to_switch_packets == 5 and ideal.to_switch_bytes == 5 * 190
    assert ideal.from_switch_packets == 12 and ideal.from_switch_bytes == 12 * 190
    assert ideal.received_bytes_per_worker == 4 * 190
    assert ideal.total_bytes == 17 * 190


def test_ideal_of_inputs_reads_blocks_of_lanes_values():
    first = np.zeros(3 * C.LANES, np.float32)
    first[C.LANES + 5] = 1.0  # block 1 only
    second = np.zeros(3 * C.LANES, np.float32)
    second[-1] = 2.0  # block 2 only
    assert ideal_of_inputs([first, second]) == IdealExchange(2, 2, 2)


def test_expected_ideal_uses_the_union_of_independent_workers():
    ideal = expected_ideal(workers=4, blocks=10_000, density=0.1)
    assert ideal.contributions == 4000
    assert ideal.results == round((1 - 0.9 ** 4) * 10_000)  # 3439


class _ReportedJob:
    class ideal:  # the testbed's Exchange on newer versions: packets per direction
        to_switch_packets = 7
        from_switch_packets = 12


def test_ideal_of_job_prefers_the_reports_own_figure():
    spec = InputSpec(workers=3, size=1024, density=0.5, dtype="float32", seed=0)
    assert ideal_of_job(_ReportedJob(), spec) == IdealExchange(3, 7, 4)
    assert ideal_of_job(object(), spec) == ideal_of_inputs(
        __import__("omnireduce.testbed.inputs", fromlist=["make_inputs"]).make_inputs(spec))


def test_gloo_received_bytes():
    assert dense_received_bytes(4, 1000) == 6000  # 2 * 3/4 * 4000 bytes
    assert sparse_received_bytes([10, 20, 30], rank=1) == 40 * (8 + 4 * C.LANES)


def test_ring_time_is_two_w_minus_one_over_w_of_the_tensor_plus_step_latencies():
    network = Network(gbps=8.0, switch_latency_us=1.0, link_delay_us=0.5, host_turnaround_us=2.0, host_mpps=1e6,
                      ring_payload=4096, ring_header=58)
    elements = 4096 * 1024  # 16 MiB
    result = ring_time(elements, 4, network)
    payload = 1.5 * 4 * elements
    frames = math.ceil(payload / 4096)
    assert result.bandwidth_s == pytest.approx((payload + frames * (58 + 24)) / 1e9)
    assert result.latency_s == pytest.approx(6 * 4e-6)
    assert result.total_s == pytest.approx(result.bandwidth_s + result.latency_s)
    assert ring_time(elements, 1, network).total_s == 0.0


def test_omnireduce_time_is_the_largest_bound_plus_one_round_trip():
    network = Network(gbps=8.0, switch_latency_us=1.0, link_delay_us=0.5, host_turnaround_us=2.0, host_mpps=0.5)
    # 1 Gbyte/s links. Up: 1000 frames of 190 B; down: 2000 frames.
    traffic = WorkerTraffic(1000, 190_000, 2000, 380_000, rounds_per_column=10)
    result = omnireduce_time(traffic, network)
    assert result.bandwidth_s == pytest.approx(2000 * 214 / 1e9)
    assert result.packet_rate_s == pytest.approx(2000 / 0.5e6)  # 4 ms: the bound here
    rtt = 4e-6 + 2 * 214 / 1e9
    assert network.rtt_s == pytest.approx(rtt)
    assert result.latency_s == pytest.approx(10 * rtt)
    assert result.bound == "host packet rate"
    assert result.total_s == pytest.approx(4e-3 + rtt)


def test_ideal_traffic_per_worker():
    traffic = linerate.ideal_traffic(workers=2, elements=100 * C.LANES, density=0.5, slots=10)
    assert traffic.packets_up == 50 and traffic.bytes_up == 50 * 190
    assert traffic.packets_down == 75 and traffic.rounds_per_column == 8  # union 1-(0.5)^2 = 75 blocks, 10 slots


def test_calibration_without_a_sweep_is_the_ideal():
    assert linerate.calibration([], 8, 0.1) == linerate.Calibration()
