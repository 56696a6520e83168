# Run: .venv/bin/pytest tests/softswitch/test_checksum.py -q
"""IPv4 header checksum verify/update and a UDP checksum over pseudo header + payload
(tests/softswitch/p4/checksum_test.p4); expected checksums come from scapy."""

from __future__ import annotations

import pytest
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Ether
from scapy.packet import Raw
from switch_helpers import device_for, only_output

# Every test runs on the native and on the Python packet pipeline (conftest.py).
pytestmark = pytest.mark.usefixtures("backend")


@pytest.fixture(scope="module")
def device():
    return device_for("checksum_test")


@pytest.mark.parametrize("payload", [b"", b"a", b"hello world", bytes(range(200))])
def test_router_rewrites_both_checksums(device, payload):
    packet = Ether() / IP(src="10.0.0.1", dst="10.0.0.2", ttl=64, id=5) / UDP(sport=7, dport=9) / Raw(payload)
    port, out = only_output(device.process_packet(1, bytes(packet)))
    assert port == 2
    expected = packet.copy()
    expected[IP].ttl = 63
    del expected[IP].chksum
    del expected[UDP].chksum
    assert out == bytes(Ether(bytes(expected)))
    assert Ether(out)[IP].chksum == IP(bytes(Ether(bytes(expected))[IP]))[IP].chksum


def test_bad_ipv4_checksum_is_dropped(device):
    packet = bytearray(bytes(Ether() / IP(src="10.0.0.1", dst="10.0.0.2") / UDP() / Raw(b"x")))
    packet[24] ^= 0xFF
    assert device.process_packet(1, bytes(packet)) == []


def test_non_udp_keeps_its_payload(device):
    packet = Ether() / IP(src="10.0.0.1", dst="10.0.0.2", proto=200, ttl=2) / Raw(b"opaque")
    port, out = only_output(device.process_packet(1, bytes(packet)))
    assert Ether(out)[IP].ttl == 1
    assert out.endswith(b"opaque")
