"""Value encoding: integers <-> P4Runtime bytestrings, and the text forms of MAC and IPv4 addresses.

P4Runtime (spec section 8.4) carries every match value, action parameter and register cell as a big-endian
bytestring. We always SEND the canonical form, the shortest one (at least one byte, so 0 is b"\\x00"), which every
conformant server accepts; we ACCEPT both the canonical and the zero-padded legacy form on reads, because older
servers answer in the padded form. A value that does not fit its field's bitwidth is an error at encode time,
never a silent truncation.
"""

from __future__ import annotations

import ipaddress

from omnireduce import addresses
from omnireduce.controller.errors import BadInputError

def encode_int(value: int, bitwidth: int, *, what: str = "value") -> bytes:
    """The canonical bytestring of an unsigned `value` of a `bitwidth`-bit field."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise BadInputError(f"{what}: expected an integer, got {value!r}")
    if value < 0 or value >= 1 << bitwidth:
        raise BadInputError(f"{what}: {value} does not fit in {bitwidth} bits (0 .. {(1 << bitwidth) - 1})")
    return value.to_bytes(max(1, (value.bit_length() + 7) // 8), "big")


def decode_int(data: bytes, bitwidth: int, *, what: str = "value") -> int:
    """The integer of a canonical or zero-padded bytestring; rejects a value wider than the field."""
    if not data:
        raise BadInputError(f"{what}: empty bytestring (P4Runtime requires at least one byte)")
    value = int.from_bytes(data, "big")
    if value >= 1 << bitwidth:
        raise BadInputError(f"{what}: 0x{data.hex()} is wider than its {bitwidth}-bit field")
    return value


def prefix_mask(prefix_len: int, bitwidth: int) -> int:
    """The mask of the `prefix_len` most significant bits of a `bitwidth`-bit field."""
    return ((1 << prefix_len) - 1) << (bitwidth - prefix_len)


def parse_mac(text: str) -> int:
    """`02:00:00:00:00:01` (or with dashes) as a 48-bit integer."""
    try:
        return int.from_bytes(addresses.parse_mac(text), "big")
    except ValueError as error:
        raise BadInputError(str(error)) from None


def format_mac(value: int) -> str:
    return addresses.format_mac(value.to_bytes(6, "big"))


def parse_ipv4(text: str) -> int:
    """A dotted-quad IPv4 address as a 32-bit integer."""
    try:
        return int(ipaddress.IPv4Address(text))
    except (ipaddress.AddressValueError, ValueError, TypeError):
        raise BadInputError(f"{text!r} is not an IPv4 address (expected a dotted quad like 10.0.0.1)") from None


def format_ipv4(value: int) -> str:
    return str(ipaddress.IPv4Address(value))


def parse_ipv4_prefix(text: str) -> ipaddress.IPv4Network:
    """`10.0.0.0/24` (or a bare address, meaning /32); host bits must be zero."""
    try:
        return ipaddress.IPv4Network(text, strict=True)
    except (ipaddress.AddressValueError, ipaddress.NetmaskValueError, ValueError, TypeError) as error:
        raise BadInputError(f"{text!r} is not an IPv4 prefix ({error}); expected e.g. 10.0.0.0/24") from None


def bitmap_members(bitmap: int) -> tuple[int, ...]:
    """The positions of the set bits of `bitmap`, lowest first (a worker bitmap decoded to worker ids)."""
    members = []
    position = 0
    while bitmap:
        if bitmap & 1:
            members.append(position)
        bitmap >>= 1
        position += 1
    return tuple(members)
