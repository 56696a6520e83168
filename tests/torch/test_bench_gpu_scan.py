"""bench/bench_gpu_scan.py runs (on the CPU here; the figures come from a GPU) and its scans agree with the library's.

    .venv/bin/pytest -q tests/torch/test_bench_gpu_scan.py
"""

from __future__ import annotations

import json

import pytest

torch = pytest.importorskip("torch", reason="omnireduce.torch tests need PyTorch: pip install -e '.[test,torch]'")

from omnireduce.bench import bench_gpu_scan  # noqa: E402
from omnireduce.torch.blocks import Score, block_scores  # noqa: E402


def test_the_bench_scans_match_the_library():
    flat = bench_gpu_scan.sparse_gradient(64 * 32, torch.device("cpu"))
    torch.testing.assert_close(bench_gpu_scan.vector_norm_inf(flat), block_scores(flat, Score.MAX_ABS))
    torch.testing.assert_close(bench_gpu_scan.vector_norm_l2(flat), block_scores(flat, Score.L2))


def test_the_bench_runs_on_the_cpu_and_writes_json(tmp_path, capsys):
    out = tmp_path / "scan.json"
    assert bench_gpu_scan.main(["--device", "cpu", "--sizes-mb", "0.125", "--warmup", "0", "--repeats", "1",
                                "--no-compile", "--json", str(out)]) == 0
    data = json.loads(out.read_text())
    variants = {row["variant"] for row in data["results"]}
    assert {"read_sum", "vector_norm_inf", "library_block_scores", "select_and_copy_1pct"} <= variants
    assert all(row.get("mask_matches", True) for row in data["results"])
