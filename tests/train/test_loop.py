"""The loop on its own: any object with the StepHooks methods, any store with RunStore's
writing methods; the hooks see the true gradient, the optimizer the transformed one."""

import copy

import torch
import torch.nn.functional as F

from sgdwalk.config import OptimConfig, TrainConfig
from sgdwalk.train import ClipByGlobalNorm, NoHooks, Trainer, chain
from sgdwalk.train.batches import Batches
from sgdwalk.train.cadence import Cadence


class MemoryStore:
    """The writing side of a RunStore, in memory."""

    def __init__(self):
        self.rows, self.meta, self.checkpoints = {}, {}, {}

    def log(self, step, values):
        self.rows.setdefault(step, {}).update(values)

    def flush(self):
        pass

    def update_meta(self, **fields):
        self.meta.update(fields)

    def save_checkpoint(self, step, state, keep=2):
        self.checkpoints[step] = copy.deepcopy(state)

    def latest_checkpoint(self):
        return max(self.checkpoints.items()) if self.checkpoints else None


class Recorder:
    """Hooks that keep what they saw: the gradient at before_step, theta at both hooks."""

    def __init__(self, model):
        self.model, self.seen = model, []

    def before_step(self, loss, batch, batch_size=None, full_batch=False):
        self.seen.append({"loss": loss, "batch": batch, "n": batch_size,
                          "grad": [p.grad.clone() for p in self.model.parameters()],
                          "theta": [p.detach().clone() for p in self.model.parameters()]})

    def after_step(self, optimizer):
        self.seen[-1]["next"] = [p.detach().clone() for p in self.model.parameters()]
        return {}

    def state_dict(self):
        return {"seen": len(self.seen)}

    def load_state_dict(self, state):
        pass


def _trainer(hooks=None, seed=0, total=6, clip=0.05):
    torch.manual_seed(seed)
    model = torch.nn.Linear(5, 3)
    gen = torch.Generator().manual_seed(9)
    x, y = torch.randn(32, 5, generator=gen), torch.randint(0, 3, (32,), generator=gen)
    cfg = OptimConfig(batch_size=8, lr=0.5)
    batches = Batches(x, y, cfg, augment=None, seed=1)
    cadence = Cadence.of(TrainConfig(), batches.steps_per_epoch, total)
    return Trainer(model, torch.optim.SGD(model.parameters(), lr=0.5), batches, cadence,
                   transforms=chain(ClipByGlobalNorm(clip)),
                   hooks=hooks(model) if hooks else NoHooks(), progress=False)


def test_hooks_see_the_true_gradient_and_the_step_applies_the_clipped_one():
    trainer = _trainer(hooks=Recorder)
    store = MemoryStore()
    outcome = trainer.run(store)
    assert outcome.status == "completed" and outcome.steps == 6
    assert [store.rows[t]["loss"] for t in range(6)] == [s["loss"] for s in trainer.hooks.seen]
    for seen in trainer.hooks.seen:
        ((x, y),) = seen["batch"]
        assert seen["n"] == len(y) == 8
        model = torch.nn.Linear(5, 3)
        with torch.no_grad():
            for p, value in zip(model.parameters(), seen["theta"]):
                p.copy_(value)
        true = torch.autograd.grad(F.cross_entropy(model(x), y), list(model.parameters()))
        assert all(torch.equal(a, b) for a, b in zip(seen["grad"], true))
        norm = torch.cat([g.flatten() for g in true]).norm()
        assert norm > 0.05  # so the step below really is clipped
        for before, after, g in zip(seen["theta"], seen["next"], true):
            torch.testing.assert_close(after, before - 0.5 * g * (0.05 / (norm + 1e-6)),
                                       rtol=1e-5, atol=1e-7)


def test_a_halted_loop_resumes_from_its_checkpoint_to_the_same_parameters():
    whole = _trainer(total=12)
    whole.run(MemoryStore())
    store = MemoryStore()
    assert _trainer(total=12).run(store, halt_at_step=7).status == "halted"
    assert max(store.checkpoints) == 4  # epoch ends: every 4 steps
    again = _trainer(total=12, seed=123)  # another init: the checkpoint must replace it
    assert again.run(store).steps == 12
    for a, b in zip(whole.model.parameters(), again.model.parameters()):
        assert torch.equal(a, b)
