# Run: /work/main/.venv/bin/pytest tests/testbed/test_summary.py -q
"""Reading the switch's counters into per-job traffic, and the report as text and JSON."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np

from omnireduce.testbed.model import JobOutcome, TestbedConfig, TestbedReport, Traffic, WorkerOutcome
from omnireduce.testbed.summary import (
    call_seconds,
    drop_packets,
    format_report,
    job_counter_packets,
    job_traffic,
    report_to_json,
)
from omnireduce.testbed.traffic import dense_exchange, exchange_of

COUNTERS = {
    "port_rx": {"1": {"packets": 10, "bytes": 1900}, "2": {"packets": 12, "bytes": 2280},
                "3": {"packets": 99, "bytes": 9999}},
    "port_tx": {"1": {"packets": 7, "bytes": 1330}, "2": {"packets": 7, "bytes": 1330}},
    "jobs": {"0": {"contributions": {"packets": 20, "bytes": 3800}, "results": {"packets": 7, "bytes": 1330}}},
    "drops": [{"pipe": "ingress", "reason": 9, "name": "DUPLICATE", "packets": 2, "bytes": 380},
              {"pipe": "egress", "reason": 9, "name": "DUPLICATE", "packets": 1, "bytes": 190}],
}


def test_job_traffic_adds_up_only_the_jobs_ports():
    traffic = job_traffic(COUNTERS, [1, 2])
    assert traffic == Traffic(22, 4180, 14, 2660)
    assert job_traffic(COUNTERS, [5]) == Traffic(0, 0, 0, 0)
    assert job_counter_packets(COUNTERS, 0) == {"contributions": 20, "results": 7}
    assert job_counter_packets(COUNTERS, 1) == {}
    assert drop_packets(COUNTERS) == {"DUPLICATE": 3}


def _report(ok: bool) -> TestbedReport:
    expected = exchange_of([np.ones(4, dtype=bool)] * 2, slots=2)
    workers = (WorkerOutcome(0, 0, True, 1e-7, 2e-7, "", {"retransmissions": 3}),
               WorkerOutcome(0, 1, ok, math.inf if not ok else 0.0, 0.0, "" if ok else "no result written", {}))
    job = JobOutcome(0, 0, 2, workers, job_traffic(COUNTERS, [1, 2]), expected, dense_exchange(2, 128, 2),
                     {"contributions": 20, "results": 7}, blocks=4, nonzero_blocks=4)
    return TestbedReport(TestbedConfig(workers=2, size=128, slots=2), ok, None if ok else "worker 1 of job 0 died",
                         1.5, 0.5, (job,), {"DUPLICATE": 3})


def test_text_summary_names_the_figures_and_the_verdict():
    text = format_report(_report(True))
    assert "all results verified" in text
    assert "3 retransmissions" in text
    assert "measured (counters)" in text and "dense aggregation" in text and "loss-free omnireduce" in text
    assert "  DUPLICATE 3: retransmitted contributions to rounds that already had them" in text
    assert "retransmissions (3 in all): a worker's timer fired before its result arrived; loopback loses nothing, " \
           "so CPU contention" in text
    failed = format_report(_report(False))
    assert failed.rstrip().endswith("FAILED: worker 1 of job 0 died")


def test_json_report_is_plain_json():
    data = json.loads(json.dumps(report_to_json(_report(False))))
    assert data["ok"] is False
    assert data["config"]["switch"] == "softswitch"
    job = data["jobs"][0]
    assert job["measured"]["to_switch_packets"] == 22
    assert job["workers"][1]["max_error"] == "inf"
    assert job["workers"][0]["retransmissions"] == 3
    assert job["dense"]["total_bytes"] == dense_exchange(2, 128, 2).total_bytes


def test_every_drop_reason_of_the_program_has_its_explanation():
    from omnireduce.p4src import constants
    from omnireduce.testbed.summary import DROP_EXPLANATIONS

    assert set(DROP_EXPLANATIONS) == set(constants.DROP_REASONS.values())


def test_one_retransmission_is_singular_and_dense_rows_say_dense():
    import dataclasses

    report = _report(True)
    job = report.jobs[0]
    workers = (dataclasses.replace(job.workers[0], stats={"retransmissions": 1}), job.workers[1])
    report = dataclasses.replace(report, config=dataclasses.replace(report.config, dense=True),
                                 jobs=(dataclasses.replace(job, workers=workers),))
    text = format_report(report)
    assert "1 retransmission\n" in text and "1 retransmissions" not in text
    assert "loss-free dense" in text and "loss-free omnireduce" not in text


def test_the_time_after_every_worker_joined_the_agents_cpu_and_the_ports_are_named():
    report = _report(True)
    job = report.jobs[0]
    timed = (WorkerOutcome(0, 0, True, 0.0, 0.0, "", {"elapsed_s": 1.25, "joined_s": 0.5, "cpu_s": 0.4}),
             WorkerOutcome(0, 1, True, 0.0, 0.0, "", {"elapsed_s": 1.0, "joined_s": 0.05, "cpu_s": 0.31}))
    text = format_report(dataclasses.replace(report, jobs=(dataclasses.replace(job, workers=timed),), ports="shm"))
    assert ("all-reduce 1.25 s by the agents' clocks (0.95 s after every worker joined; agents' CPU 0.31-0.40 s "
            "each): ") in text
    assert "softswitch over loopback (shm ports)" in text
    assert "after every worker joined" not in format_report(report)  # agents that do not say: nothing invented


def test_repeated_calls_are_reported_first_and_later_by_the_slowest_worker():
    report = _report(True)
    job = report.jobs[0]
    calls = ([{"elapsed_s": 0.5, "exchange_s": 0.25}, {"elapsed_s": 0.2, "exchange_s": 0.1},
              {"elapsed_s": 0.1, "exchange_s": 0.05}, {"elapsed_s": 0.4, "exchange_s": 0.3}],
             [{"elapsed_s": 0.3, "exchange_s": 0.2}, {"elapsed_s": 0.25, "exchange_s": 0.15},
              {"elapsed_s": 0.3, "exchange_s": 0.3}, {"elapsed_s": 0.1, "exchange_s": 0.05}])
    workers = tuple(WorkerOutcome(0, index, True, 0.0, 0.0, "", {"elapsed_s": 1.2, "joined_s": 0.1}, tuple(each))
                    for index, each in enumerate(calls))
    assert call_seconds(workers) == [0.5, 0.25, 0.3, 0.4]
    assert call_seconds(workers, "exchange_s") == [0.25, 0.15, 0.3, 0.3]
    text = format_report(dataclasses.replace(report, jobs=(dataclasses.replace(job, workers=workers),)))
    assert "4 all-reduces 1.20 s by the agents' clocks" in text
    assert ("per call (slowest worker): first 0.500 s (the buffers' and slots' first use), then median 0.300 s "
            "[0.250-0.400] over 3 later call(s)") in text
    # 22 frames into the switch, less one scale and one closing frame per worker and call: 6 data frames in 1.0 s.
    assert "of which the data exchanges 1.00 s (slowest worker, each call): 6 packets/s into the switch" in text
    # Workers that disagree on how many calls they made (one failed early): no per-call line.
    assert call_seconds((workers[0], dataclasses.replace(workers[1], calls=workers[1].calls[:2]))) == []
    assert "per call" not in format_report(report)


def test_rendezvous_resends_are_reported_apart_from_retransmissions():
    report = _report(True)
    job = report.jobs[0]
    workers = (dataclasses.replace(job.workers[0], stats={"retransmissions": 0, "rendezvous_resends": 2}),
               job.workers[1])
    report = dataclasses.replace(report, jobs=(dataclasses.replace(job, workers=workers),))
    text = format_report(report)
    assert "worker 0: ok, max error 1e-07 (bound 2e-07), 0 retransmissions, 2 rendezvous resends\n" in text
    assert "rendezvous resends (2 in all): a worker sent its scale or closing round's CONTRIB again" in text
    assert "retransmissions (" not in text
    assert report_to_json(report)["jobs"][0]["workers"][0]["rendezvous_resends"] == 2
