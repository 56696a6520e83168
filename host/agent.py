"""AllReduce: the host agent's library API.

    config = AgentConfig(switch_ip="10.0.0.254", job_id=1, worker_id=0, workers=4, slots=64)
    with AllReduce(config) as reduce:
        total = reduce.allreduce(gradient)        # float32 or int32, any shape
        reduce.allreduce(other, out=other)         # in place

Every all-reduce is three tensors on the wire (docs/protocol.md sections 4.2 and 5): a one-block scale round
(tensor id t) that agrees on the exponent and checks that the workers agree on the tensor (host/agreement.py), the
data tensor (t + 1), and a one-block closing round (t + 2) that every worker enters once it holds every result:
until it completes, the worker keeps serving peers that missed a result after the switch reused its set. A worker whose values are bad (NaN, Inf) still takes part in the scale round and announces its
refusal there, so that every worker of the job refuses alike and the job stays usable. The object keeps each
slot's shadow-set index and the tensor id across calls, so one object serves a job's whole sequence of all-reduces;
every worker of a job must make the same sequence of calls.
"""

from __future__ import annotations

import logging
import time
from typing import Callable

import numpy as np

from omnireduce.p4src import constants as C

from . import native
from .agreement import Announcement, TensorClaim, announcement_lanes, check_agreement
from .blocks import BlockPlan, as_blocks, block_count, blocks_above, nonzero_blocks, plan_blocks
from .config import AgentConfig, TransportKind
from .columns import NEVER_USED, SlotChannels
from .engine import RoundTripEstimator, TensorExchange, big_endian_lanes
from .errors import (
    AgentClosed,
    AgentError,
    DeadlineExceeded,
    InputError,
    JobMismatch,
    OverflowRisk,
    PeerRefused,
    ProtocolError,
    Stalled,
    WorkerMissing,
)
from .quantize import (
    check_dtype,
    check_int_sum,
    FloatScan,
    describe_non_finite,
    exponent_claim,
    from_wire_in_place,
    int_lanes,
    quantize_blocks,
    scale_shift,
    scan_float32,
)
from .lanes import BlockLanes
from .stats import Stats
from .transport import FrameTransport, KernelUdpTransport, PayloadBatch, ShmTransport, Transport
from .wire import DATA_PAYLOAD_BYTES, FRAME_OVERHEAD_BYTES, LANE_DTYPE, Endpoint

log = logging.getLogger(__name__)

TENSOR_ID_MODULUS = 1 << 16
#: A slot unused for this many tensor ids is used again (with zero blocks) before the switch's 16-bit serial
#: comparison (window 2^15) would call its next round stale; see _needs_refresh.
SLOT_REFRESH_AGE = 1 << 14
#: Largest block count: block indices are 32 bits and END_OF_TENSOR is reserved.
MAX_BLOCKS = C.END_OF_TENSOR - 1
#: Tensor ids one all-reduce spends: scale round, data tensor, closing round.
TENSORS_PER_ALLREDUCE = 3
#: First retransmission timeout of the one-block rounds every worker joins (scale and closing): they wait for the
#: slowest worker to arrive, not for the network, so the data path's measured round trip does not apply.
RENDEZVOUS_RETRANSMIT_S = 0.25
#: The data tensor's first-round timeouts are longer by this many times this worker's own time from the scale
#: round's end to its first CONTRIB (quantizing, planning): the first round waits for every peer's preparation
#: too, and timed from the previous tensor's round trips alone every column of a repeated call timed out at once
#: on a loss-free path (256 retransmissions in 4 calls of 100 MB with 4 workers, 1,145 with 8). A peer on a loaded
#: host takes longer than this worker did: with 2 as the factor, 8 workers on 2 cores still timed out in one call
#: of 4; with 4, in none of 3 runs. A small tensor's preparation takes microseconds: its loss recovery keeps the
#: round-trip timer.
FIRST_ROUND_SLACK = 4.0

Progress = Callable[[float], None]


def open_transport(config: AgentConfig) -> Transport:
    """The transport `config` asks for, bound and connected."""
    switch = (str(config.switch_ip), config.switch_port)
    if config.transport is TransportKind.KERNEL_UDP:
        return KernelUdpTransport(config.bind, switch)
    link = config.frame_link
    assert link is not None  # AgentConfig checks it
    switch_end = Endpoint(link.switch_mac, config.switch_ip, config.switch_port)
    if config.transport is TransportKind.SHM:
        assert link.ring is not None
        return ShmTransport(link.ring, link.worker, switch_end)
    assert link.bind is not None and link.peer is not None
    return FrameTransport(link.bind, link.peer, link.worker, switch_end)


class AllReduce:
    """All-reduce tensors through an omnireduce switch, as one worker of one job.

    transport: defaults to the one the config names; tests pass their own. progress: called with the fraction
    of the data tensor done (0..1), at most every `progress_interval` seconds.
    """

    def __init__(self, config: AgentConfig, transport: Transport | None = None, *, progress: Progress | None = None,
                 progress_interval: float = 0.2) -> None:
        self.config = config
        # Load (on a new machine: compile, once, cached) the compiled kernels now rather than inside the first
        # all-reduce, whose time and join deadline would otherwise include the C compiler's run.
        native.available()
        self._transport = transport if transport is not None else open_transport(config)
        self._channels = SlotChannels.create(config.slots)
        self._round_trip = RoundTripEstimator()
        #: the last exchange run: the next one serves peers' REQUESTs for its results (docs/protocol.md 4.6).
        self._previous: TensorExchange | None = None
        #: where results that cannot arrive in `out` itself arrive (see _receive_buffer), kept from call to call.
        self._receive_scratch: np.ndarray | None = None
        self._tensor_id = config.first_tensor_id
        self._broken: str | None = None
        self._closed = False
        self._progress = progress
        self._progress_interval = progress_interval
        self.last_stats: Stats | None = None
        #: the all-reduce under way (the same object as last_stats once it ended), for progress reporters.
        self.current_stats: Stats | None = None
        #: the biased exponent the job agreed on in the last scale round (bounds the float32 error, section 5).
        self.last_exponent: int | None = None
        self.total_stats = Stats()

    # --- life cycle ----------------------------------------------------------------------------------------------

    def __enter__(self) -> "AllReduce":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._receive_scratch = None
            self._transport.close()

    def _receive_buffer(self, values: int) -> np.ndarray:
        """`values` 4-byte lanes for the sums of a call whose `out` cannot take them in place (a tensor whose last
        block is short, as most DDP buckets are; an `out` that overlaps the input or is not contiguous).

        NOTE: kept and reused, not allocated per call: a fresh tensor-sized buffer cost more than the whole exchange
        (100 MB, 4 workers, d = 0.01: 0.36 s a call against 0.16 s for a size that is a whole number of blocks, the
        page faults and clearing of 100 MB a call). Nothing needs clearing: the exchange writes the blocks that
        received a result, from_wire_in_place zeroes the others. It is free to reuse once the call returns: the next
        call's exchanges serve peers' REQUESTs only back to its own closing round. close() lets it go; until then it
        holds as much memory as the largest such tensor."""
        scratch = self._receive_scratch
        if scratch is None or scratch.size < values:
            scratch = self._receive_scratch = np.empty(values, dtype=np.uint32)
        return scratch[:values]

    @property
    def local_address(self) -> tuple[str, int]:
        """The agent's own UDP socket address (where the switch, or a softswitch port, must send to)."""
        return self._transport.local_address

    @property
    def tensor_id(self) -> int:
        """Tensor id the next all-reduce's scale round will use."""
        return self._tensor_id

    @property
    def set_indexes(self) -> list[int]:
        """Each slot's current shadow set (for diagnostics)."""
        return self._channels.set_index.tolist()

    # --- the operation -------------------------------------------------------------------------------------------

    def allreduce(self, array: np.ndarray, *, out: np.ndarray | None = None) -> np.ndarray:
        """Sum `array` over the job's workers; returns `out` (allocated if None; may be `array` itself).

        Raises InputError: a mistake in the call (dtype, `out`), raised before anything is sent; or NaN/Inf values,
        announced in the scale round, where every other worker raises PeerRefused. InputError, PeerRefused,
        JobMismatch and OverflowRisk are refusals of the whole job alike: nothing is aggregated and the agent stays
        usable. SwitchUnreachable, WorkerMissing, Stalled, DeadlineExceeded or ProtocolError (the job's switch
        state is unknown: reset the job and make a new AllReduce).
        """
        if self._closed:
            raise AgentClosed(f"{self.config.name}: the agent is closed")
        if self._broken is not None:
            raise AgentClosed(f"{self.config.name}: an earlier all-reduce failed ({self._broken}); reset the job "
                              f"(omnireduce-ctl reset) and start a new AllReduce on every worker")
        values = np.asarray(array)
        check_dtype(values)
        result = self._prepare_out(values, out)
        if values.size == 0:
            return result
        count = block_count(values.size)
        if count > MAX_BLOCKS:
            raise InputError(f"{values.size} values make {count} blocks; at most {MAX_BLOCKS} fit block indices")
        # The call's clock starts before the scan: that pass over the tensor is part of the all-reduce's cost.
        started = time.monotonic()
        cpu_started = time.process_time()
        # One pass over a float tensor: its non-zero blocks, its largest magnitude, and whether it is finite.
        scan = scan_float32(values) if values.dtype.kind == "f" else None
        # Bad values are one worker's data, not the call: they are announced, not raised here (agreement.py).
        refusal = describe_non_finite(values) if scan is not None and not scan.finite else None

        stats = Stats(blocks_total=count)
        self.current_stats = stats  # read by progress reporters while the all-reduce runs
        deadline_at = started + self.config.timeouts.deadline if self.config.timeouts.deadline else None
        scale_tensor = self._tensor_id
        # The tensor ids are spent whatever happens below, identically on every worker.
        self._tensor_id = (scale_tensor + TENSORS_PER_ALLREDUCE) % TENSOR_ID_MODULUS
        log.debug("%s: all-reduce of %d %s values (%d blocks) as tensors %d/%d", self.config.name, values.size,
                  values.dtype, count, scale_tensor, (scale_tensor + 1) % TENSOR_ID_MODULUS)
        if refusal is not None:
            log.warning("%s: refusing this input (%s); announcing it in the scale round of tensor %d",
                        self.config.name, refusal, scale_tensor)
        try:
            self._reduce(values, scan, result, scale_tensor, stats, started, deadline_at, refusal)
        except (InputError, JobMismatch, OverflowRisk, PeerRefused) as error:
            log.info("%s: all-reduce refused by every worker: %s", self.config.name, error)
            raise
        except AgentError as error:
            self._broken = f"{type(error).__name__}: {error}"
            # The caller gets the error itself; logging it too would print it twice.
            log.debug("%s: all-reduce failed, the agent is out of step with the switch: %s", self.config.name, error)
            raise
        finally:
            stats.elapsed_s = time.monotonic() - started
            stats.cpu_s = time.process_time() - cpu_started
            self.last_stats = stats
            self.total_stats.add(stats)
        log.debug("%s: done in %.3f s: %s", self.config.name, stats.elapsed_s, stats)
        return result

    @staticmethod
    def _prepare_out(values: np.ndarray, out: np.ndarray | None) -> np.ndarray:
        if out is None:
            return np.empty(values.shape, dtype=values.dtype)
        if out.shape != values.shape or out.dtype != values.dtype:
            raise InputError(f"out has shape {out.shape} and dtype {out.dtype}; need {values.shape} {values.dtype}")
        if not out.flags.writeable:
            raise InputError("out is read-only")
        return out

    def _reduce(self, values: np.ndarray, scan: FloatScan | None, result: np.ndarray, scale_tensor: int,
                stats: Stats, started: float, deadline_at: float | None, refusal: str | None) -> None:
        """Scale round, then the data tensor; the sums are written into `result` (values' shape and dtype).
        scan: scan_float32(values) for a float tensor, else None.

        started: when the call began (stats.joined_s counts from it); refusal: why this worker refuses its values
        (announced in the scale round, which then raises), or None.
        """
        config = self.config
        flat = values.reshape(-1)
        count = block_count(flat.size)
        claim = TensorClaim(element_count=flat.size, dtype=values.dtype.name, slot_count=config.slots,
                            block_count=count)
        announcement = Announcement(claim, config.worker_id, refusal)
        # A refusing worker claims the smallest exponent, leaving the max to the others (nothing is sent anyway).
        exponent = 0 if refusal is not None else exponent_claim(values, scan.magnitude if scan is not None else None)
        agreed = self._scale_round(scale_tensor, announcement, exponent, stats, deadline_at)
        stats.joined_s = time.monotonic() - started
        self.last_exponent = agreed
        is_float = values.dtype.kind == "f"
        data_tensor = (scale_tensor + 1) % TENSOR_ID_MODULUS
        planned_blocks = config.slots if self._needs_refresh(count, data_tensor) else count
        length = planned_blocks * C.LANES
        if is_float:
            shift = scale_shift(agreed, config.workers)
            assert scan is not None
            lanes, significant = quantize_blocks(flat, shift, length, scan.candidates)
        else:
            check_int_sum(agreed, config.workers)
            int_values = int_lanes(flat, length)
            significant = nonzero_blocks(int_values.reshape(planned_blocks, C.LANES))
            lanes = BlockLanes.tensor_sized(int_values)
        if config.zero_threshold is not None:
            significant &= blocks_above(as_blocks(flat, planned_blocks), config.zero_threshold)
        plan = plan_blocks(significant, config.slots, dense=config.dense, lookahead=config.lookahead)
        # The sums are received straight into `result`'s memory where it is a separate, contiguous buffer of whole
        # blocks: no second buffer of the tensor's size to fault in and convert from, and no clearing beforehand
        # (from_wire_in_place writes every block once, converting those that received a result and zeroing the
        # others). Not where it overlaps the input: a failed call must leave the caller's input as it was.
        in_place = (result.flags.c_contiguous and result.size == planned_blocks * C.LANES
                    and not np.may_share_memory(result, values))
        received = result.reshape(-1) if in_place else self._receive_buffer(planned_blocks * C.LANES)
        sums = received.view(LANE_DTYPE)
        # Every worker left the scale round at about the same time and prepared its tensor since; the first round
        # waits for the slowest of them, who may take a few times as long as this worker did on a loaded host.
        exchange_started = time.monotonic()
        preparing = exchange_started - (started + stats.joined_s)
        data = self._exchange(
            tensor_id=data_tensor, plan=plan, lanes=lanes, result=sums, exponent=agreed, expected_exponent=agreed,
            stats=stats, deadline_at=deadline_at, joining=False, first_round_slack=FIRST_ROUND_SLACK * preparing,
        )
        stats.exchange_s = time.monotonic() - exchange_started
        self._closing_round((data_tensor + 1) % TENSOR_ID_MODULUS, data.result_exponent, stats, deadline_at)
        if in_place:
            from_wire_in_place(result.reshape(-1), shift if is_float else None, data.result_blocks())
            return
        # Converted where they arrived, the same way, then copied out: one pass over the tensor.
        converted = received.view(np.float32 if is_float else np.int32)
        from_wire_in_place(converted, shift if is_float else None, data.result_blocks())
        np.copyto(result, converted[: flat.size].reshape(values.shape), casting="same_kind")

    def _scale_round(self, tensor_id: int, announcement: Announcement, exponent: int, stats: Stats,
                     deadline_at: float | None) -> int:
        """One-block tensor on slot 0: returns the job's max exponent claim.

        Raises InputError (this worker refused), PeerRefused (another did) or JobMismatch (disagreement).
        """
        plan = plan_blocks(np.ones(1, dtype=bool), self.config.slots)
        sums = np.zeros(C.LANES, dtype=LANE_DTYPE)
        exchange = self._exchange(
            tensor_id=tensor_id, plan=plan, result=sums,
            lanes=BlockLanes.tensor_sized(big_endian_lanes(announcement_lanes(announcement))),
            exponent=exponent, expected_exponent=None, stats=stats, deadline_at=deadline_at, joining=True,
        )
        check_agreement(sums.astype(np.int32), announcement, self.config.workers, tensor_id=tensor_id)
        return exchange.result_exponent

    def _closing_round(self, tensor_id: int, exponent: int, stats: Stats, deadline_at: float | None) -> None:
        """One-block tensor on slot 0 that every worker enters once it holds every result of the data tensor.

        While it runs, peers' REQUESTs for data results are still answered (the data exchange serves them); once it
        completes, every worker is done and nobody can need them any more. Lane 0 counts the workers that closed.
        """
        lanes = np.zeros(C.LANES, dtype=np.int32)
        lanes[0] = 1
        sums = np.zeros(C.LANES, dtype=LANE_DTYPE)
        self._exchange(
            tensor_id=tensor_id, plan=plan_blocks(np.ones(1, dtype=bool), self.config.slots),
            lanes=BlockLanes.tensor_sized(big_endian_lanes(lanes)), result=sums, exponent=exponent,
            expected_exponent=None,
            stats=stats, deadline_at=deadline_at, joining=False, closing=True,
        )
        if int(sums[0]) != self.config.workers:
            raise ProtocolError(f"{self.config.name}: {int(sums[0])} workers closed tensor {tensor_id - 1}, the job "
                                f"has {self.config.workers}")

    def _needs_refresh(self, count: int, tensor_id: int) -> bool:
        """Whether a slot this short tensor would leave unused has gone unused for SLOT_REFRESH_AGE tensor ids.

        The switch compares tensor ids in 16-bit serial arithmetic: a slot left unused for 2^15 ids would see its
        next round as stale and drop it forever. Every worker of the job has the same history, so every worker
        takes the same decision: plan the tensor over S blocks (zero padding) and touch every slot.
        """
        last = self._channels.last_tensor[count:]
        used = last != NEVER_USED
        return bool(np.any((tensor_id - last[used]) % TENSOR_ID_MODULUS >= SLOT_REFRESH_AGE))

    # --- the event loop ------------------------------------------------------------------------------------------

    def _exchange(self, *, tensor_id: int, plan: BlockPlan, lanes: BlockLanes, result: np.ndarray, exponent: int,
                  expected_exponent: int | None, stats: Stats, deadline_at: float | None, joining: bool,
                  closing: bool = False, first_round_slack: float = 0.0) -> TensorExchange:
        """Run one tensor to completion and return its exchange (result_exponent: the max over claims).

        joining: the scale round, which waits for every worker to show up (Timeouts.join); closing: the closing
        round. Both are rendezvous of every worker, not timed as data rounds. first_round_slack: added to the
        first round's timeouts (FIRST_ROUND_SLACK). Meanwhile the previous exchange serves
        peers' REQUESTs: a peer can be one tensor behind (it lost a result the others no longer need), never two,
        since every tensor's first round needs every worker.
        """
        rendezvous = joining or closing
        previous = self._previous
        if previous is not None:
            previous.forget_repair_source()  # serve one tensor back, and let older exchanges' buffers go
        config = self.config
        transport = self._transport
        overhead = FRAME_OVERHEAD_BYTES

        def send(payload: bytes | bytearray | memoryview) -> None:
            transport.send(payload)
            stats.packets_sent += 1
            stats.bytes_sent += len(payload) + overhead

        def send_batch(payloads: np.ndarray) -> None:
            transport.send_batch(payloads)
            stats.packets_sent += len(payloads)
            stats.bytes_sent += len(payloads) * (DATA_PAYLOAD_BYTES + overhead)

        exchange = TensorExchange(
            job_id=config.job_id, tensor_id=tensor_id, plan=plan, lanes=lanes,
            result=memoryview(result).cast("B"), exponent=exponent, channels=self._channels, send=send, stats=stats,
            send_batch=send_batch,
            timeouts=config.timeouts, pacing=config.pacing,
            # Waiting for the other workers is no round trip: the one-block rounds are not timed.
            round_trip=RoundTripEstimator(backed_off=max(RENDEZVOUS_RETRANSMIT_S, config.timeouts.retransmit_initial))
            if rendezvous else self._round_trip,
            expected_exponent=expected_exponent,
            count_blocks=not rendezvous, name=config.name, worker_id=config.worker_id, workers=config.workers,
            repair_source=previous, first_round_slack=first_round_slack,
        )
        self._previous = exchange
        timeouts = config.timeouts
        now = time.monotonic()
        join_at = now + timeouts.join
        next_progress = now + self._progress_interval
        ignored_before = transport.ignored
        exchange.start(now)

        def consume(batch: PayloadBatch, now: float) -> None:
            stats.packets_received += len(batch)
            stats.bytes_received += int(batch.sizes.sum()) + len(batch) * overhead
            exchange.on_batch(batch.data, batch.sizes, now)

        try:
            while not exchange.done:
                now = time.monotonic()
                if exchange.next_wakeup() <= now:
                    # Read what already arrived before deciding that anything timed out: after the process was
                    # descheduled, the results that answer the expired timers are usually waiting in the socket.
                    while (batch := transport.receive_batch(0.0)) and not exchange.done:
                        consume(batch, now)
                    exchange.on_timer(now)
                if exchange.done:
                    break
                limit_at = self._limit(exchange, now, join_at if joining else None, deadline_at, tensor_id)
                wait = max(0.0, min(exchange.next_wakeup(), limit_at) - now)
                batch = transport.receive_batch(wait)
                if batch:
                    now = time.monotonic()
                    consume(batch, now)
                if self._progress is not None and now >= next_progress and not rendezvous:
                    self._progress(exchange.progress())
                    next_progress = now + self._progress_interval
        finally:
            stats.ignored += transport.ignored - ignored_before
        if self._progress is not None and not rendezvous:
            self._progress(1.0)
        return exchange

    def _limit(self, exchange: TensorExchange, now: float, join_at: float | None, deadline_at: float | None,
               tensor_id: int) -> float:
        """The earliest time limit; raises the matching error once it has passed."""
        config = self.config
        name = config.name
        if deadline_at is not None and now >= deadline_at:
            raise DeadlineExceeded(
                f"{name}: all-reduce not finished within its deadline of {config.timeouts.deadline} s "
                f"({exchange.open_columns} of {exchange.plan.columns} columns of tensor {tensor_id} still open)"
            )
        if join_at is not None and now >= join_at:
            raise WorkerMissing(
                f"{name}: no result for the scale round (tensor {tensor_id}, slot 0) of job {config.job_id} within "
                f"{config.timeouts.join} s: a worker of the job never showed up (not started, crashed, or refused "
                f"its call before sending anything), or the switch at {config.switch_ip} ignores this worker (job not "
                f"installed, wrong address/port or slot count); see the switch's drop counters"
            )
        stall_at = exchange.last_progress + config.timeouts.stall
        if join_at is None and now >= stall_at:
            raise Stalled(
                f"{name}: no result for {config.timeouts.stall} s in tensor {tensor_id} "
                f"({exchange.open_columns} of {exchange.plan.columns} columns open): a worker or the switch went "
                f"away, or the switch drops this worker's packets; `omnireduce-ctl status --job {config.job_id}` "
                f"names the workers the open columns wait for, `omnireduce-ctl counters` the switch's drops; once "
                f"the cause is gone, `omnireduce-ctl reset --job {config.job_id}` and new agents go on (or allow more "
                f"with --stall-timeout on a loaded machine)"
            )
        limits = [join_at if join_at is not None else stall_at]
        if deadline_at is not None:
            limits.append(deadline_at)
        return min(limits)
