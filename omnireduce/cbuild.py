"""Build C into a CPython extension module with cffi and the system C compiler, once per machine, and load it.

Shared by the softswitch's native pipeline (softswitch/native/build.py) and the shared-memory frame rings
(omnireduce/shm/): modules are cached under $XDG_CACHE_HOME/omnireduce/<subdir> (~/.cache/... without it), named
by the caller after a hash of their complete source, and imported from there afterwards.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import shutil
import sysconfig
import tempfile
import threading
import time
from pathlib import Path
from types import ModuleType

log = logging.getLogger(__name__)
_loaded: dict[str, ModuleType] = {}
_lock = threading.Lock()


class CBuildError(Exception):
    """No C compiler, no cffi, or the compiler refused the source."""


def cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "omnireduce"


def compiler_available() -> str | None:
    """Why C modules cannot be built here, or None when they can."""
    try:
        import cffi  # noqa: F401
    except ImportError:
        return "cffi is not installed"
    compiler = os.environ.get("CC", "cc").split()[0]
    if shutil.which(compiler) is None:
        return f"no C compiler ('{compiler}' is not on PATH)"
    return None


def module_path(directory: Path, name: str) -> Path:
    return directory / (name + (sysconfig.get_config_var("EXT_SUFFIX") or ".so"))


def compile_module(name: str, cdef: str, source: str, path: Path, compile_args: list[str], what: str) -> None:
    """Compile `source` (declaring `cdef`) as extension module `name` into `path`. `what` names it in errors."""
    problem = compiler_available()
    if problem is not None:
        raise CBuildError(problem)
    import cffi

    ffi = cffi.FFI()
    ffi.cdef(cdef)
    ffi.set_source(name, source, extra_compile_args=compile_args)
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="omnireduce-cbuild-") as tmp:
        try:
            built = Path(ffi.compile(tmpdir=tmp, verbose=False))
        except Exception as exc:  # noqa: BLE001 - distutils/setuptools raise many kinds; all mean "no module"
            raise CBuildError(f"compiling {what} failed: {exc}") from exc
        # Another process may build the same module at the same time: both write a private file and rename it
        # into place, so a reader never sees a half-written module.
        staged = path.with_suffix(f".{os.getpid()}.tmp")
        shutil.copyfile(built, staged)
        os.replace(staged, path)


def import_module(name: str, path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise CBuildError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def load_cached(prefix: str, cdef: str, source: str, subdir: str, compile_args: list[str], what: str) -> ModuleType:
    """The module for `source`, named `prefix` + a hash of everything that goes into it, compiled into
    cache_root()/`subdir` on first use and imported from there afterwards (once per process). CBuildError says
    why it cannot be had."""
    digest = hashlib.sha256("\0".join([source, cdef, *compile_args]).encode()).hexdigest()[:16]
    name = f"{prefix}_{digest}"
    with _lock:
        if name in _loaded:
            return _loaded[name]
        path = module_path(cache_root() / subdir, name)
        if not path.exists():
            started = time.perf_counter()
            compile_module(name, cdef, source, path, compile_args, what)
            log.info("%s: compiled %s in %.1f s", what, path, time.perf_counter() - started)
        module = import_module(name, path)
        _loaded[name] = module
        return module
