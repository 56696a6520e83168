"""How the agent's packets reach the switch: both transports are UDP sockets, they differ in who builds frames.

* :class:`KernelUdpTransport`: the omni header and lanes are the UDP payload; the kernel adds UDP/IPv4/Ethernet.
  For Mininet hosts and anything with a real network path to the switch.
* :class:`FrameTransport`: the embedded softswitch's ports are UDP sockets on loopback that carry whole Ethernet
  frames, one per datagram. The agent builds Ethernet + IPv4 + UDP itself (addresses of the worker as the
  controller registered them; IPv4 checksum set; UDP checksum 0), and validates every frame it receives.

Both connect their socket to the peer, so the kernel drops datagrams from anyone else and reports an ICMP "port
unreachable" as ConnectionRefusedError, which becomes :class:`SwitchUnreachable`.
"""

from __future__ import annotations

import errno
import logging
import select
import socket
from typing import Protocol

from .errors import SwitchUnreachable
from .wire import (
    CONTROL_PAYLOAD_BYTES,
    DATA_PAYLOAD_BYTES,
    FRAME_OVERHEAD_BYTES,
    MAX_DATAGRAM_BYTES,
    Endpoint,
    MalformedPacket,
    frame_prefix,
    parse_udp_frame,
)

log = logging.getLogger(__name__)

#: Datagrams taken from the socket per receive call at most (each gets its own preallocated buffer).
RECEIVE_BATCH = 64
#: Socket buffer asked for: a burst of results for S slots must not overflow the default ~200 KiB.
SOCKET_BUFFER_BYTES = 4 << 20
_UNREACHABLE_ERRNOS = {errno.ECONNREFUSED, errno.EHOSTUNREACH, errno.ENETUNREACH, errno.EHOSTDOWN}


class Transport(Protocol):
    """What the agent needs from a transport."""

    #: datagrams dropped by the transport itself (malformed, or not addressed to this worker).
    ignored: int

    @property
    def local_address(self) -> tuple[str, int]: ...

    def send(self, payload: bytes | bytearray) -> None: ...

    def receive(self, timeout: float) -> list[memoryview]:
        """Payloads (omni header onwards) received within `timeout` seconds; valid until the next call."""
        ...

    def close(self) -> None: ...


def _unreachable(error: OSError, target: str) -> SwitchUnreachable:
    return SwitchUnreachable(f"{target} is unreachable: {error.strerror or error} (errno {error.errno})")


class _DatagramSocket:
    """A connected, non-blocking UDP socket with a pool of receive buffers."""

    def __init__(self, bind: tuple[str, int], peer: tuple[str, int], description: str) -> None:
        self.description = description
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            for option in (socket.SO_RCVBUF, socket.SO_SNDBUF):
                self.sock.setsockopt(socket.SOL_SOCKET, option, SOCKET_BUFFER_BYTES)
            self.sock.bind(bind)
            self.sock.connect(peer)
        except OSError as error:
            self.sock.close()
            if error.errno in _UNREACHABLE_ERRNOS:
                raise _unreachable(error, description) from error
            raise
        self.sock.setblocking(False)
        self._buffers = [bytearray(MAX_DATAGRAM_BYTES) for _ in range(RECEIVE_BATCH)]
        self._views = [memoryview(buffer) for buffer in self._buffers]

    @property
    def local_address(self) -> tuple[str, int]:
        return self.sock.getsockname()

    def send(self, data: bytes | bytearray) -> None:
        try:
            self.sock.send(data)
        except BlockingIOError:
            # The socket buffer is full: drop, as the network would; the retransmission timer recovers.
            log.debug("%s: send buffer full, datagram dropped", self.description)
        except OSError as error:
            if error.errno in _UNREACHABLE_ERRNOS:
                raise _unreachable(error, self.description) from error
            raise

    def receive(self, timeout: float) -> list[memoryview]:
        received: list[memoryview] = []
        waited = False
        while len(received) < RECEIVE_BATCH:
            view = self._views[len(received)]
            try:
                size = self.sock.recv_into(view)
            except BlockingIOError:
                if received or waited or timeout <= 0:
                    break
                ready, _, _ = select.select([self.sock], [], [], timeout)
                waited = True
                if not ready:
                    break
                continue
            except OSError as error:
                if error.errno in _UNREACHABLE_ERRNOS:
                    raise _unreachable(error, self.description) from error
                raise
            received.append(view[:size])
        return received

    def close(self) -> None:
        self.sock.close()


class KernelUdpTransport:
    """The omni payload as a UDP datagram from `bind` to the switch's (address, OMNI_UDP_PORT)."""

    def __init__(self, bind: tuple[str, int], switch: tuple[str, int]) -> None:
        self._socket = _DatagramSocket(bind, switch, f"switch {switch[0]}:{switch[1]}")
        self.ignored = 0

    @property
    def local_address(self) -> tuple[str, int]:
        return self._socket.local_address

    def send(self, payload: bytes | bytearray) -> None:
        self._socket.send(payload)

    def receive(self, timeout: float) -> list[memoryview]:
        return self._socket.receive(timeout)

    def close(self) -> None:
        self._socket.close()


class FrameTransport:
    """Whole Ethernet/IPv4/UDP frames in UDP datagrams between `bind` and a softswitch port at `peer`.

    worker: this worker's MAC, IPv4 address and UDP port inside the frames; switch: the aggregator's MAC, IPv4
    address and UDP port (OMNI_UDP_PORT). Frames received that are not IPv4/UDP from the aggregator's address and
    port to exactly this worker's MAC, address and port are counted in `ignored` and dropped.
    """

    def __init__(self, bind: tuple[str, int], peer: tuple[str, int], worker: Endpoint, switch: Endpoint) -> None:
        self.worker = worker
        self.switch = switch
        self._prefixes = {
            DATA_PAYLOAD_BYTES: frame_prefix(worker, switch, DATA_PAYLOAD_BYTES),
            CONTROL_PAYLOAD_BYTES: frame_prefix(worker, switch, CONTROL_PAYLOAD_BYTES),
        }
        # What the switch's frames to us look like in front of the payload: our own frames with the addresses
        # swapped (the switch keeps the IPv4 id and flags of the packet it answers, sets TTL 64 and UDP checksum 0).
        # A frame that starts exactly so needs no further parsing; any other goes through parse_udp_frame.
        self._expected = {
            FRAME_OVERHEAD_BYTES + size: frame_prefix(switch, worker, size)
            for size in (DATA_PAYLOAD_BYTES, CONTROL_PAYLOAD_BYTES)
        }
        self._socket = _DatagramSocket(bind, peer, f"softswitch port at {peer[0]}:{peer[1]}")
        self.ignored = 0

    @property
    def local_address(self) -> tuple[str, int]:
        return self._socket.local_address

    def send(self, payload: bytes | bytearray) -> None:
        prefix = self._prefixes.get(len(payload))
        if prefix is None:
            prefix = frame_prefix(self.worker, self.switch, len(payload))
        self._socket.send(prefix + payload)

    def receive(self, timeout: float) -> list[memoryview]:
        payloads: list[memoryview] = []
        expected = self._expected
        for frame in self._socket.receive(timeout):
            prefix = expected.get(len(frame))
            if prefix is not None and frame[:FRAME_OVERHEAD_BYTES] == prefix:
                payloads.append(frame[FRAME_OVERHEAD_BYTES:])
                continue
            try:
                parsed = parse_udp_frame(frame)
            except MalformedPacket as error:
                log.debug("frame ignored: %s", error)
                self.ignored += 1
                continue
            if (parsed.dst_mac != self.worker.mac or parsed.dst_ip != self.worker.ip
                    or parsed.dst_port != self.worker.port or parsed.src_ip != self.switch.ip
                    or parsed.src_port != self.switch.port):
                self.ignored += 1
                continue
            payloads.append(parsed.payload)
        return payloads

    def close(self) -> None:
        self._socket.close()

