"""The walk's values in TensorBoard: `tensorboard --logdir runs/tb-example`.

    pip install "sgdwalk[tensorboard]"
    python examples/tensorboard_sink.py [--out runs/tb-example] [--steps 30]
"""

import argparse

import torch
import torch.nn.functional as F

from sgdwalk import Walk
from sgdwalk.integrations.tensorboard import TensorBoardSink


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/tb-example")
    parser.add_argument("--steps", type=int, default=30)
    args = parser.parse_args()

    torch.manual_seed(0)
    x, y = torch.randn(512, 20), torch.randint(0, 4, (512,))
    model = torch.nn.Sequential(torch.nn.Linear(20, 64), torch.nn.ReLU(), torch.nn.Linear(64, 4))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    sink = TensorBoardSink(args.out)
    walk = Walk(model, probes="economy", sink=sink,
                loss_fn=lambda out, target: F.cross_entropy(out, target, reduction="none"))
    for _ in range(args.steps):
        idx = torch.randint(0, 512, (32,))
        walk.step(optimizer, x[idx], y[idx])
    sink.close()
    print(f"steps: {walk.step_count}")
    print(f"tensorboard --logdir {args.out}")


if __name__ == "__main__":
    main()
