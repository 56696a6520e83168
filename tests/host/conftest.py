"""Fixtures of the agent's end-to-end tests: the switch they run against.

`device` is parametrised: "model" is tests/host/model_device.py (protocol.md in plain Python, always there);
"softswitch" is the embedded softswitch running the compiled P4 program p4src/build/omnireduce.json (skipped,
with the reason, until that file is committed).
"""

from __future__ import annotations

import pytest

from omnireduce.p4src import artifacts

from .model_device import ModelDevice

SWITCH_KINDS = ["model", "softswitch"]


def make_device(kind: str):
    from tests.p4.omniswitch import SWITCH_IP, SWITCH_MAC

    if kind == "model":
        return ModelDevice(SWITCH_MAC, SWITCH_IP)
    if not artifacts.BMV2_JSON.exists():
        pytest.skip(f"{artifacts.BMV2_JSON} is not compiled yet (needs p4c: `make p4`)")
    from omnireduce.softswitch.device import Device

    device = Device()
    device.load_pipeline(artifacts.BMV2_JSON.read_bytes())
    return device


@pytest.fixture(params=SWITCH_KINDS)
def device(request):
    return make_device(request.param)


@pytest.fixture
def model_device():
    return make_device("model")
