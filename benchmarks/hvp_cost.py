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

A second table measures what the curvature-along-the-step probe could save by sharing the
step's graph (the step's batch of 128, the module in train mode, as the step runs it):

    step            forward and backward of the batch loss (a plain step's gradient)
    step + probe    that, then the probe's own H u (`grad_and_hvp`: forward, create_graph
                    backward, second backward), as the curvature probe runs now
    shared          the step's backward with create_graph, then one backward for H u

Ratios are per round, against pyhessian (target: kept <= 1.1). `build` is what `kept()`
costs once per solve (forward and create_graph backward), in products. `graph MiB` is what
the kept graph holds: the bytes of every tensor autograd saved while building it (distinct
storages, counted by `saved_tensors_hooks`), the memory a solve holds until it ends.
"""

from __future__ import annotations

import copy
import statistics
import warnings

import torch
import torch.nn.functional as F

from common import Options, interleave, per_round, script, setting, show, table
from sgdwalk.config import DataConfig, ModelConfig
from sgdwalk.functional.flat import ParamLayout
from sgdwalk.functional.hvp import grad_and_hvp
from sgdwalk.losses import cross_entropy
from sgdwalk.probes.batch import Pairs
from sgdwalk.probes.evaluator import LossEvaluator
from sgdwalk.probes.walk import _chunks

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
    """The curvature along the step with and without the step's own graph."""
    label, data_cfg, model_cfg = MODELS[key]
    s = setting(key if data_cfg is None else "mlp", model_cfg=model_cfg, data_cfg=data_cfg)
    model = copy.deepcopy(s.model).train()
    params = list(model.parameters())
    x, y = s.data.train.x[:128], s.data.train.y[:128]
    u = [torch.randn_like(p) for p in params]
    layout = ParamLayout.of(model)
    u_flat = torch.cat([t.reshape(-1) for t in u])

    def step(create_graph=False):
        loss = F.cross_entropy(model(x), y)
        return torch.autograd.grad(loss, params, create_graph=create_graph)

    def own():
        step()
        theta = torch.cat([p.detach().reshape(-1) for p in params])
        views = layout.views

        def f(flat):
            return F.cross_entropy(torch.func.functional_call(model, views(flat), (x,)), y)

        return grad_and_hvp(f, theta, u_flat)

    def shared():
        g = step(create_graph=True)
        return torch.autograd.grad(g, params, grad_outputs=u)

    t = interleave({"step": step, "step + probe": own, "shared": shared}, rounds, opts.now,
                   warm=1)
    return [label, f"{statistics.median(t['step']) * 1e3:.2f}",
            show(per_round(t, "step + probe", "step")), show(per_round(t, "shared", "step")),
            show(per_round(t, "shared", "step + probe"))]


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
    print("\n## The curvature along the step: its own graph, or the step's (batch 128)\n")
    print(table(["model", "step ms", "step + probe / step", "shared / step",
                 "shared / (step + probe)"], steps))
    print("\nMedian [IQR] of per-round ratios.")


def main(argv=None) -> None:
    script(run, __doc__, argv)


if __name__ == "__main__":
    main()
