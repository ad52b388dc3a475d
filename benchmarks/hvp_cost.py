"""One Hessian-vector product inside an eigenvalue solve: ours against PyHessian's recipe.

    python benchmarks/hvp_cost.py [--quick] [--threads N] [--clock cpu|wall]

On the 512-example probe set (BN on batch statistics, as the sharpness probe probes), side
by side in one process, interleaved and repeated (benchmarks/common.py), per product H v:

    redo        `Hessian @ v`: forward, create_graph backward and the second backward at
                every product, chunk by chunk (what a solve did before `Hessian.kept`)
    kept        `Hessian.kept() @ v`: one backward through the gradient's kept graph (what
                the sharpness probe does now), the probe's chunks of 256
    kept 1x512  the same on one chunk of 512, PyHessian's data
    pyhessian   PyHessian's `hessian_vector_product` (PyHessian is not a dependency and is
                not installed; its recipe, written out): `loss.backward(create_graph=True)`
                once on the whole batch, `gradsH = [p.grad for p in params]`, then per
                product `torch.autograd.grad(gradsH, params, grad_outputs=v,
                only_inputs=True, retain_graph=True)` with v a list of per-parameter
                tensors. It runs on a copy of the model whose BN layers use batch
                statistics without tracking, so that both compute the same H.

A second table measures the curvature-along-the-step probe in the project's trainer
(`Trainer.update`, SGD lr 0.05, one batch of 128, the module in train mode), three trainers
of one initialisation stepped in turn (their trajectories are the same bit for bit):

    plain       a step without the walk (NoHooks)
    own graph   a step with a walk of the curvature probe alone, `step_graphs=False`: the
                probe's own forward, create_graph backward and second backward (as before)
    shared      the same walk, the step's backward with create_graph and one more backward
                for H u_t after the step (`functional.hvp.StepGraph`)

`graph MiB` is what the shared step holds from its backward to the end of the step: the
distinct storages autograd saved in its forward and create_graph backward, plus the copy
of theta_t. `|shared - own| / |own|` compares the curv_kappa the two measured on the same
steps (float32).

Ratios are per round, against pyhessian (target: kept <= 1.1). `build` is what `kept()`
costs once per solve (forward and create_graph backward), in products. `graph MiB` is what
the kept graph holds: the bytes of every tensor autograd saved while building it (distinct
storages, counted by `saved_tensors_hooks`), the memory a solve holds until it ends.
"""

from __future__ import annotations

import copy
import statistics
import warnings
from functools import partial

import torch
import torch.nn.functional as F

from common import Options, interleave, per_round, script, setting, show, table
from sgdwalk.config import DataConfig, ModelConfig, OptimConfig, TrainConfig
from sgdwalk.functional.flat import ParamLayout
from sgdwalk.functional.hvp import StepGraph
from sgdwalk.losses import cross_entropy
from sgdwalk.probes.batch import Pairs
from sgdwalk.probes.curvature import Curvature
from sgdwalk.probes.evaluator import LossEvaluator
from sgdwalk.probes.walk import Walk, _chunks
from sgdwalk.train import NoHooks, Trainer, loop
from sgdwalk.train.batches import Batches
from sgdwalk.train.cadence import Cadence

MNIST_LIKE = DataConfig(name="synthetic", synthetic_shape=(1, 28, 28), synthetic_n=3000,
                        synthetic_classes=10)
MODELS = {
    # key: (label, data config or None for the setting's, model config or None)
    "mlp": ("MLP 64-128-64-10 BN, digits (default)", None, None),
    "mnist-mlp-bn": ("MLP 784-500-350-10 BN", MNIST_LIKE,
                     ModelConfig(name="mlp", widths=(500, 350))),
    "vgg11-x0.25": ("VGG-11 BN x0.25", None, None),
}


def saved_mib(build) -> float:
    """MiB of distinct storages autograd saves while `build()` runs (the graph it keeps)."""
    seen: dict[int, int] = {}

    def pack(t):
        s = t.untyped_storage()
        seen[s.data_ptr()] = s.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        kept = build()
    return kept, sum(seen.values()) / 2**20


def pyhessian_operator(model: torch.nn.Module, x, y):
    """PyHessian's single-batch setup: the gradient's graph kept, products by autograd.grad."""
    twin = copy.deepcopy(model).train()
    for m in twin.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.track_running_stats = False
            m.running_mean = m.running_var = None
    params = [p for p in twin.parameters() if p.requires_grad]
    twin.zero_grad()
    loss = F.cross_entropy(twin(x), y)
    with warnings.catch_warnings():  # PyHessian's own call: the p.grad cycle it warns of
        warnings.filterwarnings("ignore", ".*create_graph=True", UserWarning)
        loss.backward(create_graph=True)
    grads = [p.grad for p in params]

    def product(v_list):
        return torch.autograd.grad(grads, params, grad_outputs=v_list, only_inputs=True,
                                   retain_graph=True)

    return params, product


def run_model(key: str, opts: Options, rounds: int):
    label, data_cfg, model_cfg = MODELS[key]
    s = setting(key if data_cfg is None else "mlp", model_cfg=model_cfg, data_cfg=data_cfg)
    model = copy.deepcopy(s.model).train()
    layout = ParamLayout.of(model)
    ev = LossEvaluator(model, layout)
    x, y = s.data.probe.x[:512], s.data.probe.y[:512]
    chunks = _chunks(Pairs(cross_entropy), (x, y), 256)
    theta = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
    v = torch.randn(theta.numel(), generator=torch.Generator().manual_seed(0))
    hessian = ev.hessian(chunks, theta)
    kept, kept_mib = saved_mib(hessian.kept)
    kept512, kept512_mib = saved_mib(ev.hessian([(x, y)], theta).kept)
    (params, product), py_mib = saved_mib(lambda: pyhessian_operator(model, x, y))
    v_list = [t.reshape(p.shape) for t, p in zip(v.split([p.numel() for p in params]), params)]
    # the same H (up to float32 round-off): checked, not assumed
    ref = torch.cat([h.reshape(-1) for h in product(v_list)])
    got = kept512 @ v
    err = float(torch.linalg.vector_norm(got - ref) / torch.linalg.vector_norm(ref))
    fns = {
        "redo": lambda: hessian @ v,
        "kept": lambda: kept @ v,
        "kept 1x512": lambda: kept512 @ v,
        "pyhessian": lambda: product(v_list),
        "build": lambda: hessian.kept().close(),
    }
    t = interleave(fns, rounds, opts.now, warm=1)
    row = [label, f"{theta.numel():,}", f"{statistics.median(t['pyhessian']) * 1e3:.2f}"]
    row += [show(per_round(t, name, "pyhessian")) for name in ("redo", "kept", "kept 1x512")]
    row += [show(per_round(t, "build", "kept")),
            f"{kept_mib:.1f} / {kept512_mib:.1f} / {py_mib:.1f}", f"{err:.1e}"]
    for op in (kept, kept512):
        op.close()
    return row


def step_graph(key: str, opts: Options, rounds: int):
    """A trainer step with the curvature probe, by the step's graph or its own, and plain."""
    label, data_cfg, model_cfg = MODELS[key]
    s = setting(key if data_cfg is None else "mlp", model_cfg=model_cfg, data_cfg=data_cfg)
    x, y = s.data.train.x[:128], s.data.train.y[:128]
    chunks = [(x, y)]

    def trainer(walk: bool, shared: bool = True) -> Trainer:
        model = copy.deepcopy(s.model).train()
        hooks = Walk(model, [Curvature()]) if walk else NoHooks()
        t = Trainer(model, torch.optim.SGD(model.parameters(), lr=0.05),
                    Batches(x, y, OptimConfig(batch_size=len(y)), None, seed=0),
                    Cadence.of(TrainConfig(), 1, rounds), hooks=hooks, progress=False,
                    step_graphs=shared)
        t.transform_state = t.transforms.init(list(model.parameters()))
        return t

    runs = {"plain": trainer(False), "own graph": trainer(True, False),
            "shared": trainer(True, True)}
    mib = graph_mib(runs["shared"], chunks)  # its first step; the others' here
    runs["plain"].update(chunks)
    runs["own graph"].update(chunks)
    t = interleave({name: partial(r.update, chunks) for name, r in runs.items()}, rounds,
                   opts.now, warm=1)
    rows = {name: [v for _, v in r.hooks.rows] for name, r in runs.items() if name != "plain"}
    assert all(v["curv_step_graph"] == 1.0 for v in rows["shared"])
    assert all(v["curv_step_graph"] == 0.0 for v in rows["own graph"])
    err = max(abs(a["curv_kappa"] - b["curv_kappa"]) / abs(b["curv_kappa"])
              for a, b in zip(rows["shared"], rows["own graph"], strict=True))
    return [label, f"{statistics.median(t['plain']) * 1e3:.2f}",
            show(per_round(t, "own graph", "plain")), show(per_round(t, "shared", "plain")),
            show(per_round(t, "shared", "own graph")), f"{mib:.1f}", f"{err:.1e}"]


def graph_mib(trainer: Trainer, chunks) -> float:
    """MiB the shared step holds: autograd's saved storages in the step's forward and
    create_graph backward (counted in StepGraph's own pack hook), plus its copy of theta_t.
    One update of `trainer`."""
    seen: dict[int, int] = {}

    class Counting(StepGraph):
        def _pack(self, t):
            storage = t.untyped_storage()
            if storage.data_ptr() not in self._storages:
                seen[storage.data_ptr()] = storage.nbytes()
            return super()._pack(t)

    loop.StepGraph = Counting
    try:
        trainer.update(chunks)
    finally:
        loop.StepGraph = StepGraph
    copy_bytes = sum(p.untyped_storage().nbytes() for p in trainer.model.parameters())
    return (sum(seen.values()) + copy_bytes) / 2**20


def run(opts: Options) -> None:
    keys = ["mlp"] if opts.quick else list(MODELS)
    rounds = 5 if opts.quick else 15
    rows = [run_model(k, opts, rounds) for k in keys]
    steps = [step_graph(k, opts, rounds) for k in keys]
    print("\n## One Hessian-vector product in a solve: / PyHessian's (same model, same 512 "
          "examples)\n")
    print(table(["model", "params", "pyhessian ms", "redo", "kept", "kept 1x512",
                 "build (products)", "graph MiB kept / kept 1x512 / pyhessian",
                 "|kept - pyhessian| / |pyhessian|"], rows))
    print("\nMedian [IQR] of per-round ratios. Target: kept <= 1.10 x pyhessian.")
    print("\n## The curvature along the step in the trainer: the step's graph or its own "
          "(batch 128)\n")
    print(table(["model", "plain step ms", "own graph / plain", "shared / plain",
                 "shared / own graph", "graph MiB (shared)", "|shared - own| / |own| kappa"],
                steps))
    print("\nMedian [IQR] of per-round ratios.")


def main(argv=None) -> None:
    script(run, __doc__, argv)


if __name__ == "__main__":
    main()
