"""One all-reduce driven synchronously through a softswitch Device by the host agent's own protocol engine.

    workers = bench_workers(4)
    install_job(device, job_id=1, workers=workers, slot_count=8, mcast_group=1)
    run = drive_allreduce(device, 1, workers, tensors, slots=8)   # run.frames_in: every frame the switch got

The workers are `omnireduce.host.engine.TensorExchange` instances, the same state machine the agent runs, so
whatever protocol the agent speaks is what gets recorded (bench_softswitch's trace). There are no sockets and
no clocks: frames go through one FIFO, breadth-first, the way concurrent workers interleave, and every timer
is pushed out of reach, so a loss-free switch sees exactly the loss-free exchange.
"""

from __future__ import annotations

import logging
from collections import deque
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from omnireduce.controller import program
from omnireduce.host.blocks import as_blocks, nonzero_blocks, plan_blocks
from omnireduce.host.config import Timeouts
from omnireduce.host.columns import SlotChannels
from omnireduce.host.engine import TensorExchange, big_endian_lanes
from omnireduce.host.stats import Stats
from omnireduce.host.wire import LANE_DTYPE, Endpoint, frame_prefix, parse_udp_frame
from omnireduce.p4src import constants as C
from omnireduce.softswitch.entries import FieldMatch, TableEntry

log = logging.getLogger(__name__)

SWITCH = Endpoint.of("02:00:00:00:00:fe", "10.0.0.254", C.OMNI_UDP_PORT)
# No timer ever fires: the FIFO loses nothing, so a retransmission would only add frames the switch must refuse.
NEVER = Timeouts(retransmit_initial=3600.0, retransmit_first=3600.0, request_fallback=3600.0, retransmit_max=3600.0,
                 join=3600.0, stall=3600.0)


@dataclass(frozen=True, slots=True)
class BenchWorker:
    """A worker as the switch's tables see it: ingress port, MAC, IPv4 address and UDP port."""

    worker_id: int
    port: int
    endpoint: Endpoint


@dataclass(frozen=True, slots=True)
class DrivenRun:
    """What one driven all-reduce did: every frame sent to the switch, in order, and each worker's sums."""

    frames_in: list[tuple[int, bytes]]
    results: list[np.ndarray]  # per worker: int32 sums, the tensor's length
    #: for each frame in, the frame the switch sent its worker that made the worker send it (None: sent when the
    #: all-reduce started): what a replay waits for before it sends the frame (bench/port_replay.py)
    triggers: list[bytes | None]
    #: frames the switch sent each worker, by the worker's port
    frames_out_by_port: dict[int, int]

    @property
    def frames_out(self) -> int:
        return sum(self.frames_out_by_port.values())


def bench_workers(count: int, first_port: int = 1) -> list[BenchWorker]:
    """`count` workers on ports first_port.., at 10.0.0.(w+1), UDP port 5000+w."""
    return [BenchWorker(w, first_port + w, Endpoint.of(f"02:00:00:00:00:{w + 1:02x}", f"10.0.0.{w + 1}", 5000 + w))
            for w in range(count)]


def sparse_block_tensors(workers: int, blocks: int, density: float, seed: int) -> list[np.ndarray]:
    """One int32 tensor of `blocks` blocks per worker, each block non-zero with probability `density` (values in
    -1000..999, so that no sum overflows)."""
    rng = np.random.default_rng(seed)
    tensors = []
    for _ in range(workers):
        values = rng.integers(-1000, 1000, size=(blocks, C.LANES), dtype=np.int32)
        values[rng.random(blocks) >= density] = 0
        tensors.append(values.reshape(-1))
    return tensors


def _exact(value: int) -> FieldMatch:
    return FieldMatch("exact", value)


def install_job(device, job_id: int, workers: Sequence[BenchWorker], slot_count: int, mcast_group: int,
                slot_base: int = 0) -> None:
    """The job's entries (workers, job, result destinations, multicast group) through the Device methods.

    Key and parameter order follow the P4 program (controller/program.py names them; the Device takes them
    positionally, in the JSON's order).
    """
    for worker in workers:
        address, mac = int(worker.endpoint.ip), int.from_bytes(worker.endpoint.mac, "big")
        device.table_insert(TableEntry(
            program.WORKERS_TABLE, (_exact(worker.port), _exact(address), _exact(worker.endpoint.port)),
            program.SET_WORKER, (job_id, worker.worker_id)))
        device.table_insert(TableEntry(
            program.RESULT_DESTINATIONS_TABLE, (_exact(job_id), _exact(worker.worker_id)),
            program.SET_RESULT_DESTINATION, (mac, address, worker.endpoint.port)))
    device.table_insert(TableEntry(program.JOBS_TABLE, (_exact(job_id),), program.SET_JOB,
                                   (slot_base, slot_count, len(workers), mcast_group)))
    device.mc_group_insert(mcast_group, [(worker.port, worker.worker_id) for worker in workers])


class _Sender:
    """One worker's send callback: wraps each payload in its Ethernet/IPv4/UDP frame and queues it, with the
    frame being delivered to the worker meanwhile (`trigger[0]`, None outside a delivery)."""

    def __init__(self, worker: BenchWorker, queue: deque, trigger: list) -> None:
        self._worker = worker
        self._queue = queue
        self._trigger = trigger
        self._prefixes: dict[int, bytes] = {}

    def __call__(self, payload: bytes | bytearray) -> None:
        prefix = self._prefixes.get(len(payload))
        if prefix is None:
            prefix = self._prefixes[len(payload)] = frame_prefix(self._worker.endpoint, SWITCH, len(payload))
        self._queue.append((self._worker.port, prefix + bytes(payload), self._trigger[0]))


def drive_allreduce(device, job_id: int, workers: Sequence[BenchWorker], tensors: Sequence[np.ndarray],
                    slots: int, *, dense: bool = False, tensor_id: int = 1) -> DrivenRun:
    """All-reduce the int32 `tensors` (one per worker) through `device`; raises RuntimeError if a worker did not
    finish (the switch dropped or refused something the engine waits for)."""
    if len(tensors) != len(workers):
        raise ValueError(f"{len(tensors)} tensors for {len(workers)} workers")
    queue: deque[tuple[int, bytes, bytes | None]] = deque()
    trigger: list[bytes | None] = [None]
    exchanges, results = [], []
    for worker, tensor in zip(workers, tensors):
        lanes = big_endian_lanes(np.asarray(tensor, dtype=np.int32).reshape(-1))
        blocks = as_blocks(lanes)
        lanes = blocks.reshape(-1)  # zero-padded to whole blocks
        plan = plan_blocks(nonzero_blocks(blocks), slots, dense=dense)
        result = np.zeros(lanes.size, dtype=LANE_DTYPE)
        exchanges.append(TensorExchange(
            job_id=job_id, tensor_id=tensor_id, plan=plan, lanes=memoryview(lanes).cast("B"),
            result=memoryview(result).cast("B"), exponent=0, channels=SlotChannels.create(slots),
            send=_Sender(worker, queue, trigger), stats=Stats(), timeouts=NEVER, name=f"bench-w{worker.worker_id}",
            worker_id=worker.worker_id, workers=len(workers)))
        results.append(result)
    by_port = {worker.port: exchange for worker, exchange in zip(workers, exchanges)}
    if len(by_port) != len(workers):
        raise ValueError("the driver tells workers apart by port: give each its own")
    for exchange in exchanges:
        exchange.start(0.0)
    frames_in: list[tuple[int, bytes]] = []
    triggers: list[bytes | None] = []
    out_by_port = {port: 0 for port in by_port}
    while queue:
        port, frame, cause = queue.popleft()
        frames_in.append((port, frame))
        triggers.append(cause)
        for out_port, out in device.process_packet(port, frame):
            out_by_port[out_port] += 1
            trigger[0] = out
            by_port[out_port].on_payload(parse_udp_frame(out).payload, 0.0)
        trigger[0] = None
    unfinished = [worker.worker_id for worker, exchange in zip(workers, exchanges) if not exchange.done]
    if unfinished:
        raise RuntimeError(f"workers {unfinished} did not finish: the switch refused or dropped a frame")
    size = np.asarray(tensors[0]).size
    return DrivenRun(frames_in, [result.astype(np.int32)[:size] for result in results], triggers, out_by_port)
