"""Batched datagram I/O: many UDP datagrams per system call (recvmmsg/sendmmsg) into and out of numpy buffers.

The softswitch's UDP ports and the agents' frame transport move one datagram per frame; a Python recv or sendto
per datagram costs a system call and a Python call each. `dgram.c`, compiled at first use through cffi and cached
like the native pipeline (omnireduce/cbuild.py), takes a whole batch per call. Where it cannot be built,
`available()` is False and the callers keep their one-call-per-datagram loops.
"""

from __future__ import annotations

import socket
import struct
from importlib import resources
from types import ModuleType

import numpy as np

from omnireduce.cbuild import CBuildError, load_cached

CDEF = """
int dg_recv(int fd, uint8_t *out, uint64_t slot_bytes, uint32_t *lens, int max);
int dg_send(int fd, const uint8_t *data, const uint32_t *lens, int n, const uint8_t *dest);
int dg_send_rows(int fd, const uint8_t *rows, uint64_t stride, uint32_t len, int n, const uint8_t *dest);
"""
COMPILE_ARGS = ["-O2", "-std=gnu11"]
#: Datagrams per system call at most (dgram.c's DG_MAX).
MAX_BATCH = 256

_module: ModuleType | None = None
_problem: str | None = None


def _load() -> ModuleType | None:
    global _module, _problem
    if _module is None and _problem is None:
        source = resources.files(__package__).joinpath("dgram.c").read_text(encoding="utf-8")
        try:
            _module = load_cached("_omnireduce_dgram", CDEF, source, "dgram", COMPILE_ARGS, "batched datagram I/O")
        except CBuildError as error:
            _problem = str(error)
    return _module


def available() -> bool:
    """Whether the batch calls can be used here (builds the module on first use)."""
    return _load() is not None


def unavailable_reason() -> str | None:
    _load()
    return _problem


def sockaddr_bytes(address: tuple[str, int]) -> bytes:
    """An IPv4 (host, port) as a struct sockaddr_in, Linux's layout (family in host order)."""
    return struct.pack("=H", socket.AF_INET) + struct.pack("!H", address[1]) + socket.inet_aton(address[0]) + bytes(8)


class Datagrams:
    """The batch calls on one socket (its file descriptor; the caller owns and closes the socket)."""

    def __init__(self, sock: socket.socket) -> None:
        module = _load()
        if module is None:
            raise CBuildError(_problem or "batched datagram I/O is unavailable")
        self.ffi, self.lib = module.ffi, module.lib
        self.fd = sock.fileno()

    def receive(self, slots: np.ndarray, lens: np.ndarray, limit: int | None = None) -> int:
        """Datagrams waiting on the socket (never blocks) into the rows of `slots` ((n, slot_bytes) uint8,
        C-contiguous; a longer datagram is cut to its row), their lengths into `lens` (uint32); how many.
        OSError for a socket error (ECONNREFUSED on a connected socket whose peer is gone)."""
        count = min(len(slots), len(lens), MAX_BATCH, len(slots) if limit is None else limit)
        ffi = self.ffi
        got = self.lib.dg_recv(self.fd, ffi.from_buffer(slots), slots.shape[1], ffi.from_buffer("uint32_t[]", lens),
                               count)
        if got < 0:
            raise OSError(-got, f"recvmmsg: {_strerror(-got)}")
        return got

    def send(self, frames: list[bytes], dest: bytes | None = None) -> int:
        """Send whole datagrams in order to `dest` (sockaddr_bytes(); None: the connected peer); how many went
        (the socket refused the rest: a full buffer). OSError when the first one failed."""
        if not frames:
            return 0
        ffi = self.ffi
        data = b"".join(frames)
        lens = ffi.new("uint32_t[]", [len(frame) for frame in frames])
        sent = self.lib.dg_send(self.fd, ffi.from_buffer(data), lens, len(frames),
                                ffi.NULL if dest is None else ffi.from_buffer(dest))
        if sent < 0:
            raise OSError(-sent, f"sendmmsg: {_strerror(-sent)}")
        return sent

    def send_rows(self, rows: np.ndarray, length: int, dest: bytes | None = None) -> int:
        """Send the first `length` bytes of each row of `rows` ((n, stride) uint8, C-contiguous) in order."""
        if not len(rows):
            return 0
        ffi = self.ffi
        rows = np.ascontiguousarray(rows)
        sent = self.lib.dg_send_rows(self.fd, ffi.from_buffer(rows), rows.strides[0] if len(rows) > 1 else
                                     rows.shape[1], length, len(rows),
                                     ffi.NULL if dest is None else ffi.from_buffer(dest))
        if sent < 0:
            raise OSError(-sent, f"sendmmsg: {_strerror(-sent)}")
        return sent


def _strerror(code: int) -> str:
    import os

    return os.strerror(code)
