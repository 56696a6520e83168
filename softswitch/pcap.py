"""Classic pcap (libpcap 2.4, microsecond timestamps, LINKTYPE_ETHERNET) writer for per-port captures."""

from __future__ import annotations

import struct
import threading
import time
from pathlib import Path

_GLOBAL_HEADER = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)
_RECORD = struct.Struct("<IIII")
SNAPLEN = 65535


class PcapWriter:
    """Appends frames to one pcap file; flushes after every frame so the capture is readable while running."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = self.path.open("wb")
        self._file.write(_GLOBAL_HEADER)
        self._file.flush()
        self._lock = threading.Lock()

    def write(self, frame: bytes, timestamp: float | None = None) -> None:
        now = time.time() if timestamp is None else timestamp
        seconds = int(now)
        micros = int((now - seconds) * 1_000_000)
        data = frame[:SNAPLEN]
        with self._lock:
            if self._file.closed:
                return
            self._file.write(_RECORD.pack(seconds, micros, len(data), len(frame)))
            self._file.write(data)
            self._file.flush()

    def close(self) -> None:
        with self._lock:
            if not self._file.closed:
                self._file.close()


def read_pcap(path: Path) -> list[bytes]:
    """Frames of a classic little-endian pcap file (used by tests and debugging)."""
    data = Path(path).read_bytes()
    if data[:4] != _GLOBAL_HEADER[:4]:
        raise ValueError(f"{path}: not a little-endian classic pcap file")
    frames, offset = [], len(_GLOBAL_HEADER)
    while offset + _RECORD.size <= len(data):
        _, _, caplen, _ = _RECORD.unpack_from(data, offset)
        offset += _RECORD.size
        frames.append(data[offset : offset + caplen])
        offset += caplen
    return frames
