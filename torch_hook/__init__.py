"""omnireduce.torch: a DDP communication hook that all-reduces gradient buckets through an omnireduce switch.

    import torch.distributed as dist
    from omnireduce.torch import OmniReduceState, load_config, omnireduce_hook

    dist.init_process_group("gloo")                    # rank and world size are the job's worker id and count
    model = torch.nn.parallel.DistributedDataParallel(model)
    model.register_comm_hook(OmniReduceState(load_config("omnireduce.toml")), omnireduce_hook)

docs/pytorch.md explains the config, the sparsification options and the fallback to torch.distributed's all-reduce.
Needs PyTorch: `pip install 'omnireduce-p4[torch]'`.
"""

from __future__ import annotations

try:
    import torch as _torch  # noqa: F401 -- only to turn a missing PyTorch into a message that says what to install
except ImportError as error:  # pragma: no cover - depends on the environment
    raise ImportError("omnireduce.torch needs PyTorch: pip install 'omnireduce-p4[torch]' (or any torch >= 2.1)") \
        from error

from .config import HookConfig, HookConfigError, RankSettings, config_from_env, load_config, parse_config
from .hook import OmniReduceState, StepReport, omnireduce_hook
from .sparsify import Sparsification, SparsifyKind

__all__ = [
    "HookConfig",
    "HookConfigError",
    "OmniReduceState",
    "RankSettings",
    "Sparsification",
    "SparsifyKind",
    "StepReport",
    "config_from_env",
    "load_config",
    "omnireduce_hook",
    "parse_config",
]
