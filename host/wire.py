"""The omni header and the Ethernet/IPv4/UDP frame around it (docs/protocol.md section 2).

The header layout is derived from ``omnireduce.p4src.constants.OMNI_HEADER_FIELDS`` (generated from
p4src/include/headers.p4): the struct format, the numpy dtype and the field order of :class:`OmniHeader` are checked
against it at import, so a change of the P4 header fails loudly here instead of corrupting packets.

The agent's hot path packs headers with :data:`HEADER` straight into preallocated buffers; :class:`OmniHeader`,
:func:`encode_payload` and :func:`decode_payload` are the readable forms for tests, logs and tools.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from ipaddress import IPv4Address
from typing import NamedTuple

import numpy as np

from omnireduce.addresses import parse_mac
from omnireduce.p4src import constants as C

_STRUCT_CODES = {8: "B", 16: "H", 32: "I"}

#: The omni header as a struct (network byte order), fields in wire order.
HEADER = struct.Struct("!" + "".join(_STRUCT_CODES[bits] for _, bits in C.OMNI_HEADER_FIELDS))
#: The same layout as a numpy structured dtype (for vectorised inspection of captured payloads).
HEADER_DTYPE = np.dtype([(name, f">u{bits // 8}") for name, bits in C.OMNI_HEADER_FIELDS])
#: One lane: a signed 32-bit two's-complement value in network byte order.
LANE_DTYPE = np.dtype(">i4")
LANES_BYTES = C.LANES * LANE_DTYPE.itemsize
#: A whole CONTRIB/RESULT/REPAIR payload, header fields then the lanes: a (n, DATA_PAYLOAD_BYTES) uint8 batch viewed
#: with it gives every field of every packet as one array (the agent's batch path parses and builds with it).
PAYLOAD_DTYPE = np.dtype(HEADER_DTYPE.descr + [("lanes", LANE_DTYPE, (C.LANES,))])
#: UDP payload of a CONTRIB, RESULT or REPAIR (header + lanes), and of a REQUEST (header only).
DATA_PAYLOAD_BYTES = C.OMNI_HEADER_BYTES + LANES_BYTES
CONTROL_PAYLOAD_BYTES = C.OMNI_HEADER_BYTES
ETHERNET_HEADER_BYTES = 14
#: Bytes in front of the omni header in a frame: Ethernet + IPv4 (no options) + UDP.
FRAME_OVERHEAD_BYTES = ETHERNET_HEADER_BYTES + C.IPV4_HEADER_BYTES + C.UDP_HEADER_BYTES
DATA_FRAME_BYTES = FRAME_OVERHEAD_BYTES + DATA_PAYLOAD_BYTES
CONTROL_FRAME_BYTES = FRAME_OVERHEAD_BYTES + CONTROL_PAYLOAD_BYTES
#: flags bit 7 of a CONTRIB that left late: a retransmission, or the first CONTRIB after a result this worker had to
#: recover (a timer or a gap). The P4 program ignores flags bits 2-7 and builds a RESULT from the CONTRIB that
#: completes the round, so the bit reaches every worker exactly when a late CONTRIB completed the round: its time
#: then measures a recovery, not the path, and no worker samples it (docs/protocol.md section 4, item 3).
FLAG_LATE = 0x80
#: Offset of the flags byte in the omni header.
FLAGS_OFFSET = HEADER_DTYPE.fields["flags"][1]
#: Ceiling on any datagram the agent accepts (a RESULT frame is 190 bytes; anything larger is not for us).
MAX_DATAGRAM_BYTES = 2048


class MalformedPacket(ValueError):
    """A datagram or frame that is not a well-formed packet for this agent (counted and ignored by the agent)."""


class OmniHeader(NamedTuple):
    """The omni header, field by field (docs/protocol.md section 2). Field order is wire order."""

    msg_type: int
    flags: int
    job_id: int
    tensor_id: int
    slot: int
    block_index: int
    next_block: int
    exponent: int
    lane_count: int
    peer: int = 0
    reserved: int = 0

    def pack(self) -> bytes:
        return HEADER.pack(*self)

    @classmethod
    def unpack(cls, buffer: bytes | bytearray | memoryview) -> "OmniHeader":
        return cls._make(HEADER.unpack_from(buffer))

    @property
    def set_index(self) -> int:
        return self.flags & C.SET_MASK


def _check_layout() -> None:
    names = tuple(name for name, _ in C.OMNI_HEADER_FIELDS)
    if OmniHeader._fields != names:
        raise ImportError(f"host.wire.OmniHeader fields {OmniHeader._fields} differ from the P4 header {names}")
    if HEADER.size != C.OMNI_HEADER_BYTES or HEADER_DTYPE.itemsize != C.OMNI_HEADER_BYTES:
        raise ImportError(f"omni header is {HEADER.size} bytes here but {C.OMNI_HEADER_BYTES} in the P4 program")


_check_layout()


def encode_payload(header: OmniHeader, lanes: np.ndarray | None = None) -> bytes:
    """Header followed by the lanes (int32 values, written big-endian); `lanes` None for a REQUEST."""
    if lanes is None:
        return header.pack()
    values = np.asarray(lanes)
    if values.shape != (C.LANES,):
        raise ValueError(f"a packet carries exactly {C.LANES} lanes, got shape {values.shape}")
    return header.pack() + values.astype(LANE_DTYPE).tobytes()


def decode_payload(payload: bytes | bytearray | memoryview) -> tuple[OmniHeader, np.ndarray | None]:
    """Split a UDP payload into its header and lanes (native int32, or None when lane_count is 0).

    Raises MalformedPacket when the payload is shorter than the header or than its lane_count announces.
    """
    if len(payload) < C.OMNI_HEADER_BYTES:
        raise MalformedPacket(f"payload of {len(payload)} bytes is shorter than the {C.OMNI_HEADER_BYTES}-byte header")
    header = OmniHeader.unpack(payload)
    if header.lane_count == 0:
        return header, None
    end = C.OMNI_HEADER_BYTES + header.lane_count * LANE_DTYPE.itemsize
    if len(payload) < end:
        raise MalformedPacket(f"lane_count {header.lane_count} needs {end} bytes, payload has {len(payload)}")
    lanes = np.frombuffer(payload, dtype=LANE_DTYPE, count=header.lane_count, offset=C.OMNI_HEADER_BYTES)
    return header, lanes.astype(np.int32)


# --- Ethernet / IPv4 / UDP, for transports that build whole frames ---------------------------------------------

_ETH_IPV4_UDP = struct.Struct("!6s6sH BBHHHBBH4s4s HHHH")
_IPV4_WORDS = struct.Struct("!10H")
_IPV4_VERSION_IHL = 0x45  # version 4, 5 words: the protocol admits no IPv4 options
_IPV4_DONT_FRAGMENT = 0x4000
DEFAULT_TTL = 64


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One end of the aggregation traffic as it appears inside frames: MAC, IPv4 address and UDP port."""

    mac: bytes
    ip: IPv4Address
    port: int

    def __post_init__(self) -> None:
        if len(self.mac) != 6:
            raise ValueError(f"a MAC address has 6 bytes, got {len(self.mac)}")
        if not 0 <= self.port <= 0xFFFF:
            raise ValueError(f"UDP port {self.port} out of range")

    @classmethod
    def of(cls, mac: str, ip: str, port: int) -> "Endpoint":
        return cls(parse_mac(mac), IPv4Address(ip), port)


def ipv4_checksum(header: bytes | bytearray | memoryview) -> int:
    """RFC 791 header checksum of a 20-byte IPv4 header whose checksum field is zero."""
    total = sum(_IPV4_WORDS.unpack_from(header))
    total = (total & 0xFFFF) + (total >> 16)
    total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def frame_prefix(src: Endpoint, dst: Endpoint, payload_bytes: int, ttl: int = DEFAULT_TTL) -> bytes:
    """Ethernet + IPv4 + UDP headers for a UDP payload of `payload_bytes` (IPv4 checksum set, UDP checksum 0)."""
    udp_length = C.UDP_HEADER_BYTES + payload_bytes
    total_length = C.IPV4_HEADER_BYTES + udp_length
    fields = [
        dst.mac, src.mac, C.ETHERTYPE_IPV4,
        _IPV4_VERSION_IHL, 0, total_length, 0, _IPV4_DONT_FRAGMENT, ttl, C.IP_PROTO_UDP, 0,
        src.ip.packed, dst.ip.packed,
        src.port, dst.port, udp_length, 0,
    ]
    prefix = bytearray(_ETH_IPV4_UDP.pack(*fields))
    checksum = ipv4_checksum(memoryview(prefix)[ETHERNET_HEADER_BYTES:ETHERNET_HEADER_BYTES + C.IPV4_HEADER_BYTES])
    struct.pack_into("!H", prefix, ETHERNET_HEADER_BYTES + 10, checksum)
    return bytes(prefix)


class UdpFrame(NamedTuple):
    """The parts of a received Ethernet/IPv4/UDP frame the agent looks at."""

    src_mac: bytes
    dst_mac: bytes
    src_ip: IPv4Address
    dst_ip: IPv4Address
    src_port: int
    dst_port: int
    payload: memoryview


def parse_udp_frame(frame: bytes | bytearray | memoryview) -> UdpFrame:
    """Validate Ethernet/IPv4/UDP and return the UDP payload (trailing Ethernet padding cut off).

    Raises MalformedPacket naming the first check that failed.
    """
    view = memoryview(frame)
    if len(view) < FRAME_OVERHEAD_BYTES:
        raise MalformedPacket(f"frame of {len(view)} bytes is too short for Ethernet/IPv4/UDP")
    (dst_mac, src_mac, ether_type, version_ihl, _tos, total_length, _ident, _frag, _ttl, protocol, _checksum,
     src_ip, dst_ip, src_port, dst_port, udp_length, _udp_checksum) = _ETH_IPV4_UDP.unpack_from(view)
    if ether_type != C.ETHERTYPE_IPV4:
        raise MalformedPacket(f"ethertype 0x{ether_type:04x} is not IPv4")
    if version_ihl != _IPV4_VERSION_IHL:
        raise MalformedPacket(f"IPv4 version/IHL byte 0x{version_ihl:02x} (options are not accepted)")
    if protocol != C.IP_PROTO_UDP:
        raise MalformedPacket(f"IP protocol {protocol} is not UDP")
    ip_header = view[ETHERNET_HEADER_BYTES:ETHERNET_HEADER_BYTES + C.IPV4_HEADER_BYTES]
    # A correct header (checksum included) sums to 0xFFFF, i.e. its "checksum" computes to 0.
    if ipv4_checksum(ip_header) != 0:
        raise MalformedPacket("IPv4 header checksum is wrong")
    if total_length != C.IPV4_HEADER_BYTES + udp_length or ETHERNET_HEADER_BYTES + total_length > len(view):
        raise MalformedPacket(f"IPv4 total length {total_length} / UDP length {udp_length} disagree with the frame")
    if udp_length < C.UDP_HEADER_BYTES:
        raise MalformedPacket(f"UDP length {udp_length} is shorter than the UDP header")
    payload = view[FRAME_OVERHEAD_BYTES:ETHERNET_HEADER_BYTES + C.IPV4_HEADER_BYTES + udp_length]
    return UdpFrame(bytes(src_mac), bytes(dst_mac), IPv4Address(src_ip), IPv4Address(dst_ip), src_port, dst_port,
                    payload)
