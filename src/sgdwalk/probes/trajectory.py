"""Trajectory probe: cosines of consecutive gradients and updates, norms and distances.

Definitions (global, and per layer as vectors in `layout.layers` order):
    cos_grad         cos(g_{t-1}, g_t)              mini-batch gradients, no weight decay
    cos_grad_wd      cos(g_{t-1} + wd theta_{t-1}, g_t + wd theta_t)   as the original code;
                     wd per parameter, its optimizer group's (ctx.weight_decays)
    cos_update       cos(u_{t-1}, u_t)              applied updates
    cos_grad_update  cos(g_t, u_t)                  -1 for plain SGD without weight decay
    grad_norm        ||g_t||
    update_norm      ||u_t||
    dist_init        ||theta_{t+1} - theta_0||
    path_length      sum_{s<=t} ||u_s||
    dist_path_ratio  dist_init / path_length        1 for a straight walk
Cosines that involve step t-1 are NaN at the first step.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from sgdwalk.probes.base import Probe
from sgdwalk.probes.registry import register_probe

if TYPE_CHECKING:
    import numpy as np
    import torch

    from sgdwalk.probes.context import StepContext

# torch, NumPy and the kernels are imported inside the methods that use them, so that
# registering this probe (which `import sgdwalk.config` does) imports no torch.


@register_probe("trajectory", schedule="every:1", preset="cheap",
                summary="cosines, norms, distance from init, path length")
class Trajectory(Probe):
    """Norms, distances and cosines of consecutive steps, globally and per layer.

    All per-layer dot products of a step come from one `ctx.layer_dots` call on float64
    copies of the step's vectors (exact products, float64 sums), and one transfer of the
    small (layers, pairs) result; the rest is NumPy on per-layer numbers. The float64
    copies of g_t, u_t and g_t + wd theta_t become the previous step's vectors by swapping
    buffers, and their squared norms are carried to the next step, so a step writes four
    float64 vectors (g, u, d, w) and computes six to eight pairs. The previous vectors are
    kept only when the next step is scheduled.
    """

    tracks_history = True  # path length and the previous step's vectors need every step

    def __init__(self, schedule=None, per_layer: bool = True):
        super().__init__(schedule)
        self.per_layer = per_layer
        self.theta0: torch.Tensor | None = None
        self.prev_grad: torch.Tensor | None = None  # float64 copies, stored in theta's dtype
        self.prev_grad_wd: torch.Tensor | None = None  # None: the last step had no decay
        self.prev_update: torch.Tensor | None = None
        self.path_length = 0.0
        self.path_layers: torch.Tensor | None = None
        self._seen: tuple | None = None  # (step, {"a.b": per-layer <a, b>}, totals) of observe
        self._work: dict[str, torch.Tensor] = {}  # float64 scratch: g, u, d, w (= g + wd theta)
        self._carry: tuple | None = None  # (step, {"pg"|"pu"|"pw": per-layer squared norm})
        self._wd_flat: tuple | None = None  # (weight_decays, their flat vector) when mixed

    def _init(self, ctx: StepContext) -> None:
        if self.theta0 is None:
            self.theta0 = ctx.theta.clone()
        if self.path_layers is None:  # on the host: per-layer values are NumPy's
            import torch

            self.path_layers = torch.zeros(len(ctx.layout.layers), dtype=torch.float64)

    def _scratch(self, name: str, like: torch.Tensor) -> torch.Tensor:
        """The float64 scratch vector `name` shaped like `like` (allocated on first use)."""
        buf = self._work.get(name)
        if buf is None or buf.shape != like.shape or buf.device != like.device:
            import torch

            buf = self._work[name] = torch.empty(like.shape, dtype=torch.float64,
                                                 device=like.device)
        return buf

    def observe(self, ctx: StepContext) -> dict:
        self._init(ctx)
        v = self._vectors(ctx)
        dot = self._dots(ctx, v)
        tot = {name: float(layers.sum()) for name, layers in dot.items()}  # sums over layers
        self._seen = (ctx.step, dot, tot)
        # <g_t, u_t> for the probes after this one (economy's f'(0), curvature's floor): the
        # same exact products and float64 sums as ctx.grad_dot_update, spared a second pass
        ctx.cache.setdefault("grad_dot_update", tot["g.u"])
        step_norm = math.sqrt(tot["u.u"])
        path = self.path_length + step_norm
        dist = math.sqrt(tot["d.d"])
        nan = math.nan
        out = {
            "grad_norm": math.sqrt(tot["g.g"]),
            "update_norm": step_norm,
            "cos_grad": nan,
            "cos_grad_wd": nan,
            "cos_update": nan,
            "cos_grad_update": _cos1(tot, "g", "u"),
            "dist_init": dist,
            "path_length": path,
            "dist_path_ratio": dist / path if path > 0 else nan,
        }
        if "pg" in v:
            out["cos_grad"] = _cos1(tot, "pg", "g")
            out["cos_update"] = _cos1(tot, "pu", "u")
            out["cos_grad_wd"] = _cos1(tot, "pw", "w") if "w" in v else out["cos_grad"]
        if self.per_layer:
            out |= _per_layer(dot, "pg" in v, self.path_layers.numpy())
        return out

    def _vectors(self, ctx: StepContext) -> dict[str, torch.Tensor]:
        """Float64 vectors of the step, g u d (theta_{t+1} - theta_0) and w (g + wd theta),
        and of the step before, pg pu pw: exact copies, so every product below is exact."""
        import torch

        v = {k: self._scratch(k, ctx.theta) for k in "gud"}
        v["g"].copy_(ctx.grad)
        v["u"].copy_(ctx.update)
        torch.sub(ctx.theta_next, self.theta0, out=v["d"])  # rounded in theta's dtype, as ever
        if self.prev_grad is not None:
            v |= {"pg": self.prev_grad, "pu": self.prev_update}
            if any(ctx.weight_decays) or self.prev_grad_wd is not None:
                v["w"] = self._with_decay(ctx, self._scratch("w", ctx.theta))
                v["pw"] = self.prev_grad if self.prev_grad_wd is None else self.prev_grad_wd
        return v

    def _dots(self, ctx: StepContext, v: dict[str, torch.Tensor]) -> dict[str, np.ndarray]:
        """{"a.b": per-layer <a, b>} for every pair the metrics need, from one kernel call;
        the previous vectors' squared norms are carried from step t - 1 when it was observed."""
        carried = self._carry[1] if self._carry and self._carry[0] == ctx.step - 1 else {}
        names = ["g.g", "u.u", "g.u", "d.d"]
        if "pg" in v:
            names += ["pg.g", "pu.u"]
        if "w" in v:
            names += ["w.w", "pw.w"]
        names += [f"{k}.{k}" for k in ("pg", "pu", "pw") if k in v and k not in carried]
        pairs = [(v[a], v[b]) for a, b in (name.split(".") for name in names)]
        dots = ctx.layer_dots(pairs).cpu().numpy()  # (S, pairs)
        return {f"{k}.{k}": sq for k, sq in carried.items()} | {
            name: dots[:, j] for j, name in enumerate(names)}

    def after(self, ctx: StepContext) -> None:
        import numpy as np
        import torch

        self._init(ctx)
        seen = self._seen[1] if self._seen is not None and self._seen[0] == ctx.step else None
        self._seen, self._carry = None, None
        if seen is not None:
            uu = seen["u.u"]
        else:  # a step observe did not see
            uu = ctx.layer_dots([(ctx.update, ctx.update)])[:, 0].cpu().numpy()
        self.path_length += math.sqrt(float(uu.sum()))  # as observe's update_norm, bit for bit
        if self.per_layer:
            self.path_layers += torch.from_numpy(np.sqrt(uu))
        if self.schedule(ctx.step + 1):  # else nobody reads g_t and u_t: keep nothing
            self._keep(ctx, seen)

    def _keep(self, ctx: StepContext, seen: dict | None) -> None:
        """g_t, u_t, g_t + wd theta_t become the previous vectors: this step's float64
        copies by swapping buffers when observe made them (with their squared norms)."""
        if seen is not None:
            self.prev_grad, self._work["g"] = self._work["g"], self.prev_grad
            self.prev_update, self._work["u"] = self._work["u"], self.prev_update
        else:
            self.prev_grad = _keep64(self.prev_grad, ctx.grad)
            self.prev_update = _keep64(self.prev_update, ctx.update)
        if not any(ctx.weight_decays):
            self.prev_grad_wd = None  # g_{t-1} + 0 theta: cos_grad_wd is cos_grad
        elif seen is not None and "w.w" in seen:
            self.prev_grad_wd, self._work["w"] = self._work["w"], self.prev_grad_wd
        else:
            self.prev_grad_wd = _keep64(self.prev_grad_wd, self._with_decay(ctx))
        if seen is not None:
            carry = {"pg": seen["g.g"], "pu": seen["u.u"]}
            if self.prev_grad_wd is None or "w.w" in seen:
                carry["pw"] = seen["g.g"] if self.prev_grad_wd is None else seen["w.w"]
            self._carry = (ctx.step, carry)

    def _decay(self, ctx: StepContext) -> float | torch.Tensor:
        """The weight decay of theta's entries: one number when every parameter has the same
        (a single param group: the scalar product below is bit for bit the one-group code
        path), else a flat vector in theta's dtype, rebuilt only when the decays change."""
        wds = ctx.weight_decays
        if len(set(wds)) <= 1:
            return wds[0] if wds else 0.0
        if self._wd_flat is None or self._wd_flat[0] != wds:
            import torch

            flat = torch.empty_like(ctx.theta)
            for (a, b), wd in zip(ctx.layout.bounds, wds):
                flat[a:b] = wd
            self._wd_flat = (wds, flat)
        return self._wd_flat[1]

    def _with_decay(self, ctx: StepContext, out: torch.Tensor | None = None) -> torch.Tensor:
        """g_t + wd theta_t, rounded as `grad + weight_decay * theta` (into `out` if given),
        with each parameter's own wd.

        The sum is rounded in theta's dtype whatever `out`'s dtype: a float64 `out` holds the
        float32 value exactly.
        """
        import torch

        decayed = self._decay(ctx) * ctx.theta
        if out is None:
            return ctx.grad + decayed
        return torch.add(ctx.grad, decayed, out=out)

    def state_dict(self) -> dict:
        return {
            "theta0": self.theta0,
            "prev_grad": self._stored(self.prev_grad),
            "prev_grad_wd": self._stored(self.prev_grad_wd),
            "prev_update": self._stored(self.prev_update),
            "path_length": self.path_length,
            "path_layers": self.path_layers,
        }

    def load_state_dict(self, state: dict) -> None:
        self.theta0 = state["theta0"]
        self.prev_grad = _keep64(None, state["prev_grad"])
        self.prev_grad_wd = _keep64(None, state["prev_grad_wd"])
        self.prev_update = _keep64(None, state["prev_update"])
        self.path_length = state["path_length"]
        self.path_layers = state["path_layers"]
        self._seen, self._carry = None, None

    def _stored(self, v: torch.Tensor | None) -> torch.Tensor | None:
        """A kept float64 vector in theta's dtype: exact, since it holds theta-dtype values."""
        return None if v is None else v.to(self.theta0.dtype)


def _per_layer(dot: dict[str, np.ndarray], prev: bool, path_before: np.ndarray) -> dict:
    """The per-layer values (float64 vectors) from the per-layer dot products."""
    import numpy as np
    import torch

    def vec(x: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float64))

    def ratio(num, den):  # num / den; NaN where den is 0 (a layer that never moved)
        return np.divide(num, den, out=np.full_like(den, np.nan), where=den > 0)

    def cos(ab, aa, bb):  # ab / sqrt(aa bb) clamped to [-1, 1]; NaN where a norm is 0
        c = ratio(ab, np.sqrt(aa * bb))
        return np.maximum(np.minimum(c, 1.0, out=c), -1.0, out=c)  # NaN stays NaN

    gg, uu, dd = dot["g.g"], dot["u.u"], dot["d.d"]
    u_layers = np.sqrt(uu)
    path_layers = path_before + u_layers
    dist_layers = np.sqrt(dd)
    out = {
        "grad_norm_layers": vec(np.sqrt(gg)),
        "update_norm_layers": vec(u_layers),
        "dist_init_layers": vec(dist_layers),
        "path_length_layers": vec(path_layers),
        "dist_path_ratio_layers": vec(ratio(dist_layers, path_layers)),
        "cos_grad_update_layers": vec(cos(dot["g.u"], gg, uu)),
    }
    if prev:
        out["cos_grad_layers"] = vec(cos(dot["pg.g"], dot["pg.pg"], gg))
        out["cos_update_layers"] = vec(cos(dot["pu.u"], dot["pu.pu"], uu))
    return out


def _cos1(tot: dict[str, float], a: str, b: str) -> float:
    """cos(a, b) from the sums over layers of <a, b>, |a|^2, |b|^2, clamped to [-1, 1];
    NaN when a norm is 0."""
    den = math.sqrt(tot[f"{a}.{a}"] * tot[f"{b}.{b}"])
    if not den > 0:
        return math.nan
    c = tot[f"{a}.{b}"] / den
    return min(max(c, -1.0), 1.0) if c == c else c


def _keep64(buffer: torch.Tensor | None, value: torch.Tensor | None) -> torch.Tensor | None:
    """`value` as float64, copied into `buffer` when it fits (allocated on first use)."""
    import torch

    if value is None:
        return None
    if buffer is None or buffer.shape != value.shape or buffer.device != value.device:
        return value.detach().to(torch.float64, copy=True)
    return buffer.copy_(value)
