# Run: .venv/bin/pytest tests/softswitch/test_p4runtime_finsy.py
"""finsy, an independent asyncio P4Runtime client (its own P4Info schema, encoders and protobuf bindings, in a
venv of its own: tests/clients/), drives the softswitch server: it arbitrates and pushes the pipeline, then
programs and reads back tables, counters, registers and multicast groups, and clears everything with
delete_all()."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from google.protobuf import text_format

from conftest_p4rt import pipeline_under_test, running_server
from tests.clients.venvs import FINSY, Client, client_or_skip

DEVICE_ID = 1


@pytest.fixture(scope="module")
def finsy_client() -> Client:
    return client_or_skip(FINSY)


@dataclass(frozen=True)
class FinsyAgainstServer:
    client: Client
    address: str
    pipeline_args: tuple[str, ...]

    def run(self, scenario: str) -> dict:
        """Run a scenario of tests/clients/finsy_scenarios.py; finsy pushes the test pipeline first."""
        return self.client.run(scenario, self.address, "--device-id", str(DEVICE_ID), *self.pipeline_args)


@pytest.fixture
def finsy(finsy_client: Client, tmp_path: Path) -> Iterator[FinsyAgainstServer]:
    pipeline = pipeline_under_test()
    p4info_path, json_path = tmp_path / "program.p4info.txtpb", tmp_path / "program.json"
    p4info_path.write_text(text_format.MessageToString(pipeline.p4info))
    json_path.write_bytes(pipeline.device_config)
    with running_server(pipeline.make_device(), device_id=DEVICE_ID) as server:
        yield FinsyAgainstServer(finsy_client, server.bound_address,
                                 ("--p4info", str(p4info_path), "--json", str(json_path)))


def test_finsy_programs_and_reads_tables(finsy: FinsyAgainstServer) -> None:
    observed = finsy.run("tables")
    assert observed["prefix_len"] == 8 and observed["port_bytes"] == "03"
    assert observed["port_after_modify"] == 4
    assert observed["duplicate_insert"] == {"code": "UNKNOWN", "details": {"0": "ALREADY_EXISTS"}}
    assert observed["entries_after_delete"] == 0


def test_finsy_counters(finsy: FinsyAgainstServer) -> None:
    cells = finsy.run("counters")["cells"]
    assert cells == [[i, 5, 500] if i == 2 else [i, 0, 0] for i in range(len(cells))]


def test_finsy_registers(finsy: FinsyAgainstServer) -> None:
    cells = finsy.run("registers")["cells"]
    assert cells["3"] == 0xBEEF and cells["0"] == 0


def test_finsy_multicast_groups(finsy: FinsyAgainstServer) -> None:
    observed = finsy.run("multicast")
    assert observed["inserted"] == [[[1, 0], [2, 0]]]
    assert observed["modified"] == [[[3, 1]]]
    assert observed["after_delete"] == 0


def test_finsy_delete_all_clears_the_switch(finsy: FinsyAgainstServer) -> None:
    observed = finsy.run("delete-all")
    assert observed["entries_before"] == 2
    assert observed["entries_after"] == 0 and observed["groups_after"] == 0
    assert observed["lpm_default_restored"]
