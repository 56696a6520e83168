"""The agent's hot loops compiled (exchange.c: consuming results; scanning, quantizing and dequantizing float32
blocks): built with the system C compiler through cffi on first use, cached under $XDG_CACHE_HOME/omnireduce/host by
a hash of its source, imported from there afterwards.

Where it cannot be built (no compiler, no cffi) the agent does the same with numpy (host/batch.py,
host/quantize.py), with the same results, and says so once in its log; OMNIREDUCE_AGENT_NATIVE=0 chooses numpy on
purpose (the tests run both).
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from importlib import resources
from types import ModuleType

from omnireduce.cbuild import CBuildError, load_cached
from omnireduce.p4src import constants as C

from .wire import FLAG_LATE

log = logging.getLogger(__name__)

#: "0" turns the compiled path off (the numpy batch path runs); anything else, or unset, uses it where it builds.
NATIVE_ENV = "OMNIREDUCE_AGENT_NATIVE"

CDEF = """
typedef struct orx_exchange {
    uint64_t constant;
    int64_t slots, count, columns, expected_exponent;
    double initial, ceiling, first, fallback;
    double srtt, rttvar, peak, peak_at, backed_off;
    int64_t send_seq, answered_seq;
    double answered_at;
    int64_t consumed, sent, first_round, closed, exponent;
} orx_exchange;
typedef struct orx_columns {
    int64_t *expected, *own_next, *timeouts;
    uint8_t *contributed, *gap_requested, *has_early;
    double *sent_at, *first_sent_at, *retransmitted_at;
    int64_t *sent_seq;
    double *rto, *deadline;
    uint8_t *contrib;
    uint8_t *set_index;
    const uint8_t *lanes;
    const int32_t *lane_row;
    const uint32_t *next_block;
    uint8_t *result;
    int64_t *result_next;
    uint8_t *result_set;
} orx_columns;
int64_t orx_consume(orx_exchange *x, orx_columns *c, const uint8_t *payloads, const int64_t *sizes, int64_t n,
                    double now, uint8_t *out_rows);
uint32_t orx_scan_f32(const uint32_t *words, int64_t n, uint8_t *candidates);
void orx_quantize_f32(const float *values, int64_t n, const int64_t *blocks, int64_t nblocks, float scale,
                      uint8_t *rows, int by_block, uint8_t *significant);
void orx_from_wire(uint8_t *buffer, int64_t count, const int64_t *blocks, int64_t nblocks, int is_float, int shift);
void orx_next_in_column(const uint8_t *send, int64_t count, int64_t slots, uint32_t *next, uint32_t *following);
int64_t orx_usual_frames(const uint8_t *frames, int64_t stride, const int64_t *sizes, int64_t n,
                         const uint8_t *data_prefix, int64_t data_size, const uint8_t *control_prefix,
                         int64_t control_size, int64_t prefix_len, uint8_t *usual);
"""

#: -O3 vectorises the scan; -ffp-contract=off: no fused multiply-add, so the estimator's doubles are exactly Python's.
COMPILE_ARGS = ["-O3", "-std=gnu11", "-ffp-contract=off"]

_unavailable: str | None = None
_module: ModuleType | None = None


def header_defines() -> str:
    """#defines of the header layout and protocol constants, from the generated constants (one source), and the
    round-trip estimator's constants from host/engine.py (imported here: engine loads this module)."""
    from .engine import PEAK_HALF_LIFE, PEAK_MARGIN, REQUEST_PATIENCE

    offsets: dict[str, int] = {}
    position = 0
    for name, bits in C.OMNI_HEADER_FIELDS:
        offsets[name] = position
        position += bits // 8
    # Bytes 0..7 that are the same in every RESULT of one exchange: msg_type, job_id, tensor_id (not flags, slot).
    constant_bits = 0
    for name in ("msg_type", "job_id", "tensor_id"):
        width = dict(C.OMNI_HEADER_FIELDS)[name] // 8
        for byte in range(offsets[name], offsets[name] + width):
            constant_bits |= 0xFF << (8 * (7 - byte))
    lines = {
        "ORX_HEADER": C.OMNI_HEADER_BYTES,
        "ORX_LANES": C.LANES,
        "ORX_LANE_BYTES": 4 * C.LANES,
        "ORX_PAYLOAD": C.OMNI_HEADER_BYTES + 4 * C.LANES,
        "ORX_FLAGS": offsets["flags"],
        "ORX_SLOT": offsets["slot"],
        "ORX_BLOCK": offsets["block_index"],
        "ORX_NEXT": offsets["next_block"],
        "ORX_EXPONENT": offsets["exponent"],
        "ORX_LANE_COUNT": offsets["lane_count"],
        "ORX_SET_MASK": C.SET_MASK,
        "ORX_FLAG_LATE": FLAG_LATE,
        "ORX_END": f"{C.END_OF_TENSOR:#x}LL",
        "ORX_CONSTANT_BITS": f"{constant_bits:#x}ULL",
        "ORX_PEAK_HALF_LIFE": repr(PEAK_HALF_LIFE),
        "ORX_PEAK_MARGIN": repr(PEAK_MARGIN),
        "ORX_REQUEST_PATIENCE": repr(float(REQUEST_PATIENCE)),
    }
    return "".join(f"#define {name} {value}\n" for name, value in lines.items())


def load() -> ModuleType:
    """The compiled module; CBuildError saying why it cannot be had."""
    global _module
    if _module is None:  # once per process: reading and hashing the source costs tens of microseconds a call
        source = resources.files(__package__).joinpath("exchange.c").read_text(encoding="utf-8")
        _module = load_cached("_omnireduce_exchange", CDEF, header_defines() + source, "host", COMPILE_ARGS,
                              "the agent's compiled exchange")
    return _module


def available() -> ModuleType | None:
    """The module where it is wanted and builds, else None (the reason logged once per process)."""
    global _unavailable
    if os.environ.get(NATIVE_ENV, "1") == "0":
        return None
    if _unavailable is not None:
        return None
    try:
        return load()
    except CBuildError as error:
        _unavailable = str(error)
        log.info("the agent consumes results with numpy: %s", error)
        return None


@contextlib.contextmanager
def kernels(kind: str) -> Iterator[None]:
    """Within it, the agent's code runs with the compiled kernels ("compiled", where they build) or numpy's
    ("numpy"): for benches and tests that measure or check both."""
    before = os.environ.get(NATIVE_ENV)
    os.environ[NATIVE_ENV] = "1" if kind == "compiled" else "0"
    try:
        yield
    finally:
        if before is None:
            del os.environ[NATIVE_ENV]
        else:
            os.environ[NATIVE_ENV] = before
