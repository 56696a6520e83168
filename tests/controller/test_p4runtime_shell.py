# Run: /work/main/.venv/bin/pytest tests/controller/test_p4runtime_shell.py
"""An independent P4Runtime client (p4runtime-shell, with its own P4Info handling and encoders) checks what the
controller wrote, and the controller reads what the shell wrote (in the shell's padded byte form)."""

from __future__ import annotations

import ipaddress

import p4runtime_sh.shell as sh

from omnireduce.controller import program
from omnireduce.controller.client import ElectionId
from omnireduce.controller.jobs import add_job
from omnireduce.controller.model import Job, Route, Worker
from omnireduce.controller.routes import add_routes, read_routes

from tests.controller.conftest import RunningSoftswitch


def _int(value: bytes) -> int:
    return int.from_bytes(value, "big")


def test_shell_sees_the_job_the_controller_installed(softswitch: RunningSoftswitch) -> None:
    job = Job(3, 8, 4, 5, (Worker(1, 0x020000000001, 0x0A000001, 20306), Worker(4, 0x020000000004, 0x0A000004, 7)))
    with softswitch.connect() as switch:
        add_job(switch, job)
    sh.setup(device_id=0, grpc_addr=softswitch.address, election_id=(0, 2), config=None, verbose=False)
    try:
        workers = sorted(((_int(e.match["ingress_port"].exact.value), _int(e.match["src_addr"].exact.value),
                           _int(e.match["udp_src_port"].exact.value), e.action.action_name,
                           _int(e.action["job_id"].value), _int(e.action["worker_id"].value))
                          for e in sh.TableEntry(program.WORKERS_TABLE).read()))
        assert workers == [(1, 0x0A000001, 20306, program.SET_WORKER, 3, 0),
                           (4, 0x0A000004, 7, program.SET_WORKER, 3, 1)]
        (jobs_entry,) = list(sh.TableEntry(program.JOBS_TABLE).read())
        assert _int(jobs_entry.match["job_id"].exact.value) == 3
        assert [_int(jobs_entry.action[name].value) for name in ("slot_base", "slot_count", "worker_count",
                                                                 "mcast_grp")] == [8, 4, 2, 5]
        destinations = sorted((_int(e.match["worker_id"].exact.value), _int(e.action["dst_mac"].value),
                               _int(e.action["dst_addr"].value), _int(e.action["udp_dst_port"].value))
                              for e in sh.TableEntry(program.RESULT_DESTINATIONS_TABLE).read())
        assert destinations == [(0, 0x020000000001, 0x0A000001, 20306), (1, 0x020000000004, 0x0A000004, 7)]
        (group,) = list(sh.MulticastGroupEntry(5).read())
        assert sorted((replica._msg.egress_port, replica._msg.instance) for replica in group.replicas) == [(1, 0), (4, 1)]
    finally:
        sh.teardown()


def test_controller_reads_what_the_shell_wrote(softswitch: RunningSoftswitch) -> None:
    sh.setup(device_id=0, grpc_addr=softswitch.address, election_id=(0, 2), config=None, verbose=False)
    try:
        route = sh.TableEntry(program.IPV4_ROUTES_TABLE)(action=program.ROUTE)
        route.match["dst_addr"] = "10.9.0.0/16"
        route.action["port"] = "7"
        route.action["src_mac"] = "02:00:00:00:01:00"
        route.action["dst_mac"] = "02:00:00:00:00:09"
        route.insert()
    finally:
        sh.teardown()
    with softswitch.connect(require_primary=False) as reader:
        assert read_routes(reader) == [Route(ipaddress.IPv4Network("10.9.0.0/16"), 7, 0x020000000100,
                                             0x020000000009)]
    # The switch remembers the shell's election id (0,2) as the highest seen: a writer must now use a higher one.
    with softswitch.connect(election_id=ElectionId(0, 3)) as writer:
        add_routes(writer, [Route(ipaddress.IPv4Network("10.8.0.1/32"), 2, 1, 2)])
        assert [str(route.prefix) for route in read_routes(writer)] == ["10.8.0.1/32", "10.9.0.0/16"]
