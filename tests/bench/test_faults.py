# Run: .venv/bin/pytest tests/bench/test_faults.py -q
"""The fault suite (omnireduce-bench faults) in reduced size: a few runs of every scenario on small tensors, with
shortened agent timers so that loss costs little time. Every result must be bit-identical to the fault-free run's;
the full suite's figures are in docs/reliability.md. No timing is asserted."""

from __future__ import annotations

import json

import pytest

from omnireduce.bench.cli import main
from omnireduce.bench.faults import SCENARIO_NAMES, FaultSuiteConfig, format_table, judge, load_results, run_suite
from omnireduce.host import Timeouts

QUICK_TIMERS = Timeouts(retransmit_initial=0.01, retransmit_first=0.1, request_fallback=0.1, retransmit_max=0.3,
                        join=20, stall=20)


def test_every_scenario_gives_exact_results_and_shows_its_faults():
    config = FaultSuiteConfig(runs=3, workers=3, size=2048, density=0.2, timeouts=QUICK_TIMERS)
    results = run_suite(config)
    assert [result.name for result in results] == list(SCENARIO_NAMES)
    for result in results:
        assert result.runs == 3 and result.exact == 3, (result.name, result.failures)
    by_name = {result.name: result for result in results}
    assert by_name["none"].injected == {} and by_name["none"].retransmissions == 0
    assert by_name["loss-5"].injected.get("drop in", 0) + by_name["loss-5"].injected.get("drop out", 0) > 0
    assert by_name["duplicate-5"].injected.get("duplicate out", 0) > 0
    assert by_name["reorder-5"].injected.get("reorder out", 0) > 0
    assert by_name["jitter"].injected.get("delay in", 0) > 0
    # A duplicated CONTRIB is recognised at the switch, never added twice (the results above are exact).
    text = format_table(results)
    assert "loss-5" in text and "runs that were not exact" not in text


def test_a_wrong_or_failed_result_is_not_exact():
    import numpy as np

    inputs = [np.ones(64, np.float32), np.ones(64, np.float32)]
    good = np.full(64, 2.0, np.float32)
    from omnireduce.bench.faults import digest

    assert judge([good, good.copy()], inputs, digest(good)) is None
    assert "differs from the fault-free run" in judge([good + 1, good + 1], inputs, digest(good))
    assert "worker 1's result differs" in judge([good, good + 1], inputs, None)
    assert judge([good, TimeoutError("no result")], inputs, None).startswith("worker 1: TimeoutError: no result")


def test_the_cli_writes_json_and_reads_it_back(tmp_path, capsys):
    out = tmp_path / "faults.json"
    status = main(["faults", "--runs", "1", "--workers", "2", "--size", "512", "--scenarios", "duplicate-5,jitter",
                   "--json-out", str(out), "--no-progress"])
    assert status == 0
    printed = capsys.readouterr().out
    assert "duplicate-5" in printed and "suite took" in printed
    data = json.loads(out.read_text())
    assert [item["scenario"] for item in data["summaries"]] == ["none", "duplicate-5", "jitter"]
    assert all(item["exact"] == item["runs"] == 1 for item in data["summaries"])
    assert [result.name for result in load_results(out)] == ["none", "duplicate-5", "jitter"]
    assert main(["faults", "--from", str(out), "--markdown"]) == 0
    assert capsys.readouterr().out.startswith("| scenario | impairment |")


def test_unknown_scenarios_are_refused(capsys):
    with pytest.raises(SystemExit):
        main(["faults", "--scenarios", "loss-1,earthquake"])
    assert "unknown scenario 'earthquake'; choose from none, loss-0.1" in capsys.readouterr().err
