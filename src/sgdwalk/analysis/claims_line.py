"""Claims decided on the line curves of single runs: C1, C2, C10 and C12 (GD).

Each works on one run or pools the steps of every eligible run of a sweep (bootstrap over
steps within runs and over seeds within conditions).
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from sgdwalk.analysis.bootstrap import IDENTITY, Blocks, estimate
from sgdwalk.analysis.common import (
    eligible,
    epoch_groups,
    excluded_note,
    missing,
    new_claim,
    seeds_by_condition,
    steps_used,
)
from sgdwalk.analysis.tables import Tables, has_data, pick_line_source, series
from sgdwalk.analysis.verdict import Part

MIN_GROUP = 10  # line curves per analysed epoch (sparser epochs are merged)
SHARE = 0.5  # C1, C2: "most steps"
CROSSING_MAX = 0.1  # C10: "rarely"

LINE_NEEDS = ("line_*_{cols} from the line probe (walk.line; walk.preset=line or higher; "
              "e.g. `sgdwalk sweep trajectory`)")


def _share(flags: dict, conds: dict, draw) -> float:
    """Share of 1s over the runs' flags: seeds drawn within conditions, steps in blocks."""
    tot = cnt = 0
    for rs in conds.values():
        for r in draw.seeds(rs):
            s, n = draw.total(flags[r])
            tot, cnt = tot + s, cnt + n
    return tot / cnt if cnt else np.nan


def _flags(t: Tables, runs, columns, flag) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """run -> (0/1 flags, 1-based epochs) over the steps where all columns are finite."""
    out = {}
    for r in runs.index:
        rows = series(t.steps, r, *columns)
        if len(rows):
            spe = runs.loc[r, "steps_per_epoch"]
            spe = spe if np.isfinite(spe) and spe > 0 else 1
            out[r] = (np.asarray(flag(rows), dtype=float),
                      rows["step"].to_numpy() // int(spe) + 1)
    return out


def interior_convex_part(t: Tables, runs, rng, n_boot):
    """C1's part on `runs`: (Part, run ids, steps used, details) or None without inputs."""
    src = pick_line_source(t.steps, ("interior", "convex"), list(runs.index))
    if src is None:
        return None
    cols = (f"line_{src}_interior", f"line_{src}_convex")
    flags = _flags(t, runs, cols, lambda rows: (rows[cols[0]] == 1) & (rows[cols[1]] == 1))
    cells = {}  # run -> {group label (first epoch): flags of its steps}
    for r, (f, epochs) in flags.items():
        groups = epoch_groups(epochs, MIN_GROUP)
        cells[r] = {int(lab): Blocks(f[groups == lab]) for lab in np.unique(groups)}
    counts = defaultdict(int)
    for groups in cells.values():
        for lab, f in groups.items():
            counts[lab] += f.n
    labels = sorted(lab for lab, n in counts.items() if n >= MIN_GROUP)
    conds = seeds_by_condition(runs.loc[list(cells)])

    def shares(draw):
        tot, cnt = defaultdict(float), defaultdict(int)
        for rs in conds.values():
            for r in draw.seeds(rs):
                for lab, f in cells[r].items():
                    s, n = draw.total(f)
                    tot[lab] += s
                    cnt[lab] += n
        return {lab: tot[lab] / cnt[lab] for lab in labels}

    def stat(draw):
        s = shares(draw)
        return min(s.values()) if s else np.nan

    est = estimate(stat, rng, n_boot)[""]
    n = sum(counts.values())
    part = Part.from_estimate(
        "min_epoch_share", f"lowest share, over analysed epochs, of steps with an interior "
        f"convex floor (line_{src})", est, SHARE, "above", n=n, min_n=MIN_GROUP)
    details = {"line_source": src, "share_by_epoch": {str(k): v for k, v in
                                                     shares(IDENTITY).items()}}
    return part, list(cells), steps_used(t, list(cells), *cols), details


def height_cosine_parts(t: Tables, runs, rng, n_boot):
    """C2's two parts on `runs`; None when height or cosine inputs are missing.
    Returns (parts, run ids, steps used, details) or (None, what is missing)."""
    ids = list(runs.index)
    src = pick_line_source(t.steps, ("height", "eps"), ids)
    cos = next((c for c in ("cos_update", "cos_grad") if has_data(t.steps, c, ids)), None)
    if src is None or cos is None:
        need = []
        if src is None:
            need.append(LINE_NEEDS.format(cols="height and line_*_eps"))
        if cos is None:
            need.append("cos_update from the trajectory probe (walk.trajectory; preset cheap)")
        return None, "; ".join(need)
    h, e = f"line_{src}_height", f"line_{src}_eps"
    high = _flags(t, runs, (h, e), lambda rows: rows[h] > rows[e])
    neg = _flags(t, runs, (cos,), lambda rows: rows[cos] < 0)
    used = sorted(set(high) & set(neg))
    conds = seeds_by_condition(runs.loc[used])
    blocks = {key: {r: Blocks(flags[r][0]) for r in used}
              for key, flags in (("height", high), ("cos", neg))}

    def stat(draw):
        return {key: _share(b, conds, draw) for key, b in blocks.items()}

    est = estimate(stat, rng, n_boot)
    n_h = sum(len(high[r][0]) for r in used)
    n_c = sum(len(neg[r][0]) for r in used)
    parts = [
        Part.from_estimate("share_height_above_noise", f"share of steps with height > eps "
                           f"({h} > {e})", est["height"], SHARE, "above", n_h, MIN_GROUP),
        Part.from_estimate("share_negative_cosine", f"share of steps with {cos} < 0",
                           est["cos"], SHARE, "above", n_c, MIN_GROUP),
    ]
    steps = steps_used(t, used, h, e)
    return parts, used, steps, {"line_source": src, "cosine": cos}


def claim_c1(t: Tables, rng, n_boot, algorithms=("sgd",), cid="C1"):
    runs = eligible(t, algorithms, cid)
    got = interior_convex_part(t, runs, rng, n_boot)
    if got is None:
        return missing(cid, LINE_NEEDS.format(cols="interior and line_*_convex")
                       + _alg_note(algorithms))
    part, used, steps, details = got
    return new_claim(cid, parts=[part], runs=used, steps=steps, details=details,
                     notes=excluded_note(t, algorithms, cid))


def claim_c2(t: Tables, rng, n_boot, algorithms=("sgd",), cid="C2"):
    runs = eligible(t, algorithms, cid)
    got = height_cosine_parts(t, runs, rng, n_boot)
    if got[0] is None:
        return missing(cid, got[1] + _alg_note(algorithms))
    parts, used, steps, details = got
    return new_claim(cid, parts=parts, runs=used, steps=steps, details=details,
                     notes=excluded_note(t, algorithms, cid))


def claim_c10(t: Tables, rng, n_boot):
    runs = eligible(t, cid="C10")
    ids = list(runs.index)
    src = pick_line_source(t.steps, ("crossing",), ids)
    if src is None:
        return missing("C10", LINE_NEEDS.format(cols="crossing"))
    col = f"line_{src}_crossing"
    flags = _flags(t, runs, (col,), lambda rows: rows[col] == 1)
    conds = seeds_by_condition(runs.loc[list(flags)])
    blocks = {r: Blocks(f) for r, (f, _) in flags.items()}
    est = estimate(lambda draw: _share(blocks, conds, draw), rng, n_boot)[""]
    n = sum(len(f) for f, _ in flags.values())
    part = Part.from_estimate("share_crossing", f"share of steps whose line crosses a barrier "
                              f"above both ends beyond eps ({col} == 1)", est, CROSSING_MAX,
                              "below", n, MIN_GROUP)
    return new_claim("C10", parts=[part], runs=list(flags),
                     steps=steps_used(t, list(flags), col), details={"line_source": src},
                     notes=excluded_note(t, cid="C10"))


def claim_c12(t: Tables, rng, n_boot):
    runs = eligible(t, ("gd",), "C12")
    if not len(runs):
        return missing("C12", "a full-batch GD run (optim.algorithm=gd) with the line probe "
                       "(walk.preset=line or higher)")
    got1 = interior_convex_part(t, runs, rng, n_boot)
    got2 = height_cosine_parts(t, runs, rng, n_boot)
    if got1 is None or got2[0] is None:  # the first input missing, in C1's or C2's words
        need = LINE_NEEDS.format(cols="interior and line_*_convex") if got1 is None \
            else got2[1]
        return missing("C12", need + " on a GD run (optim.algorithm=gd)")
    part, used1, steps, d1 = got1
    parts, used2, _, d2 = got2
    used = sorted(set(used1) | set(used2))
    return new_claim("C12", parts=[part, *parts], runs=used, steps=steps,
                     details={**d1, **d2}, notes=excluded_note(t, ("gd",), "C12"))


def _alg_note(algorithms) -> str:
    return "" if tuple(algorithms) == ("sgd",) else f" on runs with optim.algorithm in " \
        f"{', '.join(algorithms)}"
