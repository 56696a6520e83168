"""How the ranks take the same decision for every bucket, so that no collective is left waiting.

The switch path and torch.distributed's all-reduce are both collectives: if one rank falls back to gloo while
another believes the switch's result, the gloo all-reduce waits forever (or pairs with the wrong bucket). The
agent's refusals (NaN/Inf values, an int32 sum that could overflow) are already job-wide, but its failures are not:
a switch that dies may deliver the last result to one rank and not to another, and an agent that cannot start fails
on one rank only. So after every attempt each rank puts its verdict into its own lane of a W-int32 tensor and the
ranks sum it with one small all-reduce on the DDP process group; every rank then reads the same verdicts and takes
the same decision. This costs one tiny all-reduce per bucket, the price of never deadlocking.
"""

from __future__ import annotations

import enum

import torch
import torch.distributed as dist


class Verdict(enum.IntEnum):
    """OK: the switch's result is good on this rank. REFUSED: the job refused this bucket (alike on every rank, the
    agent stays usable): this bucket falls back. FAILED: this rank's agent failed or could not start: the switch
    path is off for the rest of training (its state on the switch is unknown) and every later bucket falls back."""

    OK = 0
    REFUSED = 1
    FAILED = 2


def agree(verdict: Verdict, *, rank: int, world_size: int, group: dist.ProcessGroup | None,
          device: torch.device) -> tuple[Verdict, ...]:
    """Every rank's verdict, in rank order (one all-reduce of `world_size` int32s on `group`)."""
    lanes = torch.zeros(world_size, dtype=torch.int32, device=device)
    lanes[rank] = int(verdict)
    dist.all_reduce(lanes, group=group)
    return tuple(Verdict(int(code)) for code in lanes.tolist())


def ranks_with(verdicts: tuple[Verdict, ...], verdict: Verdict) -> list[int]:
    return [rank for rank, item in enumerate(verdicts) if item is verdict]
