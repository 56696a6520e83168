"""P4Runtime bytestring encoding of unsigned integers (P4Runtime spec, "Bytestrings").

A value of a ``bit<W>`` field travels as a big-endian byte string. The *canonical* form is the shortest
one (no leading zero bytes; zero itself is ``b"\\x00"``) and is what this server always produces. On
input we also accept the padded, non-canonical forms that older clients send (as BMv2/PI do), but the
value must fit in ``W`` bits; an empty string is never a valid value.
"""

from __future__ import annotations

from omnireduce.softswitch.p4runtime.errors import P4RuntimeError


def decode_uint(data: bytes, bitwidth: int, what: str) -> int:
    """The integer that `data` encodes, checked to fit in `bitwidth` bits; `what` names it in errors."""
    if not data:
        raise P4RuntimeError.invalid_argument(f"{what}: empty bytestring (zero is encoded as b'\\x00')")
    value = int.from_bytes(data, "big")
    if value.bit_length() > bitwidth:
        raise P4RuntimeError.invalid_argument(
            f"{what}: bytestring 0x{data.hex()} does not fit in {bitwidth} bits"
        )
    return value


def encode_uint(value: int, bitwidth: int | None = None) -> bytes:
    """The canonical bytestring of `value` (shortest big-endian form, b'\\x00' for zero).

    `bitwidth`, when given, guards against handing out a value the P4Info says cannot exist.
    """
    if value < 0:
        raise ValueError(f"cannot encode negative value {value}")
    if bitwidth is not None and value.bit_length() > bitwidth:
        raise ValueError(f"value {value} does not fit in {bitwidth} bits")
    return value.to_bytes(max(1, (value.bit_length() + 7) // 8), "big")


def all_ones(bitwidth: int) -> int:
    """The largest value of a `bitwidth`-bit field (the full mask, the top of a full range)."""
    return (1 << bitwidth) - 1
