"""Test helpers that speak the domain: workers and jobs by number, the switch state a job can leave behind."""

from __future__ import annotations

import contextlib
import io

from omnireduce.controller import cli, program
from omnireduce.controller.jobs import slot_register_cells
from omnireduce.controller.model import Job, Worker
from omnireduce.controller.switch import Switch
from omnireduce.p4src import constants


def make_worker(n: int, port: int | None = None) -> Worker:
    """Worker n: port n, MAC 02:00:00:00:00:n, 10.0.0.n, UDP port OMNI_UDP_PORT + n."""
    return Worker(n if port is None else port, 0x020000000000 + n, 0x0A000000 + n, constants.OMNI_UDP_PORT + n)


def make_job(job_id: int = 1, slot_base: int = 0, slot_count: int = 4, mcast_group: int = 1,
             workers: range = range(1, 4)) -> Job:
    return Job(job_id, slot_base, slot_count, mcast_group, tuple(make_worker(n) for n in workers))


def switch_state(switch: Switch) -> dict:
    """Everything a job can leave behind: entries of the job tables, multicast groups."""
    return {table: sorted(map(repr, switch.read_table(table))) for table in
            (program.JOBS_TABLE, program.WORKERS_TABLE, program.RESULT_DESTINATIONS_TABLE)} | {
        "groups": sorted(switch.read_multicast_groups())}


def dirty_slots(switch: Switch, slots: range, value: int = 1) -> None:
    """Make every register cell of `slots` non-zero, as traffic would."""
    switch.write_register_cells({register: {cell: value for cell in cells}
                                 for register, cells in slot_register_cells(slots, constants.MAX_WORKERS).items()})


def assert_slots_clean(switch: Switch, slots: range) -> None:
    for register, values in switch.read_registers(slot_register_cells(slots, constants.MAX_WORKERS)).items():
        assert set(values.values()) == {0}, register


def run_ctl(*argv: str) -> tuple[int, str, str]:
    """omnireduce-ctl in-process: (exit code, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.main(list(argv))
    return code, out.getvalue(), err.getvalue()
