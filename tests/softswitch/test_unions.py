# Run: .venv/bin/pytest tests/softswitch/test_unions.py -q
"""Header unions and a union stack with tests/softswitch/p4/union_test.p4: the parser extracts one member of
a union and one member into each of two stacked unions (`next.byte` / `next.short`), making a member valid
invalidates the other, isValid() of a union, a union copy.

A frame is ethernet (0x88BA), a selector byte (op << 4 | second << 2 | first << 1 | short), the option (1 byte,
or 2 when short), then the two stacked options. The output is a report (valid bits of option, its members, the
copy and its members; valid bits of the stacked members; copy.byte == option.byte), then what was parsed,
re-emitted, and the copy.
"""

from __future__ import annotations

import json

import pytest
from switch_helpers import device_for, ethernet, only_output, program_json

from omnireduce.softswitch.device import Device

# Every test runs on the native and on the Python packet pipeline (conftest.py).
pytestmark = pytest.mark.usefixtures("backend")

ETHERTYPE = 0x88BA
OPTION, OPTION_BYTE, OPTION_SHORT, COPY, COPY_BYTE, COPY_SHORT = 1, 2, 4, 8, 16, 32
FIRST_BYTE, FIRST_SHORT, SECOND_BYTE, SECOND_SHORT = 1, 2, 4, 8
SWAP_MEMBER, INVALIDATE, COPY_OPTION, COPY_SECOND, REPLACE_FIRST = 1, 2, 3, 4, 5


@pytest.fixture(scope="module")
def device():
    return device_for("union_test")


def selector(op: int = 0, short: bool = False, first: bool = False, second: bool = False) -> bytes:
    return bytes([op << 4 | second << 2 | first << 1 | short])


def option(short: bool, value: int) -> bytes:
    return value.to_bytes(2 if short else 1, "big")


def send(device, data: bytes) -> bytes:
    port, out = only_output(device.process_packet(1, data))
    assert port == 1
    return out


def report(valid: int, stack: int, equal: int = 0) -> bytes:
    return bytes([valid, stack, equal])


@pytest.mark.parametrize("short", [False, True])
@pytest.mark.parametrize("first, second", [(False, False), (True, False), (False, True), (True, True)])
def test_the_parser_extracts_the_member_the_selector_names(device, short, first, second):
    body = selector(0, short, first, second) + option(short, 0x5A) + option(first, 0x61) + option(second, 0x62)
    out = send(device, ethernet(ETHERTYPE) + body + b"tail")
    valid = OPTION | (OPTION_SHORT if short else OPTION_BYTE)
    stack = (FIRST_SHORT if first else FIRST_BYTE) | (SECOND_SHORT if second else SECOND_BYTE)
    assert out == report(valid, stack) + ethernet(ETHERTYPE) + body + b"tail"


@pytest.mark.parametrize("short", [False, True])
def test_making_the_other_member_valid_invalidates_the_first(device, short):
    body_rest = option(False, 0x61) + option(False, 0x62)
    out = send(device, ethernet(ETHERTYPE) + selector(SWAP_MEMBER, short) + option(short, 0x5A) + body_rest)
    # byte parsed -> short set to 0xABCD; short parsed -> byte set to 0xEF. Only the new member is emitted.
    new = option(True, 0xABCD) if not short else option(False, 0xEF)
    valid = OPTION | (OPTION_SHORT if not short else OPTION_BYTE)
    assert out == report(valid, FIRST_BYTE | SECOND_BYTE) + ethernet(ETHERTYPE) + selector(SWAP_MEMBER, short) + \
        new + body_rest


def test_a_union_with_no_valid_member_is_invalid(device):
    body_rest = option(False, 0x61) + option(False, 0x62)
    out = send(device, ethernet(ETHERTYPE) + selector(INVALIDATE) + option(False, 0x5A) + body_rest)
    assert out == report(0, FIRST_BYTE | SECOND_BYTE) + ethernet(ETHERTYPE) + selector(INVALIDATE) + body_rest


@pytest.mark.parametrize("short", [False, True])
def test_copying_a_union_copies_its_valid_member(device, short):
    rest = option(False, 0x61) + option(False, 0x62)
    sel = selector(COPY_OPTION, short)
    out = send(device, ethernet(ETHERTYPE) + sel + option(short, 0x5A) + rest)
    member = OPTION_SHORT if short else OPTION_BYTE
    copy = COPY_SHORT if short else COPY_BYTE
    assert out == report(OPTION | member | COPY | copy, FIRST_BYTE | SECOND_BYTE, equal=int(not short)) + \
        ethernet(ETHERTYPE) + sel + option(short, 0x5A) + rest + option(short, 0x5A)


def test_copying_a_stacked_union(device):
    sel = selector(COPY_SECOND, second=True)
    body = sel + option(False, 0x5A) + option(False, 0x61) + option(True, 0x6263)
    out = send(device, ethernet(ETHERTYPE) + body)
    assert out == report(OPTION | OPTION_BYTE | COPY | COPY_SHORT, FIRST_BYTE | SECOND_SHORT) + \
        ethernet(ETHERTYPE) + body + option(True, 0x6263)


def test_a_stacked_member_made_valid_invalidates_its_sibling_only(device):
    sel = selector(REPLACE_FIRST)
    out = send(device, ethernet(ETHERTYPE) + sel + option(False, 0x5A) + option(False, 0x61) + option(False, 0x62))
    assert out == report(OPTION | OPTION_BYTE, FIRST_SHORT | SECOND_BYTE) + ethernet(ETHERTYPE) + sel + \
        option(False, 0x5A) + option(True, 0x1234) + option(False, 0x62)


def test_a_truncated_stacked_option_leaves_the_rest_invalid(device):
    sel = selector(0, first=True)
    out = send(device, ethernet(ETHERTYPE) + sel + option(False, 0x5A) + b"\x61")
    assert out == report(OPTION | OPTION_BYTE, 0) + ethernet(ETHERTYPE) + sel + option(False, 0x5A) + b"\x61"



def test_a_select_on_the_last_stacked_union_member():
    """BMv2's `union_stack_field` select key (p4c 1.2.4 writes `options.last.short.value` as a field of a header
    named "options", which no target loads, so the JSON is edited here): when the second stacked option is
    0xDEAD, the parser goes on to extract the byte after it into copy.byte."""
    program = json.loads(program_json("union_test").read_text())
    states = program["parsers"][0]["parse_states"]
    second_short = next(s for s in states if s["name"] == "second_short")
    second_short["transition_key"] = [{"type": "union_stack_field", "value": ["options", "short", "value"]}]
    second_short["transitions"] = [
        {"type": "hexstr", "value": "0xdead", "mask": None, "next_state": "extra"},
        {"type": "default", "value": None, "mask": None, "next_state": None},
    ]
    states.append({"name": "extra", "id": 99, "transition_key": [],
                   "parser_ops": [{"op": "extract", "parameters": [{"type": "regular", "value": "copy.byte"}]}],
                   "transitions": [{"type": "default", "value": None, "mask": None, "next_state": None}]})
    edited = Device()
    edited.load_pipeline(json.dumps(program))
    body = selector(0, second=True) + option(False, 0x5A) + option(False, 0x61)
    for second, copied in ((0xDEAD, COPY | COPY_BYTE), (0xBEEF, 0)):
        _, out = only_output(edited.process_packet(1, ethernet(ETHERTYPE) + body + option(True, second) + b"\x77"))
        assert out == report(OPTION | OPTION_BYTE | copied, FIRST_BYTE | SECOND_SHORT) + ethernet(ETHERTYPE) + \
            body + option(True, second) + b"\x77"
