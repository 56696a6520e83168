"""Train a model with DDP over the loopback softswitch, through omnireduce and through gloo side by side.

    .venv/bin/python examples/ddp_training.py --model recommender --ranks 2 --steps 60
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
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn

from omnireduce.torch import HookConfig, OmniReduceState, Sparsification, omnireduce_hook
from omnireduce.torch.hook import ring_allreduce_bytes
from omnireduce.torch.launch import run_ranks
from omnireduce.torch.loopback import loopback_switch

USERS, ITEMS, EMBEDDING = 5000, 2000, 32
FEATURES = 128


class Recommender(nn.Module):
    """NCF-style: user and item embeddings, concatenated, through an MLP to a click logit."""

    def __init__(self) -> None:
        super().__init__()
        self.users = nn.Embedding(USERS, EMBEDDING)
        self.items = nn.Embedding(ITEMS, EMBEDDING)
        self.mlp = nn.Sequential(nn.Linear(2 * EMBEDDING, 64), nn.ReLU(), nn.Linear(64, 1))

    def forward(self, pairs: torch.Tensor) -> torch.Tensor:
        return self.mlp(torch.cat([self.users(pairs[:, 0]), self.items(pairs[:, 1])], dim=1)).squeeze(1)


def recommender_data(rank: int, step: int, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Clicks from hidden 8-dimensional user and item tastes (the same on every rank); batches differ per rank."""
    truth = torch.Generator().manual_seed(12345)
    user_taste = torch.randn(USERS, 8, generator=truth)
    item_taste = torch.randn(ITEMS, 8, generator=truth)
    draw = torch.Generator().manual_seed(100_000 * rank + step)
    users = torch.randint(0, USERS, (batch,), generator=draw)
    items = torch.randint(0, ITEMS, (batch,), generator=draw)
    probability = torch.sigmoid((user_taste[users] * item_taste[items]).sum(1))
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


MODELS = {
    "recommender": (Recommender, recommender_data, nn.functional.binary_cross_entropy_with_logits, "none"),
    "mlp": (lambda: mlp_model(), mlp_data, lambda out, y: nn.functional.mse_loss(out.squeeze(1), y), "topk:0.01"),
}


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
          lr: float, out_path: str) -> None:
    logging.basicConfig(level=logging.WARNING, format=f"rank {rank} %(levelname)s %(name)s: %(message)s")
    make_model, make_data, loss_of, _default = MODELS[model_name]
    models = {}
    for name in ("omnireduce", "gloo"):
        torch.manual_seed(0)
        models[name] = nn.parallel.DistributedDataParallel(make_model())
    state = OmniReduceState(config, sparsification=parse_sparsification(sparsify))
    models["omnireduce"].register_comm_hook(state, omnireduce_hook)
    optimisers = {name: torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9) for name, model in models.items()}
    gradient_bytes = sum(ring_allreduce_bytes(p, world_size) for p in models["gloo"].parameters())
    rows = []
    if rank == 0:
        print(f"{'step':>5} {'loss omnireduce':>16} {'loss gloo':>10} {'density':>8} {'bytes omnireduce':>17} "
              f"{'bytes gloo (ring)':>18}", flush=True)
    for step in range(steps):
        inputs, targets = make_data(rank, step, batch)
        losses = {}
        for name, model in models.items():
            loss = loss_of(model(inputs), targets)
            optimisers[name].zero_grad()
            loss.backward()
            optimisers[name].step()
            losses[name] = float(loss.detach())
        report = state.last_report
        assert report is not None
        row = {"step": step, "loss_omnireduce": losses["omnireduce"], "loss_gloo": losses["gloo"],
               "density": report.density, "bytes_omnireduce": report.bytes_sent, "bytes_gloo": gradient_bytes,
               "fallback_buckets": report.fallback_buckets, "seconds": report.seconds}
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
            "seconds_in_hook": sum(row["seconds"] for row in rows)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", choices=sorted(MODELS), default="recommender")
    parser.add_argument("--ranks", type=int, default=2, choices=(2, 3, 4))
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--batch", type=int, default=256, help="samples per rank and step")
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--sparsify", help="none, topk:FRACTION or threshold:VALUE (default: the model's)")
    parser.add_argument("--json", type=Path, help="write the per-step rows and the summary here")
    args = parser.parse_args(argv)
    sparsify = args.sparsify or MODELS[args.model][3]
    parse_sparsification(sparsify)
    with tempfile.TemporaryDirectory(prefix="omnireduce-example-") as scratch:
        run_dir = Path(scratch)
        out = run_dir / "rank0.json"
        with loopback_switch(args.ranks, run_dir / "logs") as switch:
            run_ranks(train, args.ranks, (switch.config, args.model, sparsify, args.steps, args.batch, args.lr,
                                          str(out)), run_dir)
        result = json.loads(out.read_text())
    summary = summarise(result["rows"], window=max(1, args.steps // 10))
    print(f"\n{args.model}, {args.ranks} ranks, {args.steps} steps, sparsification {sparsify}")
    print(f"  final loss (mean of the last {max(1, args.steps // 10)} steps): omnireduce "
          f"{summary['final_loss_omnireduce']:.5f}, gloo {summary['final_loss_gloo']:.5f} "
          f"({100 * summary['relative_difference']:+.2f}%)")
    print(f"  mean density sent {100 * summary['mean_density']:.2f}%; bytes sent by rank 0: omnireduce "
          f"{summary['bytes_omnireduce']:,}, gloo ring estimate {summary['bytes_gloo']:,} "
          f"({summary['bytes_omnireduce'] / summary['bytes_gloo']:.3f}x); {summary['seconds_in_hook']:.1f} s in "
          f"the hook")
    if result["disabled_reason"]:
        print(f"  NOTE: the hook fell back to gloo: {result['disabled_reason']}")
    if args.json:
        args.json.write_text(json.dumps({"args": vars(args) | {"json": str(args.json)}, "sparsify": sparsify,
                                         "summary": summary, "rows": result["rows"]}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
