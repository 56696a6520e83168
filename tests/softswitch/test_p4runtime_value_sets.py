# Run: .venv/bin/pytest tests/softswitch/test_p4runtime_value_sets.py -q
"""P4Runtime ValueSetEntry on the softswitch server, with tests/softswitch/p4/vset_test.p4: MODIFY replaces the
members and steers the parser, reads are canonical, and every malformed request gets the spec's code."""

from __future__ import annotations

import grpc
import pytest
from google.rpc import code_pb2

from conftest_p4rt import Served, batch_codes, rpc_error, serving, update
from omnireduce.p4proto import p4runtime_pb2
from omnireduce.softswitch.p4runtime.bytestrings import encode_uint
from switch_helpers import ethernet, only_output

pytestmark = pytest.mark.usefixtures("backend")

Entity = p4runtime_pb2.Entity
P = "VsetParser."


@pytest.fixture
def served():
    with serving("vset_test") as served:
        yield served


def exact(field_id: int, value: int) -> p4runtime_pb2.FieldMatch:
    return p4runtime_pb2.FieldMatch(field_id=field_id, exact=p4runtime_pb2.FieldMatch.Exact(value=encode_uint(value)))


def ternary(field_id: int, value: int, mask: int) -> p4runtime_pb2.FieldMatch:
    return p4runtime_pb2.FieldMatch(field_id=field_id, ternary=p4runtime_pb2.FieldMatch.Ternary(
        value=encode_uint(value), mask=encode_uint(mask)))


def entry(served: Served, name: str, *members: list[p4runtime_pb2.FieldMatch]) -> p4runtime_pb2.ValueSetEntry:
    msg = p4runtime_pb2.ValueSetEntry(value_set_id=served.id("value_set", P + name))
    for match in members:
        msg.members.add().match.extend(match)
    return msg


def write(served: Served, msg: p4runtime_pb2.ValueSetEntry, kind: str = "MODIFY") -> None:
    served.client.write(update(kind, value_set_entry=msg))


def read(served: Served, name: str | None = None) -> list[p4runtime_pb2.ValueSetEntry]:
    query = p4runtime_pb2.ValueSetEntry(value_set_id=served.id("value_set", P + name) if name else 0)
    return [e.value_set_entry for e in served.client.read(Entity(value_set_entry=query))]


def parser_path(served: Served, ether_type: int = 0x88BB, a: int = 1, b: int = 2, c: int = 3) -> int:
    sent = ethernet(ether_type) + bytes([a]) + b.to_bytes(2, "big") + bytes([c, 0])
    return only_output(served.device.process_packet(1, sent))[1][-1]


def test_modify_writes_the_members_and_steers_the_parser(served):
    write(served, entry(served, "ether_types", [exact(1, 0x1234)]))
    write(served, entry(served, "pairs", [exact(1, 7), exact(2, 0x0102)], [exact(1, 1), exact(2, 2)]))
    write(served, entry(served, "masked", [ternary(1, 0x10, 0xF0)]))
    assert parser_path(served, ether_type=0x1234, a=7, b=0x0102, c=0x1A) == 0x15
    (pairs,) = read(served, "pairs")
    assert [[(m.field_id, m.exact.value) for m in member.match] for member in pairs.members] == [
        [(1, b"\x07"), (2, b"\x01\x02")], [(1, b"\x01"), (2, b"\x02")]]    # canonical bytestrings, as written
    assert [e.value_set_id for e in read(served)] == [served.id("value_set", P + n)
                                                      for n in ("ether_types", "pairs", "masked")]


def test_an_empty_modify_empties_the_set(served):
    write(served, entry(served, "ether_types", [exact(1, 0x1234)]))
    write(served, entry(served, "ether_types"))
    (read_back,) = read(served, "ether_types")
    assert list(read_back.members) == [] and parser_path(served, ether_type=0x1234) == 0


def test_an_omitted_ternary_field_matches_everything(served):
    write(served, entry(served, "masked", []))
    assert parser_path(served, c=0x99) == 0x04
    (read_back,) = read(served, "masked")
    assert [list(m.match) for m in read_back.members] == [[]]


@pytest.mark.parametrize("kind", ["INSERT", "DELETE"])
def test_only_modify_is_allowed(served, kind):
    with rpc_error(grpc.StatusCode.UNKNOWN) as info:
        write(served, entry(served, "ether_types", [exact(1, 1)]), kind)
    assert batch_codes(info.value) == [code_pb2.INVALID_ARGUMENT]


BAD_WRITES = {
    "too many members": (lambda s: entry(s, "ether_types", *[[exact(1, v)] for v in range(5)]),
                         code_pb2.RESOURCE_EXHAUSTED),
    "a repeated member": (lambda s: entry(s, "ether_types", [exact(1, 5)], [exact(1, 5)]), code_pb2.ALREADY_EXISTS),
    "a value too wide": (lambda s: entry(s, "ether_types", [exact(1, 1 << 16)]), code_pb2.INVALID_ARGUMENT),
    "an unknown field": (lambda s: entry(s, "ether_types", [exact(9, 1)]), code_pb2.INVALID_ARGUMENT),
    "a missing exact field": (lambda s: entry(s, "pairs", [exact(1, 1)]), code_pb2.INVALID_ARGUMENT),
    "a field given twice": (lambda s: entry(s, "pairs", [exact(1, 1), exact(1, 1), exact(2, 1)]),
                            code_pb2.INVALID_ARGUMENT),
    "a zero ternary mask": (lambda s: entry(s, "masked", [ternary(1, 0, 0)]), code_pb2.INVALID_ARGUMENT),
    "the wrong match kind": (lambda s: entry(s, "masked", [exact(1, 3)]), code_pb2.INVALID_ARGUMENT),
    "value_set_id 0": (lambda s: p4runtime_pb2.ValueSetEntry(), code_pb2.INVALID_ARGUMENT),
    "an unknown value set": (lambda s: p4runtime_pb2.ValueSetEntry(value_set_id=0x03FFFFFF), code_pb2.INVALID_ARGUMENT),
}


@pytest.mark.parametrize("case", sorted(BAD_WRITES))
def test_bad_writes_get_the_spec_code_and_change_nothing(served, case):
    write(served, entry(served, "ether_types", [exact(1, 0x1234)]))
    make, code = BAD_WRITES[case]
    with rpc_error(grpc.StatusCode.UNKNOWN) as info:
        write(served, make(served))
    assert batch_codes(info.value) == [code]
    assert [len(e.members) for e in read(served, "ether_types")] == [1]


def test_a_read_giving_members_is_an_invalid_argument(served):
    with rpc_error(grpc.StatusCode.INVALID_ARGUMENT, "must not give members"):
        served.client.read(Entity(value_set_entry=entry(served, "ether_types", [exact(1, 1)])))
