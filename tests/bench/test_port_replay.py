# Run: .venv/bin/pytest tests/bench/test_port_replay.py -q
"""The switch alone at its ports (bench/port_replay.py): a recorded all-reduce replayed into the packet loop's ring
ports by one process per worker. The replay must reproduce the recording frame for frame, and one that cannot
fails with what was missing. No timings are asserted."""

from __future__ import annotations

import dataclasses

import pytest

from omnireduce.bench import port_replay
from omnireduce.bench.port_replay import WorkerScript, port_rate, record_port_trace


def test_a_workers_frames_wait_for_the_frame_that_made_it_send_them():
    result_a, result_b = b"result a", b"result b"
    twice = [bytes(b"again"), bytes(bytearray(b"again"))]  # equal bytes, two deliveries
    script = WorkerScript(1, [b"f0", b"f1", b"f2", b"f3", b"f4", b"f5", b"f6"],
                          [None, None, result_a, result_a, result_b, twice[0], twice[1]], received=4)
    initial, groups = script.groups()
    assert initial == [b"f0", b"f1"]
    assert list(groups[result_a]) == [[b"f2", b"f3"]]  # one delivery's frames go together
    assert list(groups[result_b]) == [[b"f4"]]
    assert list(groups[b"again"]) == [[b"f5"], [b"f6"]]  # the first delivery triggers the first group


def test_the_recording_keeps_each_workers_frames_and_what_triggered_them():
    trace = record_port_trace(workers=3, density=0.5, blocks=40, slots=4, seed=2)
    assert [script.port for script in trace.scripts] == [1, 2, 3]
    assert len({script.received for script in trace.scripts}) == 1  # every result goes to every worker
    for script in trace.scripts:
        # The first round goes out at the start (one frame per slot); every later frame answers a result.
        assert script.triggers[:4] == [None] * 4 and all(t is not None for t in script.triggers[4:])
        assert len(script.frames) > 4


@pytest.mark.parametrize("pipeline, workers, density, blocks, slots", [
    ("auto", 2, 0.3, 200, 8), ("python", 2, 0.3, 200, 8),
    ("auto", 1, 0.5, 100, 4),  # one worker
    ("auto", 3, 0.0, 100, 4),  # nothing but zeros: the first round, then every column ends at once
    ("auto", 2, 1.0, 3, 3),  # fewer blocks than a first round usually has
])
def test_the_switch_alone_at_its_ports_reproduces_the_recording(pipeline, workers, density, blocks, slots):
    trace = record_port_trace(workers=workers, density=density, blocks=blocks, slots=slots)
    rate = port_rate(trace, pipeline, repeats=2)
    assert "failure" not in rate, rate
    assert rate["frames"] == trace.frames_in and rate["repeats"] == 2
    assert rate["pps_best"] >= rate["pps_wall"] > 0


def test_a_replay_that_cannot_reproduce_the_recording_fails_with_what_was_missing(monkeypatch):
    monkeypatch.setattr(port_replay, "REPLAY_DEADLINE_S", 1.0)
    monkeypatch.setattr(port_replay, "REPLAY_DEADLINE_PER_FRAME_S", 0.0)
    trace = record_port_trace(workers=2, density=0.5, blocks=40, slots=2)
    first = trace.scripts[0]
    # Worker 1 now waits for a result the switch never sends: the exchange stalls for both workers.
    triggers = [t if i != 2 else b"a frame the switch never sends" for i, t in enumerate(first.triggers)]
    broken = dataclasses.replace(trace, scripts=[dataclasses.replace(first, triggers=triggers), *trace.scripts[1:]])
    rate = port_rate(broken, "auto", repeats=1)
    assert "pps_wall" not in rate
    assert "port 1: received" in rate["failure"] and "the replay diverged from the recording" in rate["failure"]
