"""Hash/checksum algorithms of BMv2 (src/bm_sim/calculations.cpp), over the bytes a calculation builds.

Each function takes the input bytes and returns an int, exactly as BMv2 computes it, so that programs
hashing or checksumming on this target produce the values they would on simple_switch.
"""

from __future__ import annotations

import binascii
import struct
import zlib
from collections.abc import Callable


def _reflect(value: int, bits: int) -> int:
    out = 0
    for i in range(bits):
        if value & (1 << i):
            out |= 1 << (bits - 1 - i)
    return out


def _crc16_table() -> list[int]:
    # CRC-16/ARC (poly 0x8005, reflected, init 0, xorout 0), table built MSB-first as BMv2 does.
    table = []
    for byte in range(256):
        rem = byte << 8
        for _ in range(8):
            rem = ((rem << 1) ^ 0x8005) if rem & 0x8000 else (rem << 1)
        table.append(rem & 0xFFFF)
    return table


_CRC16_TABLE = _crc16_table()
_REFLECT8 = [_reflect(b, 8) for b in range(256)]


def crc16(data: bytes) -> int:
    rem = 0
    table, refl = _CRC16_TABLE, _REFLECT8
    for byte in data:
        rem = table[refl[byte] ^ (rem >> 8)] ^ ((rem << 8) & 0xFFFF)
    return _reflect(rem, 16)


def crc32(data: bytes) -> int:
    return zlib.crc32(data) & 0xFFFFFFFF


def crc_ccitt(data: bytes) -> int:
    return binascii.crc_hqx(data, 0xFFFF)


def csum16_int(value: int, nbytes: int) -> int:
    """Internet checksum of the `nbytes`-byte big-endian number `value`.

    The one's complement sum of 16-bit words is congruent to the number itself modulo 0xFFFF (2**16 = 1 mod
    0xFFFF), so one big-int modulo replaces the word loop; a nonzero input whose sum is 0 mod 0xFFFF sums
    to 0xFFFF (one's complement "negative zero")."""
    if nbytes & 1:
        value <<= 8  # an odd length is padded with a zero byte
    total = value % 0xFFFF
    if total == 0 and value:
        total = 0xFFFF
    return ~total & 0xFFFF


def csum16(data: bytes) -> int:
    """Internet checksum (RFC 1071) of `data`, zero-padded to an even length, as a big-endian 16-bit value."""
    return csum16_int(int.from_bytes(data, "big"), len(data))


def identity(data: bytes) -> int:
    return int.from_bytes(data[:8], "big")


def _xor(width_bytes: int) -> Callable[[bytes], int]:
    fmt = {2: ">H", 4: ">I"}[width_bytes]

    def xor_hash(data: bytes) -> int:
        out = 0
        # BMv2 xor_hash: XOR of the big-endian words; a partial last word is zero-padded on the right.
        if len(data) % width_bytes:
            data = data + b"\x00" * (width_bytes - len(data) % width_bytes)
        for (word,) in struct.iter_unpack(fmt, data):
            out ^= word
        return out

    return xor_hash


ALGORITHMS: dict[str, Callable[[bytes], int]] = {
    "crc16": crc16,
    "crc32": crc32,
    "crcCCITT": crc_ccitt,
    "csum16": csum16,
    "cksum16": csum16,
    "identity": identity,
    "xor16": _xor(2),
    "xor32": _xor(4),
}

# Algorithms that can take the packed input as (int, byte count) directly, skipping the bytes round trip.
INT_ALGORITHMS: dict[str, Callable[[int, int], int]] = {"csum16": csum16_int, "cksum16": csum16_int}
