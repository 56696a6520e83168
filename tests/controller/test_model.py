# Run: /work/main/.venv/bin/pytest tests/controller/test_model.py
"""Job validation on its own and against installed jobs: every bad input gets a message that names it."""

from __future__ import annotations

import pytest

from omnireduce.controller.errors import BadInputError
from omnireduce.controller.model import (
    Job,
    JobFootprint,
    Limits,
    Worker,
    job_conflicts,
    job_problems,
    validate_job,
    validate_jobs_together,
)
from omnireduce.p4src import constants


def make_worker(n: int, port: int | None = None, udp_port: int = constants.OMNI_UDP_PORT) -> Worker:
    return Worker(n if port is None else port, 0x020000000000 + n, 0x0A000000 + n, udp_port)


def make_job(job_id: int = 1, slot_base: int = 0, slot_count: int = 4, mcast_group: int = 1,
             workers: int = 2) -> Job:
    return Job(job_id, slot_base, slot_count, mcast_group, tuple(make_worker(n + 1) for n in range(workers)))


def test_worker_parse() -> None:
    assert Worker.parse("3,02:00:00:00:00:03,10.0.0.3") == Worker(3, 0x020000000003, 0x0A000003,
                                                                   constants.OMNI_UDP_PORT)
    assert Worker.parse(" 3, 02:00:00:00:00:03 ,10.0.0.3,4000").udp_port == 4000
    with pytest.raises(BadInputError, match="expected PORT,MAC,IP"):
        Worker.parse("3,02:00:00:00:00:03")
    with pytest.raises(BadInputError, match="'x' is not an integer"):
        Worker.parse("x,02:00:00:00:00:03,10.0.0.3")
    with pytest.raises(BadInputError, match="not a MAC address"):
        Worker.parse("3,02:00:00:00:00,10.0.0.3")
    with pytest.raises(BadInputError, match="not an IPv4 address"):
        Worker.parse("3,02:00:00:00:00:03,10.0.0.300")


def test_a_valid_job_has_no_problems() -> None:
    assert job_problems(make_job()) == []
    largest = Job(constants.MAX_JOBS - 1, 0, constants.SLOT_COUNT, 0xFFFF,
                  tuple(make_worker(n + 1) for n in range(constants.MAX_WORKERS)))
    assert job_problems(largest) == []


@pytest.mark.parametrize("job, message", [
    (make_job(job_id=constants.MAX_JOBS), f"job id must be in 0..{constants.MAX_JOBS - 1}"),
    (make_job(slot_base=constants.SLOT_COUNT - 2, slot_count=4), "exceed the switch's 512 slots"),
    (make_job(slot_count=0), "slot count must be at least 1"),
    (make_job(mcast_group=0), "multicast group must be in 1..65535"),
    (make_job(mcast_group=0x10000), "multicast group must be in 1..65535"),
    (make_job(workers=0), "no workers"),
    (make_job(workers=constants.MAX_WORKERS + 1), f"more than MAX_WORKERS = {constants.MAX_WORKERS}"),
    (Job(1, 0, 4, 1, (make_worker(1), make_worker(1))), "duplicate of worker 0 (same port, IP and UDP port)"),
    (Job(1, 0, 4, 1, (make_worker(1), make_worker(1, port=9))), "same IP and UDP port as worker 0"),
    (Job(1, 0, 4, 1, (make_worker(1, port=511),)), "port 511 is v1model's drop port"),
    (Job(1, 0, 4, 1, (make_worker(1, port=512),)), "port 512 outside 0..511"),
    (Job(1, 0, 4, 1, (make_worker(1, udp_port=0),)), "UDP port must be in 1..65535"),
])
def test_job_problems(job: Job, message: str) -> None:
    problems = job_problems(job)
    assert any(message in problem for problem in problems), problems
    with pytest.raises(BadInputError, match="cannot install job"):
        validate_job(job)


def test_limits_are_parameters() -> None:
    assert job_problems(make_job(workers=3), Limits(max_jobs=64, max_workers=2, slot_count=512))
    assert not job_problems(make_job(workers=3), Limits(max_jobs=64, max_workers=3, slot_count=512))


def test_conflicts_with_installed_jobs() -> None:
    installed = [JobFootprint.of(make_job(job_id=1, slot_base=0, slot_count=8, mcast_group=1))]
    assert job_conflicts(make_job(job_id=2, slot_base=8, mcast_group=2, workers=0) , installed) == []
    same_id = job_conflicts(make_job(job_id=1, slot_base=100, mcast_group=5), installed)
    assert same_id == ["job 1 already exists; remove it first (omnireduce-ctl job rm 1)"]
    overlap = job_conflicts(make_job(job_id=2, slot_base=7, slot_count=2, mcast_group=2, workers=0), installed)
    assert overlap == ["job 2: slots 7..8 overlap job 1's slots 0..7"]
    group = job_conflicts(make_job(job_id=2, slot_base=8, mcast_group=1, workers=0), installed)
    assert group == ["job 2: multicast group 1 is job 1's"]
    shared_worker = Job(2, 8, 1, 2, (make_worker(2),))
    assert job_conflicts(shared_worker, installed) == [
        f"job 2 worker 0 ({make_worker(2)}) is already a worker of job 1"]
    orphan_group = job_conflicts(make_job(job_id=2, slot_base=8, mcast_group=9, workers=0), installed, [1, 9])
    assert orphan_group == ["job 2: multicast group 9 already exists on the switch (no job owns it); "
                            "pick another group"]
    # A half-installed job (no jobs entry, so no slot range) still owns its workers.
    partial = [JobFootprint(3, None, None, (make_worker(5).identity,))]
    assert job_conflicts(Job(2, 8, 1, 2, (make_worker(5),)), partial) == [
        f"job 2 worker 0 ({make_worker(5)}) is already a worker of job 3"]


def test_validate_jobs_together_reports_every_problem() -> None:
    jobs = [make_job(job_id=1, slot_base=0, slot_count=8), make_job(job_id=1, slot_base=4, slot_count=8),
            make_job(job_id=constants.MAX_JOBS)]
    with pytest.raises(BadInputError) as raised:
        validate_jobs_together(jobs)
    message = str(raised.value)
    assert "job 1 already exists" in message
    assert f"job {constants.MAX_JOBS}: job id must be" in message
