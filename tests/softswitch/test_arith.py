# Run: .venv/bin/pytest tests/softswitch/test_arith.py -q
"""Packet tests of softswitch expressions and primitives with tests/softswitch/p4/arith_test.p4.

Every expected value is computed here with plain Python integer arithmetic (and zlib / a bitwise CRC-16 /
an RFC 1071 checksum for the hashes), independently of the softswitch's code generators.
"""

from __future__ import annotations

import logging
import random
import struct
import zlib

import pytest
from switch_helpers import crc16_arc_bitwise, device_for, ethernet, internet_checksum, only_output

# Every test runs on the native and on the Python packet pipeline (conftest.py).
pytestmark = pytest.mark.usefixtures("backend")

OPS = struct.Struct(">BBHHIIbbhBBB")
RES = struct.Struct(">BBBHHIIIbbbBHHhIIIHBHBIBBbBBH6sHIIHB")
RES_NAMES = (
    "add8 sub8 mul8 add16 sub16 add32 sub32 mul32 sadd8 ssub8 sneg8 cmp shl16 shr16 sar16 and32 or32 xor32 not16 "
    "slice8 concat16 trunc8 sext32 uaddsat usubsat saddsat max8 cls reg16 reg48 crc16 crc32 ident csum after_exit"
).split()
T = "TestIngress."


def wrap_signed(value: int, bits: int) -> int:
    value &= (1 << bits) - 1
    return value - (1 << bits) if value >> (bits - 1) else value


def expected(a8, b8, a16, b16, a32, b32, s8a, s8b, s16a, shift, reg16_before=0, reg48_before=0, exited=False):
    cmp = (
        (a8 < b8) | (s8a < s8b) << 1 | (a16 >= b16) << 2 | (s8a <= s8b) << 3 | (a32 == b32) << 4 | (a32 != b32) << 5
    )
    two = a32.to_bytes(4, "big") + b32.to_bytes(4, "big")
    return {
        "add8": (a8 + b8) & 0xFF, "sub8": (a8 - b8) & 0xFF, "mul8": (a8 * b8) & 0xFF,
        "add16": (a16 + b16) & 0xFFFF, "sub16": (a16 - b16) & 0xFFFF,
        "add32": (a32 + b32) & 0xFFFFFFFF, "sub32": (a32 - b32) & 0xFFFFFFFF, "mul32": (a32 * b32) & 0xFFFFFFFF,
        "sadd8": wrap_signed(s8a + s8b, 8), "ssub8": wrap_signed(s8a - s8b, 8), "sneg8": wrap_signed(-s8a, 8),
        "cmp": cmp,
        "shl16": (a16 << shift) & 0xFFFF, "shr16": a16 >> shift, "sar16": s16a >> shift,
        "and32": a32 & b32, "or32": a32 | b32, "xor32": a32 ^ b32, "not16": ~a16 & 0xFFFF,
        "slice8": (a32 >> 8) & 0xFF, "concat16": a8 << 8 | b8, "trunc8": a32 & 0xFF, "sext32": s8a & 0xFFFFFFFF,
        "uaddsat": min(a8 + b8, 255), "usubsat": max(a8 - b8, 0), "saddsat": max(-128, min(127, s8a + s8b)),
        "max8": max(a8, b8), "cls": 3 if a8 > 100 else 2 if a8 > 50 else 1,
        "reg16": (reg16_before + a16) & 0xFFFF, "reg48": (reg48_before + a32) & 0xFFFFFFFFFFFF,
        "crc16": crc16_arc_bitwise(two), "crc32": zlib.crc32(two),
        "ident": a32, "csum": internet_checksum(struct.pack(">HHB", a16, b16, a8)),
        "after_exit": 0 if exited else 1,
    }


@pytest.fixture
def device():
    return device_for("arith_test")


def run(device, ops: tuple, reg_index: int = 0, flags: int = 0) -> dict[str, int] | None:
    frame = ethernet(0x88B7) + OPS.pack(*ops, reg_index, flags)
    outputs = device.process_packet(4, frame)
    if not outputs:
        return None
    port, out = only_output(outputs)
    assert port == 4
    assert out[: len(frame)] == frame  # operands come back untouched
    values = dict(zip(RES_NAMES, RES.unpack(out[len(frame) :])))
    values["reg48"] = int.from_bytes(values["reg48"], "big")
    return values


CASES = [
    (200, 100, 40000, 30000, 0xDEADBEEF, 0x12345678, -5, 7, -300, 3),
    (1, 2, 1, 2, 1, 2, 127, 1, 32767, 0),
    (255, 255, 65535, 65535, 0xFFFFFFFF, 0xFFFFFFFF, -128, -128, -32768, 15),
    (0, 1, 0, 1, 0, 0, -128, 1, -1, 16),
    (60, 60, 12345, 12345, 7, 7, 100, 100, 5, 200),
]


@pytest.mark.parametrize("ops", CASES)
def test_expressions(device, ops):
    assert run(device, ops) == expected(*ops)


def test_random_operands(device):
    rng = random.Random(99)
    for _ in range(200):
        ops = (
            rng.randrange(256), rng.randrange(256), rng.randrange(65536), rng.randrange(65536),
            rng.randrange(1 << 32), rng.randrange(1 << 32), rng.randrange(-128, 128), rng.randrange(-128, 128),
            rng.randrange(-32768, 32768), rng.randrange(0, 24),
        )
        device.register_reset(T + "acc16")
        device.register_reset(T + "acc48")
        assert run(device, ops) == expected(*ops)


def test_registers_accumulate_across_packets(device):
    ops = CASES[0]
    first = run(device, ops, reg_index=5)
    second = run(device, ops, reg_index=5)
    assert second["reg16"] == (2 * ops[2]) & 0xFFFF
    assert second["reg48"] == 2 * ops[4]
    assert first["reg16"] == ops[2]
    assert device.register_read(T + "acc16", 5) == second["reg16"]
    assert device.register_read(T + "acc48", 5) == second["reg48"]
    assert device.register_bitwidth(T + "acc48") == 48
    assert list(device.register_read_all(T + "acc16")) == [0] * 5 + [second["reg16"]] + [0] * 2


def test_register_written_by_control_plane_is_seen(device):
    device.register_write(T + "acc48", 2, (1 << 48) - 1)
    assert run(device, CASES[1], reg_index=2)["reg48"] == 0  # wraps at 48 bits


def test_out_of_range_register_index_is_a_no_op(device):
    result = run(device, CASES[0], reg_index=9)
    assert (result["reg16"], result["reg48"]) == (0, 0)
    assert list(device.register_read_all(T + "acc16")) == [0] * 8


def test_exit_stops_the_control(device):
    result = run(device, CASES[0], flags=1)
    assert result == expected(*CASES[0], exited=True)


def test_failed_assert_drops_and_counts(device):
    assert run(device, CASES[0], flags=2) is None
    assert device.stats["drop:assert_failed"] == 1
    assert run(device, CASES[0]) is not None  # the switch goes on


def test_log_msg(device, caplog):
    with caplog.at_level(logging.INFO, logger="omnireduce.softswitch.p4"):
        run(device, CASES[0])
    assert "arith_test: a8=200 b8=100" in caplog.text
