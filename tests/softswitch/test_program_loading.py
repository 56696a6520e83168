# Run: .venv/bin/pytest tests/softswitch/test_program_loading.py -q
"""Loading BMv2 JSON: what is not a BMv2 JSON, or uses what the softswitch does not implement, is refused
with InvalidArgument naming the problem, and a failed load leaves the running pipeline in place."""

from __future__ import annotations

import copy
import json

import pytest
from switch_helpers import P4_DIR, device_for, ethernet, program_json

from omnireduce.softswitch.device import Device
from omnireduce.softswitch.errors import FailedPrecondition, InvalidArgument, UnsupportedProgram


@pytest.fixture(scope="module")
def base() -> dict:
    return json.loads(program_json("tables_test").read_text())


def mutated(base: dict, change) -> dict:
    program = copy.deepcopy(base)
    change(program)
    return program


def first_action_with_primitives(program: dict) -> dict:
    return next(a for a in program["actions"] if a["primitives"])


@pytest.mark.parametrize(
    "source, message",
    [
        (b"{not json", "not JSON"),
        (b"[1, 2]", "not a BMv2 JSON"),
        (b"{}", "__meta__"),
        (json.dumps({"__meta__": {"version": [1, 2]}}).encode(), "version"),
        (b"\xff\xfe\x00", "not JSON"),
    ],
)
def test_not_bmv2_json(source, message):
    with pytest.raises(InvalidArgument, match=message):
        Device().load_pipeline(source)


def test_p4info_given_instead_of_json():
    with pytest.raises(InvalidArgument):
        Device().load_pipeline((program_json("tables_test").with_suffix(".p4info.txtpb")).read_bytes())


def _add_meter(p):
    # v1model meters have two rates; BMv2's engine takes any number, the softswitch only two.
    p["meter_arrays"] = [{"name": "m", "id": 0, "type": "bytes", "size": 4, "rate_count": 3, "is_direct": False}]


def _stack_of_unknown_headers(p):
    p["header_stacks"] = [{"name": "stk", "id": 0, "header_type": "ethernet_t", "size": 2, "header_ids": [98, 99]}]


def _union_of_unknown_type(p):
    p["header_unions"] = [{"name": "u", "id": 0, "union_type": "no_such_type", "header_ids": [2]}]


def _bad_primitive(p):
    first_action_with_primitives(p)["primitives"][0]["op"] = "frobnicate"


def _bad_operator(p):
    action = next(a for a in p["actions"] if a["primitives"] and a["primitives"][0]["op"] == "assign")
    action["primitives"].append(
        {"op": "assign", "parameters": [action["primitives"][0]["parameters"][0],
                                        {"type": "expression", "value": {"op": "**", "left": None, "right": None}}]}
    )


def _action_profile(p):
    table = p["pipelines"][0]["tables"][0]
    table["type"], table["action_profile"] = "indirect", "ap"   # a profile the JSON does not declare
    table.pop("default_entry", None)


def _dangling_next(p):
    table = p["pipelines"][0]["tables"][0]
    first = next(iter(table["next_tables"]))
    table["next_tables"][first] = "no_such_node"


def _custom_hash(p):
    p["calculations"] = [{"name": "c", "id": 0, "algo": "crc16_custom", "input": []}]
    first_action_with_primitives(p)["primitives"].append(
        {"op": "modify_field_with_hash_based_offset",
         "parameters": [{"type": "field", "value": ["probe", "r_exact"]}, {"type": "hexstr", "value": "0x00"},
                        {"type": "calculation", "value": "c"}, {"type": "hexstr", "value": "0x10"}]}
    )


def _variable_length_without_max_length(p):
    p["header_types"][-1]["fields"].append(["options", "*"])


@pytest.mark.parametrize(
    "change, message",
    [
        (_add_meter, "only two-rate meters"),
        (_stack_of_unknown_headers, "header stack stk names unknown header id 98"),
        (_union_of_unknown_type, "unknown union type 'no_such_type'"),
        (_bad_primitive, "frobnicate"),
        (_bad_operator, r"\*\*"),
        (_action_profile, "unknown action profile 'ap'"),
        (_dangling_next, "no_such_node"),
        (_custom_hash, "crc16_custom"),
        (_variable_length_without_max_length, "variable-length field 'options' without a usable max_length"),
    ],
)
def test_unsupported_or_broken_programs_are_refused(base, change, message):
    with pytest.raises(InvalidArgument, match=message):
        Device().load_pipeline(mutated(base, change))


def test_unsupported_construct_error_type(base):
    with pytest.raises(UnsupportedProgram):
        Device().load_pipeline(mutated(base, _add_meter))


def test_failed_load_keeps_the_running_pipeline(base):
    device = device_for("tables_test")
    with pytest.raises(InvalidArgument):
        device.load_pipeline(mutated(base, _bad_primitive))
    assert device.pipeline_json == program_json("tables_test").read_bytes()
    assert device.process_packet(1, ethernet(0x0800)) == []  # still the tables program (drops non-probes)
    assert device.stats["drop:ingress_mark_to_drop"] == 1


def test_device_without_pipeline():
    device = Device()
    assert not device.pipeline_loaded
    assert device.process_packet(1, b"\x00" * 64) == []
    assert device.stats["drop:no_pipeline"] == 1
    with pytest.raises(FailedPrecondition):
        device.table_names()
    with pytest.raises(FailedPrecondition):
        device.register_read("r", 0)


def test_reload_clears_state():
    device = device_for("arith_test")
    device.register_write("TestIngress.acc16", 1, 99)
    device.mc_group_insert(1, [(1, 1)])
    device.load_pipeline(program_json("arith_test").read_bytes())
    assert device.register_read("TestIngress.acc16", 1) == 0
    assert device.mc_group_read(None) == {}


@pytest.mark.parametrize("name", sorted(p.stem for p in P4_DIR.glob("*_test.p4")))
def test_every_test_program_survives_garbage(name):
    device = device_for(name)
    for length in (0, 1, 13, 14, 15, 33, 60, 200):
        for fill in (0x00, 0xFF, 0x88):
            device.process_packet(1, bytes([fill]) * length)
    assert not any(key.startswith("drop:error") for key in device.stats)
