"""Shared-memory frame rings: how the embedded testbed's agents and the softswitch exchange whole Ethernet frames
without a system call per frame (ring.c: the rings in C; ring.py: the file, its ends, batch calls; native.py:
the compiled module). docs/softswitch.md ("Shared-memory ports") describes the port kind built on them."""

from .native import ShmUnavailable, unavailable_reason
from .ring import (
    FROM_SWITCH,
    MAX_FRAME,
    RING_BYTES,
    TO_SWITCH,
    Gathered,
    RingFile,
    RingFileError,
    RingGroup,
    RingLayout,
    RingReader,
    RingScatter,
    RingWriter,
    layout,
    record_bytes,
)

__all__ = [
    "FROM_SWITCH", "MAX_FRAME", "RING_BYTES", "TO_SWITCH", "Gathered", "RingFile", "RingFileError", "RingGroup",
    "RingLayout", "RingReader", "RingScatter", "RingWriter", "ShmUnavailable", "layout", "record_bytes",
    "unavailable_reason",
]
