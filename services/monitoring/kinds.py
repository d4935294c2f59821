"""What each monitor kind computes on one window: pure functions over stored rows.

Every kind returns a :class:`WindowEvaluation`: one headline statistic, one p-value, whether the
window is significant at the monitor's alpha, and JSON details. The scheduler stores it as a
``monitor_results`` row and feeds the alert policy. Nothing here touches the database.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy import stats

from monitors.drift.report import DriftConfig, run_drift
from monitors.estimate import estimate_performance
from monitors.fairness import subgroup_report
from monitors.performance import evaluate_performance
from monitors.performance.types import MetricCI
from pipelines.profile import ReferenceProfile
from services.core.models import PredictionEvent
from services.monitoring import drift
from services.monitoring.specs import (
    DRIFT_CATEGORICAL,
    DRIFT_FEATURES,
    DRIFT_NUMERIC,
    GLOBAL_SITE,
    DriftSpec,
    EstimateSpec,
    FairnessSpec,
    PerformanceSpec,
)


@dataclass(frozen=True)
class WindowEvaluation:
    statistic: float
    p_value: float
    significant: bool
    n_reference: int
    details: dict[str, Any]


def evaluate_drift(
    spec: DriftSpec,
    rows: Sequence[PredictionEvent],
    profile: ReferenceProfile,
    *,
    site: str,
    seed: int,
) -> WindowEvaluation:
    """Acquisition drift of one window against the site's reference (or the whole reference
    for a global monitor or a site the reference lacks), Bonferroni-corrected across the
    tested columns and the embedding MMD."""
    if site == GLOBAL_SITE:
        reference, site_specific = profile, False
    else:
        reference, site_specific = drift.reference_for_site(profile, site)
    wanted = spec.features if spec.features is not None else list(DRIFT_FEATURES)
    ref_cols, cur_cols = drift.profile_columns(reference), drift.event_columns(rows)
    min_samples = min(20, len(rows))
    columns, skipped = drift.usable_columns(ref_cols, cur_cols, min_samples)
    columns = [c for c in columns if c in wanted]
    alpha = spec.policy.alpha
    n_tests = len(columns) + (1 if spec.embeddings else 0)
    config = DriftConfig(
        alpha=alpha,
        correction="bonferroni",
        categorical_columns=tuple(c for c in columns if c in DRIFT_CATEGORICAL),
        numeric_columns=tuple(c for c in columns if c in DRIFT_NUMERIC),
        n_permutations=max(spec.permutations, drift.permutations_needed(max(n_tests, 1), alpha)),
        seed=seed,
        min_samples=min_samples,
        max_n_embedding=spec.max_embedding_sample,
    )
    embeddings: dict[str, Any] = {}
    if spec.embeddings:
        current = drift.event_embeddings(rows)
        if current.shape[1] != reference.embeddings.shape[1]:
            raise ValueError(
                f"events carry {current.shape[1]}-dim embeddings but the reference has "
                f"{reference.embeddings.shape[1]}"
            )
        embeddings = {
            "reference_embeddings": reference.embeddings,
            "current_embeddings": current,
        }
    report = run_drift(
        {c: ref_cols[c] for c in columns},
        {c: cur_cols[c] for c in columns},
        config,
        **embeddings,
    )
    statistic, p_value = drift.headline(report)
    details = report.to_dict()
    details["site_specific_reference"] = site_specific
    details["skipped_columns"] = skipped
    return WindowEvaluation(statistic, p_value, bool(report.drift), len(reference), details)


def _finding_index(profile: ReferenceProfile, finding: str) -> int:
    if finding not in profile.findings:
        raise ValueError(
            f"finding '{finding}' is not an output of this model ({', '.join(profile.findings)})"
        )
    return profile.findings.index(finding)


def _labelled(profile: ReferenceProfile, j: int) -> npt.NDArray[np.bool_]:
    """Reference rows with a label for finding ``j`` (a reference built from a user's studies
    may have none: then label-based monitors cannot run, and say so)."""
    known: npt.NDArray[np.bool_] = profile.labels[:, j] >= 0
    if not known.any():
        raise ValueError(
            f"the reference profile has no labels for '{profile.findings[j]}'; rebuild it with "
            "`radwatch reference build --labels CSV` to monitor performance"
        )
    return known


def reference_baseline(
    profile: ReferenceProfile, finding: str, metric: str, threshold: float
) -> float:
    """The metric's value on the reference (validation) set: the default baseline."""
    j = _finding_index(profile, finding)
    known = _labelled(profile, j)
    report = evaluate_performance(profile.labels[known, j], profile.scores[known, j], threshold)
    value = report.metrics()[metric].value
    if value is None:
        raise ValueError(f"{metric} of '{finding}' is undefined on the reference set")
    return float(value)


def decay_test(metric: MetricCI, *, floor: float, alpha: float) -> tuple[float, bool]:
    """One-sided test of H0 "the metric is at least ``floor``" from a two-sided (1 - 2*alpha)
    interval: significant decay when its upper bound lies below the floor. The p-value uses the
    normal approximation with the interval's half-width as 1.645-ish standard errors; it agrees
    with the interval decision for symmetric intervals."""
    value, lower, upper = metric.value, metric.lower, metric.upper
    if value is None or lower is None or upper is None:
        return 1.0, False
    z_crit = float(stats.norm.ppf(1.0 - alpha))
    se = (upper - lower) / (2.0 * z_crit)
    if se <= 0.0 or not math.isfinite(se):
        return (0.0, True) if value < floor else (1.0, False)
    p = float(stats.norm.cdf((value - floor) / se))
    return p, upper < floor


def _metric_window(
    spec: PerformanceSpec | EstimateSpec,
    metric: MetricCI,
    *,
    baseline: float,
    report: dict[str, Any],
    n_reference: int,
    extra: dict[str, Any],
) -> WindowEvaluation:
    """The decay decision shared by the labelled and the estimated metric."""
    floor = baseline - spec.margin
    p, significant = decay_test(metric, floor=floor, alpha=spec.policy.alpha)
    details = {
        "finding": spec.finding,
        "metric": spec.metric,
        "baseline": baseline,
        "margin": spec.margin,
        "floor": floor,
        **extra,
        "report": report,
    }
    value = metric.value if metric.value is not None else float("nan")
    return WindowEvaluation(value, p, significant, n_reference, details)


def evaluate_labelled(
    spec: PerformanceSpec,
    labelled: Sequence[tuple[PredictionEvent, bool]],
    *,
    threshold: float,
    baseline: float,
    n_reference: int,
) -> WindowEvaluation:
    """Realised performance of one finding on the labelled events of a window."""
    y = np.array([label for _, label in labelled], dtype=bool)
    score = np.array([float(e.scores[spec.finding]) for e, _ in labelled], dtype=np.float64)
    alpha = spec.policy.alpha
    report = evaluate_performance(y, score, threshold, alpha=min(0.5, 2 * alpha))
    return _metric_window(
        spec,
        report.metrics()[spec.metric],
        baseline=baseline,
        report=report.to_dict(),
        n_reference=n_reference,
        extra={"n_labelled": int(y.size)},
    )


def evaluate_estimate(
    spec: EstimateSpec,
    rows: Sequence[PredictionEvent],
    profile: ReferenceProfile,
    *,
    threshold: float,
    baseline: float,
    seed: int,
) -> WindowEvaluation:
    """Label-free (CBPE) estimate of one finding's metric on a window, calibrated on the
    reference profile."""
    j = _finding_index(profile, spec.finding)
    current = np.array([float(e.scores[spec.finding]) for e in rows], dtype=np.float64)
    alpha = spec.policy.alpha
    known = _labelled(profile, j)
    report = estimate_performance(
        profile.scores[known, j],
        profile.labels[known, j],
        current,
        threshold,
        alpha=min(0.5, 2 * alpha),
        seed=seed,
    )
    return _metric_window(
        spec,
        report.metrics()[spec.metric],
        baseline=baseline,
        report=report.to_dict(),
        n_reference=len(profile),
        extra={},
    )


def age_band(age: float | None) -> str:
    if age is None:
        return "unknown"
    if age < 40:
        return "<40"
    if age < 60:
        return "40-59"
    if age < 80:
        return "60-79"
    return "80+"


def _attribute(event: PredictionEvent, name: str) -> str:
    if name == "age_band":
        return age_band(event.age)
    value = getattr(event, name)
    return str(value) if value not in (None, "") else "unknown"


def evaluate_fairness(
    spec: FairnessSpec,
    labelled: Sequence[tuple[PredictionEvent, bool]],
    *,
    threshold: float,
    n_reference: int,
    seed: int,
) -> WindowEvaluation:
    """Subgroup report of one finding on the labelled events of a window; significant when the
    worst group trails the rest by more than ``max_gap`` with (1 - alpha) confidence."""
    y = np.array([label for _, label in labelled], dtype=bool)
    score = np.array([float(e.scores[spec.finding]) for e, _ in labelled], dtype=np.float64)
    groups = {
        name: np.array([_attribute(e, name) for e, _ in labelled], dtype=object)
        for name in spec.groups
    }
    alpha = spec.policy.alpha
    report = subgroup_report(
        y,
        score,
        threshold,
        groups,
        min_n=spec.min_n,
        n_bootstrap=spec.n_bootstrap,
        seed=seed,
        alpha=min(0.5, 2 * alpha),
    )
    # "Worse" is lower TPR/AUROC, higher FPR: orient every difference so that negative is worse.
    sign = -1.0 if spec.metric == "fpr" else 1.0
    worst_gap, p_value, significant, worst = 0.0, 1.0, False, None
    for w in report.worst_vs_rest:
        if w.metric != spec.metric or w.lower is None or w.upper is None:
            continue
        diff = sign * w.difference
        lo, hi = sorted((sign * w.lower, sign * w.upper))
        ci = MetricCI(value=diff, lower=lo, upper=hi, n=w.n_group, method="bootstrap")
        p, sig = decay_test(ci, floor=-spec.max_gap, alpha=alpha)
        if worst is None or p < p_value:
            worst_gap, p_value, significant, worst = -diff, p, sig, w
    details = {
        "finding": spec.finding,
        "metric": spec.metric,
        "max_gap": spec.max_gap,
        "n_labelled": int(y.size),
        "worst": None if worst is None else worst.to_dict(),
        "too_small_groups": report.too_small_groups,
        "report": report.to_dict(),
    }
    return WindowEvaluation(worst_gap, p_value, significant, n_reference, details)
