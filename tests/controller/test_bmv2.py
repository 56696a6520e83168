# Run: /work/main/.venv/bin/pytest tests/controller/test_bmv2.py   (skipped where simple_switch_grpc is absent)
"""The controller against BMv2 (simple_switch_grpc) running the omnireduce pipeline (the compiled one, or until it
exists the synthetic one of synthetic.py): the same operations as against the softswitch. Tables, PRE and counters go over P4Runtime; registers over BMv2's Thrift runtime (--thrift-port),
because PI does not implement P4Runtime register access."""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pytest

from omnireduce.controller import connect, program
from omnireduce.controller.client import ElectionId
from omnireduce.controller.counters import read_counters
from omnireduce.controller.errors import EXIT_OK, BadInputError, NotPrimaryError
from omnireduce.controller.jobs import add_job, jobs_entry, read_jobs, remove_job, reset_job, worker_entry
from omnireduce.controller.pipeline import PipelineFiles, push
from omnireduce.controller.status import read_status
from omnireduce.controller.switch import Switch

from tests.controller.conftest import free_tcp_port
from tests.controller.helpers import assert_slots_clean, dirty_slots, make_job, run_ctl, switch_state
from tests.polling import stop_process, wait_until

pytestmark = [
    pytest.mark.bmv2,
    pytest.mark.skipif(shutil.which("simple_switch_grpc") is None,
                       reason="simple_switch_grpc (BMv2 with P4Runtime) is not on PATH"),
]
STARTUP_TIMEOUT_S = 30.0


@dataclass
class Bmv2:
    grpc_addr: str
    thrift_port: int
    files: PipelineFiles

    def connect(self, **options) -> Switch:
        """A controller session. PI lets go of a closed session's election id a moment after its stream ends, so
        a connect right after the fixture's (or the previous test's) may be refused with "Election id already
        exists": it is tried again until the election id is free, within STARTUP_TIMEOUT_S."""
        attempt: list[Switch] = []

        def connected() -> bool:
            try:
                attempt.append(connect(self.grpc_addr, timeout=STARTUP_TIMEOUT_S, thrift_port=self.thrift_port,
                                       **options))
            except NotPrimaryError as error:
                if "already exists" not in str(error):
                    raise
                return False
            return True

        wait_until(connected, STARTUP_TIMEOUT_S, "BMv2 to free the previous session's election id")
        return attempt[0]

    def ctl(self, *argv: str) -> tuple[int, str, str]:
        return run_ctl("--grpc-addr", self.grpc_addr, "--thrift-port", str(self.thrift_port),
                       "--p4info", str(self.files.p4info),
                       "--timeout", str(STARTUP_TIMEOUT_S), *argv)


@pytest.fixture
def bmv2_server(tmp_path: Path, pipeline_files: PipelineFiles) -> Iterator[Bmv2]:
    grpc_port, thrift_port = free_tcp_port(), free_tcp_port()
    log = (tmp_path / "bmv2.log").open("w")
    process = subprocess.Popen(["simple_switch_grpc", "--no-p4", "--device-id", "0", "--thrift-port",
                                str(thrift_port), "--log-level", "warn", "--",
                                "--grpc-server-addr", f"127.0.0.1:{grpc_port}"],
                               stdout=log, stderr=subprocess.STDOUT)
    try:
        yield Bmv2(f"127.0.0.1:{grpc_port}", thrift_port, pipeline_files)
    finally:
        stop_process(process)
        log.close()


@pytest.fixture
def bmv2(bmv2_server: Bmv2) -> Bmv2:
    """BMv2 with the omnireduce pipeline pushed by the controller (the first connect waits for it to serve)."""
    with bmv2_server.connect() as switch:
        push(switch, bmv2_server.files)
    return bmv2_server


def test_job_lifecycle_on_bmv2(bmv2: Bmv2) -> None:
    with bmv2.connect(p4info=bmv2.files.p4info) as switch:
        empty = switch_state(switch)
        job = make_job(job_id=2, slot_base=4, slot_count=4, mcast_group=3)
        add_job(switch, job)
        assert switch.read_table(program.JOBS_TABLE) == [jobs_entry(job)]
        assert sorted(switch.read_table(program.WORKERS_TABLE), key=repr) == sorted(
            (worker_entry(2, worker_id, worker) for worker_id, worker in enumerate(job.workers)), key=repr)
        assert read_jobs(switch)[2].to_job() == job
        statuses = read_status(switch, 2)
        assert [slot.global_slot for slot in statuses[0].slots] == [4, 5, 6, 7]
        assert all(round_.state_name == "idle" for slot in statuses[0].slots for round_ in slot.rounds)
        dirty_slots(switch, job.slots)
        assert reset_job(switch, 2) > 0
        assert_slots_clean(switch, job.slots)
        assert read_counters(switch).drops == ()
        with pytest.raises(BadInputError, match="overlap job 2's"):
            add_job(switch, make_job(job_id=3, slot_base=6, mcast_group=4, workers=range(9, 11)))
        dirty_slots(switch, job.slots)
        remove_job(switch, 2)
        assert switch_state(switch) == empty
        assert_slots_clean(switch, job.slots)


def test_not_primary_on_bmv2(bmv2: Bmv2) -> None:
    with bmv2.connect(election_id=ElectionId(0, 50)):
        with pytest.raises(NotPrimaryError):
            bmv2.connect(election_id=ElectionId(0, 2)).close()


def test_cli_on_bmv2(bmv2: Bmv2) -> None:
    code, _, err = bmv2.ctl("job", "add", "--job", "1", "--slot-base", "0", "--slots", "2", "--mcast-group", "1",
                            "--worker", "1,02:00:00:00:00:01,10.0.0.1", "--worker", "2,02:00:00:00:00:02,10.0.0.2")
    assert code == EXIT_OK, err
    code, out, err = bmv2.ctl("--json", "status", "--job", "1")
    assert code == EXIT_OK, err
    assert [slot["global_slot"] for slot in json.loads(out)[0]["slots"]] == [0, 1]
    assert bmv2.ctl("reset", "--job", "1")[0] == EXIT_OK
    assert bmv2.ctl("job", "rm", "1")[0] == EXIT_OK
    assert json.loads(bmv2.ctl("--json", "entries")[1]) == []
