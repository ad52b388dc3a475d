"""One self-contained HTML report of a run or a sweep.

The file embeds everything it shows (figures as base64 PNG data URIs, inline CSS); it has
no scripts, fonts, stylesheets or links to fetch, so it opens offline and can be mailed.
Sections: the claims table, the figures with captions, the runs and their statuses
(diverged runs marked), each run's config (collapsible), and the versions used.
"""

from __future__ import annotations

import base64
import datetime as dt
import html
import math
from pathlib import Path

import pandas as pd

import sgdwalk
from sgdwalk.analysis.decide import N_BOOT, as_tables, decide_claims
from sgdwalk.analysis.summary import summarize_runs
from sgdwalk.analysis.verdict import MISSING
from sgdwalk.plots import make_figures
from sgdwalk.plots.base import Figure

CSS = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 2em auto;
       max-width: 72em; padding: 0 1em; color: #222; line-height: 1.4; }
h1 { font-size: 1.6em; } h2 { border-bottom: 1px solid #ccc; margin-top: 2em; }
table { border-collapse: collapse; font-size: 0.85em; margin: 0.5em 0; }
th, td { border: 1px solid #ddd; padding: 0.25em 0.5em; text-align: left; vertical-align: top; }
th { background: #f3f3f3; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.part td { color: #555; font-size: 0.95em; } tr.part td:first-child { border-top: none; }
.verdict { font-weight: bold; padding: 0.1em 0.4em; border-radius: 0.3em; white-space: nowrap; }
.supported { background: #d7f5d7; color: #145214; }
.contradicted { background: #f8d4d4; color: #7a1010; }
.inconclusive { background: #fbefc9; color: #6b5200; }
.missing { background: #e6e6e6; color: #444; }
.diverged { background: #f8d4d4; color: #7a1010; font-weight: bold; }
figure { margin: 1.5em 0; } figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { font-size: 0.9em; color: #444; max-width: 60em; }
p.skipped { color: #666; font-style: italic; }
details { margin: 0.3em 0; } summary { cursor: pointer; }
pre { background: #f7f7f7; padding: 0.6em; overflow-x: auto; font-size: 0.85em; }
"""

VERSION_KEYS = ("sgdwalk", "torch", "python", "numpy", "git_revision")


def write_report(source, out=None, n_boot: int = N_BOOT, claims=None) -> Path:
    """Write the HTML report of `source` (a store's Results, from `sgdwalk.store.load(dir)`,
    or a Tables) to `out` (default: DIR/report.html) through the store's one artifact
    writer; returns its path. claims: the claims already decided on `source` (default:
    decided here)."""
    from sgdwalk.store import write_artifact

    t = as_tables(source)
    if out is None:
        if t.root is None:
            raise ValueError("write_report: expected `out` for tables not read from a folder")
        out = Path(t.root) / "report.html"
    out = Path(out)
    text = render_report(t, n_boot=n_boot, claims=claims)
    return write_artifact(out, text, f"report {out}")


def render_report(t, n_boot: int = N_BOOT, claims=None) -> str:
    """The report of a Tables as one HTML string (claims: as `write_report`)."""
    if claims is None:
        claims = decide_claims(t, n_boot=n_boot)
    figures = make_figures(t)
    summary = summarize_runs(t)
    name = Path(t.root).name if t.root is not None else "tables"
    e = html.escape
    now = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    body = [
        f"<h1>sgdwalk report: {e(name)}</h1>",
        f"<p>{len(t.runs)} run(s) from <code>{e(str(t.root or 'memory'))}</code>; "
        f"{e(_status_counts(summary))}. Generated {e(now)}. Claims follow "
        "<em>A Walk with SGD</em> (Xing et al. 2018); the rules and thresholds behind each "
        "verdict are in docs/claims.md.</p>",
        "<h2 id='claims-section'>Claims</h2>", _claims_table(claims),
        "<h2>Figures</h2>", *(_figure(f) for f in figures),
        "<h2>Runs</h2>", _notes(t.notes), _runs_table(summary),
        "<h2>Configs</h2>", *_configs(t),
        "<h2>Versions</h2>", _versions(t),
    ]
    return ("<!DOCTYPE html>\n<html lang='en'>\n<head>\n<meta charset='utf-8'>\n"
            f"<title>sgdwalk report: {e(name)}</title>\n<style>{CSS}</style>\n</head>\n"
            "<body>\n" + "\n".join(body) + "\n</body>\n</html>\n")


def _num(v, digits: int = 3) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "–"
    return f"{v:.{digits}f}" if isinstance(v, float) else str(v)


def _badge(verdict: str) -> str:
    return f"<span class='verdict {verdict}'>{verdict}</span>"


def _claims_table(claims) -> str:
    e = html.escape
    rows = ["<table id='claims'>", "<tr><th>claim</th><th>statement</th><th>verdict</th>"
            "<th>statistic</th><th>value</th><th>threshold</th><th>effect</th>"
            "<th>95% CI</th><th>runs</th><th>steps</th></tr>"]
    for c in claims:
        if c.verdict == MISSING:
            rows.append(f"<tr><td>{c.id}</td><td>{e(c.claim)}</td><td>{_badge(MISSING)}</td>"
                        f"<td colspan='7'>needs {e(c.needs)}</td></tr>")
            continue
        n_steps = sum(s["n"] for s in c.steps.values())
        parts = c.parts
        span = len(parts)
        for i, p in enumerate(parts):
            cells = (f"<td>{e(p.statistic)}{' — ' + e(p.why()) if p.why() else ''}</td>"
                     f"<td class='num'>{_num(p.value)}</td>"
                     f"<td class='num'>{p.direction} {_num(float(p.threshold), 2)}</td>"
                     f"<td class='num'>{_num(p.effect)}</td>"
                     f"<td class='num'>[{_num(p.lo)}, {_num(p.hi)}]</td>")
            if i == 0:
                extra = "".join(f"<br><small>{e(n)}</small>" for n in c.notes)
                if c.needs:
                    extra += f"<br><small>still needs {e(c.needs)}</small>"
                rows.append(f"<tr><td rowspan='{span}'>{c.id}</td><td rowspan='{span}'>"
                            f"{e(c.claim)}<br><small>test: {e(c.test)}</small>{extra}</td>"
                            f"<td rowspan='{span}'>{_badge(c.verdict)}</td>{cells}"
                            f"<td rowspan='{span}' class='num'>{len(c.runs)}</td>"
                            f"<td rowspan='{span}' class='num'>{n_steps}</td></tr>")
            else:
                rows.append(f"<tr class='part'>{cells}</tr>")
    rows.append("</table>")
    return "\n".join(rows)


def _figure(f) -> str:
    e = html.escape
    if not isinstance(f, Figure):
        return f"<p class='skipped'>{e(f.title)}: not drawn; {e(f.reason)}.</p>"
    data = base64.b64encode(f.png()).decode("ascii")
    return (f"<figure id='fig-{e(f.name)}'><img src='data:image/png;base64,{data}' "
            f"alt='{e(f.title)}'><figcaption><strong>{e(f.title)}.</strong> "
            f"{e(f.caption)}</figcaption></figure>")


def _notes(notes) -> str:
    """What the reader left out or skipped (copies, unfinished runs, half-made folders)."""
    if not notes:
        return ""
    items = "".join(f"<li>{html.escape(n)}</li>" for n in notes)
    return f"<ul id='notes'>{items}</ul>"


def _status_counts(summary: pd.DataFrame) -> str:
    counts = summary["status"].value_counts()
    return ", ".join(f"{n} {s}" for s, n in counts.items())


def _runs_table(summary: pd.DataFrame) -> str:
    e = html.escape
    cols = [("label", "condition"), ("seed", "seed"), ("status", "status"),
            ("steps", "steps"), ("epochs_done", "epochs"), ("final_train_loss", "train loss"),
            ("final_test_acc", "test acc"), ("height_median", "median height"),
            ("dist_init_final", "distance"), ("sharp_lambda_max_final", "λ_max")]
    cols = [(k, h) for k, h in cols if k in summary.columns]
    rows = ["<table id='runs'>", "<tr><th>run</th>" + "".join(f"<th>{e(h)}</th>"
                                                              for _, h in cols) + "</tr>"]
    for run_id, r in summary.iterrows():
        cells = []
        for k, _ in cols:
            v = r[k]
            if k == "status" and r["diverged"]:
                step = r.get("diverged_step")
                at = f" at step {int(step)}" if isinstance(step, float) and math.isfinite(step) \
                    else ""
                cells.append(f"<td><span class='diverged'>diverged{at}</span></td>")
            elif isinstance(v, float):
                cells.append(f"<td class='num'>{_num(v, 4)}</td>")
            else:
                cells.append(f"<td>{e(str(v))}</td>")
        rows.append(f"<tr><td><code>{e(str(run_id))}</code></td>{''.join(cells)}</tr>")
    rows.append("</table>")
    return "\n".join(rows)


def _configs(t) -> list[str]:
    e = html.escape
    out = []
    for run_id, r in t.runs.iterrows():
        text = t.config_text(run_id) or "\n".join(
            f"{k} = {r[k]!r}" for k in t.runs.columns if "." in k)
        out.append(f"<details><summary><code>{e(run_id)}</code> — {e(str(r['label']))} "
                   f"({e(str(r['status']))})</summary><pre>{e(text)}</pre></details>")
    return out


def _versions(t) -> str:
    e = html.escape
    groups: dict[tuple, list[str]] = {}
    for run_id in t.runs.index:
        meta = t.meta(run_id)
        key = tuple(str(meta.get(k)) if meta.get(k) is not None else "–" for k in VERSION_KEYS)
        groups.setdefault(key, []).append(run_id)
    rows = ["<table id='versions'>", "<tr>" + "".join(f"<th>{k}</th>" for k in VERSION_KEYS)
            + "<th>runs</th></tr>"]
    for key, runs in groups.items():
        rows.append("<tr>" + "".join(f"<td>{e(v)}</td>" for v in key)
                    + f"<td>{len(runs)}</td></tr>")
    rows.append("</table>")
    rows.append(f"<p>Report written by sgdwalk {e(sgdwalk.__version__)}.</p>")
    return "\n".join(rows)
