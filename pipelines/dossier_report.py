"""Plots and the self-contained HTML page of an evaluation dossier, drawn from the document alone.

Everything is computed by :mod:`pipelines.dossier`; this module only draws. Working from the JSON
document (not from raw scores) means the page, the stored JSON and the web views can never
disagree, and a stored dossier can be re-rendered later.

Plots are PNGs embedded as ``data:`` URIs, so the page is one file that opens offline, can be
attached to a change record and never fetches anything. Matplotlib is used through its
object-oriented API on the Agg canvas (no pyplot global state), which is safe in a worker
thread.
"""

from __future__ import annotations

import base64
import io
import math
from collections.abc import Mapping
from typing import Any

import jinja2
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from monitors.stats import format_p

PLOTS = ("roc", "calibration", "forest", "drift_timeline")
_COLORS = {"candidate": "#1f6fb2", "champion": "#d2691e"}


def _png(fig: Figure) -> str:
    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _empty(fig: Figure, text: str) -> None:
    ax = fig.add_subplot()
    ax.text(0.5, 0.5, text, ha="center", va="center", wrap=True)
    ax.set_axis_off()


def roc_plot(document: Mapping[str, Any]) -> str:
    perf = document["sections"]["performance"]
    fig = Figure(figsize=(5, 4.5))
    ax = fig.add_subplot()
    for model in ("champion", "candidate"):
        curve = perf["roc"][model]
        auc = perf[model]["auroc"]
        label = f"{model} AUROC {auc['value']:.3f}" if auc["value"] is not None else model
        ax.plot(curve["fpr"], curve["tpr"], color=_COLORS[model], label=label, lw=1.8)
    ax.plot([0, 1], [0, 1], ls=":", color="grey", lw=1)
    ax.set_xlabel("false-positive rate")
    ax.set_ylabel("true-positive rate")
    ax.set_title(f"ROC, {perf['finding']} (n = {perf['n']}, {perf['n_pos']} positive)")
    ax.legend(loc="lower right")
    return _png(fig)


def calibration_plot(document: Mapping[str, Any]) -> str:
    cal = document["sections"]["calibration"]
    fig = Figure(figsize=(5, 4.5))
    ax = fig.add_subplot()
    ax.plot([0, 1], [0, 1], ls=":", color="grey", lw=1)
    for model in ("champion", "candidate"):
        bins = cal[model]["bins"]
        x = [b["mean_score"] for b in bins]
        y = [b["observed_rate"] for b in bins]
        # max(0, .): the stored rate and bounds are rounded independently.
        err = [
            [max(0.0, b["observed_rate"] - b["observed_lower"]) for b in bins],
            [max(0.0, b["observed_upper"] - b["observed_rate"]) for b in bins],
        ]
        ax.errorbar(
            x,
            y,
            yerr=err,
            marker="o",
            color=_COLORS[model],
            capsize=2,
            label=f"{model} ECE {cal[model]['ece']:.3f}",
        )
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("mean predicted probability (equal-mass bins)")
    ax.set_ylabel("observed rate (Wilson CI)")
    ax.set_title("Calibration")
    ax.legend(loc="upper left")
    return _png(fig)


def forest_plot(document: Mapping[str, Any]) -> str:
    fair = document["sections"]["fairness"]
    rows: list[tuple[str, str, dict[str, Any]]] = []
    for entry in fair["attributes"].values():
        cand, champ = (entry.get(m, {}).get("groups", []) for m in ("candidate", "champion"))
        # Both models were judged on the same groups, in the same order: show them in pairs.
        for g_cand, g_champ in zip(cand, champ, strict=False):
            rows.append((f"{g_cand['name']} (n={g_cand['n']})", "candidate", g_cand))
            rows.append((f"{g_champ['name']} (n={g_champ['n']})", "champion", g_champ))
    fig = Figure(figsize=(6.5, max(2.5, 0.28 * len(rows) + 1.2)))
    if not rows:
        _empty(fig, "No subgroup attributes declared")
        return _png(fig)
    ax = fig.add_subplot()
    labels: list[str] = []
    for i, (label, model, g) in enumerate(rows):
        tpr = g["tpr"]
        y = len(rows) - i
        if tpr["value"] is None:
            continue
        lo = tpr["lower"] if tpr["lower"] is not None else tpr["value"]
        hi = tpr["upper"] if tpr["upper"] is not None else tpr["value"]
        ax.plot([lo, hi], [y, y], color=_COLORS[model], lw=2, alpha=0.4 if g["too_small"] else 1)
        ax.plot(
            [tpr["value"]],
            [y],
            marker="s" if model == "candidate" else "o",
            color=_COLORS[model],
            mfc="white" if g["too_small"] else _COLORS[model],
        )
        labels.append(label)
    ax.set_yticks([len(rows) - i for i in range(len(rows))])
    ax.set_yticklabels([f"{r[0]} {r[1][:4]}" for r in rows], fontsize=7)
    ax.set_xlim(0, 1)
    ax.set_xlabel("true-positive rate with bootstrap CI (hollow: group too small)")
    ax.set_title("Subgroups: candidate (squares) vs champion (circles)")
    return _png(fig)


def drift_timeline_plot(document: Mapping[str, Any]) -> str:
    evidence = document["sections"]["drift_evidence"]
    series = evidence.get("timeline", [])
    fig = Figure(figsize=(6.5, 3.5))
    if not series:
        _empty(fig, "No monitor windows: the run was started by hand without drift evidence")
        return _png(fig)
    ax = fig.add_subplot()
    for s in series:
        pts = s["points"]
        x = [p["window_index"] for p in pts]
        y = [max(p["p_value"], 1e-12) if p["p_value"] is not None else math.nan for p in pts]
        (line,) = ax.plot(x, y, marker=".", lw=1, label=f"{s['monitor']} @ {s['site']}")
        sig = [(xi, yi) for xi, yi, p in zip(x, y, pts, strict=True) if p["drift"]]
        if sig:
            sx, sy = zip(*sig, strict=True)
            ax.scatter(sx, sy, color=line.get_color(), marker="x", s=40, zorder=3)
    ax.set_yscale("log")
    ax.set_xlabel("window")
    ax.set_ylabel("p-value (x: significant window)")
    ax.set_title("Drift evidence over time")
    ax.legend(fontsize=7)
    return _png(fig)


def render_plots(document: Mapping[str, Any]) -> dict[str, str]:
    """The four plots as PNG data URIs, keyed as in ``document["plots"]``."""
    return {
        "roc": roc_plot(document),
        "calibration": calibration_plot(document),
        "forest": forest_plot(document),
        "drift_timeline": drift_timeline_plot(document),
    }


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _ci(m: Mapping[str, Any] | None) -> str:
    if not m or m.get("value") is None:
        return "n/a"
    if m.get("lower") is None:
        return f"{m['value']:.3f}"
    return f"{m['value']:.3f} ({m['lower']:.3f}-{m['upper']:.3f})"


_TEMPLATE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>Dossier: {{ d.model }} v{{ d.candidate_version }} vs v{{ d.champion_version }}</title>
<style>
body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1000px;color:#222}
table{border-collapse:collapse;margin:.5em 0 1.5em}td,th{border:1px solid #ccc;padding:3px 8px;
font-size:.9em;text-align:left}th{background:#f3f3f3}
.PASS{background:#1b7f3b;color:#fff;padding:1px 6px;border-radius:3px;font-weight:bold}
.FAIL{background:#b3261e;color:#fff;padding:1px 6px;border-radius:3px;font-weight:bold}
.small{color:#666;font-size:.85em}img{max-width:100%}
</style></head><body>
<h1>Evaluation dossier: {{ d.model }} version {{ d.candidate_version }}</h1>
<p>Candidate version {{ d.candidate_version }} against champion version {{ d.champion_version }},
judged on change protocol version {{ d.protocol_version }}, finding <b>{{ d.finding }}</b> at
operating threshold {{ d.operating_threshold }}. Generated {{ d.generated_at }}.</p>
<p>Overall: <span class="{{ 'PASS' if d.passed else 'FAIL' }}" id="overall">
{{ 'PASS' if d.passed else 'FAIL' }}</span></p>

<h2>Acceptance criteria</h2>
<table id="criteria"><tr><th>criterion</th><th>result</th><th>value</th><th>threshold</th>
<th>detail</th></tr>
{% for c in d.criteria %}<tr><td>{{ c.name }}</td>
<td><span class="{{ 'PASS' if c.passed else 'FAIL' }}">{{ 'PASS' if c.passed else 'FAIL' }}</span>
</td><td>{{ fmt(c.value) }}</td><td>{{ fmt(c.threshold) }}</td><td>{{ c.detail }}</td></tr>
{% endfor %}</table>

<h2>Data</h2>{% set data = s.data %}
<p class="small">{{ data.split }}. Replay: {{ data.replay }}.{% if data.source %}
Evaluation data: {% for k, v in data.source.items() %}{{ k }} {{ v }}
{%- if not loop.last %}, {% endif %}{% endfor %}.{% endif %}</p>
<table><tr><th>attribute</th><th>value</th><th>training events</th><th>evaluation events</th></tr>
{% for attr, counts in data.evaluation.by.items() %}{% set tr = data.training.by.get(attr, {}) %}
{% for value in (counts.keys() | list + tr.keys() | list) | unique | sort %}
<tr><td>{{ attr }}</td><td>{{ value }}</td><td>{{ tr.get(value, 0) }}</td>
<td>{{ counts.get(value, 0) }}</td></tr>{% endfor %}{% endfor %}
<tr><th colspan="2">total</th><th>{{ data.training.n_events }}</th>
<th>{{ data.evaluation.n_events }} ({{ data.evaluation.n_pos }} positive)</th></tr></table>

<h2>Performance</h2>{% set p = s.performance %}
<table><tr><th>metric ({{ p.n }} cases, {{ p.n_pos }} positive)</th><th>candidate</th>
<th>champion</th></tr>
{% for m in ["auroc", "sensitivity", "specificity", "ppv", "npv", "brier"] %}
<tr><td>{{ m }}</td><td>{{ ci(p.candidate[m]) }}</td><td>{{ ci(p.champion[m]) }}</td></tr>
{% endfor %}</table>
<p class="small">Non-inferiority (paired DeLong): difference
{{ fmt(p.noninferiority.difference) }}, one-sided lower bound {{ fmt(p.noninferiority.lower) }},
margin {{ p.noninferiority.margin }}, {{ fmt_p(p.noninferiority.p_value) }}.</p>
<img alt="ROC curves" id="plot-roc" src="{{ d.plots.roc }}">

<h2>Calibration</h2>
<p>ECE candidate {{ fmt(s.calibration.candidate.ece) }}, champion
{{ fmt(s.calibration.champion.ece) }}.</p>
<img alt="Calibration plot" id="plot-calibration" src="{{ d.plots.calibration }}">

<h2>Fairness</h2>
{% for attr, e in s.fairness.attributes.items() %}<h3>{{ attr }} (max gap {{ e.max_gap }})</h3>
{% if e.error %}<p>{{ e.error }}</p>{% else %}
<table><tr><th>group</th><th>n</th><th>positives</th><th>TPR candidate</th><th>TPR champion</th>
<th></th></tr>{% for g in e.candidate.groups %}{% set cg = e.champion.groups[loop.index0] %}
<tr><td>{{ g.name }}</td><td>{{ g.n }}</td><td>{{ g.n_pos }}</td><td>{{ ci(g.tpr) }}</td>
<td>{{ ci(cg.tpr) }}</td><td>{{ 'too small' if g.too_small else '' }}</td></tr>{% endfor %}
</table>{% endif %}{% endfor %}
<img alt="Subgroup forest plot" id="plot-forest" src="{{ d.plots.forest }}">

<h2>Robustness</h2>{% set r = s.robustness %}
<p class="small">{% if r.n %}{{ r.n }} {{ r.source or 'synthetic' }} studies ({{ r.n_pos }}
positive) through the full models. {% endif %}{{ r.error or '' }}</p>
<table><tr><th>perturbation</th><th>candidate clean / perturbed / drop (CI)</th>
<th>champion clean / perturbed / drop</th></tr>
{% for kind, e in (r.perturbations or {}).items() %}<tr><td>{{ kind }}</td>
<td>{{ fmt(e.candidate.auroc_clean) }} / {{ fmt(e.candidate.auroc_perturbed) }} /
{{ fmt(e.candidate.drop) }} ({{ fmt(e.candidate.drop_lower) }} to
{{ fmt(e.candidate.drop_upper) }})</td>
<td>{{ fmt(e.champion.auroc_clean) }} / {{ fmt(e.champion.auroc_perturbed) }} /
{{ fmt(e.champion.drop) }}</td></tr>{% endfor %}</table>

<h2>Sites</h2>
<table><tr><th>site</th><th>n</th><th>positives</th><th>AUROC candidate</th>
<th>AUROC champion</th><th>sensitivity candidate</th><th>sensitivity champion</th></tr>
{% for row in s.sites.sites %}<tr><td>{{ row.site }}</td><td>{{ row.n }}</td>
<td>{{ row.n_pos }}</td><td>{{ ci(row.candidate.auroc) }}</td><td>{{ ci(row.champion.auroc) }}</td>
<td>{{ ci(row.candidate.sensitivity) }}</td><td>{{ ci(row.champion.sensitivity) }}</td></tr>
{% endfor %}</table>

<h2>Drift evidence</h2>{% set de = s.drift_evidence %}
<p>Trigger: {{ de.trigger or 'n/a' }}. {{ de.note or '' }}</p>
{% if de.alerts %}<table><tr><th>alert</th><th>monitor</th><th>site</th><th>severity</th>
<th>opened</th><th>detail</th></tr>{% for a in de.alerts %}<tr><td>{{ a.id }}</td>
<td>{{ a.monitor }}</td><td>{{ a.site }}</td><td>{{ a.severity }}</td><td>{{ a.opened_at }}</td>
<td>{{ a.detail }}</td></tr>{% endfor %}</table>{% endif %}
<img alt="Drift timeline" id="plot-drift_timeline" src="{{ d.plots.drift_timeline }}">
</body></html>
"""

_ENV = jinja2.Environment(autoescape=True, undefined=jinja2.ChainableUndefined)


def render_html(document: Mapping[str, Any]) -> str:
    """The self-contained page; ``document["plots"]`` must already hold the data URIs."""
    plots = document.get("plots", {})
    missing = [p for p in PLOTS if not str(plots.get(p, "")).startswith("data:")]
    if missing:
        raise ValueError(f"render the plots first (render_plots); missing: {missing}")
    template = _ENV.from_string(_TEMPLATE)
    return template.render(d=document, s=document["sections"], fmt=_fmt, ci=_ci, fmt_p=format_p)
