"""Fixtures of the agent's tests: the switch they run against, and the kernels they run with.

`device` is the embedded softswitch running the compiled P4 program p4src/build/omnireduce.json, the same program
BMv2 runs: the agent is always tested against the real data plane, never against a second copy of its logic.
`kernels` runs a test once with the agent's compiled kernels and once with numpy's.
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


@pytest.fixture(params=["compiled", "numpy"])
def kernels(request):
    """Runs a test with the agent's compiled kernels (host/exchange.c) and with numpy's (the fallback); the
    compiled run is skipped, saying why, where they do not build."""
    from omnireduce.host import native

    if request.param == "compiled" and native.available() is None:
        pytest.skip("the compiled exchange does not build here (no C compiler or cffi)")
    with native.kernels(request.param):
        yield request.param
