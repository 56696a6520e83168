"""Compile a program's C source into a CPython extension module with cffi and the system C compiler, once:
modules are cached under $XDG_CACHE_HOME/omnireduce/softswitch (~/.cache/... without it), named by the hash
of their complete source (which embeds the generator's version), and loaded from there afterwards."""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from types import ModuleType

from omnireduce.cbuild import CBuildError, cache_root, compile_module, import_module, module_path
from omnireduce.cbuild import compiler_available  # noqa: F401 - part of this module's API (tests ask it)

log = logging.getLogger(__name__)

# The functions of engine.c that Python calls, and the one callback C makes into Python (log_msg).
CDEF = """
typedef struct St St;
St *ss_new(void *ud);
void ss_free(St *st);
uint64_t *ss_register_cells(St *st, int k);
uint64_t *ss_counter_cells(St *st, int k, int bytes);
uint64_t *ss_table_counters(St *st, int t);
uint64_t *ss_stats(St *st);
void ss_set_log(St *st, int enabled);
int ss_max_params(void);
uint8_t *ss_out_data(St *st);
uint32_t *ss_out_lens(St *st);
uint16_t *ss_out_ports(St *st);
int ss_table_load(St *st, int t, int n, const uint64_t *keys, const uint64_t *masks, const uint64_t *highs,
                  const uint8_t *is_range, const uint32_t *actions, const uint64_t *params, const uint32_t *meters);
void ss_set_clock(St *st, int64_t frozen_us);
uint32_t ss_digest_words(St *st);
uint64_t *ss_digest_data(St *st);
void ss_digest_clear(St *st);
int ss_profile_load(St *st, int k, uint32_t nmembers, const uint32_t *actions, const uint64_t *params,
                    uint32_t ngroups, const uint32_t *starts, const uint32_t *counts, uint32_t total,
                    const uint32_t *members);
void *ss_meter_cells(St *st, int k, int which);
void ss_table_set_default(St *st, int t, int has, uint32_t action, const uint64_t *params);
int ss_pre_load(St *st, int ngroups, const uint32_t *gids, const uint32_t *gcounts, int nsessions,
                const uint32_t *sids, const uint32_t *scounts, const uint32_t *struncs, const uint16_t *ports,
                const uint16_t *rids);
int ss_vset_load(St *st, int k, uint32_t nfields, const uint32_t *shifts, const uint32_t *widths,
                 uint32_t n_exact, const uint64_t *exact, uint32_t n_other, const uint64_t *values,
                 const uint64_t *masks, const uint8_t *has_range, const uint64_t *lo, const uint64_t *hi);
int ss_process(St *st, const uint8_t *data, const uint32_t *lens, const uint16_t *ports, int n);
extern "Python" void ss_py_log_msg(void *ud, int msg, const uint64_t *vals, int n, uint64_t signed_mask);
"""

COMPILE_ARGS = ["-O2", "-fno-strict-aliasing", "-Wno-unused-label", "-Wno-unused-variable",
                "-Wno-unused-function", "-Wno-unused-but-set-variable"]

_loaded: dict[str, ModuleType] = {}
_lock = threading.Lock()


class NativeBuildError(CBuildError):
    """No C compiler, no cffi, or the compiler refused the generated source."""


def cache_dir() -> Path:
    return cache_root() / "softswitch"


def load_module(source: str, digest: str) -> ModuleType:
    """The extension module for `source`, compiled on first use and cached by `digest`."""
    name = f"_omnireduce_ss_{digest}"
    with _lock:
        if name in _loaded:
            return _loaded[name]
        path = module_path(cache_dir(), name)
        if path.exists():
            log.info("native pipeline: cached module %s", path)
        else:
            _compile(name, source, path)
        try:
            module = import_module(name, path)
        except CBuildError as exc:
            raise NativeBuildError(str(exc)) from exc
        _loaded[name] = module
        return module


def _compile(name: str, source: str, path: Path) -> None:
    started = time.perf_counter()
    try:
        compile_module(name, CDEF, source, path, COMPILE_ARGS, "the native pipeline")
    except CBuildError as exc:
        raise NativeBuildError(str(exc)) from exc
    log.info("native pipeline: compiled %s in %.1f s", path, time.perf_counter() - started)
