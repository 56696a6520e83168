# Run: /work/main/.venv/bin/pytest tests/controller/test_softswitch_jobs.py
"""The controller against the softswitch's P4Runtime server: push, jobs (every entry read back), routes, status,
counters, reset, removal leaving nothing behind, and each bad input refused with nothing half-installed."""

from __future__ import annotations

import ipaddress
import time

import pytest

from omnireduce.controller import program
from omnireduce.controller.client import ElectionId
from omnireduce.controller.counters import read_counters
from omnireduce.controller.entities import CounterEntry, MulticastGroupEntry, Replica
from omnireduce.controller.errors import (
    BadInputError,
    NotPrimaryError,
    P4RuntimeError,
    PipelineMismatchError,
    SwitchUnreachableError,
)
from omnireduce.controller.jobs import (
    add_job,
    jobs_entry,
    read_jobs,
    remove_job,
    reset_job,
    result_destination_entry,
    slot_register_cells,
    worker_entry,
)
from omnireduce.controller.model import Job, Route
from omnireduce.controller.p4info import load_p4info
from omnireduce.controller.pipeline import PipelineFiles, push
from omnireduce.controller.routes import add_routes, read_routes, remove_route
from omnireduce.controller.status import read_status
from omnireduce.controller.switch import Switch
from omnireduce.p4src import constants

from tests.controller.conftest import RunningSoftswitch, free_tcp_port
from tests.controller.helpers import assert_slots_clean, dirty_slots, make_job, make_worker, switch_state


# --- pipeline ------------------------------------------------------------------------------------------------


def test_push_installs_our_p4info(softswitch_server: RunningSoftswitch) -> None:
    switch = softswitch_server.connect(bind=False)
    assert switch.running_p4info() is None
    with pytest.raises(PipelineMismatchError, match="runs no pipeline; push one first"):
        switch.bind_pipeline_file(softswitch_server.files.p4info)
    assert switch.capabilities().startswith("1.")
    push(switch, softswitch_server.files)
    assert switch.running_p4info() == load_p4info(softswitch_server.files.p4info)
    switch.bind_pipeline_file(softswitch_server.files.p4info)  # no mismatch now


def test_a_different_pipeline_is_refused_before_any_write(softswitch: RunningSoftswitch, tmp_path) -> None:
    from google.protobuf import text_format

    theirs = load_p4info(softswitch.files.p4info)
    theirs.tables[0].preamble.id += 7  # same names, another build's ids
    other = tmp_path / "other.p4info.txtpb"
    other.write_text(text_format.MessageToString(theirs))
    switch = softswitch.connect(bind=False)
    with pytest.raises(PipelineMismatchError, match=f"table '{theirs.tables[0].preamble.name}' differs"):
        switch.bind_pipeline_file(other)
    assert switch.schema is None  # nothing bound, so nothing can be written


def test_push_refuses_files_that_are_not_a_pipeline(softswitch_server: RunningSoftswitch, tmp_path) -> None:
    not_json = tmp_path / "x.json"
    not_json.write_text("{ nope")
    switch = softswitch_server.connect(bind=False)
    with pytest.raises(BadInputError, match="is not JSON"):
        push(switch, PipelineFiles(softswitch_server.files.p4info, not_json))
    assert switch.running_p4info() is None


# --- jobs ----------------------------------------------------------------------------------------------------


def test_add_job_writes_exactly_the_entries_of_the_job(switch: Switch) -> None:
    job = make_job(job_id=3, slot_base=16, slot_count=8, mcast_group=7)
    add_job(switch, job)
    assert switch.read_table(program.JOBS_TABLE) == [jobs_entry(job)]
    assert sorted(switch.read_table(program.WORKERS_TABLE), key=repr) == sorted(
        (worker_entry(3, worker_id, worker) for worker_id, worker in enumerate(job.workers)), key=repr)
    assert sorted(switch.read_table(program.RESULT_DESTINATIONS_TABLE), key=repr) == sorted(
        (result_destination_entry(3, worker_id, worker) for worker_id, worker in enumerate(job.workers)), key=repr)
    groups = switch.read_multicast_groups()
    assert list(groups) == [7]
    assert sorted(groups[7].replicas) == [Replica(1, 0), Replica(2, 1), Replica(3, 2)]


def test_jobs_are_read_back_from_the_switch(softswitch: RunningSoftswitch) -> None:
    jobs = [make_job(job_id=1, slot_base=0, slot_count=4, mcast_group=1, workers=range(1, 3)),
            make_job(job_id=2, slot_base=4, slot_count=2, mcast_group=2, workers=range(3, 6))]
    writer = softswitch.connect()
    for job in jobs:
        add_job(writer, job)
    # Another session (a later CLI invocation) rebuilds the same jobs from the switch alone.
    reader = softswitch.connect(require_primary=False)
    installed = read_jobs(reader)
    assert [installed[job.job_id].to_job() for job in jobs] == jobs
    assert all(not job.problems for job in installed.values())


def test_remove_job_leaves_nothing_behind(switch: Switch) -> None:
    empty = switch_state(switch)
    other = make_job(job_id=2, slot_base=8, slot_count=2, mcast_group=2, workers=range(7, 9))
    add_job(switch, other)
    with_other = switch_state(switch)
    job = make_job(job_id=1, slot_base=0, slot_count=4, mcast_group=1)
    add_job(switch, job)
    dirty_slots(switch, job.slots)
    dirty_slots(switch, other.slots, value=5)
    remove_job(switch, job.job_id)
    assert switch_state(switch) == with_other
    assert_slots_clean(switch, job.slots)
    # The other job's state is untouched.
    assert set(switch.read_register(program.ROUND_BLOCK, range(program.round_cell(8, 0), program.round_cell(10, 0))).values()) == {5}
    remove_job(switch, other.job_id)
    assert switch_state(switch) == empty
    assert_slots_clean(switch, other.slots)


def test_remove_cleans_up_a_half_installed_job(switch: Switch) -> None:
    empty = switch_state(switch)
    job = make_job(job_id=4)
    # What a controller that crashed half-way through an install leaves: workers but no jobs entry.
    switch.insert([worker_entry(4, worker_id, worker) for worker_id, worker in enumerate(job.workers)])
    switch.insert([result_destination_entry(4, 0, job.workers[0])])
    installed = read_jobs(switch)[4]
    assert installed.slots is None
    assert "no entry in the jobs table (its workers are inactive)" in installed.problems
    assert "worker 1 has no result destination" in installed.problems
    with pytest.raises(BadInputError, match="job 4 already exists"):
        add_job(switch, job)
    remove_job(switch, 4)
    assert switch_state(switch) == empty


def test_reset_job_clears_its_slots_only(switch: Switch) -> None:
    first, second = make_job(job_id=1, slot_base=0, slot_count=2), make_job(job_id=2, slot_base=2, slot_count=2,
                                                                           mcast_group=2, workers=range(4, 6))
    add_job(switch, first)
    add_job(switch, second)
    dirty_slots(switch, range(0, 4), value=3)
    written = reset_job(switch, 1)
    cells = slot_register_cells(first.slots, constants.MAX_WORKERS)
    assert written == sum(len(indexes) for indexes in cells.values())
    assert_slots_clean(switch, first.slots)
    assert set(switch.read_register(program.SLOT_TENSOR, second.slots).values()) == {3}
    assert reset_job(switch, 1) == 0  # nothing left to clear
    with pytest.raises(BadInputError, match=r"no job 9 on switch .* \(installed jobs: 1, 2\)"):
        reset_job(switch, 9)


def test_status_decodes_rounds_and_worker_next(switch: Switch) -> None:
    job = make_job(job_id=1, slot_base=10, slot_count=2, workers=range(1, 4))
    add_job(switch, job)
    fresh = read_status(switch, 1)[0]
    assert [slot.global_slot for slot in fresh.slots] == [10, 11]
    assert all(round_.state_name == "idle" and round_.tensor is None for slot in fresh.slots for round_ in slot.rounds)
    assert all(slot.idle for slot in fresh.slots)
    # Slot 1 (global 11): set 1 aggregates block 7 of tensor 5 (round_next 0), which worker 1 still announces;
    # set 0 holds the complete round before it (block 3, next 7).
    valid = constants.TENSOR_VALID
    aggregating_cell, complete_cell = program.round_cell(11, 1), program.round_cell(11, 0)
    switch.write_registers(program.ROUND_TENSOR, {aggregating_cell: valid | 5})
    switch.write_registers(program.ROUND_BLOCK, {aggregating_cell: 7})
    switch.write_registers(program.ROUND_TENSOR, {complete_cell: valid | 5})
    switch.write_registers(program.ROUND_BLOCK, {complete_cell: 3})
    switch.write_registers(program.ROUND_NEXT, {complete_cell: 7})
    switch.write_registers(program.SLOT_TENSOR, {11: valid | 5})
    # Worker 0 announced 9, worker 1 block 7, worker 2 END_OF_TENSOR (lanes of 32 bits, WORKERS_PER_GROUP a cell).
    announced = [9, 7, constants.END_OF_TENSOR]
    per_group = constants.WORKERS_PER_GROUP
    cells: dict[int, int] = {}
    for worker, block in enumerate(announced):
        cells[worker // per_group] = cells.get(worker // per_group, 0) | (block << (32 * (worker % per_group)))
    for group, cell in cells.items():
        switch.write_registers(program.WORKER_NEXT_GROUPS[group], {11: cell})
    slot = read_status(switch, 1)[0].slots[1]
    assert slot.tensor == 5 and slot.worker_next == (9, 7, constants.END_OF_TENSOR)
    complete, aggregating = slot.rounds[:2]
    assert (complete.state_name, complete.block, complete.next_block) == ("complete", 3, 7)
    assert (aggregating.state_name, aggregating.tensor, aggregating.block) == ("aggregating", 5, 7)
    assert slot.in_flight == (aggregating,) and slot.waiting_for() == (1,)
    assert [round_.state_name for round_ in slot.rounds[2:]] == ["idle"] * (constants.SETS - 2)
    assert read_status(switch, 1)[0].slots[0] == fresh.slots[0]


def test_counters_are_decoded_with_reason_names(switch: Switch) -> None:
    assert read_counters(switch).drops == ()
    switch.modify([CounterEntry(program.INGRESS_DROPS, constants.DROP_UNKNOWN_WORKER, packets=2, bytes=380),
                   CounterEntry(program.EGRESS_DROPS, constants.DROP_NO_RESULT_DESTINATION, packets=1, bytes=190),
                   CounterEntry(program.PORT_RX, 3, packets=4, bytes=760),
                   CounterEntry(program.JOB_COUNTERS["results"], 1, packets=6, bytes=1140)])
    report = read_counters(switch)
    assert [(drop.pipe, drop.name, drop.reason, drop.count.packets) for drop in report.drops] == [
        ("ingress", "UNKNOWN_WORKER", constants.DROP_UNKNOWN_WORKER, 2),
        ("egress", "NO_RESULT_DESTINATION", constants.DROP_NO_RESULT_DESTINATION, 1)]
    assert report.port_rx[3].bytes == 760 and report.port_tx == {}
    assert report.jobs == {1: {"results": report.jobs[1]["results"]}} and report.jobs[1]["results"].packets == 6


# --- bad input: refused, nothing written ---------------------------------------------------------------------


@pytest.mark.parametrize("bad_job, message", [
    (make_job(job_id=1, slot_base=100, mcast_group=9, workers=range(20, 22)), "job 1 already exists"),
    (make_job(job_id=2, slot_base=3, slot_count=2, mcast_group=9, workers=range(20, 22)),
     "job 2: slots 3..4 overlap job 1's slots 0..3"),
    (make_job(job_id=2, slot_base=8, mcast_group=1, workers=range(20, 22)), "multicast group 1 is job 1's"),
    (make_job(job_id=2, slot_base=8, mcast_group=9, workers=range(2, 4)), "is already a worker of job 1"),
    (Job(2, 8, 1, 9, (make_worker(20), make_worker(20))), "duplicate of worker 0"),
    (make_job(job_id=2, slot_base=constants.SLOT_COUNT - 1, slot_count=2, mcast_group=9, workers=range(20, 22)),
     "exceed the switch's"),
    (make_job(job_id=2, slot_base=8, mcast_group=9, workers=range(20, 20 + constants.MAX_WORKERS + 1)),
     "more than MAX_WORKERS"),
    (make_job(job_id=constants.MAX_JOBS, slot_base=8, mcast_group=9, workers=range(20, 22)),
     f"job id must be in 0..{constants.MAX_JOBS - 1}"),
])
def test_bad_jobs_are_refused_with_nothing_written(switch: Switch, bad_job: Job, message: str) -> None:
    add_job(switch, make_job(job_id=1, slot_base=0, slot_count=4, mcast_group=1))
    dirty_slots(switch, range(8, 9), value=2)  # state of slots no valid job owns must not be touched either
    before = switch_state(switch)
    with pytest.raises(BadInputError, match=message):
        add_job(switch, bad_job)
    assert switch_state(switch) == before
    assert set(switch.read_register(program.SLOT_TENSOR, [8]).values()) == {2}


def test_remove_unknown_job(switch: Switch) -> None:
    with pytest.raises(BadInputError, match=r"no job 5 on switch .* \(installed jobs: none\)"):
        remove_job(switch, 5)


def test_failure_half_way_rolls_back(switch: Switch, monkeypatch: pytest.MonkeyPatch) -> None:
    empty = switch_state(switch)
    real_insert = switch.insert

    def refuse_the_jobs_entry(entities):
        if any(getattr(entity, "table", None) == program.JOBS_TABLE for entity in entities):
            raise P4RuntimeError("Write", "RESOURCE_EXHAUSTED", "table full (injected)")
        real_insert(entities)

    monkeypatch.setattr(switch, "insert", refuse_the_jobs_entry)
    with pytest.raises(P4RuntimeError, match="injected"):
        add_job(switch, make_job())
    assert switch_state(switch) == empty


def test_a_refused_update_is_named_and_rolled_back(switch: Switch) -> None:
    """A real refusal by the switch (a worker key taken between validation and install) is rolled back, and the
    rollback deletes only what this install wrote, not the other controller's entry."""
    empty = switch_state(switch)
    job = make_job(job_id=1)
    # Make the third batch (workers) fail on the switch: a worker entry with the same key exists already,
    # hidden from the conflict check because it is written between validation and install.
    original = switch.insert
    calls = []

    def insert_and_collide(entities):
        calls.append(entities)
        if len(calls) == 3:  # just before the workers batch, another controller takes a worker's key
            original([worker_entry(9, 0, job.workers[1])])
        original(entities)

    switch.insert = insert_and_collide  # type: ignore[method-assign]
    try:
        with pytest.raises(P4RuntimeError) as raised:
            add_job(switch, job)
    finally:
        switch.insert = original  # type: ignore[method-assign]
    failure = raised.value.failures
    assert [f.code for f in failure] == ["ALREADY_EXISTS"] and failure[0].index == 1
    assert "udp_src_port=20308" in failure[0].update
    # Only the intruder's entry is left: nothing of job 1.
    state = switch_state(switch)
    assert state["groups"] == empty["groups"] and state[program.JOBS_TABLE] == []
    assert state[program.RESULT_DESTINATIONS_TABLE] == []
    assert len(state[program.WORKERS_TABLE]) == 1


def test_unreachable_switch_fails_after_the_deadline() -> None:
    address = f"127.0.0.1:{free_tcp_port()}"
    started = time.monotonic()
    with pytest.raises(SwitchUnreachableError, match=f"no P4Runtime server answered at {address} within 0.5 s"):
        Switch.connect(address, timeout=0.5)
    assert time.monotonic() - started < 5.0


def test_a_backup_controller_may_read_but_not_write(softswitch: RunningSoftswitch) -> None:
    primary = softswitch.connect(election_id=ElectionId(0, 10))
    add_job(primary, make_job())
    with pytest.raises(NotPrimaryError, match="not primary: election id 0,2 lost"):
        softswitch.connect(election_id=ElectionId(0, 2))
    reader = softswitch.connect(election_id=ElectionId(0, 2), require_primary=False)
    assert not reader.is_primary
    assert list(read_jobs(reader)) == [1]
    with pytest.raises(NotPrimaryError, match="read-only session"):
        remove_job(reader, 1)
    assert list(read_jobs(primary)) == [1]


def test_a_reader_may_use_the_writers_election_id(softswitch: RunningSoftswitch) -> None:
    writer = softswitch.connect(election_id=ElectionId(0, 1))
    reader = softswitch.connect(election_id=ElectionId(0, 1), require_primary=False)
    add_job(writer, make_job())
    assert list(read_jobs(reader)) == [1]


# --- routes --------------------------------------------------------------------------------------------------


def test_routes(switch: Switch) -> None:
    host = Route(ipaddress.IPv4Network("10.0.0.1/32"), 1, 0x020000000100, 0x020000000001)
    subnet = Route(ipaddress.IPv4Network("10.1.0.0/16"), 2, 0x020000000100, 0x020000000002)
    add_routes(switch, [host, subnet])
    assert read_routes(switch) == [host, subnet]
    with pytest.raises(BadInputError, match="a route to 10.0.0.1/32 already exists"):
        add_routes(switch, [Route(host.prefix, 3, 1, 1)])
    with pytest.raises(BadInputError, match="port 511 is v1model's drop port"):
        add_routes(switch, [Route(ipaddress.IPv4Network("10.2.0.0/16"), 511, 1, 1)])
    assert remove_route(switch, host.prefix) == host
    with pytest.raises(BadInputError, match=r"no route to 10.0.0.1/32 .* \(routes: 10.1.0.0/16\)"):
        remove_route(switch, host.prefix)
    assert read_routes(switch) == [subnet]


def test_status_carries_the_job_counters(switch: Switch) -> None:
    add_job(switch, make_job(job_id=2, slot_base=0, slot_count=2))
    switch.modify([CounterEntry(program.JOB_COUNTERS["contributions"], 2, packets=12, bytes=2280),
                   CounterEntry(program.JOB_COUNTERS["forwards"], 2, packets=1, bytes=62),
                   CounterEntry(program.JOB_COUNTERS["results"], 3, packets=99, bytes=1)])  # another job's
    counters = read_status(switch, 2)[0].counters
    assert {kind: (count.packets, count.bytes) for kind, count in counters.items()} == {
        "contributions": (12, 2280), "results": (0, 0), "replays": (0, 0), "forwards": (1, 62)}


def test_a_refusal_in_a_later_batch_is_named_by_its_position_in_the_whole_write(
        switch: Switch, monkeypatch: pytest.MonkeyPatch) -> None:
    from omnireduce.controller import switch as switch_module
    from omnireduce.controller.routes import route_entry

    monkeypatch.setattr(switch_module, "WRITE_BATCH", 10)
    routes = [route_entry(Route(ipaddress.IPv4Network(f"10.3.{n}.0/24"), 1, 1, 2)) for n in range(15)]
    routes[12] = routes[3]  # a duplicate key in the second batch
    with pytest.raises(P4RuntimeError) as raised:
        switch.insert(routes)
    (failure,) = raised.value.failures
    assert failure.index == 12 and failure.code == "ALREADY_EXISTS"
    assert "dst_addr=0xa030300/24" in failure.update
    assert len(read_routes(switch)) == 14  # CONTINUE_ON_ERROR: the others were written


def test_a_multicast_group_no_job_owns_is_not_taken_over(switch: Switch) -> None:
    switch.insert([MulticastGroupEntry(4, (Replica(9, 0),))])
    with pytest.raises(BadInputError, match="multicast group 4 already exists on the switch"):
        add_job(switch, make_job(mcast_group=4))
    assert switch.read_multicast_groups()[4].replicas == (Replica(9, 0),)
    assert read_jobs(switch) == {}
