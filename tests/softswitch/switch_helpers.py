"""Helpers shared by the softswitch packet tests (imported by tests/softswitch/test_*.py).

The test programs live in tests/softswitch/p4/*.p4; their p4c-bm2-ss output (JSON + P4Info) is committed
under tests/softswitch/p4/build/ (rebuild with tests/softswitch/p4/compile.sh), so tests need no p4c.
"""

from __future__ import annotations

import struct
from pathlib import Path

from omnireduce.softswitch.device import Device

P4_DIR = Path(__file__).resolve().parent / "p4"
BUILD_DIR = P4_DIR / "build"

DST_MAC = 0x020000000002
SRC_MAC = 0x020000000001


def program_json(name: str) -> Path:
    path = BUILD_DIR / f"{name}.json"
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: run tests/softswitch/p4/compile.sh (needs p4c-bm2-ss)")
    return path


def device_for(name: str) -> Device:
    """A Device running tests/softswitch/p4/build/<name>.json."""
    device = Device(name=name)
    device.load_pipeline(program_json(name).read_bytes())
    return device


def ethernet(ether_type: int, dst: int = DST_MAC, src: int = SRC_MAC) -> bytes:
    return dst.to_bytes(6, "big") + src.to_bytes(6, "big") + struct.pack(">H", ether_type)


def only_output(outputs: list[tuple[int, bytes]]) -> tuple[int, bytes]:
    assert len(outputs) == 1, f"expected exactly one output frame, got {len(outputs)}: {outputs!r}"
    return outputs[0]


def crc16_arc_bitwise(data: bytes) -> int:
    """CRC-16/ARC written bit by bit (reflected poly 0xA001), independent of the table-driven code."""
    crc = 0
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
    return crc


def internet_checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = 0
    for (word,) in struct.iter_unpack(">H", data):
        total += word
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF
