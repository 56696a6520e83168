"""The DDP communication hook: every gradient bucket is all-reduced through the switch by the host agent.

    state = OmniReduceState(load_config("omnireduce.toml"))       # after dist.init_process_group("gloo")
    model.register_comm_hook(state, omnireduce_hook)

Worker id and count are torch.distributed's rank and world size; the switch, job and slots come from the config.
The result is averaged (divided by the world size), as DDP's default hook does. A bucket that the switch cannot
take falls back to torch.distributed's own all-reduce on the same process group, and the log says so once with the
reason:

* decided alike on every rank without talking, from the bucket itself: a dtype the fixed point does not carry
  (float64 and others; float16/bfloat16 are widened to float32 for the wire and rounded back), or too many
  blocks for the protocol's 32-bit block indices;
* decided by the job (agreement.py): the agent refused the bucket (NaN/Inf in some rank's gradient) -- this
  bucket only; or some rank's agent failed (switch unreachable or dead, a peer that never arrived, a job the switch
  does not have or installed for another worker count) or could not start -- every bucket from then on.

The hook is synchronous: it returns a completed future once the bucket's sum is in place (the agent blocks). On a
CUDA tensor only the chosen blocks cross to the host and only the result's non-zero blocks come back (blocks.py).
"""

# No `from __future__ import annotations` here: DDP checks the hook's annotations as objects (dist.GradBucket).

import logging
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch
import torch.distributed as dist

from omnireduce.host import AgentConfig, AgentError, AllReduce, InputError, JobMismatch, OverflowRisk, PeerRefused
from omnireduce.host.agent import MAX_BLOCKS

from .agreement import Verdict, agree, ranks_with
from .blocks import LANES, block_count, copy_blocks_to_host, copy_result_to_device, zero_blocks
from .config import HookConfig, config_from_env
from .sparsify import ErrorFeedback, Sparsification, SparsifyKind

log = logging.getLogger(__name__)

#: dtypes the agent carries as they are.
WIRE_DTYPES = (torch.float32,)
#: dtypes widened to float32 for the wire (exactly) and rounded back to their own dtype afterwards.
WIDENED_DTYPES = (torch.float16, torch.bfloat16)

AgentFactory = Callable[[AgentConfig], AllReduce]


@dataclass(frozen=True, slots=True)
class StepReport:
    """What one training step (one backward pass: every bucket once) sent, from this rank's point of view.

    blocks: blocks of the buckets that went through the switch; blocks_sent: how many of them the agent sent (its
    own count, the first dense round of each bucket included); density = blocks_sent / blocks. switch_bytes: the
    Ethernet bytes this rank sent to the switch. fallback_bytes: an estimate of what the fallback all-reduces sent
    from this rank (a ring all-reduce sends 2 (W-1)/W of the tensor). host_copy_bytes: bytes copied between the
    device and the host (chosen blocks out, the result's non-zero blocks back).
    """

    step: int
    buckets: int
    fallback_buckets: int
    values: int
    blocks: int
    blocks_sent: int
    switch_bytes: int
    fallback_bytes: int
    host_copy_bytes: int
    seconds: float

    @property
    def density(self) -> float:
        return self.blocks_sent / self.blocks if self.blocks else 0.0

    @property
    def bytes_sent(self) -> int:
        return self.switch_bytes + self.fallback_bytes


@dataclass(slots=True)
class _StepTally:
    buckets: int = 0
    fallback_buckets: int = 0
    values: int = 0
    blocks: int = 0
    blocks_sent: int = 0
    switch_bytes: int = 0
    fallback_bytes: int = 0
    host_copy_bytes: int = 0
    seconds: float = 0.0


def ring_allreduce_bytes(tensor: torch.Tensor, world_size: int) -> int:
    """What one rank sends in a ring all-reduce of `tensor` (reduce-scatter, then all-gather)."""
    return 2 * (world_size - 1) * tensor.numel() * tensor.element_size() // world_size


@dataclass(slots=True)
class OmniReduceState:
    """The hook's state on one rank: its agent, the sparsification and its residuals, and per-step reports.

    config: None reads it from the environment (config.py). process_group: the DDP group (None: the default
    group); it carries the agreement and the fallback. Raises HookConfigError when the config does not fit this
    rank or the world size (every rank that reads the same config raises alike, so training stops cleanly).
    """

    config: HookConfig | None = None
    process_group: dist.ProcessGroup | None = None
    sparsification: Sparsification = field(default_factory=Sparsification)
    agent_factory: AgentFactory = AllReduce
    #: one report per finished step, oldest first (keep_reports most recent ones).
    reports: list[StepReport] = field(default_factory=list)
    keep_reports: int = 10_000
    rank: int = field(init=False)
    world_size: int = field(init=False)
    agent_config: AgentConfig = field(init=False)
    agent: AllReduce | None = field(init=False, default=None)
    #: why the switch path is off for the rest of training (None while it is on).
    disabled_reason: str | None = field(init=False, default=None)
    _started: bool = field(init=False, default=False)
    _logged: set[str] = field(init=False, default_factory=set)
    _feedback: ErrorFeedback = field(init=False, default_factory=ErrorFeedback)
    _tally: _StepTally = field(init=False, default_factory=_StepTally)
    _step: int = field(init=False, default=0)

    def __post_init__(self) -> None:
        if self.config is None:
            self.config = config_from_env()
        if not dist.is_initialized():
            raise RuntimeError("OmniReduceState needs torch.distributed initialised (dist.init_process_group) first")
        self.rank = dist.get_rank(self.process_group)
        self.world_size = dist.get_world_size(self.process_group)
        self.agent_config = self.config.agent_config(self.rank, self.world_size)

    # --- reports -------------------------------------------------------------------------------------------------

    @property
    def last_report(self) -> StepReport | None:
        return self.reports[-1] if self.reports else None

    @property
    def enabled(self) -> bool:
        """Whether buckets still go through the switch (False once the job agreed to fall back for good)."""
        return self.disabled_reason is None

    def close(self) -> None:
        if self.agent is not None:
            self.agent.close()
            self.agent = None

    # --- the hook --------------------------------------------------------------------------------------------------

    def reduce_bucket(self, bucket: dist.GradBucket) -> torch.futures.Future[torch.Tensor]:
        buffer = bucket.buffer()
        started = time.monotonic()
        try:
            if not self._started:
                self._start(buffer.device)
            reason = self._unfit_reason(buffer)
            if self.disabled_reason is not None:
                return self._fallback(buffer)
            if reason is not None:
                self._log_once(f"unfit:{reason}", "omnireduce: a bucket falls back to torch.distributed's "
                                                  "all-reduce: %s", reason)
                return self._fallback(buffer)
            return self._through_switch(bucket.index(), buffer)
        finally:
            self._tally.seconds += time.monotonic() - started
            if bucket.is_last():
                self._finish_step()

    def _start(self, device: torch.device) -> None:
        """Start this rank's agent and agree that every rank's did start."""
        self._started = True
        verdict, why = Verdict.OK, ""
        try:
            self.agent = self.agent_factory(self.agent_config)
        except (AgentError, OSError, ValueError) as error:
            verdict = Verdict.FAILED
            why = f"rank {self.rank} could not start its agent: {type(error).__name__}: {error}"
            log.error("omnireduce: %s", why)
        verdicts = self._agree(verdict, device)
        failed = ranks_with(verdicts, Verdict.FAILED)
        if failed:
            self._disable(why or f"rank(s) {failed} could not start their agents (see their logs)")

    def _unfit_reason(self, buffer: torch.Tensor) -> str | None:
        """Why the switch cannot take this bucket at all (the same answer on every rank: DDP's buckets match)."""
        if buffer.dtype not in WIRE_DTYPES + WIDENED_DTYPES:
            return f"dtype {buffer.dtype} is not carried (float32, or float16/bfloat16 widened to float32)"
        if block_count(buffer.numel()) > MAX_BLOCKS:
            return f"{buffer.numel()} values make more than the protocol's {MAX_BLOCKS} blocks"
        return None

    def _through_switch(self, index: int, buffer: torch.Tensor) -> torch.futures.Future[torch.Tensor]:
        assert self.agent is not None
        tally = self._tally
        sparsification = self.sparsification
        feedback = sparsification.holds_back and sparsification.error_feedback
        work = buffer if buffer.dtype == torch.float32 else buffer.to(torch.float32)
        if feedback:
            self._feedback.compensate(index, work)
        chosen: torch.Tensor | None = None
        if work.device.type == "cpu" and sparsification.kind is SparsifyKind.NONE:
            # The agent scans the blocks itself; on the CPU the bucket's memory is handed over as it is.
            host_values = work.numpy()
        else:
            chosen = sparsification.select(work)
            host = copy_blocks_to_host(work, chosen)
            host_values = host.values
            tally.host_copy_bytes += host.copied_bytes
        result = np.empty_like(host_values)
        verdict, why = Verdict.OK, ""
        try:
            self.agent.allreduce(host_values, out=result)
        except (InputError, PeerRefused, OverflowRisk) as error:
            verdict, why = Verdict.REFUSED, f"{type(error).__name__}: {error}"
        except JobMismatch as error:
            verdict, why = Verdict.FAILED, f"JobMismatch: {error}"
        except (AgentError, OSError) as error:
            verdict, why = Verdict.FAILED, f"{type(error).__name__}: {error}"
        finally:
            stats = self.agent.last_stats
        verdicts = self._agree(verdict, work.device)
        if any(item is not Verdict.OK for item in verdicts):
            return self._switch_refused(index, buffer, work, verdicts, why)
        if stats is not None:
            tally.blocks += stats.blocks_total
            tally.blocks_sent += stats.blocks_sent
            tally.switch_bytes += stats.bytes_sent
        tally.buckets += 1
        tally.values += buffer.numel()
        if feedback and chosen is not None:
            self._keep_residual(index, work, chosen)
        copied = copy_result_to_device(result, work, self.world_size)
        if work.device.type != "cpu":
            tally.host_copy_bytes += copied
        if work is not buffer:
            buffer.copy_(work)
        done: torch.futures.Future[torch.Tensor] = torch.futures.Future(
            devices=[buffer.device] if buffer.device.type == "cuda" else None)
        done.set_result(buffer)
        return done

    def _keep_residual(self, index: int, work: torch.Tensor, chosen: torch.Tensor) -> None:
        """The compensated gradient minus the blocks sent, kept for the bucket's next step (reusing its memory)."""
        residual = self._feedback.residual(index)
        if residual is None or residual.shape != work.shape or residual.device != work.device:
            residual = torch.empty_like(work)
        residual.copy_(work)
        zero_blocks(residual, chosen)
        self._feedback.keep(index, residual)

    def _switch_refused(self, index: int, buffer: torch.Tensor, work: torch.Tensor, verdicts: tuple[Verdict, ...],
                        why: str) -> torch.futures.Future[torch.Tensor]:
        """Some rank could not use the switch's result: every rank falls back for this bucket (and, after a failure,
        for good). The fallback sums the compensated gradient dense, so error feedback has nothing left over."""
        failed = ranks_with(verdicts, Verdict.FAILED)
        refused = ranks_with(verdicts, Verdict.REFUSED)
        if failed:
            own = verdicts[self.rank] is Verdict.FAILED
            self._disable(why if own else f"the agent of rank(s) {failed} failed (see their logs)")
        else:
            kind = why.split(":", 1)[0] if why else "peer"
            self._log_once(f"refused:{kind}", "omnireduce: bucket %d falls back to torch.distributed's all-reduce "
                                              "(the job refused it; ranks %s): %s", index, refused,
                           why or "see the refusing ranks' logs")
        self._feedback.forget(index)
        if work is not buffer:
            buffer.copy_(work)
        return self._fallback(buffer)

    def _disable(self, reason: str) -> None:
        if self.disabled_reason is None:
            self.disabled_reason = reason
            log.warning("omnireduce: every bucket falls back to torch.distributed's all-reduce from now on: %s", reason)

    def _fallback(self, buffer: torch.Tensor) -> torch.futures.Future[torch.Tensor]:
        """DDP's own all-reduce of the bucket on the process group, averaged."""
        self._tally.buckets += 1
        self._tally.fallback_buckets += 1
        self._tally.fallback_bytes += ring_allreduce_bytes(buffer, self.world_size)
        buffer.div_(self.world_size)
        work = dist.all_reduce(buffer, group=self.process_group, async_op=True)
        return work.get_future().then(lambda future: future.value()[0])

    def _agree(self, verdict: Verdict, device: torch.device) -> tuple[Verdict, ...]:
        return agree(verdict, rank=self.rank, world_size=self.world_size, group=self.process_group, device=device)

    def _log_once(self, key: str, message: str, *args: object) -> None:
        if key not in self._logged:
            self._logged.add(key)
            log.warning(message, *args)

    def _finish_step(self) -> None:
        tally = self._tally
        report = StepReport(self._step, tally.buckets, tally.fallback_buckets, tally.values, tally.blocks,
                            tally.blocks_sent, tally.switch_bytes, tally.fallback_bytes, tally.host_copy_bytes,
                            tally.seconds)
        self.reports.append(report)
        if len(self.reports) > self.keep_reports:
            del self.reports[: len(self.reports) - self.keep_reports]
        log.debug("omnireduce step %d: density %.4f (%d of %d blocks), %d bytes to the switch, %d of %d buckets "
                  "fell back, %.3f s", report.step, report.density, report.blocks_sent, report.blocks,
                  report.switch_bytes, report.fallback_buckets, report.buckets, report.seconds)
        self._step += 1
        self._tally = _StepTally()


def omnireduce_hook(state: OmniReduceState, bucket: dist.GradBucket) -> torch.futures.Future[torch.Tensor]:
    """DDP communication hook: `model.register_comm_hook(OmniReduceState(config), omnireduce_hook)`."""
    return state.reduce_bucket(bucket)


__all__ = ["LANES", "OmniReduceState", "StepReport", "omnireduce_hook", "ring_allreduce_bytes"]
