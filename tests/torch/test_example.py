"""examples/ddp_training.py runs as documented (a few steps of each model, 2 ranks, over the loopback softswitch).

    .venv/bin/pytest -q tests/torch/test_example.py
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch", reason="omnireduce.torch tests need PyTorch: pip install -e '.[test,torch]'")

from omnireduce.p4src.constants import SLOT_COUNT  # noqa: E402

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "ddp_training.py"


def run_example(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """The example as a user runs it: its own process (its ranks are spawned, so it must be importable as __main__)."""
    return subprocess.run([sys.executable, str(EXAMPLE), *args], capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize("model, most_density", [("recommender", 0.5), ("mlp", 0.05)])
def test_the_example_trains_through_the_switch_and_matches_gloo_at_first(tmp_path, model, most_density):
    out = tmp_path / "run.json"
    run = run_example("--model", model, "--ranks", "2", "--steps", "3", "--json", str(out))
    assert run.returncode == 0, run.stderr[-3000:]
    result = json.loads(out.read_text())
    rows = result["rows"]
    assert [row["step"] for row in rows] == [0, 1, 2]
    assert all(row["fallback_buckets"] == 0 for row in rows), "the hook fell back to gloo"
    # Step 0 starts from the same weights on the same batch: the forward losses are equal before any all-reduce.
    assert rows[0]["loss_omnireduce"] == rows[0]["loss_gloo"]
    assert all(0 < row["density"] <= most_density for row in rows)
    assert 0 < result["summary"]["bytes_omnireduce"] < result["summary"]["bytes_gloo"]
    assert result["summary"]["seconds_in_hook"] > 0 and result["summary"]["seconds_in_gloo"] > 0


@pytest.mark.parametrize("args, message", [
    (("--model", "mlp", "--lr", "-1"), "--lr must be positive"),
    (("--sparsify", "topk:2"), "fraction must be in (0, 1]"),
    (("--sparsify", "sometimes"), "use none, topk:FRACTION or threshold:VALUE"),
    (("--ranks", "9"), "invalid choice"),
    (("--slots", "0"), f"--slots must be in 1..{SLOT_COUNT}"),
    (("--ports", "tcp"), "invalid choice"),
])
def test_the_example_refuses_bad_arguments_with_a_usage_error(args, message):
    run = run_example(*args, timeout=60)
    assert run.returncode == 2
    assert message in run.stderr and "Traceback" not in run.stderr
