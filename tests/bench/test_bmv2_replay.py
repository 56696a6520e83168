# Run: .venv/bin/pytest tests/bench/test_bmv2_replay.py -q
"""The BMv2 side of bench_softswitch on a short all-reduce: simple_switch in pcap-file mode, configured through
simple_switch_CLI from the recorded control plane, sends exactly the softswitch's frames, in order.
Skipped where simple_switch or simple_switch_CLI is not on PATH."""

from __future__ import annotations

import functools
import shutil

import pytest

from omnireduce.bench.bench_softswitch import compare_outputs, record_trace, reference_run
from omnireduce.bench.bmv2_replay import Bmv2Settings, rate_between, replay, tools_missing
from omnireduce.bench.frame_generators import omnireduce_frames
from omnireduce.p4src import artifacts

SIMPLE_SWITCH, CLI = shutil.which("simple_switch"), shutil.which("simple_switch_CLI")
pytestmark = [
    pytest.mark.bmv2,
    pytest.mark.skipif(tools_missing(SIMPLE_SWITCH, CLI) is not None,
                       reason=f"BMv2: {tools_missing(SIMPLE_SWITCH, CLI)}"),
]


def test_bmv2_replay_matches_the_softswitch_frame_for_frame():
    raw = artifacts.BMV2_JSON.read_bytes()
    trace = record_trace(raw, artifacts.BMV2_JSON, functools.partial(omnireduce_frames, blocks=48), packets=0)
    reference = reference_run(raw, trace)
    ours = [frame for _, frame in reference.outputs]
    assert trace.ports == {1} and {port for port, _ in reference.outputs} == {1}
    # The bench's default wait: configuring BMv2 through simple_switch_CLI took 2.7 s in a full test run.
    settings = Bmv2Settings(SIMPLE_SWITCH, CLI, wait_seconds=5, log_level="off", queue_depth=len(ours),
                            deadline_seconds=60, stall_seconds=5)
    run = replay(artifacts.BMV2_JSON, 1, [frame for _, frame in trace.batch], trace.ops, len(ours), settings)
    assert run.complete and run.extra_outputs == 0
    assert compare_outputs(ours, [record.frame for record in run.outputs])["identical_in_order"]
    assert run.cpu_seconds is not None and run.span_seconds > 0
    producing = reference.output_inputs
    assert rate_between(producing[0], producing[-1], run.span_seconds) > 0
