"""The ring code (ring.c) as an extension module: compiled with the system C compiler through cffi on first use,
cached under $XDG_CACHE_HOME/omnireduce/shm by a hash of its source, imported from there afterwards."""

from __future__ import annotations

from importlib import resources
from types import ModuleType

from omnireduce.cbuild import CBuildError, load_cached

CDEF = """
struct orr_ctl { ...; };
typedef struct orr_ring {
    struct orr_ctl *ctl;
    uint8_t *data;
    uint64_t size;
    uint64_t mask;
    uint32_t max_frame;
    int bell_fd;
} orr_ring;
uint64_t orr_file_bytes(uint64_t ring_bytes, uint32_t rings);
int orr_format(uint8_t *base, uint64_t file_bytes, uint64_t ring_bytes, uint32_t max_frame, uint32_t rings);
int orr_attach(orr_ring *ring, uint8_t *base, uint64_t file_bytes, uint32_t index, int bell_fd);
int orr_push(orr_ring *ring, const uint8_t *data, const uint32_t *lens, int n);
int orr_push_rows(orr_ring *ring, const uint8_t *rows, uint64_t stride, const uint32_t *lens, uint32_t len, int n);
int orr_scatter(orr_ring **rings, int nports, const uint8_t *data, const uint32_t *lens, const uint16_t *ports,
                int n, uint32_t *others, uint64_t *counts);
int orr_pop(orr_ring *ring, uint8_t *out, uint64_t out_bytes, uint32_t *lens, int max);
int orr_pop_rows(orr_ring *ring, uint8_t *rows, uint64_t stride, uint32_t *lens, int max);
int orr_gather(orr_ring **rings, const uint16_t *ring_ports, int nrings, int first, int per_ring, uint8_t *out,
               uint64_t out_bytes, uint32_t *lens, uint16_t *ports, int max);
int orr_prepare_sleep(orr_ring **rings, int nrings);
void orr_end_sleep(orr_ring **rings, int nrings);
uint64_t orr_pending(orr_ring *ring);
void orr_counters(orr_ring *ring, uint64_t *out);
void orr_layout(uint64_t *out);
"""

COMPILE_ARGS = ["-O2", "-std=gnu11"]


class ShmUnavailable(Exception):
    """The ring module cannot be built here (no C compiler, no cffi, or the compile failed)."""


def load() -> ModuleType:
    """The compiled ring module (built on first use, cached per machine); ShmUnavailable saying why not."""
    source = resources.files(__package__).joinpath("ring.c").read_text(encoding="utf-8")
    try:
        return load_cached("_omnireduce_shm", CDEF, source, "shm", COMPILE_ARGS, "the shared-memory rings")
    except CBuildError as error:
        raise ShmUnavailable(str(error)) from error


def unavailable_reason() -> str | None:
    """Why shared-memory rings cannot be used here, or None when they can (builds the module if needed)."""
    try:
        load()
    except ShmUnavailable as error:
        return str(error)
    return None
