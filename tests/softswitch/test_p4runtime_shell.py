# Run: .venv/bin/pytest tests/softswitch/test_p4runtime_shell.py
"""p4runtime-shell, an independent P4Runtime client (its own P4Info handling, encoders and protobuf bindings, in a
venv of its own: tests/clients/), drives the softswitch server end to end: connect and arbitrate, push the
pipeline, then program and read back tables, counters, registers and multicast groups."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from google.protobuf import text_format

from conftest_p4rt import pipeline_under_test, running_server
from omnireduce.p4src import artifacts
from omnireduce.softswitch.device import Device
from tests.clients.venvs import P4RUNTIME_SHELL, Client, client_or_skip

DEVICE_ID = 1


@pytest.fixture(scope="module")
def shell_client() -> Client:
    return client_or_skip(P4RUNTIME_SHELL)


@dataclass(frozen=True)
class ShellAgainstServer:
    client: Client
    address: str
    pipeline_args: tuple[str, ...]

    def run(self, scenario: str) -> dict:
        """Run a scenario of tests/clients/shell_scenarios.py; the shell pushes the test pipeline first."""
        return self.client.run(scenario, self.address, "--device-id", str(DEVICE_ID), *self.pipeline_args)


@pytest.fixture
def shell(shell_client: Client, tmp_path: Path) -> Iterator[ShellAgainstServer]:
    pipeline = pipeline_under_test()
    p4info_path, json_path = tmp_path / "program.p4info.txtpb", tmp_path / "program.json"
    p4info_path.write_text(text_format.MessageToString(pipeline.p4info))
    json_path.write_bytes(pipeline.device_config)
    with running_server(pipeline.make_device(), device_id=DEVICE_ID) as server:
        yield ShellAgainstServer(shell_client, server.bound_address,
                                 ("--p4info", str(p4info_path), "--json", str(json_path)))


def test_shell_programs_and_reads_tables(shell: ShellAgainstServer) -> None:
    observed = shell.run("tables")
    assert observed["api_version"].startswith("1.")
    assert observed["prefix_len"] == 8
    assert observed["port_bytes"] == "03"   # the shell sent the padded b"\x00\x03": we answer canonically
    assert observed["port_after_modify"] == 4
    assert "ALREADY_EXISTS" in observed["duplicate_insert_error"]
    assert observed["acl_priority"] == 5
    assert observed["acl_fields"] == ["hdr.ipv4.src_addr", "hdr.tcp.dst_port"]
    assert observed["lpm_entries_after_delete"] == 0


def test_shell_modifies_the_default_entry(shell: ShellAgainstServer) -> None:
    observed = shell.run("default-entry")
    assert observed["is_default"] and observed["action"] == "MyIngress.drop"
    assert "PERMISSION_DENIED" in observed["const_default_error"]


def test_shell_counters(shell: ShellAgainstServer) -> None:
    observed = shell.run("counters")
    cells = observed["cells"]
    assert cells == [[i, 5 if i == 2 else 0] for i in range(len(cells))]
    assert observed["direct_packets"] == [9]


def test_shell_registers_through_its_client(shell: ShellAgainstServer) -> None:
    observed = shell.run("registers")
    assert observed["cells"] == observed["size"]
    assert observed["cell3"] == "beef" and observed["cell0"] == "00"
    assert observed["past_the_end"] == "OUT_OF_RANGE"


def test_shell_multicast_groups(shell: ShellAgainstServer) -> None:
    observed = shell.run("multicast")
    assert observed["inserted"] == [[1, 0], [2, 0]]
    assert observed["modified"] == [[3, 1]]
    assert observed["after_delete"] == 0


@pytest.mark.skipif(not (artifacts.BMV2_JSON.exists() and artifacts.P4INFO.exists()),
                    reason="p4src/build/ has no compiled omnireduce program yet (run `make p4`, needs p4c)")
def test_shell_pushes_the_omnireduce_program_and_reads_all_of_it(shell_client: Client) -> None:
    with running_server(Device(), device_id=DEVICE_ID) as server:
        observed = shell_client.run("read-program", server.bound_address, "--device-id", str(DEVICE_ID),
                                    "--p4info", str(artifacts.P4INFO), "--json", str(artifacts.BMV2_JSON))
    assert observed["tables"], "the omnireduce P4Info lists no tables"
    for name, table in observed["tables"].items():
        assert table["default_is_default"], name
        if not table["has_initial_entries"]:
            assert table["entries"] == 0, name   # a freshly pushed pipeline starts empty
    assert set(observed["register_last_cells"].values()) == {"00"}
