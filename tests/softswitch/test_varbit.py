# Run: .venv/bin/pytest tests/softswitch/test_varbit.py -q
"""Varbit fields with tests/softswitch/p4/varbit_test.p4: IPv4 options (up to 320 bits, length from ihl) in
a verified and updated checksum, a varbit between two fixed fields, BMv2's extract_VL errors, a header copy
and a varbit assignment, == over varbits, and emission at the current length.

The output is a report (error code, checksum_error, copy.data == mid.data, valid bits: ipv4, mid, mid2, copy),
then ethernet and the valid headers at their current lengths.
"""

from __future__ import annotations

import pytest
from scapy.layers.inet import IP, UDP, IPOption_NOP, IPOption_RR
from switch_helpers import device_for, ethernet, internet_checksum, only_output

# Every test runs on the native and on the Python packet pipeline (conftest.py).
pytestmark = pytest.mark.usefixtures("backend")

NO_ERROR, TOO_SHORT, INVALID_ARGUMENT, HEADER_TOO_SHORT = 0, 1, 2, 3
IPV4, MID, MID2, COPY = 1, 2, 4, 8
NOTHING, COPY_HEADER, ASSIGN_VARBIT, INVALIDATE = 0, 1, 2, 3
TRAILER = b"\x12\x34"


@pytest.fixture(scope="module")
def device():
    return device_for("varbit_test")


def send(device, data: bytes) -> bytes:
    port, out = only_output(device.process_packet(1, data))
    assert port == 1
    return out


def report(error: int = NO_ERROR, checksum_error: int = 0, equal: int = 0, valid: int = 0) -> bytes:
    return bytes([error, checksum_error, equal, valid])


def ipv4(options, ttl: int = 9) -> bytes:
    return bytes(IP(src="10.0.0.1", dst="10.0.0.2", ttl=ttl, options=options) / UDP(sport=1, dport=2) / b"data")


def with_checksum(header: bytes) -> bytes:
    """The IPv4 header (options included) with its checksum recomputed."""
    zeroed = header[:10] + b"\0\0" + header[12:]
    return zeroed[:10] + internet_checksum(zeroed).to_bytes(2, "big") + zeroed[12:]


@pytest.mark.parametrize("options", [
    [],
    [IPOption_NOP(), IPOption_NOP(), IPOption_NOP(), IPOption_NOP()],
    [IPOption_RR(routers=["1.2.3.4", "5.6.7.8"])],
    [IPOption_RR(routers=["10.0.0.%d" % i for i in range(9)])],  # 40 bytes: the largest, 320 bits
])
def test_ipv4_options_are_in_the_checksum(device, options):
    packet = ipv4(options)
    ihl = (packet[0] & 0xF) * 4
    assert ihl == 20 + len(bytes(IP(options=options))) - 20
    out = send(device, ethernet(0x0800) + packet)
    header = bytearray(packet[:ihl])
    header[8] -= 1  # ttl
    assert out == report(valid=IPV4) + ethernet(0x0800) + with_checksum(bytes(header)) + packet[ihl:]


def test_a_wrong_checksum_over_options_is_a_checksum_error(device):
    packet = bytearray(ipv4([IPOption_RR(routers=["1.2.3.4"])]))
    packet[22] ^= 0x40  # inside the options: the checksum no longer matches
    ihl = (packet[0] & 0xF) * 4
    out = send(device, ethernet(0x0800) + bytes(packet))
    header = bytearray(packet[:ihl])
    header[8] -= 1
    assert out == report(checksum_error=1, valid=IPV4) + ethernet(0x0800) + with_checksum(bytes(header)) + \
        bytes(packet[ihl:])


def mid(bits: int, op: int, data: bytes) -> bytes:
    return bytes([bits, op]) + data + TRAILER


@pytest.mark.parametrize("nbytes", [0, 1, 5, 8])
def test_a_varbit_between_fixed_fields_is_extracted_and_emitted_at_its_length(device, nbytes):
    data = bytes(range(0x41, 0x41 + nbytes))
    frame = ethernet(0x88BB) + mid(8 * nbytes, NOTHING, data) + b"rest"
    assert send(device, frame) == report(valid=MID) + frame[:]


@pytest.mark.parametrize("bits, error", [(12, INVALID_ARGUMENT), (72, HEADER_TOO_SHORT), (64, TOO_SHORT)])
def test_extract_errors_as_bmv2_checks_them(device, bits, error):
    # 12 bits is not whole bytes; 72 bits (with the whole header there) is more than the header's max_length
    # allows; 64 bits of data and the trailer do not fit in the 4 bytes that follow (BMv2 checks the packet's
    # length before max_length).
    body = bytes([bits, 0]) + (b"ABCD" if bits == 64 else b"ABCDEFGHI" + TRAILER)
    frame = ethernet(0x88BB) + body
    assert send(device, frame) == report(error=error) + frame


def test_copying_the_header_copies_the_varbit_and_its_length(device):
    frame = ethernet(0x88BB) + mid(40, COPY_HEADER, b"ABCDE") + b"rest"
    copied = bytes([40, COPY_HEADER]) + b"ABCDE" + b"\xbe\xef"
    assert send(device, frame) == report(valid=MID | MID2) + frame[:-4] + copied + b"rest"


@pytest.mark.parametrize("nbytes", [0, 3, 8])
def test_a_varbit_assignment_carries_the_length_and_compares_equal(device, nbytes):
    data = bytes(range(0x61, 0x61 + nbytes))
    frame = ethernet(0x88BB) + mid(8 * nbytes, ASSIGN_VARBIT, data) + b"rest"
    assert send(device, frame) == report(equal=1, valid=MID | COPY) + frame[:-4] + data + b"rest"


def test_an_invalidated_varbit_header_is_not_emitted(device):
    frame = ethernet(0x88BB) + mid(24, INVALIDATE, b"xyz") + b"rest"
    assert send(device, frame) == report(valid=0) + ethernet(0x88BB) + b"rest"
