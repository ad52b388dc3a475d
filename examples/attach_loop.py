"""The walk attached to an unchanged training loop: AdamW, clipping, a schedule.

    python examples/attach_loop.py [--steps 20]

`walk.attach(optimizer)` runs the probes from the optimizer's step hooks; the only line
added to the loop is `hooks.record(...)`, which lets the economy probe see the batch.
"""

import argparse

import torch
import torch.nn.functional as F

from sgdwalk import Walk
from sgdwalk.config import WalkConfig


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    args = parser.parse_args()

    torch.manual_seed(0)
    x, y = torch.randn(512, 20), torch.randint(0, 4, (512,))
    model = torch.nn.Sequential(torch.nn.Linear(20, 64), torch.nn.Tanh(), torch.nn.Linear(64, 4))
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.1)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=args.steps)
    walk = Walk(model, probes=WalkConfig(preset="economy"),
                loss_fn=lambda out, target: F.cross_entropy(out, target, reduction="none"))
    hooks = walk.attach(optimizer)

    for _ in range(args.steps):  # the user's loop, as it was
        idx = torch.randint(0, 512, (32,))
        loss = F.cross_entropy(model(x[idx]), y[idx])
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        hooks.record(loss, (x[idx], y[idx]))  # the one added line
        optimizer.step()
        schedule.step()
    hooks.remove()

    table = walk.table()
    print(f"steps: {walk.step_count}")
    print(f"median cos_update: {table['cos_update'].median():+.3f}")
    print(f"median height above the batch floor: {table['econ_height'].median():.4f}")


if __name__ == "__main__":
    main()
