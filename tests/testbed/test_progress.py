# Run: .venv/bin/pytest tests/testbed/test_progress.py -q
"""The testbed's live progress: reading the agents' progress files as they grow, and how the CLI shows it."""

from __future__ import annotations

import io
import json

from omnireduce.testbed.cli import ProgressView, progress_line
from omnireduce.testbed.progress import ProgressTail, RunProgress


def line(event: str, blocks: int, packets: int, retransmissions: int = 0) -> str:
    return json.dumps({"format": 1, "event": event, "job": 0, "worker_id": 0, "run": 1, "runs": 1,
                       "blocks_done": blocks, "blocks_total": 100, "packets_sent": packets, "packets_received": 0,
                       "retransmissions": retransmissions, "elapsed_s": 0.1})


def test_tail_reads_growing_files_and_skips_a_partial_line(tmp_path):
    paths = {"w0": tmp_path / "w0.progress", "w1": tmp_path / "w1.progress"}
    tail = ProgressTail(paths, blocks_per_agent=100)
    first = tail.poll(0.1)
    assert (first.blocks_done, first.blocks_total, first.agents_started) == (0, 200, 0)  # no file yet
    paths["w0"].write_text(line("start", 0, 0) + "\n" + line("progress", 40, 50, 1) + "\n" + '{"format": 1, "ev')
    paths["w1"].write_text(line("progress", 10, 12) + "\n")
    second = tail.poll(0.2)
    assert (second.blocks_done, second.packets_sent, second.retransmissions, second.agents_started) == (50, 62, 1, 2)
    with paths["w0"].open("a") as stream:  # the partial line completes, then the agent is done
        stream.write('ent": "progress"}\n' + line("done", 100, 120, 1) + "\n")
    third = tail.poll(0.3)
    assert (third.blocks_done, third.agents_done, third.fraction) == (110, 1, 0.55)


def test_progress_line_off_a_terminal():
    progress = RunProgress(blocks_done=50, blocks_total=200, packets_sent=0, retransmissions=1, agents_started=2,
                           agents_done=0, agents=2, elapsed_s=5.0)
    assert progress_line(progress, 1234.4) == ("50/200 blocks (25.0%) after 5 s, 2 of 2 agents running, "
                                               "1,234 packets/s, 1 retransmission, about 15 s left")


def test_view_writes_steps_and_a_line_every_period_then_where_it_ended():
    stream = io.StringIO()
    view = ProgressView(stream, bar=False, line_every_s=5.0)
    view(RunProgress.step("starting the switch", 200, 2))
    for elapsed, blocks in ((0.0, 0), (1.0, 20), (5.5, 150), (6.0, 200)):
        view(RunProgress(blocks, 200, blocks * 2, 0, 2, 2 if blocks == 200 else 0, 2, elapsed))
    view(RunProgress.step("verifying the results", 200, 2))
    view.close()
    lines = stream.getvalue().splitlines()
    assert lines[0] == "omnireduce-testbed: starting the switch"
    assert lines[1].startswith("omnireduce-testbed: 0/200 blocks")
    assert lines[2].startswith("omnireduce-testbed: 150/200 blocks (75.0%) after 6 s")
    assert lines[3].startswith("omnireduce-testbed: 200/200 blocks (100.0%) after 6 s, every agent done")
    assert lines[4] == "omnireduce-testbed: verifying the results" and len(lines) == 5


def test_view_draws_a_bar_on_a_terminal():
    stream = io.StringIO()
    view = ProgressView(stream, bar=True)
    view(RunProgress.step("starting the switch", 200, 2))
    view(RunProgress(0, 200, 0, 0, 2, 0, 2, 0.0))
    view(RunProgress(100, 200, 3000, 0, 2, 0, 2, 1.5))
    view.close()
    drawn = stream.getvalue()
    assert "starting the switch ..." in drawn and "100/200" in drawn and "2,000 packets/s" in drawn
