"""Fixtures of the agent's end-to-end tests: the switch they run against.

`device` is the embedded softswitch running the compiled P4 program p4src/build/omnireduce.json, the same program
BMv2 runs: the agent is always tested against the real data plane, never against a second copy of its logic.
"""

from __future__ import annotations

import pytest

from omnireduce.p4src import artifacts


def make_device():
    from omnireduce.softswitch.device import Device

    device = Device()
    device.load_pipeline(artifacts.BMV2_JSON.read_bytes())
    return device


@pytest.fixture
def device():
    return make_device()
