"""Build C into a CPython extension module with cffi and the system C compiler, once per machine, and load it.

Shared by the softswitch's native pipeline (softswitch/native/build.py) and the shared-memory frame rings
(omnireduce/shm/): modules are cached under $XDG_CACHE_HOME/omnireduce/<subdir> (~/.cache/... without it), named
by the caller after a hash of their complete source, and imported from there afterwards.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import sysconfig
import tempfile
from pathlib import Path
from types import ModuleType


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
