# Run: .venv/bin/pytest tests/host/test_transport.py
"""The transports: the UDP ones on loopback against a plain UDP socket playing the switch (or the softswitch port),
the shared-memory one against a ring file playing the softswitch port."""

from __future__ import annotations

import select
import socket

import numpy as np
import pytest

from omnireduce.host.errors import SwitchUnreachable
from omnireduce.host.transport import FrameTransport, KernelUdpTransport, ShmTransport
from omnireduce.host.wire import (
    CONTROL_PAYLOAD_BYTES,
    Endpoint,
    OmniHeader,
    encode_payload,
    frame_prefix,
    parse_udp_frame,
)
from omnireduce.p4src import constants as C
from omnireduce.shm import FROM_SWITCH, TO_SWITCH, RingFile, unavailable_reason

WORKER = Endpoint.of("02:00:00:00:00:01", "10.0.0.1", 5000)
SWITCH = Endpoint.of("02:00:00:00:00:fe", "10.0.0.254", C.OMNI_UDP_PORT)
PAYLOAD = encode_payload(OmniHeader(C.MSG_RESULT, 1, 3, 4, 0, 0, C.END_OF_TENSOR, 0, C.LANES),
                         np.arange(C.LANES, dtype=np.int32))


@pytest.fixture
def peer():
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    yield sock
    sock.close()


def receive_one(sock: socket.socket) -> tuple[bytes, tuple[str, int]]:
    ready, _, _ = select.select([sock], [], [], 5)
    assert ready, "nothing arrived within 5 s"
    return sock.recvfrom(4096)


def test_kernel_udp_sends_the_payload_and_receives_only_from_the_switch(peer):
    transport = KernelUdpTransport(("127.0.0.1", 0), peer.getsockname())
    try:
        transport.send(PAYLOAD)
        data, source = receive_one(peer)
        assert data == PAYLOAD and source == transport.local_address
        stranger = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        stranger.sendto(b"not from the switch", transport.local_address)  # filtered by the connected socket
        stranger.close()
        peer.sendto(PAYLOAD, transport.local_address)
        received = transport.receive(5)
        assert [bytes(view) for view in received] == [PAYLOAD]
        assert transport.receive(0) == []
    finally:
        transport.close()


def test_kernel_udp_reports_a_closed_port_as_unreachable(peer):
    address = peer.getsockname()
    peer.close()
    transport = KernelUdpTransport(("127.0.0.1", 0), address)
    try:
        transport.send(PAYLOAD)  # the ICMP port unreachable comes back asynchronously
        with pytest.raises(SwitchUnreachable, match="unreachable"):
            for _ in range(100):
                transport.receive(0.05)
                transport.send(PAYLOAD)
    finally:
        transport.close()


def test_frame_transport_builds_whole_frames(peer):
    transport = FrameTransport(("127.0.0.1", 0), peer.getsockname(), WORKER, SWITCH)
    try:
        transport.send(PAYLOAD)
        frame, _ = receive_one(peer)
        assert frame == frame_prefix(WORKER, SWITCH, len(PAYLOAD)) + PAYLOAD
        parsed = parse_udp_frame(frame)
        assert (parsed.src_ip, parsed.dst_ip, parsed.src_port, parsed.dst_port) == (WORKER.ip, SWITCH.ip, 5000,
                                                                                   C.OMNI_UDP_PORT)
    finally:
        transport.close()


def test_frame_transport_keeps_only_frames_from_the_switch_to_this_worker(peer):
    transport = FrameTransport(("127.0.0.1", 0), peer.getsockname(), WORKER, SWITCH)
    other_worker = Endpoint.of("02:00:00:00:00:02", "10.0.0.2", 5001)
    good = frame_prefix(SWITCH, WORKER, len(PAYLOAD)) + PAYLOAD
    frames = [
        good,
        frame_prefix(SWITCH, other_worker, len(PAYLOAD)) + PAYLOAD,        # for another worker
        frame_prefix(other_worker, WORKER, len(PAYLOAD)) + PAYLOAD,        # not from the aggregator
        good[:30],                                                          # truncated
        good[:24] + b"\0\0" + good[26:],                                    # bad IPv4 checksum
        good + b"\0" * 6,                                                   # Ethernet padding: fine
    ]
    try:
        for frame in frames:
            peer.sendto(frame, transport.local_address)
        payloads = []
        while len(payloads) < 2:
            payloads += [bytes(view) for view in transport.receive(5)]
        assert payloads == [PAYLOAD, PAYLOAD]
        assert transport.ignored == 4
    finally:
        transport.close()


# --- the shared-memory transport, against a ring file playing the softswitch port ----------------------------------

needs_rings = pytest.mark.skipif(unavailable_reason() is not None, reason=f"no ring module: {unavailable_reason()}")


@pytest.fixture
def switch_port(tmp_path):
    """A ring file as the softswitch makes it for a port (the test plays the switch)."""
    ring = RingFile.create(tmp_path / "port1")
    yield ring
    ring.close()


@needs_rings
def test_shm_transport_builds_the_same_whole_frames(switch_port):
    transport = ShmTransport(switch_port.path, WORKER, SWITCH)
    try:
        transport.send(PAYLOAD)
        rows = np.tile(np.frombuffer(PAYLOAD, dtype=np.uint8), (3, 1))
        rows[:, 0] = [7, 8, 9]
        transport.send_batch(rows)
        frames = switch_port.reader(TO_SWITCH).pop_frames(8)
        prefix = frame_prefix(WORKER, SWITCH, len(PAYLOAD))
        assert frames == [prefix + PAYLOAD] + [prefix + row.tobytes() for row in rows]
    finally:
        transport.close()


@needs_rings
def test_shm_transport_keeps_only_frames_from_the_switch_to_this_worker(switch_port, kernels):
    transport = ShmTransport(switch_port.path, WORKER, SWITCH)
    other_worker = Endpoint.of("02:00:00:00:00:02", "10.0.0.2", 5001)
    good = frame_prefix(SWITCH, WORKER, len(PAYLOAD)) + PAYLOAD
    control = bytes(range(CONTROL_PAYLOAD_BYTES))  # a forwarded REQUEST's size: the batch's other usual frame
    frames = [good, frame_prefix(SWITCH, other_worker, len(PAYLOAD)) + PAYLOAD, good[:30], good + b"\0" * 6,
              frame_prefix(SWITCH, WORKER, len(control)) + control,
              frame_prefix(SWITCH, other_worker, len(control)) + control]
    try:
        switch_port.writer(FROM_SWITCH).push(frames)
        batch = transport.receive_batch(5)
        assert [row.tobytes()[:size] for row, size in zip(batch.data, batch.sizes)] == [PAYLOAD, PAYLOAD, control]
        assert transport.ignored == 3
        # Every frame as the switch sends it: the whole batch in place, nothing parsed one by one.
        switch_port.writer(FROM_SWITCH).push([good, frame_prefix(SWITCH, WORKER, len(control)) + control, good])
        batch = transport.receive_batch(5)
        assert batch.sizes.tolist() == [len(PAYLOAD), len(control), len(PAYLOAD)] and transport.ignored == 3
        assert len(transport.receive_batch(0)) == 0
        switch_port.writer(FROM_SWITCH).push([good])
        assert [bytes(view) for view in transport.receive(5)] == [PAYLOAD]
    finally:
        transport.close()


@needs_rings
def test_shm_transport_without_its_ring_file_is_unreachable(tmp_path):
    with pytest.raises(SwitchUnreachable, match="does not exist"):
        ShmTransport(tmp_path / "port1", WORKER, SWITCH)


@needs_rings
def test_shm_transport_reports_a_stopped_switch_as_unreachable(tmp_path):
    switch_port = RingFile.create(tmp_path / "port1")
    transport = ShmTransport(switch_port.path, WORKER, SWITCH)
    try:
        assert len(transport.receive_batch(0.01)) == 0  # nothing yet, the switch is there
        switch_port.close()  # the switch stops: it removes its ring file
        with pytest.raises(SwitchUnreachable, match="removed its ring file"):
            transport.receive_batch(0.01)
    finally:
        transport.close()


@needs_rings
def test_one_agent_at_a_time_on_a_ring_and_a_new_one_starts_empty(switch_port):
    """A port outlives its agents (a training opens one after another): the next agent does not read what the last
    one left unread, and a second agent on a port in use is refused, not let corrupt both rings."""
    first = ShmTransport(switch_port.path, WORKER, SWITCH)
    try:
        with pytest.raises(SwitchUnreachable, match="in use by another agent"):
            ShmTransport(switch_port.path, WORKER, SWITCH)
    finally:
        first.close()
    stale = frame_prefix(SWITCH, WORKER, len(PAYLOAD)) + PAYLOAD
    switch_port.writer(FROM_SWITCH).push([stale] * 300)  # left over after the first agent closed: more than a batch
    second = ShmTransport(switch_port.path, WORKER, SWITCH)
    try:
        assert len(second.receive_batch(0)) == 0
        fresh = frame_prefix(SWITCH, WORKER, len(PAYLOAD)) + bytes(reversed(PAYLOAD))
        switch_port.writer(FROM_SWITCH).push([fresh])
        batch = second.receive_batch(5)
        assert [row.tobytes()[:size] for row, size in zip(batch.data, batch.sizes)] == [bytes(reversed(PAYLOAD))]
    finally:
        second.close()
