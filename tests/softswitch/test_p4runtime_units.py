# Run: .venv/bin/pytest tests/softswitch/test_p4runtime_units.py
"""Unit tests of the P4Runtime server's parts: bytestrings, the P4Info index, entry translation,
the P4Info/JSON cross-check and arbitration, without gRPC."""

from __future__ import annotations

import copy
import json

import grpc
import numpy as np
import pytest
from google.rpc import code_pb2

from conftest_p4rt import basic_bmv2_json, basic_p4info
from omnireduce.p4proto import p4runtime_pb2
from omnireduce.softswitch import errors
from omnireduce.softswitch.entries import FieldMatch, TableEntry
from omnireduce.softswitch.p4runtime.arbitration import Arbiter, StreamSession
from omnireduce.softswitch.p4runtime.bytestrings import decode_uint, encode_uint
from omnireduce.softswitch.p4runtime.entry_codec import decode_action, decode_match, encode_entry, encode_match
from omnireduce.softswitch.p4runtime.errors import P4RuntimeError, from_device_error
from omnireduce.softswitch.p4runtime.p4info_map import P4InfoMap
from omnireduce.softswitch.p4runtime.pipeline_check import check_p4info_matches_json, parse_bmv2_json
from omnireduce.softswitch.p4runtime.register_wire import encode_register_cells

INVALID = grpc.StatusCode.INVALID_ARGUMENT


@pytest.fixture
def p4map() -> P4InfoMap:
    return P4InfoMap(basic_p4info())


def fm_exact(field_id: int, value: bytes) -> p4runtime_pb2.FieldMatch:
    fm = p4runtime_pb2.FieldMatch(field_id=field_id)
    fm.exact.value = value
    return fm


def fm_lpm(field_id: int, value: bytes, prefix_len: int) -> p4runtime_pb2.FieldMatch:
    fm = p4runtime_pb2.FieldMatch(field_id=field_id)
    fm.lpm.value, fm.lpm.prefix_len = value, prefix_len
    return fm


def fm_ternary(field_id: int, value: bytes, mask: bytes) -> p4runtime_pb2.FieldMatch:
    fm = p4runtime_pb2.FieldMatch(field_id=field_id)
    fm.ternary.value, fm.ternary.mask = value, mask
    return fm


def fm_range(field_id: int, low: bytes, high: bytes) -> p4runtime_pb2.FieldMatch:
    fm = p4runtime_pb2.FieldMatch(field_id=field_id)
    fm.range.low, fm.range.high = low, high
    return fm


def fm_optional(field_id: int, value: bytes) -> p4runtime_pb2.FieldMatch:
    fm = p4runtime_pb2.FieldMatch(field_id=field_id)
    fm.optional.value = value
    return fm


# --- bytestrings ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("value,canonical", [(0, b"\x00"), (1, b"\x01"), (255, b"\xff"), (256, b"\x01\x00"),
                                             ((1 << 48) - 1, b"\xff" * 6)])
def test_encode_is_canonical_and_decodes_back(value, canonical):
    assert encode_uint(value) == canonical
    assert decode_uint(canonical, 48, "f") == value


def test_decode_accepts_padded_values_that_fit():
    assert decode_uint(b"\x00\x00\x01\xff", 9, "port") == 511


@pytest.mark.parametrize("data", [b"\x02\x00", b"\x00\x00\x04\x00"])
def test_decode_rejects_values_wider_than_the_field(data):
    with pytest.raises(P4RuntimeError, match="does not fit in 9 bits") as info:
        decode_uint(data, 9, "port")
    assert info.value.code == INVALID


def test_decode_rejects_the_empty_bytestring():
    with pytest.raises(P4RuntimeError, match="empty") as info:
        decode_uint(b"", 8, "proto")
    assert info.value.code == INVALID


# --- P4Info index ---------------------------------------------------------------------------------------
def test_index_maps_ids_and_names_both_ways(p4map):
    table = p4map.table_named("MyIngress.acl_t")
    assert p4map.table(table.id) is table
    assert [f.kind for f in table.match_fields] == ["ternary", "range", "optional"]
    assert table.needs_priority and not p4map.table_named("MyIngress.lpm_t").needs_priority
    fwd = p4map.action_named("MyIngress.fwd")
    assert p4map.param_named(fwd, "port").bitwidth == 9
    assert p4map.match_field_named(table, "hdr.tcp.dst_port").position == 1
    assert p4map.table_named("MyIngress.exact_t").direct_counter_id == p4map.direct_counter_named(
        "MyIngress.exact_hits").id
    assert p4map.register_named("MyIngress.slots").bitwidth == 32
    assert p4map.counter_named("MyIngress.pkts").size == 4


def test_index_misses_name_the_kind_and_suggest(p4map):
    with pytest.raises(P4RuntimeError, match=r"no table named 'MyIngress.acl' .*Did you mean 'MyIngress.acl_t'"):
        p4map.table_named("MyIngress.acl")
    with pytest.raises(P4RuntimeError, match="no register with id 7 ") as info:
        p4map.register(7)
    assert info.value.code == INVALID
    with pytest.raises(P4RuntimeError, match="has no parameter named 'prot'. Did you mean 'port'"):
        p4map.param_named(p4map.action_named("MyIngress.fwd"), "prot")


def test_index_refuses_duplicate_ids():
    p4info = basic_p4info()
    p4info.actions[1].preamble.id = p4info.actions[0].preamble.id
    with pytest.raises(P4RuntimeError, match=f"used by both '{p4info.actions[0].preamble.name}' and "
                                            f"'{p4info.actions[1].preamble.name}'"):
        P4InfoMap(p4info)


# --- match translation ----------------------------------------------------------------------------------
def test_exact_match_decodes_and_encodes_canonically(p4map):
    table = p4map.table_named("MyIngress.exact_t")
    key, priority = decode_match(table, [fm_exact(1, b"\x00\x00\x00\x00\x0a\x0b")], 0)
    assert key == (FieldMatch("exact", 0x0a0b),) and priority == 0
    assert encode_match(table, key) == [fm_exact(1, b"\x0a\x0b")]


def test_missing_exact_field_is_refused(p4map):
    with pytest.raises(P4RuntimeError, match="exact match field 'hdr.ethernet.dst_addr' is missing"):
        decode_match(p4map.table_named("MyIngress.exact_t"), [], 0)


def test_lpm_rules(p4map):
    table = p4map.table_named("MyIngress.lpm_t")
    key, _ = decode_match(table, [fm_lpm(1, b"\x0a\x00\x00\x00", 8)], 0)
    assert key == (FieldMatch("lpm", 0x0a000000, prefix_len=8),)
    assert encode_match(table, key) == [fm_lpm(1, b"\x0a\x00\x00\x00", 8)]
    with pytest.raises(P4RuntimeError, match="bits set past the /8 prefix"):
        decode_match(table, [fm_lpm(1, b"\x0a\x01\x00\x00", 8)], 0)
    with pytest.raises(P4RuntimeError, match="prefix_len 0 is a don't-care"):
        decode_match(table, [fm_lpm(1, b"\x00", 0)], 0)
    with pytest.raises(P4RuntimeError, match="prefix_len 33 is outside 1..32"):
        decode_match(table, [fm_lpm(1, b"\x0a", 33)], 0)
    # Omitted = don't care, and it stays omitted when read back.
    key, _ = decode_match(table, [], 0)
    assert key == (FieldMatch("lpm", 0, prefix_len=0),) and encode_match(table, key) == []


def test_ternary_range_optional_rules(p4map):
    table = p4map.table_named("MyIngress.acl_t")
    match = [fm_ternary(1, b"\x0a\x00\x00\x00", b"\xff\x00\x00\x00"), fm_range(2, b"\x00\x50", b"\x01\xbb"),
             fm_optional(3, b"\x06")]
    key, priority = decode_match(table, match, 10)
    assert key == (FieldMatch("ternary", 0x0a000000, mask=0xff000000), FieldMatch("range", 80, high=443),
                   FieldMatch("optional", 6, mask=0xff))
    assert priority == 10
    # canonical on the way out: no leading zero bytes
    assert encode_match(table, key)[1] == fm_range(2, b"\x50", b"\x01\xbb")
    with pytest.raises(P4RuntimeError, match=r"bits outside mask 0xff000000 \(value & ~mask must be 0\)"):
        decode_match(table, [fm_ternary(1, b"\x0a\x00\x00\x01", b"\xff\x00\x00\x00")], 1)
    with pytest.raises(P4RuntimeError, match="zero mask is a don't-care"):
        decode_match(table, [fm_ternary(1, b"\x00", b"\x00")], 1)
    with pytest.raises(P4RuntimeError, match="range low 9 is above high 8"):
        decode_match(table, [fm_range(2, b"\x09", b"\x08")], 1)
    with pytest.raises(P4RuntimeError, match="full range is a don't-care"):
        decode_match(table, [fm_range(2, b"\x00", b"\xff\xff")], 1)
    with pytest.raises(P4RuntimeError, match="need a priority > 0"):
        decode_match(table, match, 0)
    all_wild, _ = decode_match(table, [], 3)
    assert encode_match(table, all_wild) == []


def test_keys_are_built_in_the_devices_match_kinds(p4map):
    # p4c-bm2-ss writes an optional field as a ternary JSON key: the Device gets a ternary FieldMatch.
    table = p4map.table_named("MyIngress.acl_t")
    key, _ = decode_match(table, [fm_optional(3, b"\x06")], 1, ("ternary", "range", "ternary"))
    assert key[2] == FieldMatch("ternary", 6, mask=0xff)
    assert key[0] == FieldMatch("ternary", 0, mask=0)
    assert encode_match(table, key) == [fm_optional(3, b"\x06")]


def test_priority_must_be_zero_without_ternary_fields(p4map):
    with pytest.raises(P4RuntimeError, match="priority must be 0, not 5"):
        decode_match(p4map.table_named("MyIngress.lpm_t"), [fm_lpm(1, b"\x0a\x00\x00\x00", 8)], 5)


def test_malformed_matches_are_refused(p4map):
    table = p4map.table_named("MyIngress.exact_t")
    with pytest.raises(P4RuntimeError, match="no match field with id 9"):
        decode_match(table, [fm_exact(9, b"\x01")], 0)
    with pytest.raises(P4RuntimeError, match="given twice"):
        decode_match(table, [fm_exact(1, b"\x01"), fm_exact(1, b"\x02")], 0)
    with pytest.raises(P4RuntimeError, match="is a exact match but the request gives lpm"):
        decode_match(table, [fm_lpm(1, b"\x01", 8)], 0)
    with pytest.raises(P4RuntimeError, match="does not fit in 48 bits"):
        decode_match(table, [fm_exact(1, b"\x01" * 7)], 0)


# --- action translation ---------------------------------------------------------------------------------
def table_action(action_id: int, *params: tuple[int, bytes]) -> p4runtime_pb2.TableAction:
    action = p4runtime_pb2.TableAction()
    action.action.action_id = action_id
    for param_id, value in params:
        action.action.params.add(param_id=param_id, value=value)
    return action


def test_action_translation_and_scopes(p4map):
    lpm = p4map.table_named("MyIngress.lpm_t")
    fwd, drop, noaction = (p4map.action_named(n).id for n in ("MyIngress.fwd", "MyIngress.drop", "NoAction"))
    action, params = decode_action(p4map, lpm, table_action(fwd, (1, b"\x00\x07")), is_default=False)
    assert action.name == "MyIngress.fwd" and params == (7,)
    with pytest.raises(P4RuntimeError, match="missing parameter\\(s\\) port"):
        decode_action(p4map, lpm, table_action(fwd), is_default=False)
    with pytest.raises(P4RuntimeError, match="has no parameter with id 2"):
        decode_action(p4map, lpm, table_action(fwd, (1, b"\x01"), (2, b"\x01")), is_default=False)
    with pytest.raises(P4RuntimeError, match="does not fit in 9 bits"):
        decode_action(p4map, lpm, table_action(fwd, (1, b"\x02\x00")), is_default=False)
    with pytest.raises(P4RuntimeError, match="is @defaultonly") as info:
        decode_action(p4map, lpm, table_action(noaction), is_default=False)
    assert info.value.code == grpc.StatusCode.PERMISSION_DENIED
    assert decode_action(p4map, lpm, table_action(noaction), is_default=True)[0].name == "NoAction"
    with pytest.raises(P4RuntimeError, match="not an action of table 'MyIngress.acl_t'"):
        decode_action(p4map, p4map.table_named("MyIngress.acl_t"), table_action(fwd, (1, b"\x01")), False)
    assert drop  # drop exists and has no params
    assert decode_action(p4map, lpm, table_action(drop), is_default=False)[1] == ()


def test_device_entry_encodes_back_to_the_written_message(p4map):
    table = p4map.table_named("MyIngress.acl_t")
    entry = TableEntry("MyIngress.acl_t", (FieldMatch("ternary", 0, mask=0), FieldMatch("range", 1, high=2),
                                           FieldMatch("optional", 0, mask=0)), "MyIngress.drop", (), 4)
    msg = encode_entry(p4map, table, entry)
    assert [fm.field_id for fm in msg.match] == [2] and msg.priority == 4
    assert msg.action.action.action_id == p4map.action_named("MyIngress.drop").id


# --- P4Info / JSON cross-check --------------------------------------------------------------------------
def test_matching_p4info_and_json_pass(p4map):
    check_p4info_matches_json(p4map, json.loads(basic_bmv2_json()))


@pytest.mark.parametrize("program", ["tables_test", "parser_test", "arith_test", "replication_test",
                                     "checksum_test", "p4rt_basic"])
def test_every_compiled_test_program_passes_the_check(program):
    # p4c sizes tables with const entries differently in the JSON and the P4Info; that is no mismatch.
    from conftest_p4rt import BUILD_DIR
    from omnireduce.softswitch.p4runtime.p4info_map import load_p4info

    p4map = P4InfoMap(load_p4info(BUILD_DIR / f"{program}.p4info.txtpb"))
    check_p4info_matches_json(p4map, json.loads((BUILD_DIR / f"{program}.json").read_text()))


def json_table(program: dict, name: str) -> dict:
    return next(t for t in program["pipelines"][0]["tables"] if t["name"] == name)


@pytest.mark.parametrize("corrupt,fragment", [
    (lambda j: [a["runtime_data"][0].update(bitwidth=16) for a in j["actions"] if a["name"] == "MyIngress.fwd"],
     r"action 'MyIngress.fwd' has parameter widths \[9\] in the P4Info but \[16\] in the JSON"),
    (lambda j: j["pipelines"][0]["tables"].remove(json_table(j, "MyIngress.lpm_t")),
     "table 'MyIngress.lpm_t' is in the P4Info but not in the JSON"),
    (lambda j: next(t for t in j["header_types"] if t["name"] == "ethernet_t")["fields"][0].__setitem__(1, 32),
     r"table 'MyIngress.exact_t' field 0 \('hdr.ethernet.dst_addr'\) is 48 bits in the P4Info but 32 bits"),
    (lambda j: json_table(j, "MyIngress.acl_t")["key"][1].update(match_type="exact"),
     "field 1 .* is range in the P4Info but exact in the JSON"),
    (lambda j: next(r for r in j["register_arrays"] if r["name"] == "MyIngress.slots").update(size=16), "register 'MyIngress.slots' is 8 x bit<32> in the P4Info"),
    (lambda j: next(c for c in j["counter_arrays"] if c["name"] == "MyIngress.pkts").update(size=5), "counter 'MyIngress.pkts' has size 4"),
    (lambda j: next(c for c in j["counter_arrays"] if c["name"] == "MyIngress.exact_hits").update(binding="MyIngress.lpm_t"),
     "direct counter 'MyIngress.exact_hits' belongs to table 'MyIngress.exact_t'"),
])
def test_mismatches_name_the_first_difference(p4map, corrupt, fragment):
    program = copy.deepcopy(json.loads(basic_bmv2_json()))
    corrupt(program)
    with pytest.raises(P4RuntimeError, match=fragment) as info:
        check_p4info_matches_json(p4map, program)
    assert info.value.code == INVALID


@pytest.mark.parametrize("data,fragment", [(b"", "empty"), (b"{not json", "not BMv2 JSON"),
                                           (b"[1, 2]", "no 'pipelines' list")])
def test_device_config_must_be_bmv2_json(data, fragment):
    with pytest.raises(P4RuntimeError, match=fragment):
        parse_bmv2_json(data)


def test_device_errors_map_onto_grpc_codes():
    assert from_device_error(errors.ResourceExhausted("full")).code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert from_device_error(errors.UnsupportedProgram("x")).code == INVALID
    assert from_device_error(errors.OutOfRange("i")).message == "i"


# --- arbitration ----------------------------------------------------------------------------------------
def arbitration(device_id: int, election_id: int | None, role: str | None = None):
    update = p4runtime_pb2.MasterArbitrationUpdate(device_id=device_id)
    if election_id is not None:
        update.election_id.low = election_id
    if role is not None:
        update.role.name = role
    return update


def statuses(session: StreamSession) -> list[int]:
    """Codes of the arbitration updates queued for `session` so far (drained)."""
    codes = []
    while not session.outbox.empty():
        codes.append(session.outbox.get_nowait().arbitration.status.code)
    return codes


def test_highest_election_id_is_primary_and_everyone_hears_of_changes():
    arbiter = Arbiter(device_id=1)
    a, b, c = StreamSession(), StreamSession(), StreamSession()
    arbiter.arbitrate(a, arbitration(1, 5))
    assert statuses(a) == [code_pb2.OK]
    arbiter.arbitrate(b, arbitration(1, 3))            # a backup: only b is told
    assert statuses(a) == [] and statuses(b) == [code_pb2.ALREADY_EXISTS]
    arbiter.arbitrate(c, arbitration(1, 9))            # new primary: all are told
    assert statuses(a) == [code_pb2.ALREADY_EXISTS] and statuses(b) == [code_pb2.ALREADY_EXISTS]
    assert statuses(c) == [code_pb2.OK]
    assert arbiter.primary_of() is c
    arbiter.disconnect(c)                              # primary gone: nobody is primary
    assert statuses(a) == [code_pb2.NOT_FOUND] and statuses(b) == [code_pb2.NOT_FOUND]
    arbiter.arbitrate(a, arbitration(1, 8))            # 8 < 9 (highest ever seen): still no primary
    assert arbiter.primary_of() is None and statuses(a) == [code_pb2.NOT_FOUND]
    arbiter.arbitrate(a, arbitration(1, 9))            # equal to the highest: primary again
    assert arbiter.primary_of() is a


def test_arbitration_errors():
    arbiter = Arbiter(device_id=1)
    a, b, c = StreamSession(), StreamSession(), StreamSession()
    with pytest.raises(P4RuntimeError, match="unknown device id 2") as info:
        arbiter.arbitrate(a, arbitration(2, 1))
    assert info.value.code == grpc.StatusCode.NOT_FOUND
    arbiter.arbitrate(a, arbitration(1, 1))
    with pytest.raises(P4RuntimeError, match="already used") as info:
        arbiter.arbitrate(b, arbitration(1, 1))
    assert info.value.code == INVALID
    with pytest.raises(P4RuntimeError, match="role") as info:
        arbiter.arbitrate(a, arbitration(1, 1, role="other"))
    assert info.value.code == grpc.StatusCode.FAILED_PRECONDITION
    arbiter.arbitrate(c, arbitration(1, None))         # unset election id: a permanent backup
    assert arbiter.primary_of() is a and statuses(c) == [code_pb2.ALREADY_EXISTS]


def test_a_closed_streams_election_id_is_free_before_its_session_is_removed():
    arbiter = Arbiter(device_id=1)
    streams_up = {"a": True}
    a, b = StreamSession(alive=lambda: streams_up["a"]), StreamSession()
    arbiter.arbitrate(a, arbitration(1, 1))
    streams_up["a"] = False                            # a's client closed; the server has not removed it yet
    arbiter.arbitrate(b, arbitration(1, 1))            # the same id is taken over, not refused as a duplicate
    assert arbiter.primary_of() is b and statuses(b) == [code_pb2.OK]
    arbiter.disconnect(a)                              # the late removal changes nothing for b
    assert arbiter.primary_of() is b


def test_only_the_primary_may_write():
    arbiter = Arbiter(device_id=1)
    arbiter.check_writer("", None)                     # nobody connected, no election id: allowed (as PI)
    with pytest.raises(P4RuntimeError, match="no primary") as info:
        arbiter.check_writer("", p4runtime_pb2.Uint128(low=1))
    assert info.value.code == grpc.StatusCode.PERMISSION_DENIED
    a = StreamSession()
    arbiter.arbitrate(a, arbitration(1, 4))
    arbiter.check_writer("", p4runtime_pb2.Uint128(low=4))
    for election_id in (p4runtime_pb2.Uint128(low=3), None):
        with pytest.raises(P4RuntimeError, match="not primary"):
            arbiter.check_writer("", election_id)
    with pytest.raises(P4RuntimeError, match="no controller has arbitrated for role 'x'") as info:
        arbiter.check_writer("x", p4runtime_pb2.Uint128(low=4))
    assert info.value.code == grpc.StatusCode.NOT_FOUND


# --- register cells serialized with numpy -------------------------------------------------------------------
@pytest.mark.parametrize("first_index", [0, 100, 16_380, (1 << 21) - 5, (1 << 28) + 3])
def test_register_cells_serialize_exactly_as_protobuf_would(first_index: int) -> None:
    values = np.array([0, 1, 255, 256, 65_535, 65_536, (1 << 32) - 1, 1 << 63, (1 << 64) - 1]
                      + [(7919 * i) % (1 << 40) for i in range(300)], dtype=np.uint64)
    encoded = encode_register_cells(0x0C000001, first_index, values)
    expected = p4runtime_pb2.ReadResponse()
    for offset, value in enumerate(values):
        entry = expected.entities.add().register_entry
        entry.register_id, entry.index.index = 0x0C000001, first_index + offset
        entry.data.bitstring = encode_uint(int(value))
    assert p4runtime_pb2.ReadResponse.FromString(encoded.data) == expected
    parts = list(encoded.chunks(1000))
    assert len(parts) > 1 and all(len(chunk) <= 1000 for chunk, _ in parts)
    assert [e for chunk, _ in parts for e in p4runtime_pb2.ReadResponse.FromString(chunk).entities] == list(
        expected.entities)
