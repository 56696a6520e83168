"""Spawn W training ranks on this machine with torch.multiprocessing, gloo as the process group.

    run_ranks(train, workers=2, args=(config, steps), store_dir=run_dir)

`train(rank, world_size, *args)` runs in each rank after `dist.init_process_group("gloo")` (a file store in
`store_dir`, so no TCP port is needed); it must be a module-level function (it is pickled into the children). A rank
that raises ends the run: torch.multiprocessing stops the others and raises here, so nothing waits forever.
"""

from __future__ import annotations

import datetime
import logging
import os
import sys
from pathlib import Path
from typing import Any, Callable

import torch.distributed as dist
import torch.multiprocessing as mp

#: gloo's own limit on one collective: past it a rank whose peer vanished gets an error instead of waiting forever.
COLLECTIVE_TIMEOUT = datetime.timedelta(minutes=5)

TrainFunction = Callable[..., None]


def _rank_main(rank: int, train: TrainFunction, world_size: int, store: str, args: tuple[Any, ...]) -> None:
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world_size,
                            timeout=COLLECTIVE_TIMEOUT)
    try:
        train(rank, world_size, *args)
    finally:
        dist.destroy_process_group()
    # NOTE: a rank that trained leaves without the interpreter's teardown. gloo's worker threads outlive
    # destroy_process_group (DDP's reference cycles keep the group until the final garbage collection) and free
    # each collective's work after it completed, Python tensors included; when that falls into Py_Finalize, taking
    # the GIL ends the thread by a forced unwind through ~AsyncWork, which is noexcept: std::terminate, SIGABRT
    # ("terminate called without an active exception", about 1 example run in 15 here; gdb on the core:
    # ProcessGroupGloo::runLoop -> ~AsyncAllreduceWork -> THPVariable_dealloc -> PyThread_exit_thread). A failed
    # rank raises above and is reported as usual.
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def run_ranks(train: TrainFunction, workers: int, args: tuple[Any, ...], store_dir: Path) -> None:
    """Run `train` in `workers` processes (ranks 0..workers-1) and wait for all of them."""
    store_dir.mkdir(parents=True, exist_ok=True)
    store = store_dir / "gloo-store"
    store.unlink(missing_ok=True)  # a file store must not be reused across runs
    mp.spawn(_rank_main, args=(train, workers, str(store), args), nprocs=workers, join=True)
