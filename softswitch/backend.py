"""Which packet pipeline a Device runs: the generated C (`native`), the generated Python (`python`, the
reference), or `auto`: native where it can be built for the program, else Python, saying why.

`native` insists: a program or machine that cannot run it natively is an error. The default comes from
$OMNIREDUCE_SOFTSWITCH_BACKEND, else `auto`."""

from __future__ import annotations

import logging
import os
from collections import Counter
from dataclasses import dataclass
from typing import Any

from .engine import PacketEngine
from .errors import FailedPrecondition, InvalidArgument
from .pipeline import CompiledPipeline
from .pre import ReplicationEngine

log = logging.getLogger(__name__)

BACKENDS = ("auto", "native", "python")
BACKEND_ENV = "OMNIREDUCE_SOFTSWITCH_BACKEND"


@dataclass(frozen=True, slots=True)
class RunningPipeline:
    engine: Any  # PacketEngine or native.backend.NativeEngine: process, process_batch, fold_direct_counters
    pipeline: CompiledPipeline  # what the Device's control plane works on (registers native when native runs)
    backend: str  # "native" | "python": what runs
    reason: str | None  # why Python runs where native was asked for or possible


def default_backend() -> str:
    value = os.environ.get(BACKEND_ENV, "auto")
    return check_backend(value)


def check_backend(value: str) -> str:
    if value not in BACKENDS:
        raise InvalidArgument(f"softswitch backend {value!r} is not one of {', '.join(BACKENDS)}")
    return value


def start_pipeline(compiled: CompiledPipeline, pre: ReplicationEngine, stats: Counter, backend: str,
                   name: str, digests: list | None = None) -> RunningPipeline:
    """`digests`: the list the engine appends the digests of the packets it runs to."""
    if backend == "python":
        return RunningPipeline(PacketEngine(compiled, pre, stats, digests), compiled, "python",
                               "the python backend was chosen")
    from .native.build import NativeBuildError
    from .native.support import NativeUnsupported

    try:
        from .native.backend import build_native_engine

        engine = build_native_engine(compiled, pre, stats, digests)
    except (NativeUnsupported, NativeBuildError, ImportError) as exc:
        reason = f"{type(exc).__name__}: {exc}"
        if backend == "native":
            raise FailedPrecondition(f"{name}: the native pipeline cannot run this program ({reason}); "
                                     "use backend 'auto' to fall back to the Python pipeline") from exc
        log.warning("%s: packet pipeline: python (native unavailable: %s)", name, reason)
        return RunningPipeline(PacketEngine(compiled, pre, stats, digests), compiled, "python", reason)
    log.info("%s: packet pipeline: native (module %s)", name, engine.cprog.digest)
    return RunningPipeline(engine, engine.pipeline, "native", None)
