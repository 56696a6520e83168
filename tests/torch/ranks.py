"""What each rank of tests/torch/test_hook.py runs: a sequence of short trainings over one loopback softswitch,
each against DDP's own all-reduce (gloo), written to `<out>/rank<r>.json` for the test to check.

Module-level functions only: torch.multiprocessing pickles them into the rank processes.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import signal
from pathlib import Path
from typing import Any, Callable

import torch
import torch.distributed as dist
from torch import nn

from omnireduce.host import Timeouts
from omnireduce.host.quantize import error_bound
from omnireduce.testbed.ports import free_ports
from omnireduce.torch import HookConfig, HookConfigError, OmniReduceState, Sparsification, omnireduce_hook
from omnireduce.torch.config import RankSettings
from omnireduce.torch.loopback import reset_job_state

LEARNING_RATE = 0.1
#: Short limits for the scenarios that make the agents fail: they must give up (and fall back) quickly.
SHORT_TIMEOUTS = Timeouts(join=3.0, stall=3.0)


class LogRecorder(logging.Handler):
    """Keeps the hook's warnings, so that the test can check that the log says why (and only once)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())

    def take(self) -> list[str]:
        messages, self.messages = self.messages, []
        return messages


def embedding_model() -> nn.Module:
    """Naturally sparse gradients: a batch touches a few rows of the table; the rest of its gradient is zero."""
    torch.manual_seed(0)
    return nn.Sequential(nn.EmbeddingBag(2000, 32, mode="sum"), nn.Linear(32, 1))


def embedding_batch(rank: int, step: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(1000 * step + rank)
    return torch.randint(0, 2000, (32, 4), generator=generator), torch.randn(32, 1, generator=generator)


def mlp_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 64), nn.ReLU(), nn.Linear(64, 1))


def mlp_batch(rank: int, step: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(1000 * step + rank)
    inputs = torch.randn(32, 64, generator=generator)
    return inputs, inputs[:, :1] * 2 - inputs[:, 1:2]


def train_pair(rank: int, make_model: Callable[[], nn.Module], make_batch: Callable[[int, int], Any], steps: int,
               state: OmniReduceState | None, *, dtype: torch.dtype = torch.float32,
               after_step: Callable[[int], None] = lambda step: None) -> dict[str, Any]:
    """The same model trained twice in lockstep from the same start: through the hook (if `state`) and through DDP's
    own all-reduce. Returns the largest parameter difference, the losses and the hook's reports."""
    hooked = nn.parallel.DistributedDataParallel(make_model().to(dtype))
    plain = nn.parallel.DistributedDataParallel(make_model().to(dtype))
    if state is not None:
        hooked.register_comm_hook(state, omnireduce_hook)
    optimisers = [torch.optim.SGD(model.parameters(), lr=LEARNING_RATE) for model in (hooked, plain)]
    losses: dict[str, list[float]] = {"omnireduce": [], "gloo": []}
    bounds = []
    gradient_max = []
    for step in range(steps):
        inputs, targets = make_batch(rank, step)
        for name, model, optimiser in zip(("omnireduce", "gloo"), (hooked, plain), optimisers):
            loss = nn.functional.mse_loss(model(inputs), targets.to(dtype))
            optimiser.zero_grad()
            loss.backward()
            if name == "omnireduce":
                gradient_max.append(max(float(p.grad.abs().max()) for p in model.parameters()))
                agent = state.agent if state is not None else None
                if agent is not None and agent.last_exponent is not None and state.enabled:
                    bounds.append(error_bound(agent.last_exponent, dist.get_world_size()))
            optimiser.step()
            losses[name].append(float(loss.detach()))
        after_step(step)
    difference = max(float((a - b).abs().max()) for a, b in zip(hooked.parameters(), plain.parameters()))
    parameter_max = max(float(p.abs().max()) for p in plain.parameters())
    reports = [dataclasses.asdict(report) | {"density": report.density} for report in state.reports] \
        if state is not None else []
    return {"difference": difference, "parameter_max": parameter_max, "losses": losses, "bounds": bounds,
            "gradient_max": gradient_max, "reports": reports,
            "disabled_reason": state.disabled_reason if state is not None else None}


def with_timeouts(config: HookConfig, timeouts: Timeouts) -> HookConfig:
    return dataclasses.replace(config, timeouts=timeouts)


def unknown_switch(config: HookConfig) -> HookConfig:
    """Every rank's frame link points where no switch is: a loopback port where none listens, or a ring file that
    no switch made."""
    closed = free_ports(len(config.ranks))
    ranks = []
    for settings, port in zip(config.ranks, closed):
        frame = settings.frame
        assert frame is not None
        if frame.ring is not None:
            frame = dataclasses.replace(frame, ring=frame.ring.with_name(f"no-switch-{port}"))
        else:
            frame = dataclasses.replace(frame, peer=("127.0.0.1", port))
        ranks.append(RankSettings(settings.bind, frame))
    return dataclasses.replace(config, ranks=tuple(ranks), timeouts=SHORT_TIMEOUTS)


def fresh_job(rank: int, grpc_addr: str) -> None:
    """Between two trainings on the switch: every rank done, the job's state cleared, then go on."""
    dist.barrier()
    if rank == 0:
        reset_job_state(grpc_addr)
    dist.barrier()


def run_scenarios(rank: int, world_size: int, config: HookConfig, grpc_addr: str, switch_pid: int,
                  out_dir: str) -> None:
    recorder = LogRecorder()
    logging.getLogger("omnireduce.torch").addHandler(recorder)
    results: dict[str, Any] = {}

    def scenario(name: str, state_config: HookConfig, run: Callable[[OmniReduceState], dict],
                 sparsification: Sparsification = Sparsification()) -> None:
        state = OmniReduceState(state_config, sparsification=sparsification)
        try:
            results[name] = run(state)
        finally:
            state.close()
        results[name]["log"] = recorder.take()

    embedding = (embedding_model, embedding_batch)
    scenario("natural", config, lambda state: train_pair(rank, *embedding, 4, state))
    fresh_job(rank, grpc_addr)
    scenario("float64", config, lambda state: train_pair(rank, *embedding, 2, state, dtype=torch.float64))
    scenario("unknown_switch", unknown_switch(config), lambda state: train_pair(rank, *embedding, 3, state))
    mismatched = dataclasses.replace(config, job_id=config.job_id + 7, timeouts=SHORT_TIMEOUTS)
    scenario("mismatched_job", mismatched, lambda state: train_pair(rank, *embedding, 2, state))
    try:
        OmniReduceState(dataclasses.replace(config, workers=world_size + 1, ranks=config.ranks + config.ranks[:1]))
        results["wrong_world_size"] = {"error": None}
    except HookConfigError as error:
        results["wrong_world_size"] = {"error": str(error)}
    fresh_job(rank, grpc_addr)
    topk = Sparsification.block_top_k(0.01)
    scenario("top_k", config, lambda state: train_pair(rank, mlp_model, mlp_batch, 3, state), topk)
    fresh_job(rank, grpc_addr)

    def kill_switch(step: int) -> None:
        if step == 1 and rank == 0:
            os.killpg(switch_pid, signal.SIGKILL)

    scenario("switch_dies", with_timeouts(config, SHORT_TIMEOUTS),
             lambda state: train_pair(rank, *embedding, 5, state, after_step=kill_switch))
    Path(out_dir, f"rank{rank}.json").write_text(json.dumps(results, indent=1), encoding="utf-8")

