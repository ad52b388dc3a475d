"""The walk's values in Weights & Biases, offline (`wandb sync` uploads them later).

    pip install "sgdwalk[wandb]"
    python examples/wandb_offline.py [--dir runs/wandb-example] [--steps 30]

Barriers arrive k steps late; every value is logged against the metric `walk_step`, so
each lands at its own step.
"""

import argparse
import os

import torch
import torch.nn.functional as F

from sgdwalk import Walk
from sgdwalk.config import WalkConfig
from sgdwalk.integrations.wandb import WandbSink


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", default="runs/wandb-example")
    parser.add_argument("--steps", type=int, default=30)
    args = parser.parse_args()

    os.makedirs(args.dir, exist_ok=True)
    torch.manual_seed(0)
    x, y = torch.randn(512, 20), torch.randint(0, 4, (512,))
    model = torch.nn.Sequential(torch.nn.Linear(20, 64), torch.nn.ReLU(), torch.nn.Linear(64, 4))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    sink = WandbSink(project="sgdwalk-example", mode="offline", dir=args.dir)
    walk = Walk(model, probes=WalkConfig(preset="full", barrier="every:5", noise="off",
                                         sharpness="off", curvature="off"),
                probe_set=(x[:256], y[:256]), sink=sink,
                loss_fn=lambda out, target: F.cross_entropy(out, target, reduction="none"))
    for _ in range(args.steps):
        idx = torch.randint(0, 512, (32,))
        walk.step(optimizer, x[idx], y[idx])
    sink.finish()
    print(f"steps: {walk.step_count}")
    print(f"offline run under {args.dir}/wandb; upload with:")
    print(f"wandb sync {args.dir}/wandb/offline-run-*")


if __name__ == "__main__":
    main()
