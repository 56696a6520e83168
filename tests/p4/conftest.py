"""Fixtures for the packet tests of the omnireduce P4 program (run on the softswitch; the same cases run on BMv2
through tests/p4/test_bmv2.py where simple_switch_grpc is installed)."""

from __future__ import annotations

import pytest

from omnireduce.p4src import artifacts

from .omniswitch import OmniSwitch


@pytest.fixture(scope="session")
def program_json() -> bytes:
    return artifacts.BMV2_JSON.read_bytes()


@pytest.fixture
def switch(program_json) -> OmniSwitch:
    from omnireduce.softswitch.device import Device

    device = Device()
    device.load_pipeline(program_json)
    return OmniSwitch(device)
