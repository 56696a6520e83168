# Run: .venv/bin/pytest tests/softswitch/test_log_assert.py -q
"""log_msg, assert and assume with tests/softswitch/p4/log_test.p4, on both packet pipelines and, where simple_switch
is installed, side by side with BMv2 (its console log holds the messages).

log_msg expands its format exactly as BMv2 does, quirks included (see codegen.context.LogFormat); a format BMv2
cannot expand makes BMv2 exit, here it drops the packet (`drop:log_msg_error`). A failed assert/assume aborts BMv2;
the softswitch drops the packet (`drop:assert_failed`) and goes on.
"""

from __future__ import annotations

import json
import logging
import struct

import pytest
from bmv2_files import SIMPLE_SWITCH, run_simple_switch, skip_without
from switch_helpers import device_for, ethernet, only_output, program_json

from omnireduce.softswitch.codegen.context import compile_log_format
from omnireduce.softswitch.device import Device

pytestmark = pytest.mark.usefixtures("backend")

LOG = struct.Struct(">BBHIQb")
P4_LOGGER = "omnireduce.softswitch.p4"


def log_frame(flags: int = 0, a8: int = 200, b16: int = 513, c32: int = 70000, d64: int = 1 << 40, s8: int = -5) -> bytes:
    return ethernet(0x88BC) + LOG.pack(flags, a8, b16, c32, d64, s8)


def expected_messages(a8: int = 200, b16: int = 513, c32: int = 70000, d64: int = 1 << 40, s8: int = -5,
                      port: int = 1, after_checks: bool = True) -> list[str]:
    messages = [
        "lt plain message",
        f"lt a8={a8} b16={b16} c32={c32}",
        f"lt d64={d64} s8={s8} port={port}",
        f"lt named {a8} and {s8}",
        f"lt escaped {{ {b16} }} end",
        f"lt sum={a8 + 1}",   # a bit<8> expression stored into an 8-bit temporary by p4c: 201 fits
    ]
    return messages + (["lt after the checks"] if after_checks else [])


def logged(caplog) -> list[str]:
    return [record.getMessage() for record in caplog.records if record.name == P4_LOGGER]


@pytest.fixture
def device():
    return device_for("log_test")


def test_log_msg_expands_values_as_bmv2(device, caplog):
    with caplog.at_level(logging.INFO, logger=P4_LOGGER):
        port, out = only_output(device.process_packet(1, log_frame()))
    assert port == 1 and out == log_frame()
    assert logged(caplog) == expected_messages()


def test_log_msg_costs_nothing_when_the_logger_is_off(device, caplog):
    with caplog.at_level(logging.WARNING, logger=P4_LOGGER):
        only_output(device.process_packet(1, log_frame()))
    assert logged(caplog) == []


@pytest.mark.parametrize("flags, reason", [(1, "assert"), (2, "assume")])
def test_failed_assert_or_assume_drops_the_packet(device, caplog, flags, reason):
    with caplog.at_level(logging.INFO, logger=P4_LOGGER):
        assert device.process_packet(1, log_frame(flags=flags)) == []
    assert device.stats["drop:assert_failed"] == 1
    assert logged(caplog) == expected_messages(after_checks=False)   # what ran before the check still logged
    assert only_output(device.process_packet(1, log_frame()))         # the switch goes on


def _program_with_formats(*formats: tuple[str, int]) -> dict:
    """log_test's JSON with its first log_msg call replaced by calls with these formats, each given the first
    `count` of hdr.log.a8 and hdr.log.b16."""
    program = json.loads(program_json("log_test").read_text())
    values = [{"type": "field", "value": ["log", "a8"]}, {"type": "field", "value": ["log", "b16"]}]
    for action in program["actions"]:
        calls = [p for p in action["primitives"] if p["op"] == "log_msg"]
        if calls:
            new_calls = [{"op": "log_msg", "parameters": [{"type": "string", "value": fmt},
                                                          {"type": "parameters_vector", "value": values[:n]}]}
                         for fmt, n in formats]
            at = action["primitives"].index(calls[0])
            action["primitives"][at:at + 1] = new_calls
            return program
    raise AssertionError("log_test has no log_msg call")


def test_a_format_bmv2_exits_on_drops_the_packet_and_is_reported_at_load(caplog):
    with caplog.at_level(logging.WARNING):
        device = Device()
        device.load_pipeline(_program_with_formats(("lt too few {} {}", 1)))
    assert "BMv2 exits when it runs this" in caplog.text
    assert device.process_packet(1, log_frame()) == []
    assert device.stats["drop:log_msg_error"] == 1


def test_quirky_formats_that_bmv2_accepts(caplog):
    device = Device()
    device.load_pipeline(_program_with_formats(("{}", 0), ("a{} {}", 2), ("tail{}", 1), ("a\\}{}", 1), ("}{}{", 1),
                                               ("a{xyz}b", 1)))
    with caplog.at_level(logging.INFO, logger=P4_LOGGER):
        only_output(device.process_packet(1, log_frame()))
    assert logged(caplog)[:6] == ["{}", "a200 513", "tail200", "a}200", "}200{", "a200b"]


# What BMv2 1.15 does with each format, with values 7 and 8 (observed with simple_switch --log-console; `exit`: it
# stops the process, with exit(1) or, for an unmatched brace, SIGABRT).
BMV2_FORMATS = [
    ("x{} first", 1, "x7 first"),
    ("{} first", 1, "exit"),          # the search for `{` starts at the second character
    ("{}", 0, "{}"),                  # ... so this one has no placeholder at all
    ("a{}{}", 2, "exit"),             # the character after a substituted value is not searched
    ("x{}{y}z", 2, "exit"),
    ("a{} {}", 2, "a7 8"),
    ("tail{}", 1, "tail7"),
    ("a{xyz}b", 1, "a7b"),            # anything between braces is a placeholder
    ("a{{}}b", 1, "a7}b"),
    ("a{}}b", 1, "a7}b"),
    ("}{}{", 1, "}7{"),
    ("a\\{}b", 0, "a{}b"),            # an escaped brace opens nothing
    ("a\\\\{}b", 1, "exit"),         # ... even after another backslash
    ("a{\\}}b", 1, "a7b"),            # an escaped closing brace does not close
    ("a\\}{}", 1, "a}7"),
    ("a{b", 0, "exit"),               # unmatched
    ("a{} {}", 1, "exit"),            # too few values
    ("plain", 1, "exit"),             # too many
]


@pytest.mark.parametrize("fmt, count, result", BMV2_FORMATS)
def test_format_expansion_follows_bmv2(backend, fmt, count, result):
    compiled = compile_log_format(fmt, count)
    if result == "exit":
        assert compiled.error is not None
    else:
        assert compiled.error is None
        assert compiled.expand([7, 8][:count]) == result


@pytest.mark.bmv2
@skip_without(SIMPLE_SWITCH, names="simple_switch")
def test_bmv2_logs_the_same_messages(backend, caplog):
    frames = [log_frame(), log_frame(a8=0, b16=0, c32=0, d64=(1 << 64) - 1, s8=-128), log_frame(a8=255, s8=127)]
    device = device_for("log_test")
    with caplog.at_level(logging.INFO, logger=P4_LOGGER):
        for frame in frames:
            only_output(device.process_packet(1, frame))
    ours = [m for m in logged(caplog) if m.startswith("lt ")]
    theirs = run_simple_switch(program_json("log_test"), frames, expected=len(frames), log_level="info",
                               until=lambda r: len(r.log_lines("lt ")) >= len(ours))
    assert theirs.log_lines("lt ") == ours


@pytest.mark.bmv2
@skip_without(SIMPLE_SWITCH, names="simple_switch")
def test_bmv2_aborts_where_the_softswitch_drops(backend):
    device = device_for("log_test")
    assert device.process_packet(1, log_frame(flags=1)) == []
    theirs = run_simple_switch(program_json("log_test"), [log_frame(), log_frame(flags=1), log_frame()],
                               log_level="info", until=lambda r: r.returncode is not None)
    assert "Assert error: assert(hdr.log.flags & 1 == 0) failed" in theirs.log
    assert theirs.returncode not in (None, 0)   # std::abort: nothing after the failed assert is processed
