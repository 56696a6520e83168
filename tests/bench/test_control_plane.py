# Run: .venv/bin/pytest tests/bench/test_control_plane.py -q
"""The recorded control plane: replayed into a softswitch, and written as simple_switch_CLI commands."""

from __future__ import annotations

import pytest

from omnireduce.bench.control_plane import (
    BMV2_TOP_PRIORITY,
    McGroup,
    RecordingDevice,
    TableAdd,
    apply_ops,
    association_commands,
    cli_commands,
    cli_errors,
    cli_table_add,
    node_handles,
)
from omnireduce.p4src import artifacts
from omnireduce.softswitch.device import Device
from omnireduce.softswitch.entries import FieldMatch, TableEntry
from tests.p4.omniswitch import DESTINATIONS_TABLE, WORKERS_TABLE, OmniSwitch, make_workers


def loaded_device() -> Device:
    device = Device(name="test-bench")
    device.load_pipeline(artifacts.BMV2_JSON.read_bytes())
    return device


def test_recorded_ops_rebuild_the_same_state_in_a_fresh_device():
    recorder = RecordingDevice(loaded_device())
    OmniSwitch(recorder).add_job(1, make_workers(3), slot_base=0, slot_count=4, mcast_grp=7)
    replayed = loaded_device()
    apply_ops(replayed, recorder.ops)
    for table in (WORKERS_TABLE, DESTINATIONS_TABLE):
        assert sorted(map(repr, replayed.table_entries(table))) == sorted(map(repr, recorder.device.table_entries(table)))
        assert len(replayed.table_entries(table)) == 3
    assert replayed.mc_group_read(7) == recorder.device.mc_group_read(7) == {7: [(1, 0), (2, 1), (3, 2)]}


def test_table_add_in_cli_syntax_with_bmv2_priority_order():
    entry = TableEntry("T.t", (FieldMatch("exact", 5), FieldMatch("lpm", 0x0A000000, prefix_len=8),
                               FieldMatch("ternary", 17, mask=0xFF), FieldMatch("range", 3, high=9)),
                       "T.act", (1, 258), priority=10)
    assert cli_table_add(entry) == f"table_add T.t T.act 5 167772160/8 17&&&255 3->9 => 1 258 {BMV2_TOP_PRIORITY - 10}"
    higher = TableEntry("T.t", entry.key, "T.act", (1, 258), priority=11)
    # The softswitch prefers the larger priority, BMv2 the smaller number: the order must survive the mapping.
    assert int(cli_table_add(higher).split()[-1]) < int(cli_table_add(entry).split()[-1])


def test_exact_table_gets_no_priority_and_keyless_actions_no_params():
    assert cli_table_add(TableEntry("T.e", (FieldMatch("exact", 1),), "T.noop", ())) == "table_add T.e T.noop 1 =>"


def test_valid_match_kind_is_refused_with_its_name():
    with pytest.raises(ValueError, match="'valid'"):
        cli_table_add(TableEntry("T.v", (FieldMatch("valid", 1),), "T.noop", ()))


def test_multicast_groups_take_two_sessions_with_the_printed_handles():
    group = McGroup(3, ((1, 0), (1, 1)))
    commands, groups = cli_commands([TableAdd(TableEntry("T.e", (FieldMatch("exact", 1),), "T.a", (2,))), group])
    assert commands == ["table_add T.e T.a 1 => 2", "mc_mgrp_create 3", "mc_node_create 0 1", "mc_node_create 1 1"]
    output = ("RuntimeCmd: Creating node with rid 0 , port map 10 and lag map \nnode was created with handle 4\n"
              "RuntimeCmd: Creating node with rid 1 , port map 10 and lag map \nnode was created with handle 5\n")
    assert node_handles(output) == [4, 5]
    assert association_commands(groups, node_handles(output)) == ["mc_node_associate 3 4", "mc_node_associate 3 5"]
    with pytest.raises(ValueError, match="1 multicast node handles, expected 2"):
        association_commands(groups, [4])


def test_cli_errors_are_found_in_its_output():
    output = "RuntimeCmd: Entry has been added with handle 0\nRuntimeCmd: Error: Invalid table name (nope)\n"
    assert cli_errors(output) == ["RuntimeCmd: Error: Invalid table name (nope)"]
    assert cli_errors("RuntimeCmd: Entry has been added with handle 0\n") == []
