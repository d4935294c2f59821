"""The demo's HTML report: drift statistic per site over time, alerts, and the run summary."""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt


def drift_plot(results: Sequence[Mapping[str, Any]], *, shifted_site: str, shift_after: int) -> str:
    """A PNG (base64) of the MMD statistic and -log10 p per site against predictions seen."""
    fig, (ax_stat, ax_p) = plt.subplots(2, 1, figsize=(9, 6.5), sharex=True)
    sites = sorted({str(r["site"]) for r in results})
    for site in sites:
        rows = sorted(
            (r for r in results if r["site"] == site), key=lambda r: int(r["last_event_id"])
        )
        x = [int(r["last_event_id"]) for r in rows]
        style = "-o" if site == shifted_site else "-s"
        ax_stat.plot(x, [float(r["statistic"]) for r in rows], style, label=site, markersize=4)
        ax_p.plot(x, [-_log10(float(r["p_value"])) for r in rows], style, label=site, markersize=4)
        drifted = [(xi, float(r["statistic"])) for xi, r in zip(x, rows, strict=True) if r["drift"]]
        if drifted:
            ax_stat.scatter(*zip(*drifted, strict=True), s=90, facecolors="none", edgecolors="red")
    for ax in (ax_stat, ax_p):
        ax.axvline(shift_after, color="grey", linestyle="--", linewidth=1)
        ax.grid(alpha=0.3)
    ax_stat.set_ylabel("embedding MMD²")
    ax_stat.set_title(f"Per-site drift; dashed line: '{shifted_site}' switches scanner vendor")
    ax_p.set_ylabel("-log10 smallest corrected p")
    ax_p.set_xlabel("predictions recorded (window end)")
    ax_stat.legend(title="site (red ring: drifted window)")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()


def _log10(p: float) -> float:
    import math

    return math.log10(max(p, 1e-300))


def write_report(
    path: Path, summary: Mapping[str, Any], results: Sequence[Mapping[str, Any]]
) -> Path:
    png = drift_plot(
        results,
        shifted_site=str(summary["shifted_site"]),
        shift_after=int(summary["shift_started_after_predictions"]),
    )
    alert_rows = (
        "".join(
            f"<tr><td>{html.escape(a['site'])}</td><td>{html.escape(a['severity'])}</td>"
            f"<td>{a['opened_after_predictions']}</td><td>{html.escape(a['detail'])}</td></tr>"
            for a in summary["alerts"]
        )
        or '<tr><td colspan="4">No alerts.</td></tr>'
    )
    model = summary["model"]
    doc = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>radwatch demo report</title>
<style>
body {{ font-family: system-ui, sans-serif; max-width: 960px; margin: 2rem auto; color: #1b1b1b; }}
table {{ border-collapse: collapse; width: 100%; }}
td, th {{ border: 1px solid #ccc; padding: .35rem .5rem; text-align: left; vertical-align: top; }}
th {{ background: #f3f3f3; }} .ok {{ color: #0a6b0a; }} .bad {{ color: #a30000; }}
</style></head><body>
<h1>radwatch demo report</h1>
<p>Model <b>{html.escape(str(model["name"]))}</b> version {model["version"]} (MLflow run
<code>{html.escape(str(model["mlflow_run_id"]))}</code>), served by Triton
{html.escape(str(summary["triton_server_version"]))}. {summary["predictions"]} predictions from
{len(summary["sites"])} sites in {summary["seconds"]:.0f} s. Site
<b>{html.escape(str(summary["shifted_site"]))}</b> switched to vendor
<b>{html.escape(str(summary["shift_vendor"]))}</b> after
{summary["shift_started_after_predictions"]} predictions.</p>
<p class="{"ok" if summary["alerts_before_shift"] == 0 else "bad"}">Alerts before the shift:
{summary["alerts_before_shift"]}.</p>
<h2>Drift statistic per site</h2>
<img alt="Embedding MMD statistic and corrected p-value per site over the stream; the shifted site
rises after the vendor change" src="data:image/png;base64,{png}" style="max-width:100%">
<h2>Alerts</h2>
<table><tr><th>site</th><th>severity</th><th>opened after predictions</th><th>detail</th></tr>
{alert_rows}</table>
<h2>Windows</h2>
<p>{len(results)} windows of {summary["window"]} studies per site were computed by the Celery
worker.</p>
</body></html>
"""
    path.write_text(doc)
    return path
