# Run: .venv/bin/pytest tests/bench/test_stf.py -q
"""bench/stf.py, the STF reader behind bench/stf_conformance.py (which needs p4c, so it is not a test): the
script's commands and expectations, table entries from `add` lines (ternary masks from `*` digits, LPM
prefixes from the digits given, stack indexes in key names, priorities), their simple_switch_CLI spelling,
the PRE commands, and a whole STF run on a committed test program."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest

from omnireduce.bench.stf import Expectation, StfControl, StfError, check_outputs, parse_stf, run_on_device
from omnireduce.softswitch.device import Device
from omnireduce.softswitch.entries import FieldMatch, TableEntry

BUILD = Path(__file__).resolve().parents[1] / "softswitch" / "p4" / "build"


@pytest.fixture(scope="module")
def tables_program() -> dict:
    return json.loads((BUILD / "tables_test.json").read_text())


def write_stf(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "t.stf"
    path.write_text(text)
    return path


def test_packets_and_expectations_are_read_with_their_ports(tmp_path):
    script = parse_stf(write_stf(tmp_path, """
# a comment
packet 0 0102 0304   # spaces inside the data
expect 1 01 02 ** 04 $
expect 2 0a0b
expect 3
wait
"""))
    assert [c.verb for c in script.commands] == ["packet", "expect", "expect", "expect", "wait"]
    assert script.ports == {0, 1, 2, 3} and script.any_ports == {3}
    assert script.expected[1] == [Expectation(1, "0102**04", True)]
    assert script.expected[2] == [Expectation(2, "0A0B", False)]


def test_expectations_match_as_bmv2s_driver_does():
    loose, exact = Expectation(1, "0A**0C", False), Expectation(1, "0A**0C", True)
    assert loose.matches(bytes.fromhex("0aff0c")) and loose.matches(bytes.fromhex("0a000cdd"))
    assert not loose.matches(bytes.fromhex("0aff0d")) and not loose.matches(bytes.fromhex("0aff"))
    assert exact.matches(bytes.fromhex("0a000c")) and not exact.matches(bytes.fromhex("0a000cdd"))


def test_outputs_are_checked_on_every_port_the_script_names(tmp_path):
    script = parse_stf(write_stf(tmp_path, "packet 0 00\nexpect 1 aa\nexpect 3\n"))
    assert check_outputs(script, {1: [b"\xaa"]}) == []
    assert check_outputs(script, {1: [b"\xaa"], 0: [b"\x00"], 3: [b"\x01", b"\x02"], 7: [b"x"]}) == [
        "port 0: expected 0 frames, got 1 (first unexpected 00)"]
    assert check_outputs(script, {1: [b"\xab"]}) == ["port 1 frame 0: expected aa, got ab"]


def test_add_lines_become_entries(tables_program):
    control = StfControl(tables_program)
    # A suffix names the table and the action; `*` digits make the ternary mask; the priority is kept (+1,
    # since an STF priority may be 0 and the softswitch's must be positive; higher wins in both).
    entry = control.table_entry("t_tern 5 hdr.probe.proto:0x1* hdr.probe.addr:0x0a0b**** set_tern(v:7)")
    assert entry == TableEntry("TestIngress.t_tern", (FieldMatch("ternary", 0x10, mask=0xF0),
                                                      FieldMatch("ternary", 0x0A0B0000, mask=0xFFFF0000)),
                               "TestIngress.set_tern", (7,), 6)
    # An LPM prefix is as long as the digits that are not `*`; bits past it are cleared.
    lpm = control.table_entry("t_lpm addr:0x0a01**** set_lpm(v:1, p:0x10)")
    assert lpm.key == (FieldMatch("lpm", 0x0A010000, prefix_len=16),)
    assert control.table_entry("t_lpm addr:0x0a000000/8 set_lpm(v:1, p:2)").key == (
        FieldMatch("lpm", 0x0A000000, prefix_len=8),)
    assert control.table_entry("t_range port:10->20 set_range(v:3)").key == (FieldMatch("range", 10, high=20),)


def test_add_lines_in_simple_switch_cli_syntax(tables_program):
    control = StfControl(tables_program)
    add = parse_stf_line("add t_tern 5 hdr.probe.proto:0x1* set_tern(v:7)")
    # BMv2's CLI: every key in order (a missing ternary key is a wildcard), lower priority number wins.
    assert control.cli_command(add) == "table_add TestIngress.t_tern TestIngress.set_tern 16&&&240 0&&&0 => 7 9995"


def parse_stf_line(line: str):
    from omnireduce.bench.stf import Command

    verb, _, args = line.partition(" ")
    return Command(1, verb, args)


def test_unknown_names_are_errors(tables_program):
    control = StfControl(tables_program)
    with pytest.raises(StfError, match="no table"):
        control.table_entry("nope k:1 a()")
    with pytest.raises(StfError, match="no key field"):
        control.table_entry("t_lpm nokey:1 set_lpm(v:1, p:2)")
    with pytest.raises(StfError, match="lacks argument 'p'"):
        control.table_entry("t_lpm addr:0x0a/8 set_lpm(v:1)")


def test_multicast_nodes_are_numbered_as_the_cli_numbers_them(tables_program):
    control = StfControl(tables_program)
    assert control.pre_command("mc_mgrp_create", "5") == ("group", 5, [])
    assert control.pre_command("mc_node_create", "400 6 7") is None
    assert control.pre_command("mc_node_create", "401 8") is None
    assert control.pre_command("mc_node_associate", "5 1") == ("group", 5, [(8, 401)])
    assert control.pre_command("mc_node_associate", "5 0") == ("group", 5, [(8, 401), (6, 400), (7, 400)])
    assert control.pre_command("mirroring_add", "3 9") == ("session", 3, [(9, 0)])


def test_a_whole_script_runs_on_a_device(tmp_path, tables_program):
    device = Device()
    device.load_pipeline((BUILD / "tables_test.json").read_bytes())
    # tables_test: a probe (ether type 0x88B6) is reflected with each table's result in it (see its .p4).
    probe = bytes(6) + bytes(6) + struct.pack(">H", 0x88B6) + bytes(24)
    out = device.process_packet(1, probe)
    assert out, "tables_test reflects probes"
    expected_hex = out[0][1].hex()
    script = write_stf(tmp_path, f"packet 1 {probe.hex()}\nexpect 1 {expected_hex}$\n")
    outputs, problems = run_on_device(device, tables_program, parse_stf(script))
    assert problems == [] and outputs == {1: [out[0][1]]}
