"""Switch ports and the packet loop.

A port is a real interface through an AF_PACKET raw socket (Mininet/veth; needs CAP_NET_RAW), or, for
unprivileged use, a UDP socket on which each datagram carries one whole Ethernet frame, or a shared-memory ring
file (omnireduce/shm) that carries whole frames both ways without a system call per frame:

    -i 1@veth1                                   raw interface veth1 is port 1
    -i 1@udp:127.0.0.1:40001,127.0.0.1:50001     port 1 receives on 127.0.0.1:40001, sends to 127.0.0.1:50001
    -i 2@udp:127.0.0.1:40002                     port 2 sends back to wherever its last frame came from
    -i 3@shm:/dev/shm/run/port3                  port 3 is the ring file /dev/shm/run/port3 (the switch creates it)

The PacketLoop thread polls all port sockets, reads up to BATCH whole frames from a ready port, runs them through
Device.process_batch in one call (the native pipeline takes the batch in one C call), and sends the results out
of their ports. Ring ports are read together, many frames per call, without waiting while any has frames; with
the native pipeline their frames go from the rings through the pipeline into the output rings without becoming
Python objects (Device.process_arrays). The loop sleeps in poll() on the sockets and the rings' doorbells only
when every ring is empty, and then no longer than until the next frame a device holds back is due (a
faults.ImpairedDevice: delays, reordering, which releases them then; such a device takes ring frames the per-frame
way, so that they pass through its impairments). `PacketLoop.submit` runs a function on the packet thread between
batches (a fuzzer that reads the counters around each frame it injects, with no other frame in between). Nothing a
frame does can stop the loop: failures are logged and counted.
"""

from __future__ import annotations

import errno
import logging
import os
import select
import socket
import threading
import time
from collections import Counter, deque
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Protocol, TypeVar

import numpy as np

from .pcap import PcapWriter

log = logging.getLogger(__name__)

ETH_P_ALL = 0x0003
PACKET_OUTGOING = 4  # sll_pkttype of frames this host sent (AF_PACKET sees its own transmissions)
MAX_FRAME = 65535
BATCH = 64  # frames read from one socket before looking at the others
#: frames gathered from all ring ports into one pipeline call (at most BATCH of them from one ring)
RING_DRAIN_FRAMES = 4 * BATCH
IDLE_POLL_MS = 1000  # longest poll when nothing is due: stop() also wakes the loop through its pipe

_T = TypeVar("_T")


class PortSpecError(ValueError):
    """A `-i N@IFACE` argument that cannot be understood."""


@dataclass(frozen=True, slots=True)
class PortSpec:
    number: int
    kind: str  # "raw" | "udp" | "shm"
    iface: str | None = None
    bind: tuple[str, int] | None = None
    peer: tuple[str, int] | None = None
    path: Path | None = None

    def describe(self) -> str:
        if self.kind == "raw":
            return f"raw:{self.iface}"
        if self.kind == "shm":
            return f"shm:{self.path}"
        text = f"udp:{self.bind[0]}:{self.bind[1]}"
        return text + (f",{self.peer[0]}:{self.peer[1]}" if self.peer else "")


def _host_port(text: str, spec: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host:
        raise PortSpecError(f"'{spec}': expected HOST:PORT, got '{text}'")
    try:
        number = int(port)
    except ValueError:
        raise PortSpecError(f"'{spec}': port '{port}' is not a number") from None
    if not 0 <= number <= 65535:
        raise PortSpecError(f"'{spec}': port {number} out of range")
    return host, number


def parse_port_spec(spec: str) -> PortSpec:
    """Parse `N@IFACE`, `N@udp:HOST:PORT[,PEER_HOST:PEER_PORT]` or `N@shm:PATH`."""
    number_text, sep, where = spec.partition("@")
    if not sep or not where:
        raise PortSpecError(f"'{spec}': expected N@IFACE, N@udp:HOST:PORT[,PEER:PORT] or N@shm:PATH")
    try:
        number = int(number_text)
    except ValueError:
        raise PortSpecError(f"'{spec}': port number '{number_text}' is not a number") from None
    if not 0 <= number <= 510:
        raise PortSpecError(f"'{spec}': port number {number} is not in 0..510 (511 is the drop port)")
    if where.startswith("udp:"):
        bind_text, _, peer_text = where[4:].partition(",")
        bind = _host_port(bind_text, spec)
        peer = _host_port(peer_text, spec) if peer_text else None
        return PortSpec(number, "udp", bind=bind, peer=peer)
    if where.startswith("shm:"):
        if not where[4:]:
            raise PortSpecError(f"'{spec}': expected N@shm:PATH, the ring file the switch creates")
        return PortSpec(number, "shm", path=Path(where[4:]))
    return PortSpec(number, "raw", iface=where)


class Port(Protocol):
    spec: PortSpec

    def fileno(self) -> int: ...

    def receive(self) -> bytes | None: ...

    def receive_many(self, limit: int) -> list[bytes]: ...

    def send(self, frame: bytes) -> None: ...

    def close(self) -> None: ...


class UdpPort:
    """One switch port as a UDP socket: each datagram is one Ethernet frame."""

    def __init__(self, spec: PortSpec) -> None:
        self.spec = spec
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
            self.sock.bind(spec.bind)
        except OSError:
            self.sock.close()
            raise
        self.sock.setblocking(False)
        self.peer = spec.peer
        self.bound = self.sock.getsockname()
        self._pending: tuple[bytes, tuple] | None = None  # a frame of another sender, for the next batch
        # recvmmsg/sendmmsg where they build (omnireduce.dgram); receiving in batches needs a fixed peer, since
        # without one a batch must hold one sender's frames (receive_many below).
        self._batch = None
        self._slots: np.ndarray | None = None
        self._dest: tuple[tuple[str, int], bytes] | None = None
        from omnireduce import dgram

        if dgram.available():
            self._batch = dgram.Datagrams(self.sock)

    def connect_peer(self, peer: tuple[str, int]) -> None:
        """Send to `peer` from now on, whoever sends to this port (as `-i N@udp:HOST:PORT,PEER:PORT` does): a frame
        from a third party (a fuzzer) must not redirect the port's output to it."""
        self.spec = PortSpec(self.spec.number, "udp", bind=self.spec.bind, peer=peer)
        self.peer = peer

    def fileno(self) -> int:
        return self.sock.fileno()

    def receive(self) -> bytes | None:
        try:
            frame, source = self.sock.recvfrom(MAX_FRAME)
        except (BlockingIOError, InterruptedError):
            return None
        if self.spec.peer is None:
            self.peer = source
        return frame

    @property
    def holds_frame(self) -> bool:
        return self._pending is not None

    def receive_many(self, limit: int) -> list[bytes]:
        """Up to `limit` frames that are waiting, without blocking (recvmmsg with a fixed peer, else a recvfrom
        loop).

        Without a fixed peer the port answers the sender of the frames being processed, so a batch holds the
        frames of one sender: a frame from another one is kept for the next call."""
        if self._batch is not None and self.spec.peer is not None:
            if self._slots is None or len(self._slots) < limit:
                self._slots = np.empty((limit, MAX_FRAME), dtype=np.uint8)
                self._lens = np.empty(limit, dtype=np.uint32)
            slots, lens = self._slots, self._lens
            count = self._batch.receive(slots, lens, limit)
            return [slots[row, :length].tobytes() for row, length in enumerate(lens[:count].tolist())]
        frames = []
        source = None
        if self._pending is not None:
            frame, source = self._pending
            self._pending = None
            frames.append(frame)
        recvfrom = self.sock.recvfrom
        while len(frames) < limit:
            try:
                frame, sender = recvfrom(MAX_FRAME)
            except (BlockingIOError, InterruptedError):
                break
            if self.spec.peer is None and source is not None and sender != source:
                self._pending = (frame, sender)
                break
            frames.append(frame)
            source = sender
        if source is not None and self.spec.peer is None:
            self.peer = source
        return frames

    def send(self, frame: bytes) -> None:
        if self.peer is None:
            raise ConnectionError(f"port {self.spec.number} has no peer yet (no frame received)")
        self.sock.sendto(frame, self.peer)

    def send_many(self, frames: list[bytes]) -> int:
        """Send frames in order, in one sendmmsg where it builds; how many went (a full buffer drops the rest)."""
        if self.peer is None:
            raise ConnectionError(f"port {self.spec.number} has no peer yet (no frame received)")
        if self._batch is None:
            for frame in frames:
                self.sock.sendto(frame, self.peer)
            return len(frames)
        if self._dest is None or self._dest[0] != self.peer:
            from omnireduce.dgram import sockaddr_bytes

            self._dest = (self.peer, sockaddr_bytes(self.peer))
        return self._batch.send(frames, self._dest[1])

    def close(self) -> None:
        self.sock.close()


class RawPort:
    """One switch port on a network interface through an AF_PACKET raw socket (needs CAP_NET_RAW)."""

    def __init__(self, spec: PortSpec) -> None:
        self.spec = spec
        self.sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
        try:
            self.sock.bind((spec.iface, ETH_P_ALL))
        except OSError:
            self.sock.close()
            raise
        self.sock.setblocking(False)

    def fileno(self) -> int:
        return self.sock.fileno()

    def receive(self) -> bytes | None:
        while True:
            try:
                frame, address = self.sock.recvfrom(MAX_FRAME)
            except (BlockingIOError, InterruptedError):
                return None
            if address[2] != PACKET_OUTGOING:
                return frame

    def receive_many(self, limit: int) -> list[bytes]:
        """Up to `limit` frames received on the interface (not the ones it sent), without blocking."""
        frames = []
        recvfrom = self.sock.recvfrom
        for _ in range(limit):
            try:
                frame, address = recvfrom(MAX_FRAME)
            except (BlockingIOError, InterruptedError):
                break
            if address[2] != PACKET_OUTGOING:
                frames.append(frame)
        return frames

    def send(self, frame: bytes) -> None:
        self.sock.send(frame)

    def close(self) -> None:
        self.sock.close()


class ShmPort:
    """One switch port as a shared-memory ring file: frames from the agent on ring TO_SWITCH, to it on FROM_SWITCH.

    The switch creates the file (replacing a stale one) and removes it when the port closes. The PacketLoop reads
    all ring ports at once through a RingGroup and writes them through a RingScatter; receive_many/send are the
    per-port forms (the Python pipeline, pcap captures, an impaired device).
    """

    def __init__(self, spec: PortSpec) -> None:
        from omnireduce.shm import FROM_SWITCH, TO_SWITCH, RingFile

        self.spec = spec
        assert spec.path is not None
        self.file = RingFile.create(spec.path)
        try:
            self.reader = self.file.reader(TO_SWITCH)
            self.writer = self.file.writer(FROM_SWITCH)
        except BaseException:
            self.file.close()
            raise

    def fileno(self) -> int:
        return self.reader.fileno()

    def receive(self) -> bytes | None:
        frames = self.reader.pop_frames(1)
        return frames[0] if frames else None

    def receive_many(self, limit: int) -> list[bytes]:
        return self.reader.pop_frames(limit)

    def send(self, frame: bytes) -> None:
        if self.writer.push([frame]) != 1:
            raise BlockingIOError(errno.ENOBUFS, f"port {self.spec.number}: ring full, frame dropped")

    def send_many(self, frames: list[bytes]) -> int:
        return self.writer.push(frames)

    def close(self) -> None:
        self.file.close()


def open_port(spec: PortSpec) -> Port:
    if spec.kind == "shm":
        return ShmPort(spec)
    return UdpPort(spec) if spec.kind == "udp" else RawPort(spec)


class PacketLoop:
    """Thread that moves frames between the ports and the device."""

    def __init__(self, device, ports: list[Port], pcap_dir: Path | None = None) -> None:
        self.device = device
        self.ports: dict[int, Port] = {}
        for port in ports:
            if port.spec.number in self.ports:
                raise PortSpecError(f"port {port.spec.number} is given twice")
            self.ports[port.spec.number] = port
        self.stats: Counter[str] = Counter()
        self._pcap_in: dict[int, PcapWriter] = {}
        self._pcap_out: dict[int, PcapWriter] = {}
        if pcap_dir is not None:
            for number in self.ports:
                self._pcap_in[number] = PcapWriter(Path(pcap_dir) / f"port{number}_in.pcap")
                self._pcap_out[number] = PcapWriter(Path(pcap_dir) / f"port{number}_out.pcap")
        rings = {number: port for number, port in self.ports.items() if isinstance(port, ShmPort)}
        self._ring_group = None
        self._ring_scatter = None
        if rings:
            from omnireduce.shm import RingGroup, RingScatter

            self._ring_group = RingGroup([port.reader for port in rings.values()], list(rings),
                                         per_ring=BATCH, max_frames=RING_DRAIN_FRAMES)
            self._ring_scatter = RingScatter({number: port.writer for number, port in rings.items()})
        self._socket_ports = {number: port for number, port in self.ports.items() if number not in rings}
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_w, False)
        os.set_blocking(self._wake_r, False)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._calls: deque[tuple[Callable[[], object], Future]] = deque()
        # A device that holds frames for later (faults.ImpairedDevice) says when they are due.
        self._next_due: Callable[[], float | None] | None = getattr(device, "next_due", None)

    def submit(self, work: Callable[[], _T]) -> "Future[_T]":
        """Run `work()` on the packet thread, between two batches; its result (or exception) comes in the Future.
        Frames `work` passes to `handle` are processed with no other frame in between."""
        future: Future = Future()
        self._calls.append((work, future))
        self._wake()
        return future

    def _wake(self) -> None:
        try:
            os.write(self._wake_w, b"x")
        except OSError:  # the pipe is full (the loop is awake anyway) or closed (stopped)
            pass

    def _run_calls(self) -> None:
        while self._calls:
            work, future = self._calls.popleft()
            if future.set_running_or_notify_cancel():
                try:
                    future.set_result(work())
                except BaseException as error:  # noqa: BLE001 - handed to the caller
                    future.set_exception(error)

    def _poll_timeout_ms(self, held: bool) -> int:
        if held or self._calls:
            return 0
        due = self._next_due() if self._next_due is not None else None
        if due is None:
            return IDLE_POLL_MS
        return max(0, min(IDLE_POLL_MS, int((due - time.monotonic()) * 1000.0 + 0.999)))

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="softswitch-packets", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._wake()
        if self._thread is not None:
            self._thread.join(timeout)
        running = self._thread is not None and self._thread.is_alive()
        if running:
            log.warning("the packet loop did not stop within %g s; its ring ports stay mapped", timeout)
        for port in self.ports.values():
            # Unmapping a ring under a loop that may be inside a C call on it could crash the process.
            if not (running and isinstance(port, ShmPort)):
                port.close()
        for writer in list(self._pcap_in.values()) + list(self._pcap_out.values()):
            writer.close()
        os.close(self._wake_r)
        os.close(self._wake_w)
        while self._calls:
            self._calls.popleft()[1].cancel()

    def _run(self) -> None:
        poller = select.poll()
        by_fd: dict[int, Port] = {}
        for port in self._socket_ports.values():
            poller.register(port.fileno(), select.POLLIN)
            by_fd[port.fileno()] = port
        group = self._ring_group
        if group is not None:
            # The rings' bells only wake the loop; the rings themselves are read whenever the loop comes round.
            for reader in group.readers:
                poller.register(reader.fileno(), select.POLLIN)
        poller.register(self._wake_r, select.POLLIN)
        while not self._stop.is_set():
            moved = self._drain_rings() if group is not None else 0
            # A port holding a frame back for its next batch (UdpPort.receive_many) is drained without waiting.
            held = [port for port in self._socket_ports.values() if getattr(port, "holds_frame", False)]
            # The wait is the least of both needs: none while a ring had frames (rings are polled without waiting)
            # and otherwise what _poll_timeout_ms allows (0 for a held socket frame or a submitted call, else until
            # the impaired device's next held frame is due, at most IDLE_POLL_MS).
            timeout = 0 if moved else self._poll_timeout_ms(bool(held))
            events: list = []
            if moved and not by_fd and not held:
                # Rings only, and they had frames: go round again without a system call (held frames that are
                # due and submitted calls still run below, so a busy ring cannot starve them).
                pass
            else:
                sleeping = False
                skip = False
                if timeout and group is not None:
                    if group.prepare_sleep():
                        skip = True  # a frame arrived while the loop decided to sleep: read it, do not wait
                    else:
                        sleeping = True
                if not skip:
                    try:
                        events = poller.poll(timeout)
                    except InterruptedError:
                        events = []
                    finally:
                        if sleeping:
                            group.end_sleep()
            ready = {id(port): port for port in held}
            for fd, _ in events:
                port = by_fd.get(fd)
                if port is not None:
                    ready[id(port)] = port
                elif fd == self._wake_r:
                    try:
                        os.read(self._wake_r, 4096)
                    except OSError:
                        pass
            for port in ready.values():
                self._drain(port)
            if self._next_due is not None:
                self._release_held()
            if self._calls:
                self._run_calls()

    def _release_held(self) -> None:
        due = self._next_due()
        if due is None or due > time.monotonic():
            return
        try:
            outputs = self.device.release_due()
        except Exception as exc:  # noqa: BLE001 - the loop must survive anything a frame does
            self.stats["process_error"] += 1
            log.exception("releasing held frames failed: %s", exc)
            return
        self._transmit(outputs)

    def _drain(self, port: Port) -> None:
        try:
            frames = port.receive_many(BATCH)
        except OSError as exc:
            self.stats[f"rx_error:{port.spec.number}"] += 1
            log.warning("port %d: receive failed: %s", port.spec.number, exc)
            return
        if frames:
            self.handle_batch(port.spec.number, frames)

    def _drain_rings(self) -> int:
        """Frames waiting in any ring port, through the pipeline in one batch; how many there were."""
        gathered = self._ring_group.gather()
        count = gathered.count
        if not count:
            return 0
        self.stats["rx"] += count
        process_arrays = getattr(self.device, "process_arrays", None)
        if not (self._pcap_in or self._pcap_out) and process_arrays is not None:
            try:
                if process_arrays(gathered.data, gathered.lens, gathered.ports, count, self._emit):
                    return count
            except Exception as exc:  # noqa: BLE001 - the loop must survive anything a frame does
                self.stats["process_error"] += 1
                log.exception("processing %d frames failed: %s", count, exc)
                return count
        # The per-frame path: captures, a device wrapper, or the Python pipeline.
        ends = np.cumsum(gathered.lens, dtype=np.int64).tolist()
        data = gathered.data
        frames = [(port, data[end - length:end].tobytes())
                  for port, length, end in zip(gathered.ports.tolist(), gathered.lens.tolist(), ends)]
        for port, frame in frames:
            if port in self._pcap_in:
                self._pcap_in[port].write(frame)
        self._process(frames)
        return count

    def _emit(self, outputs) -> None:
        """The native pipeline's outputs (softswitch.native.backend.NativeOutputs) into the output rings; frames for
        ports without a ring go out the per-frame way. Runs under the device's lock."""
        scatter = self._ring_scatter
        published, dropped = scatter.published, scatter.dropped
        others = scatter.scatter_addresses(outputs.count, outputs.data_address, outputs.lens_address,
                                           outputs.ports_address)
        self.stats["tx"] += scatter.published - published
        if scatter.dropped != dropped:
            self.stats["tx_error"] += scatter.dropped - dropped
        if len(others):
            self._transmit(outputs.frames(others.tolist()))

    def handle(self, number: int, frame: bytes) -> None:
        """Process one received frame and transmit the results (also usable without the thread)."""
        self.handle_batch(number, [frame])

    def handle_batch(self, number: int, frames: list[bytes]) -> None:
        """Process frames received on port `number`, in order, and transmit the results."""
        self.stats["rx"] += len(frames)
        if number in self._pcap_in:
            for frame in frames:
                self._pcap_in[number].write(frame)
        self._process([(number, frame) for frame in frames])

    def _process(self, frames: list[tuple[int, bytes]]) -> None:
        try:
            process_batch = getattr(self.device, "process_batch", None)
            if process_batch is not None:
                outputs = process_batch(frames)
            else:  # a device wrapper (tests' loss injection) that offers one frame at a time
                outputs = [out for number, frame in frames for out in self.device.process_packet(number, frame)]
        except Exception as exc:  # noqa: BLE001 - the loop must survive anything a frame does
            self.stats["process_error"] += 1
            log.exception("processing %d frames failed: %s", len(frames), exc)
            return
        self._transmit(outputs)

    def transmit(self, outputs: list[tuple[int, bytes]]) -> None:
        """Send (port, frame) pairs out of their ports, as the loop sends what the device emits."""
        self._transmit(outputs)

    def _transmit(self, outputs: list[tuple[int, bytes]]) -> None:
        """Send outputs out of their ports: each port's frames in order, in one batch call where the port has one
        (UDP ports with batched datagram I/O, ring ports), else one by one."""
        by_port: dict[int, list[bytes]] = {}
        for out_port, out_frame in outputs:
            by_port.setdefault(out_port, []).append(out_frame)
        for out_port, frames in by_port.items():
            target = self.ports.get(out_port)
            if target is None:
                self.stats["tx_no_such_port"] += len(frames)
                continue
            send_many = getattr(target, "send_many", None)
            if send_many is None:
                for frame in frames:
                    self._send_one(target, out_port, frame)
                continue
            try:
                sent = send_many(frames)
            except ConnectionError as exc:
                self.stats["tx_no_peer"] += len(frames)
                log.debug("%s", exc)
                continue
            except OSError as exc:
                self.stats["tx_error"] += len(frames)
                if exc.errno not in (errno.EAGAIN, errno.ENOBUFS):
                    log.warning("port %d: send failed: %s", out_port, exc)
                continue
            self.stats["tx"] += sent
            if sent < len(frames):
                self.stats["tx_error"] += len(frames) - sent
            if out_port in self._pcap_out:
                for frame in frames[:sent]:
                    self._pcap_out[out_port].write(frame)

    def _send_one(self, target: Port, out_port: int, out_frame: bytes) -> None:
        try:
            target.send(out_frame)
        except ConnectionError as exc:
            self.stats["tx_no_peer"] += 1
            log.debug("%s", exc)
            return
        except OSError as exc:
            self.stats["tx_error"] += 1
            if exc.errno not in (errno.EAGAIN, errno.ENOBUFS):
                log.warning("port %d: send failed: %s", out_port, exc)
            return
        self.stats["tx"] += 1
        if out_port in self._pcap_out:
            self._pcap_out[out_port].write(out_frame)
