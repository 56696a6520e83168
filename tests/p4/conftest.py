"""Fixtures for the packet tests of the omnireduce P4 program: every test runs on the softswitch's native (C)
and Python packet pipelines, on the Python model of the Tofino program (tests/p4/tna_model.py), and, where
simple_switch_grpc is installed and we are root, on BMv2 too."""

from __future__ import annotations

import pytest

from omnireduce.p4src import artifacts
from omnireduce.p4src import constants as C

from .bmv2_device import Bmv2Device, bmv2_available
from .omniswitch import TNA, OmniSwitch
from .tna_model import RECIRCULATION_PORTS, TnaModel


@pytest.fixture(scope="session")
def program_json() -> bytes:
    return artifacts.BMV2_JSON.read_bytes()


@pytest.fixture(params=["native", "python", "tna-model", pytest.param("bmv2", marks=pytest.mark.bmv2)])
def switch(request, program_json) -> OmniSwitch:
    """The program on the softswitch's native (C) and Python packet pipelines, the Tofino program's Python model,
    and on BMv2 where installed."""
    if request.param == "tna-model":
        model = TnaModel()
        model.value_set_insert(RECIRCULATION_PORTS, TNA.recirculation_port)
        return OmniSwitch(model, view=TNA)
    if request.param == "bmv2":
        if not bmv2_available():
            pytest.skip("BMv2 (simple_switch_grpc on PATH, run as root) is absent: this case ran on the softswitch only")
        device = Bmv2Device(port_count=C.MAX_WORKERS)  # a job can have MAX_WORKERS workers, a port each
        request.addfinalizer(device.close)
        return OmniSwitch(device)
    from omnireduce.softswitch.device import Device

    device = Device(backend=request.param)
    device.load_pipeline(program_json)
    return OmniSwitch(device)
