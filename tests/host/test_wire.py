# Run: .venv/bin/pytest tests/host/test_wire.py
"""Packet building and parsing, byte for byte (docs/protocol.md section 2)."""

import numpy as np
import pytest
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Ether

from omnireduce.host.wire import (
    CONTROL_FRAME_BYTES,
    DATA_FRAME_BYTES,
    HEADER_DTYPE,
    Endpoint,
    MalformedPacket,
    OmniHeader,
    decode_payload,
    encode_payload,
    frame_prefix,
    ipv4_checksum,
    parse_mac,
    parse_udp_frame,
)
from omnireduce.p4src import constants as C
from omnireduce.p4src.scapy_omni import Omni

WORKER = Endpoint.of("02:00:00:00:00:01", "10.0.0.1", 5000)
SWITCH = Endpoint.of("02:00:00:00:00:fe", "10.0.0.254", C.OMNI_UDP_PORT)

CONTRIB_HEADER_HEX = "01 01 0102 0304 0005 00000105 ffffffff 80 20 0000"
LANES_HEX = "00000001 ffffffff 7fffffff" + " 00000000" * 29
# Ethernet (dst, src, type) | IPv4 (total 176, DF, TTL 64, UDP, checksum 0x253f) | UDP (5000 -> 20306, length 156)
FRAME_PREFIX_HEX = (
    "020000 0000fe 020000 000001 0800"
    " 45 00 00b0 0000 4000 40 11 253f 0a000001 0a0000fe"
    " 1388 4f52 009c 0000"
)


def hex_bytes(text: str) -> bytes:
    return bytes.fromhex(text.replace(" ", ""))


def contrib_header() -> OmniHeader:
    return OmniHeader(msg_type=C.MSG_CONTRIB, flags=1, job_id=0x0102, tensor_id=0x0304, slot=5,
                      block_index=0x105, next_block=C.END_OF_TENSOR, exponent=0x80, lane_count=C.LANES)


def contrib_lanes() -> np.ndarray:
    lanes = np.zeros(C.LANES, dtype=np.int32)
    lanes[:3] = [1, -1, 2**31 - 1]
    return lanes


def test_layout_follows_the_generated_constants():
    assert HEADER_DTYPE.names == tuple(name for name, _ in C.OMNI_HEADER_FIELDS)
    assert HEADER_DTYPE.itemsize == C.OMNI_HEADER_BYTES == 20
    assert DATA_FRAME_BYTES == 190 and CONTROL_FRAME_BYTES == 62


def test_contrib_payload_is_byte_exact():
    payload = encode_payload(contrib_header(), contrib_lanes())
    assert payload == hex_bytes(CONTRIB_HEADER_HEX + LANES_HEX)
    # The numpy view reads the same fields.
    fields = np.frombuffer(payload[:20], dtype=HEADER_DTYPE)[0]
    assert int(fields["block_index"]) == 0x105 and int(fields["next_block"]) == C.END_OF_TENSOR


def test_request_payload_is_byte_exact():
    request = OmniHeader(C.MSG_REQUEST, 2, 1, 7, 2, 66, 0, 0, 0, peer=5)
    assert encode_payload(request) == hex_bytes("04 02 0001 0007 0002 00000042 00000000 00 00 05 00")


def test_decode_round_trips_and_rejects_truncation():
    header, lanes = decode_payload(hex_bytes(CONTRIB_HEADER_HEX + LANES_HEX))
    assert header == contrib_header() and header.set_index == 1
    assert lanes.dtype == np.int32 and lanes.tolist() == contrib_lanes().tolist()
    assert decode_payload(encode_payload(OmniHeader(C.MSG_REQUEST, 0, 1, 2, 3, 4, 0, 0, 0)))[1] is None
    with pytest.raises(MalformedPacket, match="shorter than the 20-byte header"):
        decode_payload(b"\x01" * 19)
    with pytest.raises(MalformedPacket, match="lane_count 32"):
        decode_payload(hex_bytes(CONTRIB_HEADER_HEX) + b"\0" * 100)
    with pytest.raises(ValueError, match="exactly 32 lanes"):
        encode_payload(contrib_header(), np.zeros(31, dtype=np.int32))


def test_frame_prefix_is_byte_exact_and_matches_scapy():
    prefix = frame_prefix(WORKER, SWITCH, 148)
    assert prefix == hex_bytes(FRAME_PREFIX_HEX)
    frame = prefix + encode_payload(contrib_header(), contrib_lanes())
    reference = bytes(
        Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:fe")
        / IP(src="10.0.0.1", dst="10.0.0.254", id=0, flags="DF", ttl=64)
        / UDP(sport=5000, dport=C.OMNI_UDP_PORT, chksum=0)
        / Omni(msg_type=1, flags=1, job_id=0x0102, tensor_id=0x0304, slot=5, block_index=0x105,
               next_block=C.END_OF_TENSOR, exponent=0x80, values=contrib_lanes().tolist())
    )
    assert frame == reference
    assert len(frame) == DATA_FRAME_BYTES


def test_ipv4_checksum_of_a_known_header():
    header = hex_bytes("4500 0073 0000 4000 4011 0000 c0a8 0001 c0a8 00c7")  # the Wikipedia example
    assert ipv4_checksum(header) == 0xB861


def result_frame(**changes) -> bytearray:
    payload = encode_payload(contrib_header()._replace(msg_type=C.MSG_RESULT), contrib_lanes())
    return bytearray(frame_prefix(SWITCH, WORKER, len(payload)) + payload)


def test_parse_frame_returns_addresses_and_payload_without_padding():
    frame = result_frame() + b"\0" * 10  # Ethernet padding after the datagram is ignored
    parsed = parse_udp_frame(frame)
    assert (parsed.src_ip, parsed.src_port, parsed.dst_ip, parsed.dst_port) == (SWITCH.ip, SWITCH.port, WORKER.ip,
                                                                               WORKER.port)
    assert parsed.dst_mac == WORKER.mac and parsed.src_mac == SWITCH.mac
    assert bytes(parsed.payload) == hex_bytes("02" + CONTRIB_HEADER_HEX[2:] + LANES_HEX)


@pytest.mark.parametrize(
    "offset, value, reason",
    [
        (12, 0x86, "not IPv4"),            # ethertype 0x86dd
        (14, 0x46, "options"),             # IHL 6
        (23, 6, "not UDP"),                # TCP
        (24, 0x00, "checksum"),            # checksum byte changed
        (16, 0x01, "disagree"),            # IPv4 total length too large (checksum fixed below)
    ],
)
def test_parse_frame_rejects_bad_frames(offset, value, reason):
    frame = result_frame()
    frame[offset] = value
    if offset == 16:  # keep the checksum right so that the length check is the one that fails
        frame[24:26] = b"\0\0"
        frame[24:26] = ipv4_checksum(frame[14:34]).to_bytes(2, "big")
    with pytest.raises(MalformedPacket, match=reason):
        parse_udp_frame(frame)
    with pytest.raises(MalformedPacket, match="too short"):
        parse_udp_frame(result_frame()[:41])


def test_parse_mac_and_endpoint_validation():
    assert parse_mac("02-00-00-00-00-0A") == bytes([2, 0, 0, 0, 0, 10])
    for bad in ("02:00:00:00:00", "zz:00:00:00:00:00", "0200.0000.0001"):
        with pytest.raises(ValueError, match="MAC"):
            parse_mac(bad)
    with pytest.raises(ValueError, match="port"):
        Endpoint.of("02:00:00:00:00:01", "10.0.0.1", 70000)
