# Run: /work/main/.venv/bin/pytest tests/controller/test_encoding.py
"""Value encoding: canonical bytestrings, padded-form reads, address text forms, worker bitmaps."""

from __future__ import annotations

import pytest

from omnireduce.controller.encoding import (
    bitmap_members,
    decode_int,
    encode_int,
    format_ipv4,
    format_mac,
    parse_ipv4,
    parse_ipv4_prefix,
    parse_mac,
    prefix_mask,
)
from omnireduce.controller.errors import BadInputError


@pytest.mark.parametrize("value, width, expected", [
    (0, 9, b"\x00"),            # zero is one byte, never empty
    (1, 9, b"\x01"),
    (255, 9, b"\xff"),
    (256, 9, b"\x01\x00"),
    (511, 9, b"\x01\xff"),      # the largest 9-bit port
    (0x0A000001, 32, b"\x0a\x00\x00\x01"),
    (0x000A0001, 32, b"\x0a\x00\x01"),  # leading zero bytes are dropped (canonical)
    ((1 << 48) - 1, 48, b"\xff" * 6),
])
def test_encode_int_is_canonical(value: int, width: int, expected: bytes) -> None:
    assert encode_int(value, width) == expected
    assert decode_int(expected, width) == value


@pytest.mark.parametrize("value, width", [(512, 9), (-1, 16), (1 << 32, 32), (1 << 48, 48)])
def test_encode_int_refuses_values_outside_the_field(value: int, width: int) -> None:
    with pytest.raises(BadInputError, match=f"{width} bits"):
        encode_int(value, width, what="port")


@pytest.mark.parametrize("value", [True, 1.0, "1", None])
def test_encode_int_refuses_non_integers(value) -> None:
    with pytest.raises(BadInputError, match="expected an integer"):
        encode_int(value, 16)


def test_decode_int_accepts_padded_form_and_rejects_too_wide() -> None:
    assert decode_int(b"\x00\x00\x00\x07", 9) == 7  # a legacy server's padded answer
    assert decode_int(b"\x00\x01\xff", 9) == 511
    with pytest.raises(BadInputError, match="wider than its 9-bit field"):
        decode_int(b"\x02\x00", 9)
    with pytest.raises(BadInputError, match="empty bytestring"):
        decode_int(b"", 9)


def test_mac_round_trip_and_errors() -> None:
    assert parse_mac("02:00:00:00:00:0a") == 0x02000000000A
    assert parse_mac("02-00-00-00-00-0A") == 0x02000000000A
    assert format_mac(0x02000000000A) == "02:00:00:00:00:0a"
    for bad in ("02:00:00:00:00", "02:00:00:00:00:0g", "0200.0000.000a", ""):
        with pytest.raises(BadInputError, match="not a MAC address"):
            parse_mac(bad)


def test_ipv4_round_trip_and_errors() -> None:
    assert parse_ipv4("10.0.0.1") == 0x0A000001
    assert format_ipv4(0x0A000001) == "10.0.0.1"
    for bad in ("10.0.0", "10.0.0.256", "host", ""):
        with pytest.raises(BadInputError, match="not an IPv4 address"):
            parse_ipv4(bad)


def test_ipv4_prefix() -> None:
    assert str(parse_ipv4_prefix("10.0.0.0/24")) == "10.0.0.0/24"
    assert parse_ipv4_prefix("10.0.0.7").prefixlen == 32
    with pytest.raises(BadInputError, match="not an IPv4 prefix"):
        parse_ipv4_prefix("10.0.0.1/24")  # host bits set
    assert prefix_mask(24, 32) == 0xFFFFFF00
    assert prefix_mask(32, 32) == 0xFFFFFFFF


def test_bitmap_members() -> None:
    assert bitmap_members(0) == ()
    assert bitmap_members(0b1) == (0,)
    assert bitmap_members(0b1010_0101) == (0, 2, 5, 7)
    assert bitmap_members(1 << 31) == (31,)
