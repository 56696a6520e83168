# Run: /work/main/.venv/bin/pytest tests/controller/test_config.py
"""Config files (TOML): jobs and routes parse into values; every mistake is reported with file and location."""

from __future__ import annotations

from pathlib import Path

import pytest

from omnireduce.controller.config import load_config, parse_config
from omnireduce.controller.errors import ConfigError
from omnireduce.controller.model import Job, Worker
from omnireduce.p4src import constants

GOOD = """
[[job]]
id = 1
slot_base = 0
slot_count = 8
mcast_group = 1

[[job.worker]]
port = 1
mac = "02:00:00:00:00:01"
ip = "10.0.0.1"

[[job.worker]]
port = 2
mac = "02:00:00:00:00:02"
ip = "10.0.0.2"
udp_port = 4000

[[job]]
id = 2
slot_base = 8
slot_count = 4
mcast_group = 2
worker = [{ port = 3, mac = "02:00:00:00:00:03", ip = "10.0.0.3" }]

[[route]]
prefix = "10.0.0.1/32"
port = 1
src_mac = "02:00:00:00:01:00"
dst_mac = "02:00:00:00:00:01"
"""


def test_good_config(tmp_path: Path) -> None:
    path = tmp_path / "jobs.toml"
    path.write_text(GOOD)
    config = load_config(path)
    assert config.jobs[0] == Job(1, 0, 8, 1, (Worker(1, 0x020000000001, 0x0A000001, constants.OMNI_UDP_PORT),
                                              Worker(2, 0x020000000002, 0x0A000002, 4000)))
    assert config.jobs[1].workers == (Worker(3, 0x020000000003, 0x0A000003),)
    assert [str(route.prefix) for route in config.routes] == ["10.0.0.1/32"]
    assert config.routes[0].dst_mac == 0x020000000001


def _error(text: str) -> str:
    with pytest.raises(ConfigError) as raised:
        parse_config(text, "jobs.toml")
    return str(raised.value)


def test_toml_syntax_error() -> None:
    assert "jobs.toml: not valid TOML" in _error("[[job]\nid = 1")


def test_unknown_keys_are_errors_with_suggestions() -> None:
    message = _error(GOOD.replace("slot_base = 0", "slotbase = 0").replace('udp_port = 4000', 'udpport = 4000')
                     + "\n[extra]\n")
    assert "jobs.toml: job[0]: unknown key 'slotbase'. Did you mean 'slot_base'?" in message
    assert "jobs.toml: job[0]: missing key 'slot_base'" in message
    assert "jobs.toml: job[0].worker[1]: unknown key 'udpport'. Did you mean 'udp_port'?" in message
    assert "jobs.toml: unknown key 'extra'." in message


def test_bad_values_name_their_location() -> None:
    message = _error(GOOD.replace('mac = "02:00:00:00:00:02"', 'mac = "02:00:00:00:00"')
                     .replace("port = 1\nmac", 'port = "1"\nmac').replace('prefix = "10.0.0.1/32"',
                                                                          'prefix = "10.0.0.1/24"'))
    assert "jobs.toml: job[0].worker[1].mac: '02:00:00:00:00' is not a MAC address" in message
    assert "jobs.toml: job[0].worker[0].port: expected an integer, got '1'" in message
    assert "jobs.toml: route[0].prefix: '10.0.0.1/24' is not an IPv4 prefix" in message


def test_missing_workers() -> None:
    assert "job[0]: missing workers" in _error("[[job]]\nid = 1\nslot_base = 0\nslot_count = 1\nmcast_group = 1\n")
    assert "job[0]: has no workers" in _error(
        "[[job]]\nid = 1\nslot_base = 0\nslot_count = 1\nmcast_group = 1\nworker = []\n")


def test_jobs_are_validated_alone_and_together() -> None:
    too_many = GOOD.replace("id = 2", f"id = {constants.MAX_JOBS}")
    assert f"job {constants.MAX_JOBS}: job id must be in 0..{constants.MAX_JOBS - 1}" in _error(too_many)
    overlap = GOOD.replace("slot_base = 8", "slot_base = 7")
    assert "job 2: slots 7..10 overlap job 1's slots 0..7" in _error(overlap)
    shared = GOOD.replace('port = 3, mac = "02:00:00:00:00:03", ip = "10.0.0.3"',
                          'port = 1, mac = "02:00:00:00:00:01", ip = "10.0.0.1"')
    assert "is already a worker of job 1" in _error(shared)
    assert "route to 10.0.0.1/32 given more than once" in _error(GOOD + GOOD[GOOD.index("[[route]]"):])


def test_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read config"):
        load_config(tmp_path / "nope.toml")
