"""torch.distributed's gloo all-reduce on the sweep's own inputs: the dense tensor, and the same tensor as a
sparse COO tensor in two shapes: rows of LANES values, one per non-zero block (`gloo-sparse-coo`: what DDP
all-reduces for a sparse embedding gradient of LANES columns, one index per row), and the flat tensor's own COO
form (`gloo-sparse-coo-flat`: `tensor.to_sparse()`, one index per non-zero value: what a user gets from a flat
gradient, and what the issue's baseline of 543 ms at W = 4, d = 0.01 measured).

    timings = run_gloo(workers=4, points=[GlooPoint(65536, 0.01)], repeat=3, seed=0, work_dir=Path(tmp))

One group of `workers` processes (omnireduce.torch.launch.run_ranks: spawned, a file store) runs every point,
so torch is imported once per worker count. Rank r all-reduces `make_input(InputSpec(W, size, density, ...), r)`,
the tensor the testbed gives worker r. The row COO tensor has sparse_dim 1: one int64 row index per non-zero block
of LANES values, like an embedding gradient with LANES columns; the flat one has one int64 index per non-zero
value, so it moves 3x the bytes of the values and gloo sums and coalesces per value.

Each timed all-reduce starts after a barrier; its time is the slowest rank's. Bytes:
- sent: measured. /proc/self/io `wchar` counts what the process passes to write()/writev(), which is how gloo's
  TCP transport sends; its delta over one all-reduce (after the barrier) is that rank's payload bytes sent,
  without TCP/IP headers. gloo receives with recvmsg, which `rchar` does not count, so:
- received: computed from the algorithm. Dense: gloo's ring all-reduce receives 2(W-1)/W of the tensor per rank.
  Sparse COO: gloo all-gathers every rank's indices and values, so a rank receives the others' nnz * (8 + 4*LANES)
  bytes for rows, nnz * (8 + 4) for the flat form (plus a few bytes of sizes). Over the whole group, bytes sent
  equal bytes received (loopback TCP loses nothing), which the sweep reports as a cross-check.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from omnireduce.p4src import constants as C
from omnireduce.testbed.inputs import InputSpec, make_input, nonzero_block_mask

log = logging.getLogger(__name__)

GLOO_DENSE = "gloo"
GLOO_SPARSE = "gloo-sparse-coo"
GLOO_SPARSE_FLAT = "gloo-sparse-coo-flat"
SPARSE_MODES = (GLOO_SPARSE, GLOO_SPARSE_FLAT)
INDEX_BYTES = 8  # torch's COO indices are int64
RESULT_FILE = "gloo-results.json"


@dataclass(frozen=True, slots=True)
class GlooPoint:
    size: int
    density: float


@dataclass(frozen=True, slots=True)
class GlooTiming:
    """One mode at one point: the slowest rank's seconds per repeat, and each rank's measured bytes sent."""

    mode: str
    size: int
    density: float
    seconds: tuple[float, ...]
    sent_bytes: tuple[int, ...]  # per rank, measured (wchar) over the first timed all-reduce
    received_bytes: tuple[int, ...]  # per rank, computed from the algorithm
    verified: bool  # the sparse result equals the dense one (dense: the sum of the inputs)


def torch_missing() -> str | None:
    """Why the gloo modes cannot run here (None when they can)."""
    try:
        import torch.distributed as dist
    except ImportError:
        return "not installed (pip install -e '.[torch]')"
    if not dist.is_available() or not dist.is_gloo_available():
        return "torch.distributed has no gloo backend in this build"
    return None


def dense_received_bytes(workers: int, size: int) -> int:
    """What one rank of gloo's ring all-reduce receives: 2(W-1)/W of the float32 tensor."""
    return round(2 * (workers - 1) / workers * 4 * size)


def sparse_received_bytes(nonzero: Sequence[int], rank: int, values_per_index: int = C.LANES) -> int:
    """What one rank receives in gloo's sparse all-reduce: every other rank's indices and values. `nonzero`: each
    rank's index count (non-zero blocks for rows of LANES values, non-zero values for the flat form)."""
    return sum(count for other, count in enumerate(nonzero) if other != rank) * (INDEX_BYTES + 4 * values_per_index)


def _written_bytes() -> int:
    with open("/proc/self/io", encoding="ascii") as io:
        for line in io:
            if line.startswith("wchar:"):
                return int(line.split()[1])
    return 0


def _coo(tensor: np.ndarray, mask: np.ndarray):
    import torch

    blocks = mask.size
    padded = np.zeros(blocks * C.LANES, dtype=np.float32)
    padded[: tensor.size] = tensor
    rows = np.flatnonzero(mask)
    values = torch.from_numpy(padded.reshape(blocks, C.LANES)[rows].copy())
    indices = torch.from_numpy(rows.astype(np.int64)).unsqueeze(0)
    return torch.sparse_coo_tensor(indices, values, (blocks, C.LANES), check_invariants=False).coalesce()


def _flat_coo(tensor: np.ndarray):
    import torch

    return torch.from_numpy(tensor).to_sparse()


def _time_all_reduce(make, repeat: int) -> tuple[list[float], int, object]:
    """Warm up once, then `repeat` all-reduces of fresh copies, each after a barrier: this rank's seconds, the
    bytes written during the first timed one, and the first result."""
    import torch.distributed as dist

    dist.all_reduce(make())
    seconds, written, first = [], 0, None
    for index in range(repeat):
        tensor = make()
        dist.barrier()
        before, started = _written_bytes(), time.perf_counter()
        dist.all_reduce(tensor)
        elapsed = time.perf_counter() - started
        if index == 0:
            written, first = _written_bytes() - before, tensor
        seconds.append(elapsed)
    return seconds, written, first


def _rank_bench(rank: int, world: int, points: Sequence[GlooPoint], repeat: int, seed: int, modes: Sequence[str],
                out_dir: str) -> None:
    import torch
    import torch.distributed as dist

    torch.set_num_threads(1)  # W ranks share this machine's cores; intra-op threads would only fight
    records = []
    for point in points:
        spec = InputSpec(world, point.size, point.density, "float32", seed)
        tensor = make_input(spec, rank)
        mask = nonzero_block_mask(tensor)
        counts = [(0, 0)] * world  # each rank's (non-zero blocks, non-zero values)
        dist.all_gather_object(counts, (int(np.count_nonzero(mask)), int(np.count_nonzero(tensor))))
        dense_input = torch.from_numpy(tensor)
        runs = {}
        if GLOO_DENSE in modes or any(mode in modes for mode in SPARSE_MODES):
            runs[GLOO_DENSE] = _time_all_reduce(lambda: dense_input.clone(), repeat)
        if GLOO_SPARSE in modes:
            coo = _coo(tensor, mask)
            runs[GLOO_SPARSE] = _time_all_reduce(lambda: coo.clone(), repeat)
        if GLOO_SPARSE_FLAT in modes:
            flat_coo = _flat_coo(tensor)
            runs[GLOO_SPARSE_FLAT] = _time_all_reduce(lambda: flat_coo.clone(), repeat)
        dense_result = runs[GLOO_DENSE][2]
        for mode in modes:
            seconds, written, result = runs[mode]
            if mode in SPARSE_MODES:
                flat = result.to_dense().reshape(-1)[: point.size]
                verified = bool(torch.allclose(flat, dense_result, rtol=1e-5, atol=1e-5))
                received = (sparse_received_bytes([blocks for blocks, _ in counts], rank) if mode == GLOO_SPARSE
                            else sparse_received_bytes([values for _, values in counts], rank, values_per_index=1))
            else:
                verified = True  # checked against the sparse path, and by gloo's own tests
                received = dense_received_bytes(world, point.size)
            slowest = torch.tensor(seconds, dtype=torch.float64)
            dist.all_reduce(slowest, op=dist.ReduceOp.MAX)
            sent = [0] * world
            dist.all_gather_object(sent, written)
            received_all = [0] * world
            dist.all_gather_object(received_all, received)
            agreed = torch.tensor([1 if verified else 0])
            dist.all_reduce(agreed, op=dist.ReduceOp.MIN)
            records.append(GlooTiming(mode, point.size, point.density, tuple(slowest.tolist()), tuple(sent),
                                      tuple(received_all), bool(agreed.item())))
    if rank == 0:
        Path(out_dir, RESULT_FILE).write_text(json.dumps([asdict(record) for record in records]))


def run_gloo(workers: int, points: Sequence[GlooPoint], repeat: int, seed: int, work_dir: Path,
             modes: Sequence[str] = (GLOO_DENSE, GLOO_SPARSE)) -> list[GlooTiming]:
    """Time the gloo modes at every point with one group of `workers` spawned processes."""
    from omnireduce.torch.launch import run_ranks

    work_dir.mkdir(parents=True, exist_ok=True)
    (work_dir / RESULT_FILE).unlink(missing_ok=True)
    run_ranks(_rank_bench, workers, (tuple(points), repeat, seed, tuple(modes), str(work_dir)), work_dir)
    data = json.loads((work_dir / RESULT_FILE).read_text())
    return [GlooTiming(item["mode"], item["size"], item["density"], tuple(item["seconds"]),
                       tuple(item["sent_bytes"]), tuple(item["received_bytes"]), item["verified"]) for item in data]
