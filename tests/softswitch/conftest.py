"""The packet tests of the softswitch run on both packet pipelines: `backend` parametrizes a test over the
native (generated C) and the python (generated Python, the reference) pipeline through the Device's default
backend. Modules opt in with `pytestmark = pytest.mark.usefixtures("backend")`."""

from __future__ import annotations

import pytest

from omnireduce.softswitch.backend import BACKEND_ENV

BACKEND_PARAMS = ["native", "python"]


@pytest.fixture(params=BACKEND_PARAMS)
def backend(request, monkeypatch) -> str:
    monkeypatch.setenv(BACKEND_ENV, request.param)
    return request.param
