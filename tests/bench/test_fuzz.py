# Run: .venv/bin/pytest tests/bench/test_fuzz.py -q
"""The fuzzer (omnireduce-bench fuzz) in reduced size: a few hundred hostile packets into two running jobs. Every
packet must be counted by the switch (a drop reason, or a replay or forward of protocol traffic), none may enter a
round, and every all-reduce must be bit-identical to its fault-free reference. The full campaign (10,000 packets)
is in docs/reliability.md. No timing is asserted."""

from __future__ import annotations

import json

from omnireduce.bench.cli import main
from omnireduce.bench.fuzz import ACCEPTED, FORWARD, KINDS, REPLAY, UNCOUNTED, FuzzConfig, disposition_of, run_fuzzer
from omnireduce.host import Timeouts

QUICK_TIMERS = Timeouts(retransmit_initial=0.01, retransmit_first=0.1, request_fallback=0.1, retransmit_max=0.3,
                        join=20, stall=20)


def test_every_fuzzed_packet_is_counted_and_every_result_exact():
    report = run_fuzzer(FuzzConfig(packets=800, seed=5, size=2048, inputs=3, rate=400.0, timeouts=QUICK_TIMERS))
    assert report.packets == 800 and report.allreduces >= 2
    assert report.ok, (report.uncounted[:5], report.accepted[:5], report.failures[:5])
    kinds = report.by_kind()
    assert set(kinds) == set(KINDS)
    # Where the switch's answer does not depend on the job's state, it is the one docs/protocol.md section 6 names.
    variants: dict[str, set[str]] = {}
    for (kind, variant, disposition), _count in report.dispositions.items():
        variants.setdefault(f"{kind}/{variant}", set()).add(disposition)
    assert set(kinds["unknown-worker"]) == {"drop UNKNOWN_WORKER"}
    assert set(kinds["other-job"]) <= {"drop JOB_MISMATCH", "drop SLOT_OUT_OF_RANGE"}
    assert set(kinds["result-type"]) == {"drop BAD_MSG_TYPE"}
    expected = {"malformed/truncated": {"drop PARSER_ERROR"}, "malformed/lane count": {"drop BAD_LANE_COUNT"},
                "malformed/IPv4 checksum": {"drop BAD_CHECKSUM"}, "malformed/UDP length": {"drop BAD_LENGTH"},
                "malformed/IPv4 length": {"drop BAD_LENGTH"}, "malformed/jumbo": {"drop BAD_LENGTH"},
                "malformed/TTL": {"drop TTL_EXPIRED"}, "malformed/UDP port": {"drop NO_ROUTE"},
                "malformed/ethertype": {"drop NOT_IPV4"},
                "forged/REPAIR naming its sender as peer": {"drop BAD_PEER"},
                "forged/REPAIR naming a worker the job lacks": {"drop BAD_PEER"},
                "forged/other tensor id, not a first block": {"drop STALE"}}
    for variant, dispositions in expected.items():
        assert variants.get(variant, dispositions) == dispositions, (variant, variants.get(variant))


def test_dispositions_are_read_from_the_counters_that_moved():
    jobs = (0, 1)
    assert disposition_of({}, jobs) == UNCOUNTED
    assert disposition_of({"ingress:STALE": 1}, jobs) == "drop STALE"
    assert disposition_of({"job1:replays": 1}, jobs) == REPLAY
    assert disposition_of({"job0:forwards": 1}, jobs) == FORWARD
    assert disposition_of({"job0:forwards": 1, "egress:NO_RESULT_DESTINATION": 1}, jobs).startswith(FORWARD)
    assert disposition_of({"job0:contributions": 1}, jobs) == ACCEPTED
    assert disposition_of({"job1:contributions": 1, "job1:results": 1}, jobs) == ACCEPTED


def test_the_cli_runs_a_campaign_and_writes_json(tmp_path, capsys):
    out = tmp_path / "fuzz.json"
    assert main(["fuzz", "--packets", "150", "--rate", "1000", "--seed", "2", "--json-out", str(out),
                 "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "150 fuzzed packets (seed 2)" in printed and "RESULT: every packet counted" in printed
    data = json.loads(out.read_text())
    assert data["ok"] and data["packets"] == data["counted"] == 150 and data["entered_a_round"] == []
    assert sum(item["count"] for item in data["frames"]) == 150
