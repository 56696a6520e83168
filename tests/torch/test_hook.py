"""The DDP hook end to end: 2 ranks (torch.multiprocessing, gloo) over a loopback softswitch, each scenario trained
in lockstep against DDP's own all-reduce.

    .venv/bin/pytest -q tests/torch/test_hook.py

One run of tests/torch/ranks.py per port kind of the switch (shared memory, UDP; a minute or so each on two
cores) serves every test here: natural sparsity equals gloo
within the fixed-point bound; a float64 model, an unknown switch, a job the switch does not have and a switch that
dies mid-training fall back to gloo (the log says why, once) and train on; a config for another world size stops
with a clear error; top-k sends about 1% of the blocks.
"""

from __future__ import annotations

import json

import pytest

torch = pytest.importorskip("torch", reason="omnireduce.torch tests need PyTorch: pip install -e '.[test,torch]'")

from omnireduce.shm import unavailable_reason as shm_unavailable  # noqa: E402
from omnireduce.torch.launch import run_ranks  # noqa: E402
from omnireduce.torch.loopback import DEFAULT_SLOTS, loopback_switch  # noqa: E402
from tests.torch.ranks import LEARNING_RATE, run_scenarios  # noqa: E402

WORKERS = 2
#: float32 rounds a value by at most 2^-24 of it, an update of a parameter by at most 2^-24 of the result.
HALF_ULP = 2.0**-24


@pytest.fixture(scope="module", params=["shm", "udp"])
def results(request, tmp_path_factory):
    """Every scenario over the switch's shared-memory ports (the loopback default), then over its UDP ports."""
    if request.param == "shm" and shm_unavailable() is not None:
        pytest.skip(f"shared-memory ports cannot be built here: {shm_unavailable()}")
    run_dir = tmp_path_factory.mktemp(f"torch-hook-{request.param}")
    with loopback_switch(WORKERS, run_dir / "logs", ports=request.param) as switch:
        run_ranks(run_scenarios, WORKERS, (switch.config, switch.grpc_addr, switch.process.pid, str(run_dir)),
                  run_dir)
    return [json.loads((run_dir / f"rank{rank}.json").read_text()) for rank in range(WORKERS)]


def fallback_messages(result):
    return [message for message in result["log"] if "falls back" in message]


def test_natural_sparsity_equals_gloo_within_the_fixed_point_bound(results):
    for result in results:
        natural = result["natural"]
        assert natural["disabled_reason"] is None and not fallback_messages(natural)
        assert all(report["fallback_buckets"] == 0 for report in natural["reports"])
        assert all(report["density"] < 0.5 for report in natural["reports"]), "embedding gradients are sparse"
        # Per step, the averaged gradient is within error_bound / W (docs/protocol.md section 5) plus float32
        # rounding of the sums (2 half ulps: ours and gloo's); the SGD update moves that by lr and rounds the
        # parameter (one ulp per step). The 2x covers the second-order drift of gradients that depend on parameters.
        steps = len(natural["bounds"])
        assert steps == 4
        per_step = sum(LEARNING_RATE * (bound / WORKERS + 2 * HALF_ULP * gradient)
                       for bound, gradient in zip(natural["bounds"], natural["gradient_max"]))
        tolerance = 2 * (per_step + steps * 2 * HALF_ULP * natural["parameter_max"])
        assert natural["difference"] <= tolerance, (natural["difference"], tolerance)


def test_a_float64_model_falls_back_to_gloo_and_says_so_once(results):
    for result in results:
        run = result["float64"]
        assert run["difference"] == 0.0
        assert all(report["fallback_buckets"] == report["buckets"] for report in run["reports"])
        messages = fallback_messages(run)
        assert len(messages) == 1 and "torch.float64" in messages[0]


def test_an_unknown_switch_falls_back_and_training_goes_on(results):
    for result in results:
        run = result["unknown_switch"]
        assert run["difference"] == 0.0, "the fallback is DDP's own all-reduce"
        assert len(run["losses"]["omnireduce"]) == 3
        assert run["disabled_reason"]
        assert len(fallback_messages(run)) == 1
    assert any("SwitchUnreachable" in result["unknown_switch"]["disabled_reason"] for result in results)


def test_a_job_the_switch_does_not_have_falls_back(results):
    for result in results:
        run = result["mismatched_job"]
        assert run["difference"] == 0.0
        assert "WorkerMissing" in run["disabled_reason"]
        assert len(fallback_messages(run)) == 1


def test_a_config_for_another_world_size_is_refused_clearly(results):
    for result in results:
        error = result["wrong_world_size"]["error"]
        assert error and "3 workers" in error and "world size is 2" in error


def test_top_k_sends_about_one_percent_of_the_blocks(results):
    for result in results:
        run = result["top_k"]
        assert run["disabled_reason"] is None
        for report in run["reports"]:
            assert report["fallback_buckets"] == 0
            # 1% of the blocks, plus the first round of each bucket, which is dense (S blocks).
            assert 0 < report["density"] <= 0.01 + (DEFAULT_SLOTS + 1) * report["buckets"] / report["blocks"]


def test_a_switch_that_dies_mid_training_falls_back_and_training_goes_on(results):
    for result in results:
        run = result["switch_dies"]
        assert len(run["losses"]["omnireduce"]) == 5
        reports = run["reports"]
        assert reports[0]["fallback_buckets"] == 0
        assert reports[-1]["fallback_buckets"] == reports[-1]["buckets"]
        assert run["disabled_reason"]
        assert len(fallback_messages(run)) == 1
        # Up to the death the results equal gloo's within the bound; afterwards both sides are DDP's own.
        assert run["difference"] < 1e-4
