"""Curvature and sharpness probes against closed forms and autograd's full Hessian."""

import pytest
import torch

from sgdwalk.config import WalkConfig
from sgdwalk.probes.curvature import Curvature
from sgdwalk.probes.presets import build_probes
from sgdwalk.probes.sharpness import Sharpness
from sgdwalk.probes.walk import Walk


@pytest.mark.parametrize("lr_kappa", [0.5, 1.5, 2.5])
def test_curvature_along_a_gd_step_is_the_closed_form(kit, lr_kappa):
    """kappa = g^T H g / |g|^2 for u = -lr g; the predicted floor is 1 / (lr kappa) and
    agrees with the line probe's floor (tolerance 1e-10 relative)."""
    problem = kit.make_least_squares()
    w0 = torch.zeros(problem.X.shape[1], dtype=torch.float64)
    g = problem.grad(w0)
    kappa = float(g @ problem.H @ g) / float(g @ g)
    lr = lr_kappa / kappa
    model = problem.model(w0)
    cfg = WalkConfig(preset="curvature", sharpness="off", line_sources=("batch",))
    walk = Walk(model, build_probes(cfg), loss_fn=kit.half_squared_error)
    v = kit.gd_step(problem, walk, model, lr).rows[-1][1]
    u = -lr * g
    assert v["curv_uhu"] == pytest.approx(float(u @ problem.H @ u), rel=1e-10)
    assert v["curv_kappa"] == pytest.approx(kappa, rel=1e-10)
    assert v["curv_lr_kappa"] == pytest.approx(lr_kappa, rel=1e-10)
    assert v["curv_pred_floor_a"] == pytest.approx(1 / lr_kappa, rel=1e-10)
    if lr_kappa > 1:  # inside the grid: the refined grid floor is exact on a parabola
        assert v["line_batch_floor_a"] == pytest.approx(v["curv_pred_floor_a"], rel=1e-9)


def test_sharpness_on_a_quadratic_is_the_spectrum(kit):
    """Top-3 eigenvalues of H = X^T X / n and the gradient's share of their eigenspace."""
    problem = kit.make_least_squares(P=10)
    w0 = torch.zeros(10, dtype=torch.float64)
    model = problem.model(w0)
    probe = Sharpness(k=3, tol=1e-10, max_iter=50)
    walk = Walk(model, [probe], loss_fn=kit.half_squared_error,
                probe_set=(problem.X, problem.y), probe_batch=16)  # 3 chunks
    lr = 0.01
    v = kit.gd_step(problem, walk, model, lr).rows[-1][1]
    lams, vecs = torch.linalg.eigh(problem.H)
    top = lams.flip(0)[:3]
    torch.testing.assert_close(v["sharp_eigs"], top, rtol=1e-9, atol=0)
    assert v["sharp_lambda_max"] == pytest.approx(float(top[0]), rel=1e-9)
    assert v["sharp_lr_lambda"] == pytest.approx(lr * float(top[0]), rel=1e-9)
    assert v["sharp_residual"] < 1e-10 and 3 <= v["sharp_matvecs"] <= 10
    g = problem.grad(w0)
    coords = vecs.flip(1)[:, :3].T @ g
    assert v["align_top1"] == pytest.approx(float(coords[0] ** 2 / (g @ g)), rel=1e-8)
    assert v["align_topk"] == pytest.approx(float(coords @ coords / (g @ g)), rel=1e-8)


@pytest.mark.parametrize("batchnorm", [False, True])
def test_sharpness_of_a_network_matches_eigvalsh_of_its_hessian(kit, batchnorm):
    """Tiny tanh MLP (31 or 39 parameters), probe set in 3 chunks: Lanczos through the
    probe against torch.linalg.eigvalsh of autograd's full Hessian (1e-8 relative)."""
    model = kit.tiny_mlp(batchnorm=batchnorm)
    x, y = kit.classification_data(n=24)
    chunks = list(zip(x.split(8), y.split(8)))
    theta = kit.flat_params(model)
    H = torch.autograd.functional.hessian(kit.hand_mlp_loss(model, chunks), theta)
    expected = torch.linalg.eigvalsh(H).flip(0)[:2]
    probe = Sharpness(k=2, tol=1e-10, max_iter=theta.numel())
    walk = Walk(model, [probe], probe_set=chunks)
    opt = torch.optim.SGD(model.parameters(), lr=0.0)  # measure at theta_0
    loss = torch.nn.functional.cross_entropy(model(x), y)
    loss.backward()
    walk.before_step(loss.detach(), (x, y))
    opt.step()
    v = walk.after_step(opt)
    torch.testing.assert_close(v["sharp_eigs"], expected, rtol=1e-8, atol=1e-12)


def test_warm_start_saves_matvecs_and_is_checkpointed(kit):
    problem = kit.make_least_squares(n=200, P=60, spread=10.0)
    w0 = torch.zeros(60, dtype=torch.float64)
    model = problem.model(w0)
    probe = Sharpness(k=1, tol=1e-6, max_iter=60)
    walk = Walk(model, [probe], loss_fn=kit.half_squared_error,
                probe_set=(problem.X, problem.y), probe_batch=1000)
    kit.gd_step(problem, walk, model, lr=1e-3, steps=2)
    (_, first), (_, second) = [r for r in walk.rows if r[0] >= 0]
    # H does not change on a quadratic: the warm start is already the eigenvector
    assert second["sharp_matvecs"] < first["sharp_matvecs"]
    assert second["sharp_lambda_max"] == pytest.approx(first["sharp_lambda_max"], rel=1e-6)
    state = walk.state_dict()
    again = Sharpness(k=1, tol=1e-6, max_iter=60)
    Walk(problem.model(w0), [again], loss_fn=kit.half_squared_error,
         probe_set=(problem.X, problem.y)).load_state_dict(state)
    assert torch.equal(again.vectors, probe.vectors)


def test_curvature_uses_the_step_batch_only(kit):
    """A probe on the step's batch needs no probe set."""
    Walk(kit.tiny_mlp(), [Curvature()])
    with pytest.raises(Exception, match="probe_set"):
        Walk(kit.tiny_mlp(), [Sharpness()])


# -- the curvature from the training step's own graph ---------------------------------------


def _trainer(model, walk, x, y, chunk=None, **kwargs):
    """A Trainer of `model` on (x, y) as one batch (GD; chunks of `chunk` examples), SGD with
    momentum and weight decay, the walk as its hooks; stepped with `update`."""
    from sgdwalk.config import OptimConfig, TrainConfig
    from sgdwalk.train import Trainer
    from sgdwalk.train.batches import Batches
    from sgdwalk.train.cadence import Cadence

    optim = OptimConfig(algorithm="gd", gd_chunk=chunk or len(y))
    batches = Batches(x, y, optim, None, seed=0)
    opt = torch.optim.SGD(model.parameters(), lr=0.2, momentum=0.9, weight_decay=0.05)
    trainer = Trainer(model, opt, batches, Cadence.of(TrainConfig(), 1, 10, True), hooks=walk,
                      progress=False, **kwargs)
    trainer.transform_state = trainer.transforms.init(list(model.parameters()))
    return trainer


def _curvature_run(kit, model, steps=3, walk_kwargs=None, x=None, y=None, **kwargs):
    """(rows of the walk, theta_t of each step, u_t of each step) over `steps` updates."""
    if x is None:
        x, y = kit.classification_data(n=24)
    walk = Walk(model, [Curvature()], **(walk_kwargs or {}))
    trainer = _trainer(model, walk, x, y, **kwargs)
    thetas, updates = [], []
    for step in range(steps):
        thetas.append(kit.flat_params(model).clone())
        trainer.update(trainer.batches.batch(step))
        updates.append(kit.flat_params(model) - thetas[-1])
    return [v for s, v in walk.rows if s >= 0], thetas, updates


@pytest.mark.parametrize("batchnorm", [False, True])
def test_curvature_from_the_step_graph_is_the_old_path_and_the_full_hessian(kit, batchnorm):
    """Through the Trainer (SGD with momentum and weight decay, 3 updates, float64): u^T H u
    from the step's own graph equals the probe's own Hessian-vector product and autograd's
    full Hessian of the batch loss at theta_t (BN on the batch's statistics), 1e-10
    relative; and the trajectory is the same bit for bit."""
    x, y = kit.classification_data(n=24)
    shared, thetas, updates = _curvature_run(kit, kit.tiny_mlp(batchnorm=batchnorm))
    own, thetas_own, _ = _curvature_run(kit, kit.tiny_mlp(batchnorm=batchnorm),
                                        step_graphs=False)
    assert [v["curv_step_graph"] for v in shared] == [1.0] * 3
    assert [v["curv_step_graph"] for v in own] == [0.0] * 3
    assert all(torch.equal(a, b) for a, b in zip(thetas, thetas_own))
    for a, b, theta, u in zip(shared, own, thetas, updates):
        H = torch.autograd.functional.hessian(
            kit.hand_mlp_loss(kit.tiny_mlp(batchnorm=batchnorm), [(x, y)]), theta)
        assert a["curv_uhu"] == pytest.approx(float(u @ H @ u), rel=1e-10)
        for name in ("curv_uhu", "curv_kappa", "curv_lr_kappa", "curv_pred_floor_a"):
            assert a[name] == pytest.approx(b[name], rel=1e-10)


@pytest.mark.parametrize("case", ["dropout", "bn recalibrate", "bn eval", "gd chunks",
                                  "trainer off", "bn eval mode"])
def test_curvature_takes_its_own_graph_where_the_step_graph_is_not_its_hessian(kit, case):
    """Active dropout (the probe measures without it), BN policies other than "batch" or BN
    frozen in eval mode (the probe's BN is not the training forward's), a batch of several
    chunks (GD) and `step_graphs=False` take the probe's own product (`curv_step_graph` 0),
    whose values are those of a run without the shared path; what shares is recorded as 1."""
    def make(dropout=0.5):
        if case != "dropout":
            model = kit.tiny_mlp(batchnorm=True)
            if case == "bn eval mode":
                model[1].eval()
            return model
        torch.manual_seed(0)
        return torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(),
                                   torch.nn.Dropout(dropout), torch.nn.Linear(4, 3)).double()

    walk_kwargs = {"bn_policy": case[3:]} if case in ("bn recalibrate", "bn eval") else {}
    kwargs = {"chunk": 8} if case == "gd chunks" else {}
    if case == "trainer off":
        kwargs = {"step_graphs": False}
    rows, _, _ = _curvature_run(kit, make(), 2, walk_kwargs, **kwargs)
    own, _, _ = _curvature_run(kit, make(), 2, walk_kwargs, **{**kwargs, "step_graphs": False})
    assert [v["curv_step_graph"] for v in rows] == [0.0, 0.0]
    assert rows == own
    if case == "dropout":  # a dropout layer with p = 0 drops nothing: shared
        shared, _, _ = _curvature_run(kit, make(dropout=0.0), 1)
        assert shared[0]["curv_step_graph"] == 1.0
    if case == "bn recalibrate":  # a BN policy changes nothing without BN: shared
        shared, _, _ = _curvature_run(kit, kit.tiny_mlp(), 1, walk_kwargs)
        assert shared[0]["curv_step_graph"] == 1.0


def test_an_op_without_a_double_backward_falls_back_once_and_for_all(kit):
    """A GPT trained with fused attention (no double backward): the shared product fails at
    the first due step, the probe takes its own from there (its value that of a run
    without the shared path) and the walk stops asking for the graph."""
    ids, targets = kit.sequences(6, seed=3)
    from sgdwalk.losses import sequence_cross_entropy

    runs = []
    for share in (True, False):
        model = kit.tiny_gpt()
        walk = Walk(model, [Curvature()], loss_fn=sequence_cross_entropy)
        trainer = _trainer(model, walk, ids, targets, step_graphs=share,
                           loss_fn=lambda out, y: sequence_cross_entropy(out, y).mean())
        asked = []
        for step in range(2):
            asked.append(walk.wants_step_graph())
            trainer.update(trainer.batches.batch(step))
        runs.append(([v for s, v in walk.rows if s >= 0], asked))
    (shared, asked), (own, _) = runs
    assert asked == [True, False]
    assert [v["curv_step_graph"] for v in shared] == [0.0, 0.0]
    assert [v["curv_uhu"] for v in shared] == [v["curv_uhu"] for v in own]


def test_walk_step_shares_its_graph_and_a_users_loop_keeps_the_old_path(kit):
    """`Walk.step` keeps its backward's graph for the probe (1), a user's own loop calling
    before_step/after_step does not (0); the same parameters bit for bit after 3 steps of
    SGD with momentum, u^T H u equal to 1e-10 relative (float64, BN)."""
    from sgdwalk.losses import cross_entropy

    x, y = kit.classification_data(n=24)
    runs = []
    for own_loop in (False, True):
        model = kit.tiny_mlp(batchnorm=True)
        opt = torch.optim.SGD(model.parameters(), lr=0.2, momentum=0.9)
        walk = Walk(model, [Curvature()])
        for _ in range(3):
            if own_loop:
                opt.zero_grad(set_to_none=True)
                loss = cross_entropy(model(x), y).mean()  # the loss walk.step trains on
                loss.backward()
                walk.before_step(loss.detach(), (x, y))
                opt.step()
                walk.after_step(opt)
            else:
                walk.step(opt, x, y)
        runs.append((kit.flat_params(model), [v for s, v in walk.rows if s >= 0]))
    (theta, shared), (theta_own, own) = runs
    assert torch.equal(theta, theta_own)
    assert [v["curv_step_graph"] for v in shared] == [1.0] * 3
    assert [v["curv_step_graph"] for v in own] == [0.0] * 3
    for a, b in zip(shared, own):
        assert a["curv_uhu"] == pytest.approx(b["curv_uhu"], rel=1e-10)
