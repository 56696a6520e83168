# Run: .venv/bin/pytest tests/controller/test_p4runtime_shell.py
"""An independent P4Runtime client (p4runtime-shell, with its own P4Info handling, encoders and protobuf bindings,
run in its own venv: tests/clients/) checks what the controller wrote, and the controller reads what the shell
wrote (in the shell's padded byte form)."""

from __future__ import annotations

import ipaddress

import pytest

from omnireduce.controller import program
from omnireduce.controller.client import ElectionId
from omnireduce.controller.jobs import add_job
from omnireduce.controller.model import Job, Route, Worker
from omnireduce.controller.routes import add_routes, read_routes

from tests.clients.venvs import P4RUNTIME_SHELL, Client, client_or_skip
from tests.controller.conftest import RunningSoftswitch

# The controller connects with election id (0, 1): the shell must be higher to be primary.
SHELL_ELECTION = ("--device-id", "0", "--election-id", "2")


@pytest.fixture(scope="module")
def shell_client() -> Client:
    return client_or_skip(P4RUNTIME_SHELL)


def test_shell_sees_the_job_the_controller_installed(softswitch: RunningSoftswitch, shell_client: Client) -> None:
    job = Job(3, 8, 4, 5, (Worker(1, 0x020000000001, 0x0A000001, 20306), Worker(4, 0x020000000004, 0x0A000004, 7)))
    with softswitch.connect() as switch:
        add_job(switch, job)
    observed = shell_client.run("read-job-tables", softswitch.address, *SHELL_ELECTION, "--tables",
                                program.WORKERS_TABLE, program.JOBS_TABLE, program.RESULT_DESTINATIONS_TABLE)
    workers = sorted((match["ingress_port"], match["src_addr"], match["udp_src_port"], action, params["job_id"],
                      params["worker_id"]) for match, action, params in observed[program.WORKERS_TABLE])
    assert workers == [(1, 0x0A000001, 20306, program.SET_WORKER, 3, 0), (4, 0x0A000004, 7, program.SET_WORKER, 3, 1)]
    ((match, _, params),) = observed[program.JOBS_TABLE]
    assert match["job_id"] == 3
    assert [params[name] for name in ("slot_base", "slot_count", "worker_count", "mcast_grp")] == [8, 4, 2, 5]
    destinations = sorted((match["worker_id"], params["dst_mac"], params["dst_addr"], params["udp_dst_port"])
                          for match, _, params in observed[program.RESULT_DESTINATIONS_TABLE])
    assert destinations == [(0, 0x020000000001, 0x0A000001, 20306), (1, 0x020000000004, 0x0A000004, 7)]
    assert observed["group_5"] == [[1, 0], [4, 1]]


def test_controller_reads_what_the_shell_wrote(softswitch: RunningSoftswitch, shell_client: Client) -> None:
    shell_client.run("insert-route", softswitch.address, *SHELL_ELECTION, "--tables", program.IPV4_ROUTES_TABLE,
                     "--action", program.ROUTE)
    with softswitch.connect(require_primary=False) as reader:
        assert read_routes(reader) == [Route(ipaddress.IPv4Network("10.9.0.0/16"), 7, 0x020000000100,
                                             0x020000000009)]
    # The switch remembers the shell's election id (0,2) as the highest seen: a writer must now use a higher one.
    with softswitch.connect(election_id=ElectionId(0, 3)) as writer:
        add_routes(writer, [Route(ipaddress.IPv4Network("10.8.0.1/32"), 2, 1, 2)])
        assert [str(route.prefix) for route in read_routes(writer)] == ["10.8.0.1/32", "10.9.0.0/16"]
