"""Train a model with DDP over the loopback softswitch, through omnireduce and through gloo side by side.

    .venv/bin/python examples/ddp_training.py --model recommender --ranks 2 --steps 200
    .venv/bin/python examples/ddp_training.py --model mlp --ranks 2 --steps 300      # top-k 1% + error feedback

One command does it all: it starts the embedded softswitch and installs a job for --ranks workers through the
controller (omnireduce.torch.loopback, built from omnireduce.testbed's parts), then spawns the ranks with
torch.multiprocessing (gloo process group). Every rank trains the same model twice in lockstep, from the same
initial weights on the same synthetic batches: once with `model.register_comm_hook(state, omnireduce_hook)`, once
with DDP's own all-reduce. Rank 0 prints each step's two losses, the density the hook sent and the bytes each
side sent from rank 0 (omnireduce: Ethernet bytes to the switch, counted by the agent; gloo: a ring all-reduce's
2 (W-1)/W of the gradient, an estimate), then a summary.

Models (synthetic data, nothing downloaded):
  recommender  NCF-style click model: user and item embeddings (rows of 32 floats) and an MLP; each batch touches
               a few hundred rows, so the embedding gradients are naturally sparse (default: no sparsification).
  mlp          a dense 3-layer MLP regressing a fixed random teacher network (default: block top-k 1% with error
               feedback).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn

from omnireduce.p4src.constants import SLOT_COUNT
from omnireduce.torch import HookConfig, OmniReduceState, Sparsification, omnireduce_hook
from omnireduce.torch.hook import ring_allreduce_bytes
from omnireduce.torch.launch import run_ranks
from omnireduce.torch.loopback import DEFAULT_SLOTS, loopback_switch

USERS, ITEMS, EMBEDDING = 5000, 2000, 32
TASTES = 4
FEATURES = 128


class Recommender(nn.Module):
    """NeuMF (the NCF paper's model): user and item embeddings feed a generalized matrix factorization (their
    element-wise product, weighted) and an MLP over their concatenation; the two logits add up."""

    def __init__(self) -> None:
        super().__init__()
        self.users = nn.Embedding(USERS, EMBEDDING)
        self.items = nn.Embedding(ITEMS, EMBEDDING)
        # Small initial embeddings, as NCF's reference code uses (N(0, 0.01)); N(0, 1) rows swamp the MLP at first.
        nn.init.normal_(self.users.weight, std=0.1)
        nn.init.normal_(self.items.weight, std=0.1)
        self.gmf = nn.Linear(EMBEDDING, 1)
        self.mlp = nn.Sequential(nn.Linear(2 * EMBEDDING, 64), nn.ReLU(), nn.Linear(64, 1))

    def forward(self, pairs: torch.Tensor) -> torch.Tensor:
        users, items = self.users(pairs[:, 0]), self.items(pairs[:, 1])
        return (self.gmf(users * items) + self.mlp(torch.cat([users, items], dim=1))).squeeze(1)


def recommender_data(rank: int, step: int, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Clicks drawn from hidden user and item tastes (TASTES dimensions) plus each user's activity and each item's
    popularity, the same on every rank; the batches differ per rank and step."""
    truth = torch.Generator().manual_seed(12345)
    user_taste = torch.randn(USERS, TASTES, generator=truth)
    item_taste = torch.randn(ITEMS, TASTES, generator=truth)
    activity = torch.randn(USERS, generator=truth)
    popularity = 1.5 * torch.randn(ITEMS, generator=truth)
    draw = torch.Generator().manual_seed(100_000 * rank + step)
    users = torch.randint(0, USERS, (batch,), generator=draw)
    items = torch.randint(0, ITEMS, (batch,), generator=draw)
    affinity = (user_taste[users] * item_taste[items]).sum(1) * (2 / TASTES ** 0.5)
    probability = torch.sigmoid(affinity + activity[users] + popularity[items])
    clicks = (torch.rand(batch, generator=draw) < probability).float()
    return torch.stack([users, items], dim=1), clicks


def mlp_model() -> nn.Module:
    return nn.Sequential(nn.Linear(FEATURES, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 1))


def mlp_data(rank: int, step: int, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
    torch.manual_seed(777)
    teacher = nn.Sequential(nn.Linear(FEATURES, 32), nn.Tanh(), nn.Linear(32, 1))
    draw = torch.Generator().manual_seed(100_000 * rank + step)
    inputs = torch.randn(batch, FEATURES, generator=draw)
    with torch.no_grad():
        return inputs, teacher(inputs).squeeze(1)


#: name: (model, data, loss, default sparsification, default optimizer, default learning rate, default slots).
#: Adam for the recommender, as NCF trains it: plain SGD moves each embedding row only when a batch touches it and
#: needs far more steps than an example should take; the gradients stay as sparse either way (the optimizer runs
#: after the hook). Slots: the loopback's 64 for the recommender's 15% of 7,133 blocks (twice as fast as 16, the
#: same bytes); 16 for top-k 1% of the MLP's 3,096 blocks, where each slot's dense first-round block would cost more
#: than the blocks chosen (2.9% of the blocks sent over 64 slots, 1.35% over 16; docs/pytorch.md).
MODELS = {
    "recommender": (Recommender, recommender_data, nn.functional.binary_cross_entropy_with_logits, "none", "adam",
                    0.01, DEFAULT_SLOTS),
    "mlp": (lambda: mlp_model(), mlp_data, lambda out, y: nn.functional.mse_loss(out.squeeze(1), y), "topk:0.01",
            "sgd", 0.05, 16),
}


def make_optimiser(name: str, parameters, lr: float) -> torch.optim.Optimizer:
    if name == "adam":
        return torch.optim.Adam(parameters, lr=lr)
    return torch.optim.SGD(parameters, lr=lr, momentum=0.9)


def parse_sparsification(text: str) -> Sparsification:
    kind, _, value = text.partition(":")
    try:
        if kind == "none":
            return Sparsification.none()
        if kind == "topk":
            return Sparsification.block_top_k(float(value))
        if kind == "threshold":
            return Sparsification.block_threshold(float(value))
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"{text!r}: {error}") from None
    raise argparse.ArgumentTypeError(f"{text!r}: use none, topk:FRACTION or threshold:VALUE")


def train(rank: int, world_size: int, config: HookConfig, model_name: str, sparsify: str, steps: int, batch: int,
          optimiser: str, lr: float, device_name: str, out_path: str) -> None:
    logging.basicConfig(level=logging.WARNING, format=f"rank {rank} %(levelname)s %(name)s: %(message)s")
    make_model, make_data, loss_of = MODELS[model_name][:3]
    device = torch.device(device_name)
    if device.type == "cuda":  # ranks share the machine's GPUs round robin (several ranks may share one)
        device = torch.device("cuda", rank % torch.cuda.device_count())
    models = {}
    for name in ("omnireduce", "gloo"):
        torch.manual_seed(0)
        model = make_model().to(device)
        models[name] = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None)
    state = OmniReduceState(config, sparsification=parse_sparsification(sparsify))
    models["omnireduce"].register_comm_hook(state, omnireduce_hook)
    # gloo's time per step: an all-reduce of as many values as the gradients, timed after each step (the gloo model
    # keeps DDP's built-in all-reduce, untouched, as the baseline).
    gradient_values = torch.zeros(sum(p.numel() for p in models["gloo"].parameters()), device=device)
    optimisers = {name: make_optimiser(optimiser, model.parameters(), lr) for name, model in models.items()}
    gradient_bytes = sum(ring_allreduce_bytes(p, world_size) for p in models["gloo"].parameters())
    rows = []
    if rank == 0:
        print(f"{'step':>5} {'loss omnireduce':>16} {'loss gloo':>10} {'density':>8} {'bytes omnireduce':>17} "
              f"{'bytes gloo (ring)':>18}", flush=True)
    for step in range(steps):
        inputs, targets = (tensor.to(device) for tensor in make_data(rank, step, batch))
        losses = {}
        for name, model in models.items():
            loss = loss_of(model(inputs), targets)
            optimisers[name].zero_grad()
            loss.backward()
            optimisers[name].step()
            losses[name] = float(loss.detach())
        dist.barrier()
        started = time.monotonic()
        dist.all_reduce(gradient_values)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        gloo_seconds = time.monotonic() - started
        report = state.last_report
        assert report is not None
        row = {"step": step, "loss_omnireduce": losses["omnireduce"], "loss_gloo": losses["gloo"],
               "density": report.density, "bytes_omnireduce": report.bytes_sent, "bytes_gloo": gradient_bytes,
               "fallback_buckets": report.fallback_buckets, "host_copy_bytes": report.host_copy_bytes,
               "seconds": report.seconds, "seconds_gloo": gloo_seconds}
        rows.append(row)
        if rank == 0:
            print(f"{step:>5} {losses['omnireduce']:>16.5f} {losses['gloo']:>10.5f} {report.density:>8.4f} "
                  f"{report.bytes_sent:>17,} {gradient_bytes:>18,}", flush=True)
    state.close()
    if rank == 0:
        Path(out_path).write_text(json.dumps({"rows": rows, "disabled_reason": state.disabled_reason}))


def summarise(rows: list[dict], window: int) -> dict[str, float]:
    last = rows[-window:]
    omni = sum(row["loss_omnireduce"] for row in last) / len(last)
    gloo = sum(row["loss_gloo"] for row in last) / len(last)
    return {"final_loss_omnireduce": omni, "final_loss_gloo": gloo, "relative_difference": (omni - gloo) / gloo,
            "mean_density": sum(row["density"] for row in rows) / len(rows),
            "bytes_omnireduce": sum(row["bytes_omnireduce"] for row in rows),
            "bytes_gloo": sum(row["bytes_gloo"] for row in rows),
            "seconds_in_hook": sum(row["seconds"] for row in rows),
            "seconds_in_gloo": sum(row["seconds_gloo"] for row in rows)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", choices=sorted(MODELS), default="recommender")
    parser.add_argument("--ranks", type=int, default=2, choices=(2, 3, 4))
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--batch", type=int, default=256, help="samples per rank and step")
    parser.add_argument("--optimizer", choices=("adam", "sgd"), help="default: the model's (recommender adam, "
                        "mlp sgd with momentum 0.9)")
    parser.add_argument("--lr", type=float, help="default: the model's (recommender 0.01, mlp 0.05)")
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda: models, data and gradients on the "
                        "GPU, where the hook scans the buckets and copies only the chosen blocks to the host")
    parser.add_argument("--sparsify", help="none, topk:FRACTION or threshold:VALUE (default: the model's)")
    parser.add_argument("--json", type=Path, help="write the per-step rows and the summary here")
    parser.add_argument("--ports", choices=("shm", "udp"), help="the softswitch's ports: shm (shared-memory rings, "
                        "the default where they build) or udp (sockets on 127.0.0.1)")
    parser.add_argument("--slots", type=int, help="the job's slots: more keep more rounds of a bucket in flight, "
                        "each costs every rank a first-round block per bucket (default: the model's, recommender "
                        f"{MODELS['recommender'][6]}, mlp {MODELS['mlp'][6]})")
    args = parser.parse_args(argv)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        parser.error("--device cuda: this machine has no CUDA device visible to torch")
    sparsify = args.sparsify or MODELS[args.model][3]
    try:
        parse_sparsification(sparsify)
    except argparse.ArgumentTypeError as error:
        parser.error(f"--sparsify {error}")
    args.optimizer = args.optimizer or MODELS[args.model][4]
    args.lr = args.lr if args.lr is not None else MODELS[args.model][5]
    if not args.lr > 0:
        parser.error(f"--lr must be positive, got {args.lr}")
    args.slots = args.slots if args.slots is not None else MODELS[args.model][6]
    if not 1 <= args.slots <= SLOT_COUNT:
        parser.error(f"--slots must be in 1..{SLOT_COUNT} (the switch's slots), got {args.slots}")
    with tempfile.TemporaryDirectory(prefix="omnireduce-example-") as scratch:
        run_dir = Path(scratch)
        out = run_dir / "rank0.json"
        with loopback_switch(args.ranks, run_dir / "logs", ports=args.ports, slots=args.slots) as switch:
            run_ranks(train, args.ranks, (switch.config, args.model, sparsify, args.steps, args.batch,
                                          args.optimizer, args.lr, args.device, str(out)), run_dir)
        result = json.loads(out.read_text())
    summary = summarise(result["rows"], window=max(1, args.steps // 10))
    print(f"\n{args.model}, {args.ranks} ranks, {args.steps} steps, sparsification {sparsify}, {args.optimizer} "
          f"lr {args.lr:g}")
    print(f"  final loss (mean of the last {max(1, args.steps // 10)} steps): omnireduce "
          f"{summary['final_loss_omnireduce']:.5f}, gloo {summary['final_loss_gloo']:.5f} "
          f"({100 * summary['relative_difference']:+.2f}%)")
    print(f"  mean density sent {100 * summary['mean_density']:.2f}%; bytes sent by rank 0: omnireduce "
          f"{summary['bytes_omnireduce']:,}, gloo ring estimate {summary['bytes_gloo']:,} "
          f"({summary['bytes_omnireduce'] / summary['bytes_gloo']:.3f}x)")
    steps = len(result["rows"])
    print(f"  time per step: {1e3 * summary['seconds_in_hook'] / steps:.1f} ms in the omnireduce hook, "
          f"{1e3 * summary['seconds_in_gloo'] / steps:.1f} ms in gloo's all-reduce of as many values")
    if result["disabled_reason"]:
        print(f"  NOTE: the hook fell back to gloo: {result['disabled_reason']}")
    if args.json:
        args.json.write_text(json.dumps({"args": vars(args) | {"json": str(args.json)}, "sparsify": sparsify,
                                         "summary": summary, "rows": result["rows"]}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
