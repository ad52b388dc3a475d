"""One self-contained HTML report of a run or a sweep.

The file embeds everything it shows (figures as base64 PNG data URIs, inline CSS); it has
no scripts, fonts, stylesheets or links to fetch, so it opens offline and can be mailed.
Sections: a table of contents, a summary paragraph generated from the verdicts, the
claims (an overview table, then per claim its parts with their own verdicts, the rule that
combines them, the evidence sentence, the scope and links to its figures and runs), the
figures with captions (for a single run, everything it stored, `plots.run`), the runs by
study and folder with their statuses (diverged runs marked), each run's config
(collapsible), and the versions used. Every section, figure, claim and run has an anchor.
"""

from __future__ import annotations

import base64
import datetime as dt
import html
import math
import re
from pathlib import Path

import pandas as pd

import sgdwalk
from sgdwalk.analysis.decide import N_BOOT, as_tables, decide_claims
from sgdwalk.analysis.summary import summarize_runs
from sgdwalk.analysis.verdict import CONTRADICTED, INCONCLUSIVE, MISSING, SUPPORTED
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
nav#toc { background: #f7f9fc; border: 1px solid #dde3ec; padding: 0.5em 1em; }
nav#toc ol { margin: 0.3em 0; } nav#toc ul { margin: 0.2em 0; }
nav#toc ul.inline { padding: 0; } nav#toc ul.inline li { display: inline-block;
  margin-right: 0.6em; list-style: none; }
#summary-text { font-size: 1.05em; background: #fafafa; border-left: 4px solid #0072B2;
  padding: 0.5em 0.8em; }
section.claim { border-top: 1px solid #e3e3e3; margin-top: 1.2em; }
section.claim h3 { font-size: 1.05em; } p.note { color: #555; font-size: 0.9em; }
p.runs { font-size: 0.85em; }
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


# claim -> the figures (by name) that show what it tests, in the order they are linked
CLAIM_FIGURES = {
    "C1": ("strip", "line_heatmap", "floors"), "C2": ("strip", "cosines"),
    "C3": ("height_vs_lr",), "C4": ("distance",), "C5": ("distance", "height_vs_lr"),
    "C6": ("barriers",), "C7": ("barriers",), "C8": ("sharpness",), "C9": ("algorithms",),
    "C10": ("strip", "barriers"), "C11": ("alignment",), "C12": ("strip", "line_heatmap"),
    # the field's claims: the single-run figures of a GD run (no sweep figure yet)
    "EOS1": ("curvature",), "EOS2": ("curvature",), "EOS3": ("training",),
    "EOS4": ("floors", "curvature"), "CAT1": ("training",), "CAT2": ("curvature",),
    "CAT3": ("training",), "RV1": ("river_valley",), "RV2": ("river_valley",),
    "RV3": ("river_valley",),
}
# the sweep figures that also say something about a single run (the others compare runs
# or are drawn by plots.run from the run's own series)
SINGLE_RUN_KEEPS = ("barriers", "river_valley")


def render_report(t, n_boot: int = N_BOOT, claims=None) -> str:
    """The report of a Tables as one HTML string (claims: as `write_report`): a table of
    contents, a summary of the verdicts, the claims (each with its parts, rule, evidence,
    scope and links to its figures and runs), the figures (a single run: everything it
    stored), the runs, their configs and the versions."""
    from sgdwalk.plots.run import run_figures

    if claims is None:
        claims = decide_claims(t, n_boot=n_boot)
    figures = make_figures(t)
    single = len(t.runs) == 1
    if single:  # the run's own walk first; the sweep figures it also has data for after
        figures = run_figures(t) + [f for f in figures if isinstance(f, Figure)
                                    and f.name in SINGLE_RUN_KEEPS]
    summary = summarize_runs(t)
    names = run_names(t)
    name = Path(t.root).name if t.root is not None else "tables"
    e = html.escape
    now = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    drawn = [f for f in figures if isinstance(f, Figure)]
    skipped = [f for f in figures if not isinstance(f, Figure)]
    body = [
        f"<h1>sgdwalk report: {e(name)}</h1>",
        f"<p>{len(t.runs)} run(s) from <code>{e(str(t.root or 'memory'))}</code>; "
        f"{e(_status_counts(summary))}. Generated {e(now)}. Claims follow "
        "<em>A Walk with SGD</em> (Xing et al. 2018); the rules and thresholds behind each "
        "verdict are in docs/claims.md.</p>",
        _toc(claims, drawn, single),
        "<h2 id='summary'>Summary</h2>", f"<p id='summary-text'>{e(summary_text(t, claims))}"
        "</p>",
        "<h2 id='claims-section'>Claims</h2>", _claims_table(claims),
        *(_claim_detail(c, t, names, {f.name for f in drawn}) for c in claims),
        "<h2 id='figures'>" + ("The run's walk" if single else "Figures") + "</h2>",
        *(_figure(f) for f in drawn), _skipped(skipped),
        "<h2 id='runs-section'>Runs</h2>", _notes(t.notes), _runs_table(summary, t, names),
        "<h2 id='configs'>Configs</h2>", *_configs(t, names),
        "<h2 id='versions-section'>Versions</h2>", _versions(t),
    ]
    return ("<!DOCTYPE html>\n<html lang='en'>\n<head>\n<meta charset='utf-8'>\n"
            f"<title>sgdwalk report: {e(name)}</title>\n<style>{CSS}</style>\n</head>\n"
            "<body>\n" + "\n".join(body) + "\n</body>\n</html>\n")


def run_names(t) -> dict:
    """run id -> how a reader finds the run: study/folder in a sweep, else its folder."""
    out = {}
    for r, row in t.runs.iterrows():
        folder = str(row["run_dir"] or "").rstrip("/").rsplit("/", 1)[-1] or str(r)
        study = row["study"]
        out[r] = f"{study}/{folder}" if isinstance(study, str) and study else folder
    return out


def _anchor(run_id) -> str:
    return "run-" + re.sub(r"[^A-Za-z0-9_.-]", "_", str(run_id))


def summary_text(t, claims) -> str:
    """One paragraph from the verdicts: what was reproduced, what was not, what was not
    tested and why, and at which scale (studies, data, model, runs)."""
    by = {v: [c.id for c in claims if c.verdict == v]
          for v in (SUPPORTED, CONTRADICTED, INCONCLUSIVE, MISSING)}
    runs = t.runs
    scales = sorted({str(s) for s in runs["scale"].dropna()}) if "scale" in runs else []
    studies = sorted({str(s) for s in runs["study"].dropna()}) if "study" in runs else []
    data = sorted({str(v) for v in runs.get("data.name", pd.Series(dtype=str)).dropna()})
    model = sorted({str(v) for v in runs.get("model.name", pd.Series(dtype=str)).dropna()})
    where = []
    if scales:
        where.append(f"scale {', '.join(scales)}")
    if studies:
        where.append(f"studies {', '.join(studies)}")
    if data:
        where.append(f"data {', '.join(data)}")
    if model:
        where.append(f"model {', '.join(model)}")
    at = f" ({'; '.join(where)})" if where else ""
    n = len(claims)

    def ids(v):
        return ", ".join(by[v]) if by[v] else "none"

    text = (f"From {len(runs)} run{'s' if len(runs) != 1 else ''}{at}: "
            f"{len(by[SUPPORTED])} of {n} claims reproduced (supported: {ids(SUPPORTED)}); "
            f"{len(by[CONTRADICTED])} not reproduced (contradicted: {ids(CONTRADICTED)}); "
            f"{len(by[INCONCLUSIVE])} inconclusive ({ids(INCONCLUSIVE)}); "
            f"{len(by[MISSING])} not tested ({ids(MISSING)}).")
    if by[MISSING]:
        need = sorted({s for c in claims if c.verdict == MISSING
                       for s in re.findall(r"`sgdwalk sweep [\w-]+`", c.needs)})
        if need:
            text += f" The untested claims need runs of {', '.join(need)}."
    if scales and all(s == "cpu" for s in scales):
        text += (" These are small CPU-scale runs, not the study's networks and datasets: "
                 "a verdict here is about this scale.")
    return text


def _toc(claims, drawn, single) -> str:
    e = html.escape
    claim_items = "".join(f"<li><a href='#claim-{c.id}'>{c.id}</a> {_badge(c.verdict)}</li>"
                          for c in claims)
    fig_items = "".join(f"<li><a href='#fig-{e(f.name)}'>{e(f.title)}</a></li>" for f in drawn)
    figures = "The run&#x27;s walk" if single else "Figures"
    return ("<nav id='toc'><strong>Contents</strong><ol>"
            "<li><a href='#summary'>Summary</a></li>"
            f"<li><a href='#claims-section'>Claims</a><ul class='inline'>{claim_items}</ul></li>"
            f"<li><a href='#figures'>{figures}</a><ul>{fig_items}</ul></li>"
            "<li><a href='#runs-section'>Runs</a></li><li><a href='#configs'>Configs</a></li>"
            "<li><a href='#versions-section'>Versions</a></li></ol></nav>")


def _num(v, digits: int = 3) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "–"
    return f"{v:.{digits}f}" if isinstance(v, float) else str(v)


def _badge(verdict: str) -> str:
    return f"<span class='verdict {verdict}'>{verdict}</span>"


def _claims_table(claims) -> str:
    """One row per claim: its verdict, each part's verdict, and the evidence sentence."""
    e = html.escape
    rows = ["<table id='claims'>", "<tr><th>claim</th><th>verdict</th><th>parts</th>"
            "<th>evidence</th><th>runs</th><th>steps</th></tr>"]
    for c in claims:
        parts = " ".join(f"<span title='{e(p.statistic)}'>{_badge(p.verdict)}</span>"
                         for p in c.parts) or "–"
        n_steps = sum(s["n"] for s in c.steps.values())
        rows.append(f"<tr><td><a href='#claim-{c.id}'>{c.id}</a></td><td>{_badge(c.verdict)}"
                    f"</td><td>{parts}</td><td>{e(c.evidence)}</td>"
                    f"<td class='num'>{len(c.runs)}</td><td class='num'>{n_steps}</td></tr>")
    rows.append("</table>")
    return "\n".join(rows)


def _claim_detail(c, t, names, figure_names) -> str:
    """A claim's section: wording, test, evidence, the rule combining its parts, each
    part with its own verdict, the scope (which studies decide it) and its links."""
    e = html.escape
    out = [f"<section class='claim' id='claim-{c.id}'>",
           f"<h3>{c.id} {_badge(c.verdict)} {e(c.claim)}</h3>",
           f"<p><strong>Test:</strong> {e(c.test)}</p>"]
    if c.verdict != MISSING:  # a missing claim's evidence is its scope's "needs"
        out.append(f"<p><strong>Evidence:</strong> {e(c.evidence)}</p>")
    if c.parts:
        out.append(f"<p><strong>Rule:</strong> {e(c.rule)}.</p>")
        out.append("<table class='parts'><tr><th>part</th><th>verdict</th><th>value</th>"
                   "<th>95% CI</th><th>claim says</th><th>effect</th><th>n</th>"
                   "<th>note</th></tr>")
        for p in c.parts:
            out.append(f"<tr><td>{e(p.statistic)}</td><td>{_badge(p.verdict)}</td>"
                       f"<td class='num'>{_num(p.value)}</td>"
                       f"<td class='num'>[{_num(p.lo)}, {_num(p.hi)}]</td>"
                       f"<td class='num'>{p.direction} {p.threshold:g}</td>"
                       f"<td class='num'>{_num(p.effect)}</td><td class='num'>{p.n}</td>"
                       f"<td>{e(p.why())}</td></tr>")
        out.append("</table>")
    out.append(f"<p><strong>Scope:</strong> {e(_scope(c, t))}</p>")
    if c.needs and c.parts:
        out.append(f"<p><strong>Still needs:</strong> {e(c.needs)}</p>")
    for note in c.notes:
        out.append(f"<p class='note'>{e(note)}</p>")
    links = [f"<a href='#fig-{e(n)}'>{e(n)}</a>" for f in CLAIM_FIGURES.get(c.id, ())
             for n in sorted(figure_names) if n == f or n.startswith(f + "_")]
    if links:
        out.append(f"<p><strong>Figures:</strong> {' · '.join(links)}</p>")
    if c.runs:
        items = ", ".join(f"<a href='#{_anchor(r)}'>{e(names.get(r, str(r)))}</a>"
                          for r in c.runs)
        out.append(f"<details><summary>Runs that decided it ({len(c.runs)})</summary>"
                   f"<p class='runs'>{items}</p></details>")
    out.append("</section>")
    return "\n".join(out)


def _scope(c, t) -> str:
    """Which studies in this folder decide the claim, or what would decide it."""
    if c.verdict == MISSING:
        return f"MISSING: needs {c.needs}"
    studies = sorted(s for s, claims in t.study_claims.items() if c.id in claims)
    used = t.runs.loc[[r for r in c.runs if r in t.runs.index]]
    have = sorted({str(s) for s in used["study"].dropna()}) if len(used) else []
    used_n = f"{len(c.runs)} run{'s' if len(c.runs) != 1 else ''} used"
    if studies:
        return (f"decided by the runs of the studies meant for {c.id} here: "
                f"{', '.join(studies)} ({used_n})")
    if have:
        return f"decided by runs of {', '.join(have)} ({used_n})"
    return f"decided by the run(s) of this folder ({used_n}; no study declared)"


def _figure(f) -> str:
    e = html.escape
    if not isinstance(f, Figure):
        return f"<p class='skipped'>{e(f.title)}: not drawn; {e(f.reason)}.</p>"
    data = base64.b64encode(f.png()).decode("ascii")
    return (f"<figure id='fig-{e(f.name)}'><img src='data:image/png;base64,{data}' "
            f"alt='{e(f.title)}'><figcaption><strong>{e(f.title)}.</strong> "
            f"{e(f.caption)}</figcaption></figure>")


def _skipped(skipped) -> str:
    """Figures not drawn, in one folded list (no empty panels)."""
    if not skipped:
        return ""
    e = html.escape
    items = "".join(f"<li>{e(f.title)}: {e(f.reason)}</li>" for f in skipped)
    return (f"<details id='not-drawn'><summary>{len(skipped)} figure(s) not drawn: their "
            f"inputs are not in these runs</summary><ul>{items}</ul></details>")


def _notes(notes) -> str:
    """What the reader left out or skipped (copies, unfinished runs, half-made folders)."""
    if not notes:
        return ""
    items = "".join(f"<li>{html.escape(n)}</li>" for n in notes)
    return f"<ul id='notes'>{items}</ul>"


def _status_counts(summary: pd.DataFrame) -> str:
    counts = summary["status"].value_counts()
    return ", ".join(f"{n} {s}" for s, n in counts.items())


def _runs_table(summary: pd.DataFrame, t, names) -> str:
    from sgdwalk.plots.base import condition_labels

    e = html.escape
    labels = condition_labels(t.runs)
    cols = [("seed", "seed"), ("status", "status"),
            ("steps", "steps"), ("epochs_done", "epochs"), ("final_train_loss", "train loss"),
            ("final_test_acc", "test acc"), ("height_median", "median height"),
            ("dist_init_final", "distance"), ("sharp_lambda_max_final", "λ_max")]
    cols = [(k, h) for k, h in cols if k in summary.columns]
    rows = ["<p>Runs by study and folder; the condition says what the run trained "
            "(algorithm, learning rate, batch size, and what tells apart conditions that "
            "share those); the id is the run's hash.</p>",
            "<table id='runs'>", "<tr><th>run</th><th>condition</th>" + "".join(
                f"<th>{e(h)}</th>" for _, h in cols) + "<th>id</th></tr>"]
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
        label = labels.get(t.runs.loc[run_id, "condition"], str(r["label"]))
        rows.append(f"<tr id='{_anchor(run_id)}'><td><a href='#config-{_anchor(run_id)}'>"
                    f"{e(names[run_id])}</a></td><td>{e(label)}</td>{''.join(cells)}"
                    f"<td><code>{e(str(run_id))}</code></td></tr>")
    rows.append("</table>")
    return "\n".join(rows)


def _configs(t, names) -> list[str]:
    from sgdwalk.plots.base import condition_labels

    e = html.escape
    labels = condition_labels(t.runs)
    out = []
    for run_id, r in t.runs.iterrows():
        text = t.config_text(run_id) or "\n".join(
            f"{k} = {r[k]!r}" for k in t.runs.columns if "." in k)
        out.append(f"<details id='config-{_anchor(run_id)}'><summary>{e(names[run_id])} "
                   f"<code>{e(run_id)}</code> — {e(labels[r['condition']])} "
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
