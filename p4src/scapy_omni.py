"""Scapy layers for the omni header and its lanes, for tests, debugging and pcap dissection.

    >>> from omnireduce.p4src.scapy_omni import Omni
    >>> pkt = Ether() / IP(dst="10.0.0.254") / UDP(sport=5000, dport=OMNI_UDP_PORT) / Omni(block_index=3, values=[1] * 32)
    >>> Ether(bytes(pkt)).show()      # dissects Omni after UDP port OMNI_UDP_PORT (either direction)

Built from omnireduce.p4src.constants (OMNI_HEADER_FIELDS, LANES), so it follows the P4 program. The hot path (the
agent) never uses scapy; it builds packets from preallocated buffers.
"""

from __future__ import annotations

from scapy.fields import ByteEnumField, ByteField, FieldListField, IntField, ShortField, SignedIntField
from scapy.layers.inet import UDP
from scapy.packet import Packet, bind_layers

from . import constants as C

_FIELD_CLASSES = {8: ByteField, 16: ShortField, 32: IntField}


def _header_fields() -> list:
    fields = []
    for name, bits in C.OMNI_HEADER_FIELDS:
        if name == "msg_type":
            fields.append(ByteEnumField(name, C.MSG_CONTRIB, C.MSG_TYPES))
        elif name == "flags":
            # Bits 0-1: the shadow set index (0 .. SETS-1); the other bits are zero.
            fields.append(ByteField(name, 0))
        elif name == "lane_count":
            # Filled in from the number of values when the packet is built.
            fields.append(ByteField(name, None))
        else:
            fields.append(_FIELD_CLASSES[bits](name, 0))
    return fields


class Omni(Packet):
    """The 20-byte omni header followed by `lane_count` signed 32-bit values (docs/protocol.md section 2)."""

    name = "Omni"
    fields_desc = _header_fields() + [
        FieldListField("values", [], SignedIntField("value", 0), count_from=lambda pkt: pkt.lane_count),
    ]

    def post_build(self, pkt: bytes, pay: bytes) -> bytes:
        if self.lane_count is None:
            offset = _field_offset("lane_count")
            pkt = pkt[:offset] + bytes([len(self.values)]) + pkt[offset + 1 :]
        return pkt + pay

    def mysummary(self) -> str:
        return self.sprintf(
            "Omni %msg_type% job=%job_id% tensor=%tensor_id% slot=%slot% set=%flags% "
            "block=%block_index% next=%next_block% lanes=%lane_count%"
        )


def _field_offset(field_name: str) -> int:
    offset = 0
    for name, bits in C.OMNI_HEADER_FIELDS:
        if name == field_name:
            return offset
        offset += bits // 8
    raise KeyError(field_name)


bind_layers(UDP, Omni, dport=C.OMNI_UDP_PORT)
bind_layers(UDP, Omni, sport=C.OMNI_UDP_PORT)
