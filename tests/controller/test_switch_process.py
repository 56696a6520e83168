# Run: /work/main/.venv/bin/pytest tests/controller/test_switch_process.py
"""omnireduce-ctl against the softswitch running as its own process (`omnireduce-switch --no-p4`), the way the
testbed and a person use them: the controller waits for the switch with a deadline, pushes, installs, removes."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import pytest

from omnireduce.controller import connect, read_jobs
from omnireduce.controller.errors import EXIT_OK

from tests.controller.conftest import free_tcp_port
from tests.controller.helpers import run_ctl as run
from tests.polling import stop_process

SWITCH = Path(sys.executable).parent / "omnireduce-switch"


@pytest.fixture
def switch_process(tmp_path: Path) -> Iterator[str]:
    if not SWITCH.exists() and shutil.which("omnireduce-switch") is None:
        pytest.skip("omnireduce-switch is not installed in this environment")
    address = f"127.0.0.1:{free_tcp_port()}"
    log = (tmp_path / "switch.log").open("w")
    process = subprocess.Popen([str(SWITCH if SWITCH.exists() else "omnireduce-switch"), "--no-p4",
                                "--grpc-server-addr", address, "--log-level", "warning"],
                               stdout=log, stderr=subprocess.STDOUT)
    try:
        yield address
    finally:
        stop_process(process)
        log.close()


def test_ctl_drives_a_switch_process(switch_process: str, pipeline_files) -> None:
    base = ["--grpc-addr", switch_process, "--timeout", "20", "--p4info", str(pipeline_files.p4info)]
    # The first call waits (up to --timeout) for the process to serve: no sleep, no separate readiness poll.
    code, out, err = run(*base, "push", "--json", str(pipeline_files.bmv2_json))
    assert code == EXIT_OK, err
    code, out, err = run(*base, "job", "add", "--job", "2", "--slot-base", "4", "--slots", "2", "--mcast-group", "3",
                         "--worker", "1,02:00:00:00:00:01,10.0.0.1", "--worker", "2,02:00:00:00:00:02,10.0.0.2")
    assert code == EXIT_OK, err
    code, out, err = run(*base, "--json", "job", "list")
    assert [(job["job_id"], job["slot_base"], job["slot_count"], len(job["workers"])) for job in json.loads(out)] \
        == [(2, 4, 2, 2)]
    with connect(switch_process, p4info=pipeline_files.p4info, require_primary=False) as reader:
        assert list(read_jobs(reader)) == [2]
    assert run(*base, "job", "rm", "2")[0] == EXIT_OK
    assert json.loads(run(*base, "--json", "entries")[1]) == []
