"""The walk inside a PyTorch Lightning fit, through `sgdwalk.integrations.lightning`.

    pip install "sgdwalk[lightning]"
    python examples/lightning_callback.py [--epochs 1]
"""

import argparse

import lightning.pytorch as L
import torch
import torch.nn.functional as F

from sgdwalk.config import WalkConfig
from sgdwalk.integrations.lightning import WalkCallback


class Net(L.LightningModule):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(1, 8, 3, padding=1)
        self.bn = torch.nn.BatchNorm2d(8)
        self.head = torch.nn.Linear(8 * 8 * 8, 4)

    def forward(self, x):
        return self.head(F.relu(self.bn(self.conv(x))).flatten(1))

    def training_step(self, batch, batch_idx):
        x, y = batch
        return F.cross_entropy(self(x), y)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1, momentum=0.9)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=1)
    args = parser.parse_args()

    torch.manual_seed(0)
    x, y = torch.randn(256, 1, 8, 8), torch.randint(0, 4, (256,))
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=32)
    callback = WalkCallback(
        probes=WalkConfig(preset="line", line_points=7),
        loss_fn=lambda out, target: F.cross_entropy(out, target, reduction="none"),
        probe_set=(x[:128], y[:128]),
    )
    trainer = L.Trainer(max_epochs=args.epochs, accelerator="cpu", logger=False,
                        enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, callbacks=[callback])
    trainer.fit(Net(), loader)

    table = callback.walk.table()
    print(f"steps: {callback.walk.step_count}")
    print(f"median floor position on the probe set: {table['line_probe_alpha'].median():.3f}"
          if "line_probe_alpha" in table else f"columns: {sorted(table.columns)[:8]}")


if __name__ == "__main__":
    main()
