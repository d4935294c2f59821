"""``radwatch monitor``: run a monitor on files, print a table or one JSON document.

A stable contract for other tools: four commands (``drift``, ``performance``, ``estimate``,
``fairness``), each with ``--json``; the JSON layouts are documented in docs/monitor-cli.md and
carry ``"kind"`` and ``"schema_version"``. Exit codes: 0 when the monitor ran (whatever it
found), 2 for unusable input (unreadable file, missing, all-missing, constant or mistyped
column, bad option), 1 for anything unexpected. Errors go to stderr, results to stdout.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import numpy.typing as npt
import pandas as pd
import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from monitors.errors import MonitorInputError
from services.cli import _io

SCHEMA_VERSION = 1

app = typer.Typer(
    help="Run a monitor on Parquet/CSV files: drift, performance, label-free estimate, fairness.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
out = Console()
err = Console(stderr=True)

JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout.")]
LabelOpt = Annotated[str, typer.Option("--label", help="Column with the 0/1 ground truth.")]
ScoreOpt = Annotated[str, typer.Option("--score", help="Column with the model's probability.")]


@contextmanager
def _input_errors() -> Iterator[None]:
    """Turn input problems into a message on stderr and exit code 2."""
    try:
        yield
    except (_io.TableInputError, MonitorInputError) as exc:
        err.print(f"[red]error:[/red] {escape(str(exc))}", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from exc


def _emit(kind: str, payload: dict[str, Any], as_json: bool, render: Callable[[], None]) -> None:
    if as_json:
        doc = {"kind": kind, "schema_version": SCHEMA_VERSION, **payload}
        typer.echo(json.dumps(doc, allow_nan=False))
    else:
        render()


def _fmt(x: float | None, digits: int = 3) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def _metric_table(title: str, metrics: dict[str, dict[str, Any]]) -> Table:
    table = Table(title=title)
    for col in ("metric", "value", "95% CI", "n", "method"):
        table.add_column(col)
    for name, m in metrics.items():
        ci = f"[{_fmt(m['lower'])}, {_fmt(m['upper'])}]" if m["lower"] is not None else "-"
        table.add_row(name, _fmt(m["value"]), ci, str(m["n"]), m["method"])
    return table


def _drift_columns(
    ref: pd.DataFrame,
    cur: pd.DataFrame,
    columns: list[str],
    categorical: list[str],
    embedding_prefix: str | None,
) -> tuple[dict[str, npt.NDArray[Any]], dict[str, npt.NDArray[Any]], list[str], list[str]]:
    """Reference/current column arrays and the numeric/categorical split to test."""
    emb = {c for c in ref.columns if embedding_prefix and c.startswith(embedding_prefix)}
    _io.require_columns(ref, categorical, role="--reference")
    for name in categorical:
        if name not in columns and columns:
            raise _io.TableInputError(
                f"--categorical names {name!r}, which is not in --columns; list it in both."
            )
    names = columns or [c for c in ref.columns if c not in emb]
    _io.require_columns(ref, names, role="--reference")
    _io.require_columns(cur, names, role="--current")
    numeric = [c for c in names if c not in categorical and _io.is_numeric(ref, c)]
    cats = [c for c in names if c not in numeric]
    ref_cols: dict[str, npt.NDArray[Any]] = {}
    cur_cols: dict[str, npt.NDArray[Any]] = {}
    for name in names:
        for df, role, target in ((ref, "--reference", ref_cols), (cur, "--current", cur_cols)):
            if name in numeric and _io.is_numeric(df, name):
                target[name] = _io.numeric_column(df, name, role=role, allow_missing=True)
            else:
                target[name] = _io.category_column(df, name, role=role)
    return ref_cols, cur_cols, numeric, cats


def _embeddings(df: pd.DataFrame, names: list[str], role: str) -> npt.NDArray[Any]:
    return np.column_stack([_io.numeric_column(df, c, role=role) for c in names])


@app.command()
def drift(
    reference: Annotated[Path, typer.Option("--reference", help="Reference table.")],
    current: Annotated[Path, typer.Option("--current", help="Current table.")],
    columns: Annotated[
        str | None, typer.Option("--columns", help="Columns to test, comma-separated.")
    ] = None,
    categorical: Annotated[
        str | None, typer.Option("--categorical", help="Columns to test as categorical.")
    ] = None,
    embedding_prefix: Annotated[
        str | None,
        typer.Option("--embedding-prefix", help="Columns with this prefix form the embedding."),
    ] = None,
    alpha: Annotated[float, typer.Option("--alpha", min=0.0, max=1.0)] = 0.05,
    as_json: JsonOpt = False,
) -> None:
    """Two-sample drift tests per column (KS / chi-squared) and on the embedding (MMD), with
    one Benjamini-Hochberg family over all of them."""
    from monitors.drift.report import DriftConfig, run_drift

    with _input_errors():
        ref = _io.read_table(reference, role="--reference")
        cur = _io.read_table(current, role="--current")
        cols, cats = _io.split_names(columns), _io.split_names(categorical)
        ref_cols, cur_cols, numeric, categ = _drift_columns(ref, cur, cols, cats, embedding_prefix)
        ref_emb = cur_emb = None
        if embedding_prefix:
            emb = [c for c in ref.columns if c.startswith(embedding_prefix)]
            if not emb:
                raise _io.TableInputError(
                    f"No column of --reference starts with {embedding_prefix!r}."
                )
            ref_emb = _embeddings(ref, emb, "--reference")
            cur_emb = _embeddings(cur, emb, "--current")
        if not 0.0 < alpha < 1.0:
            raise _io.TableInputError(f"--alpha must lie strictly between 0 and 1; got {alpha}.")
        config = DriftConfig(
            alpha=alpha, numeric_columns=tuple(numeric), categorical_columns=tuple(categ)
        )
        report = run_drift(
            ref_cols, cur_cols, config, reference_embeddings=ref_emb, current_embeddings=cur_emb
        )
    payload = report.to_dict()

    def render() -> None:
        table = Table(title=f"Drift (alpha={alpha}, {report.correction} correction)")
        for col in ("column", "test", "statistic", "p (corrected)", "drift"):
            table.add_column(col)
        for r in report.columns:
            table.add_row(
                r.column,
                r.test,
                _fmt(r.statistic, 4),
                _fmt(r.p_value, 4),
                "DRIFT" if r.drift else "",
            )
        for m in report.multivariate:
            table.add_row(
                "(embedding)" if m.test != "bbsd" else "(scores)",
                m.test,
                _fmt(m.statistic, 4),
                _fmt(m.p_value, 4),
                "DRIFT" if m.drift else "",
            )
        out.print(table)
        out.print(
            f"overall drift: {'YES' if report.drift else 'no'}  "
            f"(n_reference={report.n_reference}, n_current={report.n_current})"
        )

    _emit("drift", payload, as_json, render)


@app.command()
def performance(
    data: Annotated[Path, typer.Option("--data", help="Labelled table.")],
    label: LabelOpt,
    score: ScoreOpt,
    threshold: Annotated[float, typer.Option("--threshold", help="score >= t is positive.")] = 0.5,
    as_json: JsonOpt = False,
) -> None:
    """AUROC (DeLong CI), sensitivity/specificity/PPV/NPV (Wilson CIs), ECE and Brier."""
    from monitors.performance import evaluate_performance

    with _input_errors():
        df = _io.read_table(data, role="--data")
        y = _io.label_column(df, label, role="--data")
        s = _io.score_column(df, score, role="--data")
        report = evaluate_performance(y, s, threshold)
    payload = report.to_dict()

    def render() -> None:
        out.print(
            _metric_table(
                f"Performance at threshold {threshold} (n={report.n}, positives={report.n_pos})",
                payload["metrics"],
            )
        )
        cal = report.calibration
        out.print(f"ECE {cal.ece:.4f} over {cal.n_bins} equal-mass bins ({cal.binning})")

    _emit("performance", payload, as_json, render)


@app.command()
def estimate(
    reference: Annotated[Path, typer.Option("--reference", help="Labelled reference table.")],
    current: Annotated[Path, typer.Option("--current", help="Unlabelled current table.")],
    score: ScoreOpt,
    label: Annotated[str, typer.Option("--label", help="Label column, read from --reference.")],
    threshold: Annotated[float, typer.Option("--threshold", help="score >= t is positive.")] = 0.5,
    as_json: JsonOpt = False,
) -> None:
    """Label-free (CBPE) estimate of AUROC, sensitivity and specificity on the current data,
    calibrated on the reference. Assumes P(label | score) is unchanged (covariate shift)."""
    from monitors.estimate import estimate_performance

    with _input_errors():
        ref = _io.read_table(reference, role="--reference")
        cur = _io.read_table(current, role="--current")
        y_ref = _io.label_column(ref, label, role="--reference")
        s_ref = _io.score_column(ref, score, role="--reference")
        s_cur = _io.score_column(cur, score, role="--current")
        report = estimate_performance(s_ref, y_ref, s_cur, threshold)
    payload = report.to_dict()

    def render() -> None:
        out.print(
            _metric_table(
                f"Estimated performance (n_current={report.n_current}, calibration="
                f"{report.calibration}; interval = {report.n_draws} Monte-Carlo draws)",
                payload["metrics"],
            )
        )
        ref_vals = ", ".join(f"{k} {v:.3f}" for k, v in report.reference.items())
        out.print(f"reference (realised): {ref_vals}")
        if report.out_of_range_fraction > 0.05:
            out.print(
                f"[yellow]{report.out_of_range_fraction:.0%} of current scores lie "
                "outside the reference range; the estimate extrapolates.[/yellow]"
            )

    _emit("estimate", payload, as_json, render)


@app.command()
def fairness(
    data: Annotated[Path, typer.Option("--data", help="Labelled table with group columns.")],
    label: LabelOpt,
    score: ScoreOpt,
    threshold: Annotated[float, typer.Option("--threshold", help="score >= t is positive.")],
    groups: Annotated[str, typer.Option("--groups", help="Group columns, comma-separated.")],
    min_n: Annotated[int, typer.Option("--min-n", min=1, help="Smaller groups are flagged.")] = 30,
    as_json: JsonOpt = False,
) -> None:
    """Per-group and intersectional TPR, FPR, AUROC and ECE with bootstrap CIs, gaps and the
    worst group against the rest. Groups below --min-n are reported as too small."""
    from monitors.fairness import subgroup_report

    with _input_errors():
        df = _io.read_table(data, role="--data")
        y = _io.label_column(df, label, role="--data")
        s = _io.score_column(df, score, role="--data")
        names = _io.split_names(groups)
        if not names:
            raise _io.TableInputError("--groups needs at least one column name.")
        attrs = {g: _io.category_column(df, g, role="--data") for g in names}
        for g, values in attrs.items():
            if len({v for v in values.tolist()}) < 2:
                err.print(
                    f"[yellow]warning:[/yellow] group column {g!r} has a single value; "
                    "no gap can be computed for it."
                )
        report = subgroup_report(y, s, threshold, attrs, min_n=min_n)
    payload = report.to_dict()

    def render() -> None:
        table = Table(title=f"Subgroups at threshold {threshold} (min n {min_n})")
        for col in ("group", "n", "n_pos", "TPR", "FPR", "AUROC", "ECE", "note"):
            table.add_column(col)
        for g in report.groups:
            cells = []
            for m in (g.tpr, g.fpr, g.auroc, g.ece):
                ci = f" [{_fmt(m.lower, 2)}-{_fmt(m.upper, 2)}]" if m.lower is not None else ""
                cells.append(_fmt(m.value) + ci)
            table.add_row(
                g.name, str(g.n), str(g.n_pos), *cells, "too small" if g.too_small else ""
            )
        out.print(table)
        gaps = Table(title="Gaps (max - min over eligible groups) and worst group vs rest")
        for col in ("family", "metric", "gap", "worst group", "worst - rest [95% CI]"):
            gaps.add_column(col)
        worst = {(w.family, w.metric): w for w in report.worst_vs_rest}
        for gp in report.gaps:
            w = worst.get((gp.family, gp.metric))
            diff = f"{w.difference:+.3f} [{_fmt(w.lower)}, {_fmt(w.upper)}]" if w else "-"
            gaps.add_row(gp.family, gp.metric, _fmt(gp.gap), w.group if w else "-", diff)
        out.print(gaps)

    _emit("fairness", payload, as_json, render)


if __name__ == "__main__":
    app()
