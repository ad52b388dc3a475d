"""The walk inside a Hugging Face `Trainer`, through `sgdwalk.integrations.transformers`.

    pip install "sgdwalk[transformers]"
    python examples/hf_trainer.py [--epochs 1]

The Trainer shows a callback neither the batch nor the loss: the walk measures the
trajectory and the line on the fixed probe set. The model computes its own loss, as
Trainer models do; the walk calls it on dict batches too and asks it for that loss per
example (`per_example_loss`).
"""

import argparse
import tempfile

import torch
import torch.nn.functional as F
import transformers

from sgdwalk.config import WalkConfig
from sgdwalk.integrations.transformers import WalkCallback


class Net(torch.nn.Module):
    """model(x=..., labels=...) -> (loss, logits), Hugging Face style: the batch mean for
    the Trainer, the per-example losses with reduction="none" for the walk."""

    def __init__(self):
        super().__init__()
        self.body = torch.nn.Sequential(torch.nn.Linear(20, 64), torch.nn.GELU(),
                                        torch.nn.Linear(64, 4))

    def forward(self, x, labels, reduction="mean"):
        logits = self.body(x)
        return F.cross_entropy(logits, labels, reduction=reduction), logits


class Rows(torch.utils.data.Dataset):
    def __init__(self, x, y):
        self.x, self.y = x, y

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        return {"x": self.x[i], "labels": self.y[i]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=1)
    args = parser.parse_args()

    torch.manual_seed(0)
    x, y = torch.randn(512, 20), torch.randint(0, 4, (512,))
    callback = WalkCallback(
        probes=WalkConfig(preset="line", economy="off", line_points=7),
        per_example_loss=lambda model, batch: model(**batch, reduction="none")[0],
        probe_set={"x": x[:256], "labels": y[:256]},
    )
    with tempfile.TemporaryDirectory() as out:
        training = transformers.TrainingArguments(
            output_dir=out, per_device_train_batch_size=32, num_train_epochs=args.epochs,
            learning_rate=0.05, optim="sgd", lr_scheduler_type="cosine", warmup_steps=2,
            report_to=[], save_strategy="no", logging_strategy="no", use_cpu=True,
            disable_tqdm=True)
        trainer = transformers.Trainer(model=Net(), args=training, train_dataset=Rows(x, y),
                                       callbacks=[callback])
        trainer.train()

    table = callback.walk.table()
    print(f"steps: {callback.walk.step_count}")
    print(f"median cos_update: {table['cos_update'].median():+.3f}")


if __name__ == "__main__":
    main()
