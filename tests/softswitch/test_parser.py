# Run: .venv/bin/pytest tests/softswitch/test_parser.py -q
"""Packet tests of the softswitch parser with tests/softswitch/p4/parser_test.p4.

The program reflects each packet and prepends a 4-byte report: (error code, checksum_error, valid-header
mask, parse path). Error codes as mapped by the program: 0 NoError, 1 PacketTooShort, 2 NoMatch, 3 BadTag.
Valid mask bits: 1 ethernet, 2 tag, 4 big, 8 ipv4, 16 udp.
"""

from __future__ import annotations

import random
import struct

import pytest
from scapy.layers.inet import IP, TCP, UDP
from scapy.packet import Raw
from switch_helpers import device_for, ethernet, only_output

# Every test runs on the native and on the Python packet pipeline (conftest.py).
pytestmark = pytest.mark.usefixtures("backend")

ETH, TAG, BIG, IPV4, UDP_BIT = 1, 2, 4, 8, 16
NO_ERROR, TOO_SHORT, NO_MATCH, BAD_TAG = 0, 1, 2, 3


@pytest.fixture(scope="module")
def device():
    return device_for("parser_test")


def report(error: int, checksum_error: int, mask: int, path: int) -> bytes:
    return bytes([error, checksum_error, mask, path])


def ipv4_udp(payload: bytes = b"hello") -> bytes:
    return bytes(IP(src="10.0.0.1", dst="10.0.0.2", ttl=9) / UDP(sport=1000, dport=2000) / Raw(payload))


def send(device, frame: bytes, port: int = 3) -> bytes:
    out_port, out = only_output(device.process_packet(port, frame))
    assert out_port == port
    return out


def test_ipv4_udp_is_parsed_fully_and_reemitted_unchanged(device):
    frame = ethernet(0x0800) + ipv4_udp()
    assert send(device, frame) == report(NO_ERROR, 0, ETH | IPV4 | UDP_BIT, 0) + frame


def test_select_without_default_accepts_as_bmv2_does(device):
    # The P4 spec says NoMatch; p4c-bm2-ss 1.2.4 emits no default case and BMv2 then accepts, without error.
    frame = ethernet(0x0800) + bytes(IP(src="10.0.0.1", dst="10.0.0.2") / TCP() / Raw(b"x" * 8))
    assert send(device, frame) == report(NO_ERROR, 0, ETH | IPV4, 0) + frame


def test_bad_ipv4_checksum_sets_checksum_error(device):
    packet = bytearray(ethernet(0x0800) + ipv4_udp())
    packet[14 + 10] ^= 0x5A  # corrupt the header checksum
    frame = bytes(packet)
    assert send(device, frame) == report(NO_ERROR, 1, ETH | IPV4 | UDP_BIT, 0) + frame


def test_checksum_of_a_valid_ipv4_header_is_verified(device):
    packet = IP(src="192.168.1.1", dst="192.168.1.2", id=77, flags="DF", frag=0, ttl=3) / UDP() / Raw(b"p")
    frame = ethernet(0x0800) + bytes(packet)
    assert send(device, frame)[1] == 0


@pytest.mark.parametrize("ether_type", [0x88B5, 0x8800, 0x88FF])
def test_masked_select_case_and_field_path(device, ether_type):
    frame = ethernet(ether_type) + bytes([1, 0]) + struct.pack(">II", 5, 6) + b"rest"
    assert send(device, frame) == report(NO_ERROR, 0, ETH | TAG | BIG, 2) + frame


def test_verify_failure_keeps_extracted_headers(device):
    frame = ethernet(0x88B5) + bytes([1, 0]) + struct.pack(">II", 0, 6) + b"rest"
    assert send(device, frame) == report(BAD_TAG, 0, ETH | TAG | BIG, 2) + frame


def test_lookahead_select_and_advance_drop_the_skipped_bytes(device):
    inner = ipv4_udp(b"data")
    frame = ethernet(0x88B5) + bytes([2, 0]) + bytes([0xAA, 0xBB]) + inner
    expected = report(NO_ERROR, 0, ETH | TAG | IPV4 | UDP_BIT, 3) + ethernet(0x88B5) + bytes([2, 0]) + inner
    assert send(device, frame) == expected


@pytest.mark.parametrize("kind, peek", [(2, 0x00), (3, 0xAA), (0, 0)])
def test_default_case_of_a_two_field_key(device, kind, peek):
    frame = ethernet(0x88B5) + bytes([kind, 0, peek]) + b"more"
    assert send(device, frame) == report(NO_ERROR, 0, ETH | TAG, 1) + frame


def test_unmatched_ether_type_accepts(device):
    frame = ethernet(0x8900) + b"payload"
    assert send(device, frame) == report(NO_ERROR, 0, ETH, 0) + frame


@pytest.mark.parametrize("length", [0, 1, 13])
def test_frame_shorter_than_ethernet(device, length):
    frame = bytes(range(length))
    assert send(device, frame) == report(TOO_SHORT, 0, 0, 0) + frame


def test_truncated_ipv4_keeps_ethernet(device):
    frame = ethernet(0x0800) + ipv4_udp()[:10]
    assert send(device, frame) == report(TOO_SHORT, 0, ETH, 0) + frame


def test_lookahead_past_the_end_is_too_short(device):
    frame = ethernet(0x88B5) + bytes([2, 0])
    assert send(device, frame) == report(TOO_SHORT, 0, ETH | TAG, 1) + frame


def test_garbage_frames_never_break_the_switch(device):
    rng = random.Random(1234)
    for _ in range(300):
        length = rng.randrange(0, 120)
        frame = bytes(rng.randrange(256) for _ in range(length))
        if rng.random() < 0.5 and length >= 14:  # steer some into the deeper parse states
            frame = frame[:12] + rng.choice([b"\x08\x00", b"\x88\xb5"]) + frame[14:]
        out = send(device, frame)
        assert out[0] in (NO_ERROR, TOO_SHORT, NO_MATCH, BAD_TAG)
        # Everything parsed is re-emitted; only the two bytes skipped by advance() on path 3 disappear.
        assert len(out) == 4 + len(frame) - (2 if out[3] == 3 else 0)
    assert not any(key.startswith("drop:error") for key in device.stats)
