# Run: .venv/bin/pytest tests/bench/test_bench_runs.py -q
"""The benches run end to end on tiny inputs: the protocol driver that records bench_softswitch's trace, and a
smoke run of `omnireduce-bench allreduce` (the gloo modes only where torch is installed). No timings are
asserted: they depend on the machine."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import os

import numpy as np
import pytest

from omnireduce.bench.cli import main
from omnireduce.bench.protocol_driver import bench_workers, drive_allreduce, install_job
from omnireduce.p4src import artifacts
from omnireduce.p4src import constants as C
from omnireduce.softswitch.device import Device
from omnireduce.softswitch.ports import RING_DRAIN_FRAMES

HAVE_TORCH = importlib.util.find_spec("torch") is not None
HAVE_MATPLOTLIB = importlib.util.find_spec("matplotlib") is not None


def test_the_driver_all_reduces_through_the_switch_with_the_agents_engine():
    device = Device(name="driver-test")
    device.load_pipeline(artifacts.BMV2_JSON.read_bytes())
    workers = bench_workers(3)
    install_job(device, job_id=1, workers=workers, slot_count=4, mcast_group=1)
    rng = np.random.default_rng(7)
    tensors = []
    for _ in workers:
        values = rng.integers(-1000, 1000, size=(40, C.LANES), dtype=np.int32)
        values[rng.random(40) < 0.7] = 0
        tensors.append(values.reshape(-1)[:1270])  # not a whole number of blocks
    run = drive_allreduce(device, 1, workers, tensors, slots=4)
    total = np.sum(tensors, axis=0, dtype=np.int64).astype(np.int32)
    for result in run.results:
        np.testing.assert_array_equal(result, total)
    assert run.frames_in and all(port in {1, 2, 3} for port, _ in run.frames_in)


@pytest.mark.slow
def test_allreduce_smoke_run_writes_rows_for_every_mode(tmp_path, capsys):
    out = tmp_path / "sweep.json"
    argv = ["allreduce", "--densities", "0.1", "--workers", "2", "--sizes", "2048", "--repeat", "1",
            "--no-progress", "--json-out", str(out)]
    if HAVE_MATPLOTLIB:
        argv += ["--plot-dir", str(tmp_path / "img")]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "speedup of sparse: over dense" in printed and "targets (reported, not asserted)" in printed
    rows = {row["mode"]: row for row in json.loads(out.read_text())["rows"]}
    assert set(rows) == {"sparse", "dense", "gloo", "gloo-sparse-coo"}
    for mode in ("sparse", "dense"):
        assert rows[mode]["status"] == "ok"
        assert rows[mode]["switch_to_packets"] > 0 and rows[mode]["ideal_total_bytes"] > 0
    for mode in ("gloo", "gloo-sparse-coo"):
        if HAVE_TORCH:
            assert rows[mode]["status"] == "ok" and rows[mode]["sent_bytes_per_worker"] > 0
        else:
            assert rows[mode]["status"].startswith("not installed")
    if HAVE_MATPLOTLIB:
        assert (tmp_path / "img" / "sweep_time.png").stat().st_size > 0


@pytest.mark.slow
def test_allreduce_in_step_calls_and_the_flat_coo_mode(tmp_path, capsys):
    """--calls 3: three all-reduces per testbed run, the two later ones timed, the counters one call's (the
    same tensor each call, loss-free: exactly the single-call run's); the flat COO mode runs only when asked."""
    def sweep(name: str, *extra: str) -> dict:
        out = tmp_path / name
        argv = ["allreduce", "--densities", "0.1", "--workers", "2", "--sizes", "2048", "--repeat", "2",
                "--no-progress", "--markdown", "--json-out", str(out), *extra]
        assert main(argv) == 0
        return {row["mode"]: row for row in json.loads(out.read_text())["rows"]}

    single = sweep("one.json", "--modes", "sparse")
    printed = capsys.readouterr().out
    assert "gloo flat COO" not in printed  # its columns only where it ran
    rows = sweep("calls.json", "--modes", "sparse,gloo-sparse-coo-flat", "--calls", "3")
    printed = capsys.readouterr().out
    sparse = rows["sparse"]
    assert sparse["status"] == "ok" and len(sparse["seconds"]) == 2 * 2  # 2 runs x the 2 calls after the first
    assert sparse["extra"]["calls_per_run"] == 3
    for counter in ("switch_to_packets", "switch_to_bytes", "switch_from_packets", "switch_from_bytes"):
        assert sparse[counter] == single["sparse"][counter], counter
    assert "| gloo flat COO ms |" in printed
    flat = rows["gloo-sparse-coo-flat"]
    if HAVE_TORCH:
        # verified against gloo's dense sum; a flat COO all-gathers 12 B per non-zero value
        assert flat["status"] == "ok" and flat["sent_bytes_per_worker"] > 0
        assert flat["extra"]["computed_received_bytes_per_worker"] > 0
    else:
        assert flat["status"].startswith("not installed")


def test_model_runs_from_a_sweep_file(tmp_path, capsys):
    sweep = {"rows": [{"mode": "sparse", "workers": 2, "size": 4096, "density": 0.1, "status": "ok",
                       "seconds": [0.01], "union_density": 0.19, "ideal_total_bytes": 190 * (26 + 2 * 24),
                       "ideal_received_bytes_per_worker": 190 * 24, "switch_to_packets": 30,
                       "switch_to_bytes": 30 * 190, "switch_from_packets": 50, "switch_from_bytes": 50 * 190,
                       "sent_bytes_per_worker": 15 * 190, "received_bytes_per_worker": 25 * 190,
                       "retransmissions": 0, "source": "", "extra": {}}]}
    path = tmp_path / "sweep.json"
    path.write_text(json.dumps(sweep))
    assert main(["model", "--from", str(path), "--json-out", str(tmp_path / "model.json")]) == 0
    printed = capsys.readouterr().out
    assert "OmniReduce's conditions" in printed and "DeepLight" in printed
    report = json.loads((tmp_path / "model.json").read_text())
    assert {row["gbps"] for row in report["training"]} == {10.0, 100.0}


def test_the_agent_bench_measures_both_kernels_and_both_batch_paths(capsys):
    from omnireduce.host import native

    main(["agent", "--values", "100000", "--blocks", "2000", "--slots", "16", "--json"])
    report = json.loads(capsys.readouterr().out)
    compiled = native.available() is not None
    kinds = {row["kernels"] for row in report["prepare"]}
    assert kinds == ({"compiled", "numpy"} if compiled else {"numpy"})
    assert all(row["seconds"] > 0 for row in report["prepare"])
    packets = report["packets"]
    assert packets["packets_per_s_build_and_consume_batched"] > 0
    assert (packets["packets_per_s_build_and_consume_compiled"] is not None) == compiled


def test_the_efficiency_bench_sets_each_point_against_the_same_work_alone(tmp_path, capsys):
    """--pipeline python: the runs and the standalone rates on the Python pipeline; each point's standalone rates
    are timed on its own all-reduce (its W, density, slots): the switch at its ports on a replay sized by
    port_trace_blocks, the pipeline alone on a trace sized by trace_blocks."""
    from omnireduce.bench.bench_efficiency import (TRACE_MIN_BLOCKS, port_trace_blocks, trace_blocks,
                                                   trace_slots)

    assert trace_blocks(4, 0.1, 4_194_304) == 20_000  # about TRACE_CONTRIBUTIONS contributions
    assert trace_blocks(8, 1.0, 4_194_304) == TRACE_MIN_BLOCKS
    assert trace_blocks(2, 0.001, 4096) == 128  # never more than the tensor's blocks
    # The first round (S blocks of each worker) weighs in the trace what it weighs in the run.
    assert trace_slots(512, 20_000, 4_194_304) == 78 and trace_slots(64, 128, 4096) == 64
    assert trace_slots(16, 10, 4_194_304) == 1
    assert port_trace_blocks(4, 0.1, 26_214_400) == 250_000  # about PORT_TRACE_CONTRIBUTIONS contributions
    assert port_trace_blocks(2, 0.1, 4_194_304) == 131_072  # the whole tensor
    out = tmp_path / "efficiency.json"
    assert main(["efficiency", "--pipeline", "python", "--workers", "2", "--density", "0.1", "--size", "8192",
                 "--cpu-pinning", "off", "--json-out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "CPUs: not pinned (--cpu-pinning off)" in printed
    assert "pipeline: the same pipeline in one process" in printed
    assert f"python, batches of {RING_DRAIN_FRAMES}" in printed
    assert "at ports: the switch alone, its packet loop with one ring port per worker" in printed
    data = json.loads(out.read_text())
    (point,) = data["points"]
    assert point["ok"] and point["pipeline"] == "python" and point["standalone_pps"] > 0
    assert point["ports_alone_pps"] > 0 and point["ports_alone_failure"] is None
    assert point["cpus"] == "not pinned (--cpu-pinning off)"
    assert data["standalone"]["mode"] == f"python, batches of {RING_DRAIN_FRAMES}"


def test_the_standalone_rate_runs_on_the_switchs_cpu_and_gives_the_rest_back():
    from omnireduce.bench.bench_efficiency import running_on

    before = os.sched_getaffinity(0)
    cpu = max(before)
    with pytest.raises(RuntimeError), running_on(frozenset({cpu})):
        assert os.sched_getaffinity(0) == {cpu}
        raise RuntimeError("a failed measurement")
    assert os.sched_getaffinity(0) == before
    with running_on(None):
        assert os.sched_getaffinity(0) == before


def test_the_efficiency_bench_reports_one_warm_call_of_several(tmp_path):
    """--calls N: the time is the median of calls 2..N, the switch's rate and packets per block one call's."""
    from omnireduce.bench.bench_efficiency import measure_point

    single = measure_point(2, 0.1, 8192, None, 0.0, 1)
    repeated = measure_point(2, 0.1, 8192, None, 0.0, 1, calls=3)
    assert single.ok and repeated.ok and repeated.calls == 3
    # Every call sends the same traffic on a loss-free path: one call's packets are the single run's.
    assert repeated.packets_per_block_mean == pytest.approx(single.packets_per_block_mean)
    assert repeated.loss_free_packets_per_block == pytest.approx(single.loss_free_packets_per_block)
    assert repeated.switch_packets_in == single.switch_packets_in
    assert repeated.bytes_over_ideal == pytest.approx(single.bytes_over_ideal)
    assert repeated.switch_pps == pytest.approx(repeated.switch_packets_in / repeated.seconds, rel=1e-3)
    # The data exchange is a part of each call, and the switch's rate over it counts its data frames alone (one
    # scale and one closing frame per worker and call are not data).
    assert 0 < repeated.exchange_seconds < repeated.seconds
    assert repeated.exchange_pps == pytest.approx((repeated.switch_packets_in - 2 * 2) / repeated.exchange_seconds,
                                                  rel=1e-2)


def test_the_efficiency_table_gives_the_time_with_loss_over_the_loss_free_time_and_both_rates():
    from omnireduce.bench.bench_efficiency import PointResult, table

    loss_free = PointResult(4, 0.01, 4096, 8, 0.0, True, None, 0.5, 1.05, 1.06, 1.05, 1.02, 0.03, 0, 0, 0, {},
                            1000, 2000.0, exchange_seconds=0.25, exchange_pps=3968.0, ports_alone_pps=4000.0)
    lossy = dataclasses.replace(loss_free, loss=0.05, seconds=2.0, loss_free_seconds=0.5)
    assert loss_free.loss_overhead is None and lossy.loss_overhead == 4.0
    # No loss-free run to compare with (it failed): no overhead rather than a made-up one.
    assert dataclasses.replace(lossy, loss_free_seconds=0.0).loss_overhead is None
    text = table([loss_free, lossy], None)
    header, first, second = text.splitlines()[:3]
    assert header.split()[6:8] == ["seconds", "x"]
    assert first.split()[6:8] == ["0.50", "-"] and second.split()[6:8] == ["2.00", "4.0x"]
    # Over the call 2,000 of 4,000 packets/s at the switch's ports; over the exchange 3,968: 99%.
    assert first.split()[-8:-3] == ["2000", "3968", "4000", "50%", "99%"]
    assert "x: the time with loss over the same point's loss-free time in this run" in text
