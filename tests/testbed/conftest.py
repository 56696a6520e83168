"""Skips for the testbed's end-to-end tests: the compiled P4 program, root, Mininet."""

from __future__ import annotations

import pytest

from omnireduce.p4src import artifacts
from omnireduce.testbed.layout import RUN_TAG_VARIABLE
from omnireduce.testbed.mininet_run import mininet_unavailable
from omnireduce.testbed.processes import tagged_processes

needs_program = pytest.mark.skipif(
    not (artifacts.BMV2_JSON.is_file() and artifacts.P4INFO.is_file()),
    reason=f"the compiled P4 program ({artifacts.BUILD}) is not there yet: run `make p4` (needs p4c)")

_MININET_PROBLEM = mininet_unavailable()
needs_mininet = pytest.mark.skipif(_MININET_PROBLEM is not None, reason=f"Mininet tests: {_MININET_PROBLEM}")


def survivors(run_dir) -> list[int]:
    """Processes of the run kept in `run_dir` that are still alive (there must be none)."""
    return tagged_processes(RUN_TAG_VARIABLE, str(run_dir))
