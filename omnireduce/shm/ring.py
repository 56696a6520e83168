"""Frame rings in shared memory: the file, its two ends, and the batch calls the switch and the agents make.

A ring file holds `rings` single-producer single-consumer rings of variable-length frames (ring.c has the layout
and the memory ordering). A softswitch port uses two: TO_SWITCH (the agent produces, the switch consumes) and
FROM_SWITCH (the other way). Each ring has a doorbell, a FIFO next to the file (`PATH.bell0`, `PATH.bell1`) that
its consumer polls while it sleeps; a producer writes one byte to it only when the consumer said it sleeps, so a
busy exchange makes no system call at all.

    ring = RingFile.create(path)                 # the switch: a fresh file and its bells
    ring = RingFile.open(path)                   # the agent: the switch's file, checked
    writer, reader = ring.writer(TO_SWITCH), ring.reader(FROM_SWITCH)
    writer.push_rows(frames, lens)               # many frames per call, from numpy rows
    count = reader.pop_rows(rows, lens)          # many frames per call, into numpy rows
    reader.wait(timeout)                         # sleep until a frame arrives (poll on the bell), or not

Nothing in the file is trusted: a file with a bad header is refused with RingFileError (what is wrong, what to
do); a corrupt position or record at run time is counted (`corrupt`, `dropped_full`) and the ring resynchronises.
"""

from __future__ import annotations

import fcntl
import os
import select
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .native import load

TO_SWITCH = 0
FROM_SWITCH = 1
#: Bytes of each ring's data: a worker's burst is at most SLOT_COUNT (512) frames of 200-byte records each way,
#: 100 KiB; a MiB leaves room for replays and a descheduled consumer.
RING_BYTES = 1 << 20
#: Longest frame a ring takes (what a UDP datagram could carry; the switch's ports accept no more).
MAX_FRAME = 65535
#: Record overhead in the ring: a 4-byte length, the whole record padded to 8 bytes (ring.c).
RECORD_ALIGN = 8

_ERRORS = {
    -1: "is shorter than its header says (truncated, or not a frame-ring file)",
    -2: "is not an initialised frame-ring file (no magic number)",
    -3: "has another ring layout version (written by another omnireduce version)",
    -4: "has an impossible geometry (ring size not a power of two >= 64, frames too long for it, or a bad ring "
        "count)",
    -5: "has no ring with that index",
}
COUNTER_NAMES = ("pushed", "dropped_full", "dropped_long", "bells", "popped", "corrupt", "head", "tail", "sleeping")


@dataclass(frozen=True, slots=True)
class RingLayout:
    """Byte offsets in a ring file (from ring.c itself), for tests and tools that inspect or damage one."""

    header_bytes: int
    ctl_offset: int
    ctl_bytes: int
    head: int
    tail: int
    sleeping: int

    def control(self, index: int) -> int:
        """Offset of ring `index`'s control block."""
        return self.ctl_offset + index * self.ctl_bytes

    def data(self, index: int, ring_bytes: int) -> int:
        """Offset of ring `index`'s data."""
        return self.header_bytes + index * ring_bytes


def layout() -> RingLayout:
    module = load()
    out = module.ffi.new("uint64_t[6]")
    module.lib.orr_layout(out)
    return RingLayout(*(int(value) for value in out))


class RingFileError(Exception):
    """A ring file that cannot be used; the message says what is wrong and what to do."""


def record_bytes(frame_len: int) -> int:
    """Bytes a frame of `frame_len` takes in a ring."""
    return (4 + frame_len + RECORD_ALIGN - 1) // RECORD_ALIGN * RECORD_ALIGN


def geometry_problem(ring_bytes: int, max_frame: int, rings: int) -> str | None:
    """What is wrong with a ring file's geometry (ring.c's orr_geometry_ok, in words), or None."""
    if ring_bytes < 64 or ring_bytes & (ring_bytes - 1) or ring_bytes > 1 << 40:
        return f"ring size {ring_bytes} is not a power of two in 64 .. 2^40"
    if not 0 <= max_frame or record_bytes(max_frame) > ring_bytes:
        return f"a {max_frame}-byte frame does not fit a {ring_bytes}-byte ring"
    if not 1 <= rings <= 8:
        return f"{rings} rings: a file holds 1 to 8"
    return None


def bell_path(path: Path, index: int) -> Path:
    return path.with_name(f"{path.name}.bell{index}")


class RingFile:
    """A mapped ring file. `create` makes a fresh one (the switch's side; `close` removes it and its bells),
    `open` attaches to an existing one (the agent's side)."""

    def __init__(self, path: Path, fd: int, size: int, owner: bool) -> None:
        self._module = load()
        self.ffi, self.lib = self._module.ffi, self._module.lib
        self.path = path
        self.owner = owner
        self._fd = fd
        import mmap

        self._map = mmap.mmap(fd, size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        self._base = self.ffi.from_buffer("uint8_t[]", self._map)
        self.size = size
        self._ends: list[_RingEnd] = []
        self.closed = False
        header = np.frombuffer(self._map, dtype=np.uint8, count=64)
        self.ring_bytes = int(header[16:24].view(np.uint64)[0])
        self.max_frame = int(header[24:28].view(np.uint32)[0])
        self.rings = int(header[28:32].view(np.uint32)[0])
        del header  # no numpy view may outlive the mapping

    @classmethod
    def create(cls, path: str | os.PathLike[str], *, ring_bytes: int = RING_BYTES, max_frame: int = MAX_FRAME,
               rings: int = 2) -> "RingFile":
        """A fresh ring file at `path` (an existing one is replaced: its peers lose their link), with a bell per
        ring. The file appears (renamed into place) only once it is initialised and its bells exist."""
        path = Path(path)
        problem = geometry_problem(ring_bytes, max_frame, rings)
        if problem is not None:
            raise ValueError(f"cannot make ring file {path}: {problem}")
        module = load()
        size = int(module.lib.orr_file_bytes(ring_bytes, rings))
        staged = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        for index in range(rings):
            bell = bell_path(path, index)
            try:
                bell.unlink()
            except FileNotFoundError:
                pass
            os.mkfifo(bell, 0o600)
        fd = os.open(staged, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.ftruncate(fd, size)
            ring = cls(path, fd, size, owner=True)
        except BaseException:
            os.close(fd)
            staged.unlink(missing_ok=True)
            raise
        code = ring.lib.orr_format(ring._base, size, ring_bytes, max_frame, rings)
        assert code == 0, code  # geometry_problem checked what orr_format checks
        ring.ring_bytes, ring.max_frame, ring.rings = ring_bytes, max_frame, rings
        os.replace(staged, path)
        return ring

    @classmethod
    def open(cls, path: str | os.PathLike[str]) -> "RingFile":
        """Attach to the ring file at `path`; RingFileError if it is missing or not a usable ring file."""
        path = Path(path)
        try:
            fd = os.open(path, os.O_RDWR)
        except FileNotFoundError:
            raise RingFileError(f"ring file {path} does not exist: start the switch with -i N@shm:{path} "
                                f"first") from None
        except OSError as error:
            raise RingFileError(f"cannot open ring file {path}: {error.strerror or error}") from None
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                raise RingFileError(f"ring file {path} is not a regular file")
            if info.st_size < 4096:
                raise RingFileError(f"ring file {path} {_ERRORS[-1]}")
            ring = cls(path, fd, info.st_size, owner=False)
        except BaseException:
            os.close(fd)
            raise
        try:
            ring._check(0)  # a file that is not a usable ring file is refused here, not at its first frame
        except RingFileError:
            ring.close()
            raise
        return ring

    def claim(self) -> None:
        """Take the agent's end of the file for this process (an advisory lock, released when the file closes): each
        ring has one producer and one consumer, so a second agent on the same port would corrupt both directions.
        RingFileError if another process holds it."""
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RingFileError(f"ring file {self.path} is in use by another agent: each switch port takes one "
                                f"agent at a time (two ranks or workers configured with the same port?)") from None

    def removed(self) -> bool:
        """Whether the file was removed since it was mapped (its owner closed it: a switch that stopped)."""
        return not self.closed and os.fstat(self._fd).st_nlink == 0

    def _check(self, index: int) -> Any:
        end = self.ffi.new("orr_ring *")
        code = self.lib.orr_attach(end, self._base, self.size, index, -1)
        if code != 0:
            raise RingFileError(f"ring file {self.path} {_ERRORS.get(code, f'is unusable (code {code})')}; "
                                f"restart the switch that owns it")
        return end

    def writer(self, index: int) -> "RingWriter":
        end = RingWriter(self, index, self._check(index))
        self._ends.append(end)
        return end

    def reader(self, index: int) -> "RingReader":
        end = RingReader(self, index, self._check(index))
        self._ends.append(end)
        return end

    def close(self) -> None:
        """Unmap (every end of this file stops working); the owner also removes the file and its bells."""
        if self.closed:
            return
        self.closed = True
        for end in self._ends:
            end._close()
        self.ffi.release(self._base)
        self._map.close()
        os.close(self._fd)
        if self.owner:
            for index in range(self.rings):
                bell_path(self.path, index).unlink(missing_ok=True)
            self.path.unlink(missing_ok=True)

    def __enter__(self) -> "RingFile":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class _RingEnd:
    def __init__(self, file: RingFile, index: int, ring: Any) -> None:
        self.file = file
        self.index = index
        self.ffi, self.lib = file.ffi, file.lib
        self.ring = ring
        self.bell_fd = os.open(bell_path(file.path, index), os.O_RDWR | os.O_NONBLOCK)
        ring.bell_fd = self.bell_fd
        self._counters = self.ffi.new("uint64_t[]", len(COUNTER_NAMES))

    def _close(self) -> None:
        if self.bell_fd >= 0:
            os.close(self.bell_fd)
            self.bell_fd = -1
            self.ring.bell_fd = -1

    def _live(self) -> None:
        if self.file.closed:
            raise ValueError(f"ring file {self.file.path} is closed")

    def counters(self) -> dict[str, int]:
        """The ring's counters as its file holds them (both ends see the same)."""
        self._live()
        self.lib.orr_counters(self.ring, self._counters)
        return dict(zip(COUNTER_NAMES, self.ffi.unpack(self._counters, len(COUNTER_NAMES))))

    def pending_bytes(self) -> int:
        self._live()
        return int(self.lib.orr_pending(self.ring))


class RingWriter(_RingEnd):
    """The producer's end: frames in order; what does not fit is dropped and counted (a full link loses frames)."""

    def push(self, frames: Sequence[bytes | bytearray | memoryview]) -> int:
        """Append whole frames; returns how many were published (the rest counted as dropped)."""
        self._live()
        if not frames:
            return 0
        data = b"".join(frames)
        lens = self.ffi.new("uint32_t[]", [len(frame) for frame in frames])
        return self.lib.orr_push(self.ring, self.ffi.from_buffer(data), lens, len(frames))

    def push_rows(self, rows: np.ndarray, lens: np.ndarray | int) -> int:
        """Row i of `rows` ((n, stride) uint8) is a frame of lens[i] bytes (`lens` bytes each if an int)."""
        self._live()
        if rows.ndim != 2 or rows.dtype != np.uint8 or rows.strides[1] != 1:
            raise ValueError("rows must be an (n, stride) uint8 array with contiguous rows")
        count = len(rows)
        if not count:
            return 0
        if not rows.flags.c_contiguous:
            rows = np.ascontiguousarray(rows)
        ffi = self.ffi
        stride = rows.strides[0] if count > 1 else rows.shape[1]
        if isinstance(lens, (int, np.integer)):
            return self.lib.orr_push_rows(self.ring, ffi.from_buffer(rows), stride, ffi.NULL, int(lens), count)
        lens = np.ascontiguousarray(lens, dtype=np.uint32)
        if len(lens) < count:
            raise ValueError(f"{count} rows but {len(lens)} lengths")
        return self.lib.orr_push_rows(self.ring, ffi.from_buffer(rows), stride,
                                      ffi.from_buffer("uint32_t[]", lens), 0, count)


class RingReader(_RingEnd):
    """The consumer's end; fileno() is its bell, for poll/select loops (see prepare_sleep/end_sleep)."""

    def __init__(self, file: RingFile, index: int, ring: Any) -> None:
        super().__init__(file, index, ring)
        self._group = self.ffi.new("orr_ring *[1]", [ring])
        self._poller: select.poll | None = None

    def fileno(self) -> int:
        return self.bell_fd

    def pop_rows(self, rows: np.ndarray, lens: np.ndarray, limit: int | None = None) -> int:
        """Frames into the rows of `rows` ((n, stride) uint8, C-contiguous; a longer frame is cut to the row),
        their whole lengths into `lens` (uint32); returns how many."""
        self._live()
        if rows.dtype != np.uint8 or rows.ndim != 2 or not rows.flags.c_contiguous or not rows.flags.writeable:
            raise ValueError("rows must be a writable C-contiguous (n, stride) uint8 array")
        if lens.dtype != np.uint32 or not lens.flags.c_contiguous:
            raise ValueError("lens must be a C-contiguous uint32 array")
        count = min(len(rows), len(lens), len(rows) if limit is None else limit)
        if count <= 0:
            return 0
        ffi = self.ffi
        return self.lib.orr_pop_rows(self.ring, ffi.from_buffer(rows), rows.shape[1],
                                     ffi.from_buffer("uint32_t[]", lens), count)

    def pop(self, out: np.ndarray, lens: np.ndarray, limit: int | None = None) -> int:
        """Frames back to back into `out` (uint8, at least max_frame long, so the next frame always fits),
        lengths into `lens` (uint32); returns how many."""
        self._live()
        if out.dtype != np.uint8 or not out.flags.c_contiguous or len(out) < self.file.max_frame:
            raise ValueError(f"out must be a C-contiguous uint8 array of at least {self.file.max_frame} bytes")
        if lens.dtype != np.uint32 or not lens.flags.c_contiguous:
            raise ValueError("lens must be a C-contiguous uint32 array")
        count = min(len(lens), len(lens) if limit is None else limit)
        ffi = self.ffi
        return self.lib.orr_pop(self.ring, ffi.from_buffer(out), len(out), ffi.from_buffer("uint32_t[]", lens),
                                count)

    def pop_frames(self, limit: int) -> list[bytes]:
        """Up to `limit` frames as bytes (the convenient, slower form)."""
        out = np.empty(self.file.max_frame + 2048 * limit, dtype=np.uint8)
        lens = np.empty(limit, dtype=np.uint32)
        count = self.pop(out, lens, limit)
        frames = []
        start = 0
        for length in lens[:count].tolist():
            frames.append(out[start:start + length].tobytes())
            start += length
        return frames

    def prepare_sleep(self) -> bool:
        """The consumer's half of the doorbell handshake: True if frames are waiting (do not sleep), False if
        the caller may now poll fileno(); call end_sleep() after the poll either way it ends."""
        self._live()
        return bool(self.lib.orr_prepare_sleep(self._group, 1))

    def end_sleep(self) -> None:
        self._live()
        self.lib.orr_end_sleep(self._group, 1)

    def wait(self, timeout: float) -> bool:
        """Wait up to `timeout` seconds for a frame; True if one is waiting. No wake-up is lost (ring.c)."""
        if self.prepare_sleep():
            return True
        if self._poller is None:
            self._poller = select.poll()
            self._poller.register(self.bell_fd, select.POLLIN)
        try:
            self._poller.poll(max(0.0, timeout) * 1000.0)
        finally:
            self.end_sleep()
        return self.pending_bytes() != 0


@dataclass(frozen=True, slots=True)
class Gathered:
    """Frames gathered from several readers: `count` frames back to back in data, lens[i] bytes each, received
    on ports[i]. Views of the group's buffers: valid until its next gather."""

    count: int
    data: np.ndarray
    lens: np.ndarray
    ports: np.ndarray


class RingGroup:
    """A switch's input rings, read together: one call gathers frames from all of them (in turn, `per_ring` at
    most from each), and one handshake puts the switch to sleep on all their bells."""

    def __init__(self, readers: Sequence[RingReader], ports: Sequence[int], *, per_ring: int = 64,
                 max_frames: int = 256) -> None:
        if not readers:
            raise ValueError("a ring group needs at least one reader")
        if len(readers) != len(ports):
            raise ValueError("one port number per reader")
        self.readers = list(readers)
        first = self.readers[0]
        self.ffi, self.lib = first.ffi, first.lib
        self._rings = self.ffi.new("orr_ring *[]", [reader.ring for reader in self.readers])
        self._ring_ports = self.ffi.new("uint16_t[]", list(ports))
        self.per_ring = per_ring
        self.max_frames = max_frames
        max_frame = max(reader.file.max_frame for reader in self.readers)
        # Room for a whole batch of typical frames, and always for one frame of the longest kind.
        self.data = np.empty(max_frames * 256 + max_frame, dtype=np.uint8)
        self.lens = np.empty(max_frames, dtype=np.uint32)
        self.ports = np.empty(max_frames, dtype=np.uint16)
        self._data_c = self.ffi.from_buffer("uint8_t[]", self.data)
        self._lens_c = self.ffi.from_buffer("uint32_t[]", self.lens)
        self._ports_c = self.ffi.from_buffer("uint16_t[]", self.ports)
        self._first = 0

    def gather(self) -> Gathered:
        for reader in self.readers:
            reader._live()
        nrings = len(self.readers)
        count = self.lib.orr_gather(self._rings, self._ring_ports, nrings, self._first, self.per_ring,
                                    self._data_c, len(self.data), self._lens_c, self._ports_c, self.max_frames)
        self._first = (self._first + 1) % nrings
        return Gathered(count, self.data, self.lens[:count], self.ports[:count])

    def prepare_sleep(self) -> bool:
        """True if some ring has frames (do not sleep); False: poll every reader's fileno(), then end_sleep()."""
        return bool(self.lib.orr_prepare_sleep(self._rings, len(self.readers)))

    def end_sleep(self) -> None:
        self.lib.orr_end_sleep(self._rings, len(self.readers))


class RingScatter:
    """A switch's output rings by port: one call appends a whole batch of output frames to their ports' rings
    and wakes each sleeping consumer once."""

    def __init__(self, writers: dict[int, RingWriter]) -> None:
        if not writers:
            raise ValueError("a ring scatter needs at least one writer")
        first = next(iter(writers.values()))
        self.ffi, self.lib = first.ffi, first.lib
        self.writers = dict(writers)
        self.nports = max(writers) + 1
        self._table = self.ffi.new("orr_ring *[]", self.nports)
        for port, writer in writers.items():
            self._table[port] = writer.ring
        self._others = np.empty(1024, dtype=np.uint32)
        self._counts = self.ffi.new("uint64_t[2]")
        #: frames published and frames dropped (ring full or too long), over the scatter's life
        self.published = 0
        self.dropped = 0

    def scatter_addresses(self, count: int, data: int, lens: int, ports: int) -> np.ndarray:
        """Frames described by raw addresses (another C module's output buffers: `count` frames back to back at
        `data`, uint32 lengths at `lens`, uint16 ports at `ports`); returns the indexes of the frames whose port
        has no ring (for the caller to send otherwise). Those addresses must stay valid during the call."""
        for writer in self.writers.values():
            writer._live()
        if count > len(self._others):
            self._others = np.empty(count, dtype=np.uint32)
        ffi = self.ffi
        counts = self._counts
        counts[0] = counts[1] = 0
        others = self.lib.orr_scatter(self._table, self.nports, ffi.cast("uint8_t *", data),
                                      ffi.cast("uint32_t *", lens), ffi.cast("uint16_t *", ports), count,
                                      ffi.from_buffer("uint32_t[]", self._others), counts)
        self.published += counts[0]
        self.dropped += counts[1]
        return self._others[:others]
