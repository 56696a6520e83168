"""Classic pcap files for the BMv2 replay: write a trace, and read the records of a file that is still growing.

simple_switch (pcap-file mode) appends one record per output frame and flushes it, stamped with gettimeofday();
a reader may catch it half-way through a record, so only whole records are returned. The timestamps are what
times BMv2's run: they come from BMv2's own clock as it writes each frame.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

MAGIC_MICROSECONDS = 0xA1B2C3D4
LINKTYPE_ETHERNET = 1
GLOBAL_HEADER = struct.Struct("<IHHiIII")
RECORD_HEADER = struct.Struct("<IIII")
SNAPLEN = 65535


@dataclass(frozen=True, slots=True)
class Record:
    timestamp: float  # seconds since the epoch, microsecond resolution
    frame: bytes


def write_pcap(path: Path, frames: list[bytes]) -> None:
    """All frames, stamped one microsecond apart (simple_switch's file mode ignores the times)."""
    parts = [GLOBAL_HEADER.pack(MAGIC_MICROSECONDS, 2, 4, 0, 0, SNAPLEN, LINKTYPE_ETHERNET)]
    for index, frame in enumerate(frames):
        if len(frame) > SNAPLEN:
            raise ValueError(f"frame {index} is {len(frame)} bytes, more than the pcap snap length {SNAPLEN}")
        parts.append(RECORD_HEADER.pack(index // 1_000_000, index % 1_000_000, len(frame), len(frame)))
        parts.append(frame)
    Path(path).write_bytes(b"".join(parts))


def _check_header(data: bytes) -> None:
    magic = struct.unpack_from("<I", data)[0]
    if magic != MAGIC_MICROSECONDS:
        raise ValueError(f"not a little-endian microsecond pcap file (magic {magic:#010x})")


def _whole_records(data: bytes, offset: int) -> tuple[list[Record], int]:
    """Records from `offset` up to the last whole one, and the offset just past it."""
    records = []
    while offset + RECORD_HEADER.size <= len(data):
        seconds, micros, caplen, _ = RECORD_HEADER.unpack_from(data, offset)
        end = offset + RECORD_HEADER.size + caplen
        if end > len(data):
            break
        records.append(Record(seconds + micros / 1e6, data[offset + RECORD_HEADER.size : end]))
        offset = end
    return records, offset


def read_records(data: bytes) -> list[Record]:
    """The whole records of a little-endian, microsecond pcap file's bytes; a torn last record is left out."""
    if len(data) < GLOBAL_HEADER.size:
        return []
    _check_header(data)
    return _whole_records(data, GLOBAL_HEADER.size)[0]


class PcapTail:
    """Follows a pcap file that another process appends to, parsing only the bytes added since the last poll
    (polling must cost next to nothing: the process being measured shares the machine's cores)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.records: list[Record] = []
        self._file = None
        self._pending = b""
        self._header_seen = False

    def poll(self) -> int:
        """Read what was appended; return the number of whole records so far."""
        if self._file is None:
            try:
                self._file = self.path.open("rb")
            except FileNotFoundError:
                return 0
        self._pending += self._file.read()
        if not self._header_seen:
            if len(self._pending) < GLOBAL_HEADER.size:
                return 0
            _check_header(self._pending)
            self._header_seen = True
            self._pending = self._pending[GLOBAL_HEADER.size :]
        records, offset = _whole_records(self._pending, 0)
        self.records.extend(records)
        self._pending = self._pending[offset:]
        return len(self.records)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
