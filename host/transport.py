"""How the agent's packets reach the switch: both transports are UDP sockets, they differ in who builds frames.

* :class:`KernelUdpTransport`: the omni header and lanes are the UDP payload; the kernel adds UDP/IPv4/Ethernet.
  For Mininet hosts and anything with a real network path to the switch.
* :class:`FrameTransport`: the embedded softswitch's ports are UDP sockets on loopback that carry whole Ethernet
  frames, one per datagram. The agent builds Ethernet + IPv4 + UDP itself (addresses of the worker as the
  controller registered them; IPv4 checksum set; UDP checksum 0), and validates every frame it receives.
* :class:`ShmTransport`: the same frames through a softswitch shared-memory port (`-i N@shm:PATH`): two rings in
  a file the switch created (omnireduce/shm), a whole batch of frames per call and no system call per frame; the
  agent sleeps in poll() on the ring's doorbell only when nothing is waiting.

The UDP transports connect their socket to the peer, so the kernel drops datagrams from anyone else and reports
an ICMP "port unreachable" as ConnectionRefusedError, which becomes :class:`SwitchUnreachable`.

All receive into one preallocated pool of RECEIVE_BATCH datagram buffers and hand the agent the whole batch as a
:class:`PayloadBatch` (one numpy array, parsed by the engine at once); :meth:`send_batch` takes the CONTRIBs one
batch of results triggered as one array, and the frame transports put the frame headers in front of all of them
in one numpy assignment.
"""

from __future__ import annotations

import errno
import logging
import select
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from . import native
from .errors import SwitchUnreachable
from .wire import (
    CONTROL_FRAME_BYTES,
    CONTROL_PAYLOAD_BYTES,
    DATA_FRAME_BYTES,
    DATA_PAYLOAD_BYTES,
    FRAME_OVERHEAD_BYTES,
    MAX_DATAGRAM_BYTES,
    Endpoint,
    MalformedPacket,
    frame_prefix,
    parse_udp_frame,
)

log = logging.getLogger(__name__)

#: Datagrams taken from the socket per receive call at most (each gets its own preallocated buffer). A round trip
#: brings up to one result per slot (512 at most): the larger the batch, the fewer wake-ups and numpy calls.
RECEIVE_BATCH = 256
#: Socket buffer asked for: a burst of results for S slots must not overflow the default ~200 KiB.
SOCKET_BUFFER_BYTES = 4 << 20
_UNREACHABLE_ERRNOS = {errno.ECONNREFUSED, errno.EHOSTUNREACH, errno.ENETUNREACH, errno.EHOSTDOWN}


@dataclass(frozen=True, slots=True)
class PayloadBatch:
    """Payloads received in one call: row i of `data` (n, DATA_PAYLOAD_BYTES) uint8, C-contiguous, holds the first
    bytes of payload i, which is sizes[i] bytes long (longer ones are cut to the row, and only their size counts)."""

    data: np.ndarray
    sizes: np.ndarray

    def __len__(self) -> int:
        return len(self.sizes)


class Transport(Protocol):
    """What the agent needs from a transport."""

    #: datagrams dropped by the transport itself (malformed, or not addressed to this worker).
    ignored: int

    @property
    def local_address(self) -> tuple[str, int]: ...

    def send(self, payload: bytes | bytearray) -> None: ...

    def send_batch(self, payloads: np.ndarray) -> None:
        """Send each row of a (k, DATA_PAYLOAD_BYTES) uint8 array as one datagram, in order."""
        ...

    def receive(self, timeout: float) -> list[memoryview]:
        """Payloads (omni header onwards) received within `timeout` seconds; valid until the next call."""
        ...

    def receive_batch(self, timeout: float) -> PayloadBatch:
        """The same as one array; independent of the transport's buffers."""
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
        #: one row per datagram of a receive call; sizes[i]: the length of the datagram in row i.
        self.pool = np.zeros((RECEIVE_BATCH, MAX_DATAGRAM_BYTES), dtype=np.uint8)
        self.sizes = np.zeros(RECEIVE_BATCH, dtype=np.int64)
        self._views = [memoryview(row) for row in self.pool]
        # recvmmsg/sendmmsg where they build: a whole batch per system call (else one recv/send per datagram).
        from omnireduce import dgram

        self._batch = dgram.Datagrams(self.sock) if dgram.available() else None
        self._lens = np.zeros(RECEIVE_BATCH, dtype=np.uint32)

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

    def send_rows(self, rows: np.ndarray) -> None:
        if self._batch is None or len(rows) < 2:
            for row in rows:
                self.send(row.data)
            return
        try:
            sent = self._batch.send_rows(rows, rows.shape[1])
        except BlockingIOError:
            sent = 0
        except OSError as error:
            if error.errno in _UNREACHABLE_ERRNOS:
                raise _unreachable(error, self.description) from error
            if error.errno not in (errno.EAGAIN, errno.ENOBUFS):
                raise
            sent = 0
        if sent < len(rows):
            # The socket buffer is full: drop, as the network would; the retransmission timer recovers.
            log.debug("%s: send buffer full, %d datagrams dropped", self.description, len(rows) - sent)

    def receive(self, timeout: float) -> list[memoryview]:
        count = self.receive_into_pool(timeout)
        return [self._views[row][:size] for row, size in enumerate(self.sizes[:count].tolist())]

    def receive_into_pool(self, timeout: float) -> int:
        """Read the datagrams waiting (waiting up to `timeout` for the first) into the pool; how many."""
        if self._batch is not None:
            return self._receive_batch_into_pool(timeout)
        count = 0
        waited = False
        views = self._views
        sizes = self.sizes
        recv_into = self.sock.recv_into
        while count < RECEIVE_BATCH:
            try:
                sizes[count] = recv_into(views[count])
            except BlockingIOError:
                if count or waited or timeout <= 0:
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
            count += 1
        return count

    def _receive_batch_into_pool(self, timeout: float) -> int:
        """receive_into_pool with recvmmsg: every datagram waiting in one call, after one wait for the first."""
        for waited in (False, True):
            try:
                count = self._batch.receive(self.pool, self._lens)
            except OSError as error:
                if error.errno in _UNREACHABLE_ERRNOS:
                    raise _unreachable(error, self.description) from error
                raise
            if count or waited or timeout <= 0:
                break
            ready, _, _ = select.select([self.sock], [], [], timeout)
            if not ready:
                break
        self.sizes[:count] = self._lens[:count]
        return count

    def close(self) -> None:
        self.sock.close()


class _RingLink:
    """The agent's end of a softswitch shared-memory port: frames to the switch on the file's TO_SWITCH ring, from
    it on FROM_SWITCH; the same receive pool as _DatagramSocket. A full ring drops the frame, as a full socket
    buffer does (counted in the ring's `dropped_full`); the retransmission timer recovers."""

    def __init__(self, path: Path, description: str) -> None:
        from omnireduce.shm import FROM_SWITCH, TO_SWITCH, RingFile, RingFileError, ShmUnavailable

        self.description = description
        self.path = path
        try:
            self.file = RingFile.open(path)
        except RingFileError as error:
            raise SwitchUnreachable(f"{description}: {error}") from None
        except ShmUnavailable as error:
            raise SwitchUnreachable(f"{description}: shared-memory rings cannot be built here ({error}); use "
                                    f"--transport frame with a UDP port of the switch") from None
        try:
            self.file.claim()
            self.writer = self.file.writer(TO_SWITCH)
            self.reader = self.file.reader(FROM_SWITCH)
        except RingFileError as error:
            self.file.close()
            raise SwitchUnreachable(f"{description}: {error}") from None
        except BaseException:
            self.file.close()
            raise
        self.pool = np.zeros((RECEIVE_BATCH, MAX_DATAGRAM_BYTES), dtype=np.uint8)
        self.sizes = np.zeros(RECEIVE_BATCH, dtype=np.int64)
        self._lens = np.zeros(RECEIVE_BATCH, dtype=np.uint32)
        self._views = [memoryview(row) for row in self.pool]
        # NOTE: a port outlives its agents (a training opens one agent after another on the same switch): what an
        # earlier agent left unread in FROM_SWITCH (late duplicates, a round it gave up on) was sent before this agent
        # said anything, so none of it answers this one, and a stale RESULT of a reused tensor id would be taken
        # for a new one. A fresh UDP socket starts empty too.
        self.discarded = 0
        while count := self.reader.pop_rows(self.pool, self._lens):
            self.discarded += count
            if count < len(self.pool):
                break  # the ring was empty behind these: what arrives now is for this agent
        if self.discarded:
            log.info("%s: %d frame(s) an earlier agent left unread discarded", description, self.discarded)

    @property
    def local_address(self) -> tuple[str, int]:
        return (f"shm:{self.path}", 0)

    def send(self, data: bytes | bytearray | memoryview) -> None:
        if not self.writer.push([data]):
            log.debug("%s: ring full, frame dropped", self.description)

    def send_rows(self, rows: np.ndarray) -> None:
        if self.writer.push_rows(rows, rows.shape[1]) < len(rows):
            log.debug("%s: ring full, frames dropped", self.description)

    def receive(self, timeout: float) -> list[memoryview]:
        count = self.receive_into_pool(timeout)
        return [self._views[row][:size] for row, size in enumerate(self.sizes[:count].tolist())]

    def receive_into_pool(self, timeout: float) -> int:
        """The frames waiting (waiting up to `timeout` for the first) into the pool; how many."""
        reader = self.reader
        count = reader.pop_rows(self.pool, self._lens)
        if not count and timeout > 0:
            if reader.wait(timeout):
                count = reader.pop_rows(self.pool, self._lens)
            elif self.file.removed():
                # What ECONNREFUSED is to the UDP transports: the switch closed the port (it stopped).
                raise SwitchUnreachable(f"{self.description} is unreachable: the switch removed its ring file "
                                        f"(it stopped)")
        self.sizes[:count] = self._lens[:count]
        return count

    def close(self) -> None:
        self.file.close()


class KernelUdpTransport:
    """The omni payload as a UDP datagram from `bind` to the switch's (address, OMNI_UDP_PORT)."""

    def __init__(self, bind: tuple[str, int], switch: tuple[str, int]) -> None:
        self._socket = _DatagramSocket(bind, switch, f"switch {switch[0]}:{switch[1]}")
        self.ignored = 0

    @property
    def local_address(self) -> tuple[str, int]:
        return self._socket.local_address

    def send(self, payload: bytes | bytearray | memoryview) -> None:
        self._socket.send(payload)

    def send_batch(self, payloads: np.ndarray) -> None:
        self._socket.send_rows(payloads)

    def receive(self, timeout: float) -> list[memoryview]:
        return self._socket.receive(timeout)

    def receive_batch(self, timeout: float) -> PayloadBatch:
        sock = self._socket
        count = sock.receive_into_pool(timeout)
        return PayloadBatch(sock.pool[:count, :DATA_PAYLOAD_BYTES].copy(), sock.sizes[:count].copy())

    def close(self) -> None:
        self._socket.close()


class FrameTransport:
    """Whole Ethernet/IPv4/UDP frames in UDP datagrams between `bind` and a softswitch port at `peer`.

    worker: this worker's MAC, IPv4 address and UDP port inside the frames; switch: the aggregator's MAC, IPv4
    address and UDP port (OMNI_UDP_PORT). Frames received that are not IPv4/UDP from the aggregator's address and
    port to exactly this worker's MAC, address and port are counted in `ignored` and dropped.
    """

    def __init__(self, bind: tuple[str, int], peer: tuple[str, int], worker: Endpoint, switch: Endpoint) -> None:
        self._setup(worker, switch, _DatagramSocket(bind, peer, f"softswitch port at {peer[0]}:{peer[1]}"))

    def _setup(self, worker: Endpoint, switch: Endpoint, link: _DatagramSocket | _RingLink) -> None:
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
        self._socket = link
        self.ignored = 0
        # The same prefixes as arrays, for whole batches: frames to send (prefix written once, payloads per
        # batch), and the frames from the switch that need no parsing.
        self._data_prefix = np.frombuffer(self._prefixes[DATA_PAYLOAD_BYTES], dtype=np.uint8)
        self._frames = self._frame_rows(RECEIVE_BATCH)
        self._expected_data = np.frombuffer(self._expected[DATA_FRAME_BYTES], dtype=np.uint8)
        self._expected_control = np.frombuffer(self._expected[CONTROL_FRAME_BYTES], dtype=np.uint8)

    def _frame_rows(self, count: int) -> np.ndarray:
        frames = np.empty((count, DATA_FRAME_BYTES), dtype=np.uint8)
        frames[:, :FRAME_OVERHEAD_BYTES] = self._data_prefix
        return frames

    @property
    def local_address(self) -> tuple[str, int]:
        return self._socket.local_address

    def send(self, payload: bytes | bytearray | memoryview) -> None:
        prefix = self._prefixes.get(len(payload))
        if prefix is None:
            prefix = frame_prefix(self.worker, self.switch, len(payload))
        self._socket.send(prefix + payload)

    def send_batch(self, payloads: np.ndarray) -> None:
        if len(payloads) > len(self._frames):
            self._frames = self._frame_rows(len(payloads))
        frames = self._frames[:len(payloads)]
        frames[:, FRAME_OVERHEAD_BYTES:] = payloads
        self._socket.send_rows(frames)

    def receive(self, timeout: float) -> list[memoryview]:
        payloads: list[memoryview] = []
        expected = self._expected
        for frame in self._socket.receive(timeout):
            prefix = expected.get(len(frame))
            if prefix is not None and frame[:FRAME_OVERHEAD_BYTES] == prefix:
                payloads.append(frame[FRAME_OVERHEAD_BYTES:])
                continue
            parsed = self._parse(frame)
            if parsed is not None:
                payloads.append(parsed)
        return payloads

    def receive_batch(self, timeout: float) -> PayloadBatch:
        sock = self._socket
        count = sock.receive_into_pool(timeout)
        frames = sock.pool[:count]
        sizes = sock.sizes[:count]
        usual, usual_count = self._usual(frames, sizes)
        payload_sizes = sizes - FRAME_OVERHEAD_BYTES
        if usual_count == count:
            return PayloadBatch(frames[:, FRAME_OVERHEAD_BYTES:DATA_FRAME_BYTES].copy(), payload_sizes)
        # Some frame is not exactly what the switch sends us: check those one by one, as receive() does. IPv4
        # without options puts every payload at the same offset, so the rows stay where they are.
        for row in np.flatnonzero(~usual).tolist():
            payload = self._parse(memoryview(frames[row])[:int(sizes[row])])
            if payload is not None:
                usual[row] = True
                payload_sizes[row] = len(payload)
        return PayloadBatch(frames[usual, FRAME_OVERHEAD_BYTES:DATA_FRAME_BYTES], payload_sizes[usual])

    def _usual(self, frames: np.ndarray, sizes: np.ndarray) -> tuple[np.ndarray, int]:
        """Which frames (rows of the pool) are exactly what the switch sends us (see _expected), and how many: one
        pass in C where the agent's kernels build (numpy's compare-and-reduce of every header byte cost more than
        consuming the results it let through), else numpy."""
        module = native.available()
        if module is None:
            heads = frames[:, :FRAME_OVERHEAD_BYTES]
            usual = (((sizes == DATA_FRAME_BYTES) & (heads == self._expected_data).all(axis=1))
                     | ((sizes == CONTROL_FRAME_BYTES) & (heads == self._expected_control).all(axis=1)))
            return usual, int(np.count_nonzero(usual))
        usual = np.empty(len(sizes), dtype=np.bool_)
        ffi = module.ffi
        count = module.lib.orx_usual_frames(
            ffi.from_buffer("uint8_t[]", frames), frames.strides[0], ffi.from_buffer("int64_t[]", sizes), len(sizes),
            ffi.from_buffer("uint8_t[]", self._expected_data), DATA_FRAME_BYTES,
            ffi.from_buffer("uint8_t[]", self._expected_control), CONTROL_FRAME_BYTES, FRAME_OVERHEAD_BYTES,
            ffi.from_buffer("uint8_t[]", usual))
        return usual, count

    def _parse(self, frame: memoryview) -> memoryview | None:
        """The payload of a frame from the switch to this worker, or None (counted in `ignored`)."""
        try:
            parsed = parse_udp_frame(frame)
        except MalformedPacket as error:
            log.debug("frame ignored: %s", error)
            self.ignored += 1
            return None
        if (parsed.dst_mac != self.worker.mac or parsed.dst_ip != self.worker.ip
                or parsed.dst_port != self.worker.port or parsed.src_ip != self.switch.ip
                or parsed.src_port != self.switch.port):
            self.ignored += 1
            return None
        return parsed.payload

    def close(self) -> None:
        self._socket.close()


class ShmTransport(FrameTransport):
    """FrameTransport's frames through a softswitch shared-memory port: `ring` is the file the switch made for it
    (`omnireduce-switch -i N@shm:PATH`). SwitchUnreachable if it does not exist or is not a ring file."""

    def __init__(self, ring: Path, worker: Endpoint, switch: Endpoint) -> None:
        self._setup(worker, switch, _RingLink(Path(ring), f"softswitch port at shm:{ring}"))
