# Run: .venv/bin/pytest tests/test_dgram.py -q
"""Batched datagram I/O (omnireduce.dgram): recvmmsg/sendmmsg into and out of numpy buffers, order and lengths
kept, long datagrams cut to their row, errors as OSError; and the callers' one-datagram-per-call paths where the
module is not available."""

from __future__ import annotations

import errno
import select
import socket

import numpy as np
import pytest

from omnireduce import dgram

pytestmark = pytest.mark.skipif(not dgram.available(), reason=f"no dgram module: {dgram.unavailable_reason()}")


@pytest.fixture
def pair():
    sockets = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(2)]
    for sock in sockets:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        sock.bind(("127.0.0.1", 0))
        sock.setblocking(False)
    yield sockets
    for sock in sockets:
        sock.close()


def wait_readable(sock: socket.socket) -> None:
    ready, _, _ = select.select([sock], [], [], 5)
    assert ready, "nothing arrived within 5 s"


def test_a_batch_goes_out_and_comes_in_in_order(pair):
    a, b = pair
    frames = [bytes([i % 256]) * (1 + i % 300) for i in range(200)]
    assert dgram.Datagrams(a).send(frames, dgram.sockaddr_bytes(b.getsockname())) == 200
    slots = np.zeros((64, 512), dtype=np.uint8)
    lens = np.zeros(64, dtype=np.uint32)
    received = []
    while len(received) < 200:
        wait_readable(b)
        count = dgram.Datagrams(b).receive(slots, lens)
        received += [slots[row, :length].tobytes() for row, length in enumerate(lens[:count].tolist())]
    assert received == frames
    assert dgram.Datagrams(b).receive(slots, lens) == 0  # nothing more: never blocks


def test_rows_go_out_cut_to_length_and_long_datagrams_come_in_cut_to_their_row(pair):
    a, b = pair
    a.connect(b.getsockname())
    rows = np.arange(3 * 100, dtype=np.uint32).astype(np.uint8).reshape(3, 100)
    assert dgram.Datagrams(a).send_rows(rows, 60) == 3
    slots = np.zeros((4, 40), dtype=np.uint8)
    lens = np.zeros(4, dtype=np.uint32)
    wait_readable(b)
    got = 0
    while got < 3:
        got += dgram.Datagrams(b).receive(slots[got:], lens[got:])
    assert lens[:3].tolist() == [40, 40, 40]  # cut to the row, as recv_into cuts
    assert [slots[row].tobytes() for row in range(3)] == [rows[row, :40].tobytes() for row in range(3)]


def test_a_connected_socket_whose_peer_is_gone_raises(pair):
    a, b = pair
    address = b.getsockname()
    b.close()
    a.connect(address)
    batch = dgram.Datagrams(a)
    slots = np.zeros((4, 64), dtype=np.uint8)
    lens = np.zeros(4, dtype=np.uint32)
    with pytest.raises(OSError) as raised:
        for _ in range(100):  # the ICMP port unreachable comes back asynchronously
            batch.send([b"x"])
            select.select([a], [], [], 0.05)
            batch.receive(slots, lens)
    assert raised.value.errno == errno.ECONNREFUSED


def test_the_sockaddr_is_linuxs_layout():
    raw = dgram.sockaddr_bytes(("10.1.2.3", 0x1234))
    assert len(raw) == 16 and raw[2:4] == b"\x12\x34" and raw[4:8] == bytes([10, 1, 2, 3])


def test_the_frame_transport_and_the_switch_port_work_without_the_module(monkeypatch, pair):
    """Where dgram cannot be built, the UDP transports and ports keep one call per datagram."""
    from omnireduce.host.transport import FrameTransport
    from omnireduce.host.wire import Endpoint
    from omnireduce.p4src import constants as C
    from omnireduce.softswitch.ports import PortSpec, UdpPort

    monkeypatch.setattr(dgram, "available", lambda: False)
    _a, b = pair
    worker = Endpoint.of("02:00:00:00:00:01", "10.0.0.1", 5000)
    switch = Endpoint.of("02:00:00:00:00:fe", "10.0.0.254", C.OMNI_UDP_PORT)
    transport = FrameTransport(("127.0.0.1", 0), b.getsockname(), worker, switch)
    port = UdpPort(PortSpec(1, "udp", bind=("127.0.0.1", 0), peer=b.getsockname()))
    try:
        assert transport._socket._batch is None and port._batch is None
        transport.send_batch(np.zeros((3, 148), dtype=np.uint8))
        frames = []
        while len(frames) < 3:
            wait_readable(b)
            frames.append(b.recv(4096))
        assert all(len(frame) == 190 for frame in frames)
        b.sendto(b"back", transport.local_address)
        assert [bytes(view) for view in transport._socket.receive(5)] == [b"back"]
        assert port.send_many([b"a", b"b"]) == 2
        got = []
        while len(got) < 2:
            wait_readable(b)
            got.append(b.recv(4096))
        assert got == [b"a", b"b"]
    finally:
        transport.close()
        port.close()
