# Run: .venv/bin/pytest tests/softswitch/test_p4info_edges.py -q
"""P4Info/JSON pairs that p4c makes and BMv2 accepts (tests/softswitch/p4/p4info_edge_test.p4): an action and
a table that p4c kept in the P4Info only, a match field of type error (no bitwidth in the P4Info), a const LPM
entry written with bits past its prefix. Each is accepted over P4Runtime, and the program then runs.

A frame is ethernet (0x88BC) and a probe (prefix key, prefix hit, error hit, branch); ingress writes the id of
the prefix entry it hit, of the error entry it hit (0: none), and 0xA0 for the branch that survived.
"""

from __future__ import annotations

import pytest
from google.protobuf import text_format

from conftest_p4rt import RawClient, running_server, table_entry, update
from omnireduce.p4proto import p4info_pb2
from omnireduce.softswitch.device import Device
from omnireduce.softswitch.entries import FieldMatch, TableEntry
from omnireduce.softswitch.p4runtime.errors import P4RuntimeError
from omnireduce.softswitch.p4runtime.p4info_map import P4InfoMap
from omnireduce.softswitch.p4runtime.pipeline_check import check_p4info_matches_json, parse_bmv2_json
from switch_helpers import BUILD_DIR, ethernet, only_output, program_json

# Every test runs on the native and on the Python packet pipeline (conftest.py).
pytestmark = pytest.mark.usefixtures("backend")

DEVICE_ID = 1


def p4info() -> p4info_pb2.P4Info:
    return text_format.Parse((BUILD_DIR / "p4info_edge_test.p4info.txtpb").read_text(), p4info_pb2.P4Info())


def device_config() -> bytes:
    return program_json("p4info_edge_test").read_bytes()


def probe(key: int) -> bytes:
    return ethernet(0x88BC) + bytes([key, 0, 0, 0])


def reply(device, key: int) -> tuple[int, int, int]:
    port, out = only_output(device.process_packet(1, probe(key)))
    assert port == 1 and out[:15] == probe(key)[:15]
    return out[15], out[16], out[17]


def test_the_p4info_has_what_the_json_lacks():
    p4map = P4InfoMap(p4info())
    program = parse_bmv2_json(device_config())
    json_actions = {a["name"] for a in program["actions"]}
    json_tables = {t["name"] for p in program["pipelines"] for t in p["tables"]}
    assert "TestIngress.never_run" not in json_actions and "TestIngress.unused" not in json_tables
    assert p4map.action_named("TestIngress.never_run") and p4map.table_named("TestIngress.unused")
    error_key = p4map.table_named("TestIngress.errors").match_fields[0]
    assert (error_key.name, error_key.bitwidth) == ("meta.parse_status", 0)
    check_p4info_matches_json(p4map, program)  # accepted, as simple_switch_grpc does


def test_a_table_missing_from_the_json_is_still_a_mismatch_when_its_actions_are_there():
    program = parse_bmv2_json(device_config())
    for pipeline in program["pipelines"]:
        pipeline["tables"] = [t for t in pipeline["tables"] if t["name"] != "TestIngress.prefixes"]
    with pytest.raises(P4RuntimeError, match="table 'TestIngress.prefixes' is in the P4Info but not in the JSON"):
        check_p4info_matches_json(P4InfoMap(p4info()), program)


@pytest.mark.parametrize("key, hit", [(0x10, 1), (0x11, 1), (0x1F, 1), (0x22, 2), (0x21, 3), (0x00, 3), (0xFF, 3)])
def test_a_const_lpm_entry_matches_on_its_prefix_only(key, hit):
    device = Device()
    device.load_pipeline(device_config())
    assert reply(device, key) == (hit, 0, 0xA0)
    const = [e for e in device.table_entries("TestIngress.prefixes") if e.params == (1,)][0]
    assert const.key == (FieldMatch("lpm", 0x10, prefix_len=4),)


def test_an_error_keyed_entry_matches_the_parser_error():
    device = Device()
    device.load_pipeline(device_config())
    assert reply(device, 0x10)[1] == 0
    # error.NoError is 0 in the JSON's error list.
    device.table_insert(TableEntry("TestIngress.errors", (FieldMatch("exact", 0),), "TestIngress.error_hit", (7,)))
    assert reply(device, 0x10)[1] == 7


def test_the_pair_is_accepted_over_p4runtime_and_runs():
    device = Device()
    with running_server(device, device_id=DEVICE_ID) as server, \
            RawClient(server.bound_address, DEVICE_ID, election_id=10) as client:
        client.become_primary()
        client.set_pipeline(p4info(), device_config())
        p4map = P4InfoMap(p4info())
        # The error field has no P4Info width: only the value 0 (NoError) fits it.
        client.write(update("INSERT", table_entry=table_entry(
            p4map, "TestIngress.errors", match={"meta.parse_status": 0}, action="TestIngress.error_hit",
            params={"id": 9})))
        assert reply(device, 0x22) == (2, 9, 0xA0)
