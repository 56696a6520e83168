# Run: /work/main/.venv/bin/pytest tests/controller/test_cli.py
"""omnireduce-ctl end to end against the softswitch: every command, --json output, and the exit codes that say
what went wrong (2 bad input, 3 unreachable, 4 refused, 5 not primary, 6 pipeline mismatch)."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from omnireduce.controller import cli
from omnireduce.controller.client import ElectionId
from omnireduce.controller.config import parse_config
from omnireduce.controller.errors import (
    EXIT_BAD_INPUT,
    EXIT_NOT_PRIMARY,
    EXIT_OK,
    EXIT_PIPELINE_MISMATCH,
    EXIT_SWITCH_REFUSED,
    EXIT_UNREACHABLE,
)
from omnireduce.p4src import constants

from tests.controller.conftest import RunningSoftswitch, free_tcp_port
from tests.controller.helpers import run_ctl as run

WORKERS = ["--worker", "1,02:00:00:00:00:01,10.0.0.1", "--worker", "2,02:00:00:00:00:02,10.0.0.2,4000"]
JOB_1 = ["job", "add", "--job", "1", "--slot-base", "0", "--slots", "4", "--mcast-group", "1", *WORKERS]

CONFIG = """
[[job]]
id = 2
slot_base = 4
slot_count = 2
mcast_group = 2
[[job.worker]]
port = 3
mac = "02:00:00:00:00:03"
ip = "10.0.0.3"
[[job.worker]]
port = 4
mac = "02:00:00:00:00:04"
ip = "10.0.0.4"

[[route]]
prefix = "10.0.0.3/32"
port = 3
src_mac = "02:00:00:00:01:00"
dst_mac = "02:00:00:00:00:03"
"""


def test_push_then_info(softswitch_server: RunningSoftswitch) -> None:
    result = softswitch_server.ctl("info")
    assert result.code == EXIT_OK and "pipeline: none: the switch serves no P4Info" in result.out
    result = softswitch_server.ctl("push", "--json", str(softswitch_server.files.bmv2_json))
    assert result.code == EXIT_OK, result.err
    assert "pushed" in result.out
    info = json.loads(softswitch_server.ctl("--json", "info").out)
    assert info["pipeline"] == "omnireduce (matches our P4Info)" and info["p4runtime_api_version"]


def test_job_lifecycle(softswitch: RunningSoftswitch, tmp_path: Path) -> None:
    assert softswitch.ctl(*JOB_1).code == EXIT_OK
    config = tmp_path / "jobs.toml"
    config.write_text(CONFIG)
    added = softswitch.ctl("job", "add", "--config", str(config), "--json")
    assert added.code == EXIT_OK, added.err
    assert [job["job_id"] for job in json.loads(added.out)] == [2]

    jobs = json.loads(softswitch.ctl("job", "list", "--json").out)
    assert [(job["job_id"], job["slot_base"], job["slot_count"], job["mcast_group"]) for job in jobs] == [
        (1, 0, 4, 1), (2, 4, 2, 2)]
    assert jobs[0]["workers"] == [
        {"worker_id": 0, "port": 1, "mac": "02:00:00:00:00:01", "ip": "10.0.0.1", "udp_port": constants.OMNI_UDP_PORT},
        {"worker_id": 1, "port": 2, "mac": "02:00:00:00:00:02", "ip": "10.0.0.2", "udp_port": 4000}]
    assert jobs[0]["problems"] == [] and jobs[0]["replicas"] == [{"port": 1, "instance": 0},
                                                                 {"port": 2, "instance": 1}]
    listing = softswitch.ctl("job", "list").out
    assert "02:00:00:00:00:02  10.0.0.2  4000" in listing

    status = json.loads(softswitch.ctl("status", "--job", "2", "--json").out)
    assert [slot["global_slot"] for slot in status[0]["slots"]] == [4, 5]
    assert status[0]["slots"][0]["sets"][0]["state"] == "idle"
    assert status[0]["slots"][0]["worker_next"] == [0, 0]
    assert "idle" in softswitch.ctl("status").out

    entries = json.loads(softswitch.ctl("--json", "entries", "workers").out)
    assert len(entries) == 4 and {entry["action"]["params"]["job_id"] for entry in entries} == {1, 2}
    assert softswitch.ctl("reset", "--job", "1").code == EXIT_OK
    assert "no drops" in softswitch.ctl("counters").out
    assert json.loads(softswitch.ctl("counters", "--json").out)["drops"] == []

    assert softswitch.ctl("job", "rm", "1").code == EXIT_OK
    assert [job["job_id"] for job in json.loads(softswitch.ctl("job", "list", "--json").out)] == [2]
    assert softswitch.ctl("job", "rm", "2").code == EXIT_OK
    assert softswitch.ctl("job", "list").out.strip() == "no jobs installed"
    assert json.loads(softswitch.ctl("entries", "--json").out) == []


def test_routes(softswitch: RunningSoftswitch, tmp_path: Path) -> None:
    add = softswitch.ctl("route", "add", "10.0.0.1/32", "--port", "1", "--src-mac", "02:00:00:00:01:00",
                         "--dst-mac", "02:00:00:00:00:01")
    assert add.code == EXIT_OK, add.err
    config = tmp_path / "routes.toml"
    config.write_text(CONFIG)
    assert softswitch.ctl("route", "add", "--config", str(config)).code == EXIT_OK
    routes = json.loads(softswitch.ctl("route", "list", "--json").out)
    assert [route["prefix"] for route in routes] == ["10.0.0.1/32", "10.0.0.3/32"]
    again = softswitch.ctl("route", "add", "10.0.0.1/32", "--port", "2", "--src-mac", "02:00:00:00:01:00",
                           "--dst-mac", "02:00:00:00:00:01")
    assert again.code == EXIT_BAD_INPUT and "already exists" in again.err
    assert softswitch.ctl("route", "rm", "10.0.0.1/32").code == EXIT_OK
    assert softswitch.ctl("route", "rm", "10.0.0.1/32").code == EXIT_BAD_INPUT
    assert softswitch.ctl("route", "add", "10.0.0.9/32").code == EXIT_BAD_INPUT


@pytest.mark.parametrize("argv, message", [
    (["job", "add", "--job", "1", "--slot-base", "0", "--slots", "4", "--mcast-group", "1",
      "--worker", "1,02:00:00:00:00:01"], "expected PORT,MAC,IP"),
    (["job", "add", "--job", "1", "--slots", "4", "--mcast-group", "1", *WORKERS], "needs --slot-base"),
    (["job", "add", "--job", str(constants.MAX_JOBS), "--slot-base", "0", "--slots", "4", "--mcast-group", "1",
      *WORKERS], f"job id must be in 0..{constants.MAX_JOBS - 1}"),
    (["job", "add", "--job", "2", "--slot-base", "510", "--slots", "4", "--mcast-group", "1", *WORKERS],
     "exceed the switch's 512 slots"),
    (["job", "add", "--job", "2", "--slot-base", "2", "--slots", "4", "--mcast-group", "2",
      "--worker", "7,02:00:00:00:00:07,10.0.0.7"], "overlap job 1's slots 0..3"),
    (["job", "add", "--job", "2", "--slot-base", "8", "--slots", "4", "--mcast-group", "2", *WORKERS],
     "is already a worker of job 1"),
    (["job", "rm", "7"], "no job 7 on switch"),
    (["reset", "--job", "7"], "no job 7 on switch"),
    (["entries", "worker"], "Did you mean 'IngressPipe.identity.workers'?"),
    (["status", "--job", "-1"], "is negative"),
    (["--election-id", "x", "job", "list"], "is not HI,LO"),
    (["--grpc-addr", "localhost", "job", "list"], "is not HOST:PORT"),
])
def test_bad_input_exits_2_and_changes_nothing(softswitch: RunningSoftswitch, argv: list[str], message: str) -> None:
    assert softswitch.ctl(*JOB_1).code == EXIT_OK
    before = softswitch.ctl("--json", "entries").out
    result = softswitch.ctl(*argv)
    assert result.code == EXIT_BAD_INPUT
    assert message in result.err
    assert softswitch.ctl("--json", "entries").out == before


@pytest.mark.parametrize("argv, message", [
    (["--timeout", "nan", "job", "list"], "argument --timeout: 'nan' is not a number of seconds"),
    (["--timeout", "inf", "job", "list"], "argument --timeout: 'inf' is not a finite number of seconds"),
    (["--timeout", "0", "job", "list"], "argument --timeout: 0 is not a positive number of seconds"),
    (["--grpc-addr", "127.0.0.1:0", "job", "list"], "port 0 is not in 1..65535"),
    (["--device-id", "x", "job", "list"], "argument --device-id: 'x' is not an integer"),
    (["--p4info", "/nonexistent/p4info.txtpb", "job", "list"], "no such file: /nonexistent/p4info.txtpb"),
    (["status", "--watch", "nan"], "argument --watch: 'nan' is not a number of seconds"),
    (["route", "add", "10.0.0.1/32", "--src-mac", "02:00"], "'02:00' is not a MAC address"),
])
def test_arguments_are_refused_before_any_switch_is_contacted(argv: list[str], message: str) -> None:
    code, _, err = run(*argv)
    assert code == EXIT_BAD_INPUT
    assert message in err


def test_integers_may_be_written_in_hex() -> None:
    args = cli.build_parser().parse_args(["--device-id", "0x10", "--grpc-addr", "localhost:50051", "job", "rm", "0x3"])
    assert (args.device_id, args.job_id, str(args.grpc_addr)) == (16, 3, "localhost:50051")


def test_a_refused_connection_fails_at_once_with_exit_3() -> None:
    # Without --timeout a refusal is reported at once; with it, connecting waits for a switch still starting
    # (test_switch_process.py: the first call waits for the process to serve).
    code, out, err = run("--grpc-addr", f"127.0.0.1:{free_tcp_port()}", "job", "list")
    assert code == EXIT_UNREACHABLE and out == ""
    assert err.startswith("omnireduce-ctl: error: no P4Runtime server at 127.0.0.1:")
    assert "the connection was refused" in err and "start the switch" in err


def test_a_server_that_does_not_answer_gets_the_timeout() -> None:
    import socket

    with socket.socket() as silent:  # accepts connections (the kernel does) but never speaks HTTP/2
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        code, _, err = run("--grpc-addr", f"127.0.0.1:{silent.getsockname()[1]}", "--timeout", "0.5", "job", "list")
    assert code == EXIT_UNREACHABLE
    assert "no P4Runtime server answered" in err and "within 0.5 s" in err and "--timeout" in err


def test_json_errors_are_json_on_stdout() -> None:
    code, out, err = run("--json", "--grpc-addr", f"127.0.0.1:{free_tcp_port()}", "job", "list")
    assert code == EXIT_UNREACHABLE
    error = json.loads(out)
    assert error["ok"] is False and error["exit_code"] == EXIT_UNREACHABLE and error["kind"] == "SwitchUnreachableError"
    assert "the connection was refused" in error["error"] and "omnireduce-ctl: error:" in err
    code, out, _ = run("--json", "job", "rm", "x")
    assert code == EXIT_BAD_INPUT and json.loads(out)["error"].startswith("argument J: ")
    # After `push`, --json names a file: a usage error there is plain text.
    code, out, _ = run("push", "--json", "/nonexistent.json")
    assert code == EXIT_BAD_INPUT and out == ""


def test_unknown_device_exits_4(softswitch: RunningSoftswitch) -> None:
    result = softswitch.ctl("--device-id", "3", "job", "list")
    assert result.code == EXIT_SWITCH_REFUSED
    assert "NOT_FOUND" in result.err and "unknown device id 3" in result.err


def test_not_primary_exits_5(softswitch: RunningSoftswitch) -> None:
    softswitch.connect(election_id=ElectionId(0, 100))  # another controller, primary
    result = softswitch.ctl("--election-id", "0,5", *JOB_1)
    assert result.code == EXIT_NOT_PRIMARY and "not primary" in result.err
    # Reading needs no primacy.
    assert softswitch.ctl("--election-id", "0,5", "job", "list").code == EXIT_OK


def test_no_pipeline_exits_6(softswitch_server: RunningSoftswitch) -> None:
    result = softswitch_server.ctl("job", "list")
    assert result.code == EXIT_PIPELINE_MISMATCH and "runs no pipeline; push one first" in result.err


def test_help_documents_exit_codes() -> None:
    code, out, _ = run("--help")
    assert code == EXIT_OK
    for exit_code in ("0  success", "2  bad usage", "3  switch unreachable", "4  the switch refused",
                      "5  not the primary", "6  the switch runs no pipeline"):
        assert exit_code in out


def test_the_config_example_in_the_help_is_a_valid_config() -> None:
    # CONFIG_HELP teaches the file format by example; it must stay a file that loads.
    example = textwrap.dedent(cli.CONFIG_HELP.split("\n", 1)[1])
    config = parse_config(example, "CONFIG_HELP")
    assert [(job.job_id, job.slot_count, len(job.workers)) for job in config.jobs] == [(1, 8, 1)]
    assert [str(route.prefix) for route in config.routes] == ["10.0.0.1/32"]


def test_a_config_whose_second_job_conflicts_installs_nothing(softswitch: RunningSoftswitch, tmp_path: Path) -> None:
    assert softswitch.ctl(*JOB_1).code == EXIT_OK
    before = softswitch.ctl("--json", "entries").out
    config = tmp_path / "jobs.toml"
    # Job 2 alone is fine; job 3 overlaps the installed job 1, which only the switch knows.
    config.write_text(CONFIG + CONFIG.replace("id = 2", "id = 3").replace("slot_base = 4", "slot_base = 2")
                      .replace("mcast_group = 2", "mcast_group = 3").replace("port = 3\n", "port = 5\n")
                      .replace("port = 4\n", "port = 6\n").split("[[route]]")[0])
    result = softswitch.ctl("job", "add", "--config", str(config))
    assert result.code == EXIT_BAD_INPUT and "job 3: slots 2..3 overlap job 1's slots 0..3" in result.err
    assert softswitch.ctl("--json", "entries").out == before
    assert [job["job_id"] for job in json.loads(softswitch.ctl("--json", "job", "list").out)] == [1]


def test_entries_show_addresses_as_people_write_them(softswitch: RunningSoftswitch) -> None:
    assert softswitch.ctl(*JOB_1).code == EXIT_OK
    text = softswitch.ctl("entries", "result_destinations").out
    assert "set_result_destination(dst_mac=02:00:00:00:00:02, dst_addr=10.0.0.2, udp_dst_port=4000)" in text
    assert "src_addr=10.0.0.1" in softswitch.ctl("entries", "workers").out


def test_status_watch_repeats_until_interrupted(softswitch: RunningSoftswitch, monkeypatch: pytest.MonkeyPatch) -> None:
    assert softswitch.ctl(*JOB_1).code == EXIT_OK
    periods = []

    def sleep_then_interrupt(seconds: float) -> None:
        periods.append(seconds)
        if len(periods) == 2:
            raise KeyboardInterrupt  # what Ctrl-C does to a watching user

    monkeypatch.setattr(cli.time, "sleep", sleep_then_interrupt)
    result = softswitch.ctl("status", "--json", "--watch", "0.5")
    assert result.code == EXIT_OK and periods == [0.5, 0.5]
    snapshots = [json.loads(line) for line in result.out.splitlines()]  # one JSON document per line
    assert len(snapshots) == 2 and snapshots[0][0]["job"]["job_id"] == 1
    # From the second read on, each job's counters per second (results/s = rounds/s).
    assert "rates_per_s" not in snapshots[0][0] and snapshots[1][0]["rates_per_s"]["results"] == 0.0
    assert snapshots[1][0]["rates_over_s"] > 0


def test_rates_between_two_reads() -> None:
    from types import SimpleNamespace

    from omnireduce.controller.counters import Count
    from omnireduce.controller.render import rate_text
    from omnireduce.controller.status import counter_rates

    def status(job_id: int, results: int, contributions: int) -> SimpleNamespace:
        return SimpleNamespace(job=SimpleNamespace(job_id=job_id),
                               counters={"results": Count(results, 0), "contributions": Count(contributions, 0)})

    rates = counter_rates([status(1, 100, 300)], [status(1, 150, 400), status(2, 5, 5)], 2.0)
    assert rates == {1: {"results": 25.0, "contributions": 50.0}}  # job 2 appeared: no rate yet
    assert counter_rates([status(1, 1, 1)], [status(1, 2, 2)], 0.0) == {}
    assert rate_text(rates[1], 2.0) == "25.0 rounds/s, 50.0 contributions/s, 0.0 replays/s (over the last 2.0 s)"
