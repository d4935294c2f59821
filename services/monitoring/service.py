"""The acquisition-drift monitor: per-site count windows compared with the reference profile.

Each site's events are cut into consecutive windows of ``settings.monitor_window`` events. A
window is compared with the validation-set reference of the same site (or of all sites when the
site was not in the reference): MMD on the encoder embeddings, and per-column tests on the
acquisition metadata and image statistics, Bonferroni-corrected so the window's family-wise
false-alarm rate is ``settings.monitor_alpha``. An alert opens when ``k`` of the last ``m``
windows of the site drifted (:class:`monitors.policy.AlertPolicy`), and never twice while
one is open for the same monitor and site.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from monitors.drift.report import DriftConfig, DriftReport, run_drift
from monitors.policy import AlertPolicy, WindowOutcome
from pipelines.contract import EMBEDDING_DIM
from pipelines.profile import ReferenceProfile
from services.core.models import Alert, Deployment, MonitorResult, PredictionEvent
from services.core.settings import Settings
from services.events import repository as events
from services.monitoring import repository

log = logging.getLogger(__name__)

MONITOR = "acquisition_drift"

#: Acquisition metadata compared per window. Demographics are not here on purpose: a change in
#: who is scanned is a population shift, judged by the fairness monitors, not a scanner problem.
CATEGORICAL = ("manufacturer", "manufacturer_model", "view_position")
NUMERIC = ("kvp", "img_mean", "img_std", "img_p01", "img_p99")


def event_columns(rows: Sequence[PredictionEvent]) -> dict[str, npt.NDArray[Any]]:
    cols: dict[str, npt.NDArray[Any]] = {
        "manufacturer": np.array([r.manufacturer or "unknown" for r in rows], dtype=object),
        "manufacturer_model": np.array(
            [r.manufacturer_model or "unknown" for r in rows], dtype=object
        ),
        "view_position": np.array([r.view_position or "unknown" for r in rows], dtype=object),
        "kvp": np.array([np.nan if r.kvp is None else r.kvp for r in rows], dtype=np.float64),
    }
    for stat in ("mean", "std", "p01", "p99"):
        cols[f"img_{stat}"] = np.array([r.image_stats[stat] for r in rows], dtype=np.float64)
    return cols


def event_embeddings(rows: Sequence[PredictionEvent]) -> npt.NDArray[np.float32]:
    out = np.empty((len(rows), len(rows[0].embedding) // 4), dtype=np.float32)
    for i, r in enumerate(rows):
        out[i] = np.frombuffer(r.embedding, dtype="<f4")
    return out


def profile_columns(profile: ReferenceProfile) -> dict[str, npt.NDArray[Any]]:
    meta = profile.metadata
    cols: dict[str, npt.NDArray[Any]] = {}
    for c in CATEGORICAL:
        cols[c] = meta[c].fillna("unknown").astype(str).to_numpy(dtype=object)
    for c in NUMERIC:
        cols[c] = meta[c].to_numpy(dtype=np.float64)
    return cols


#: Fewest reference studies of a site for a site-specific comparison. Below it the site is
#: compared with the whole reference, which flags a site whose vendor mix was never validated.
MIN_SITE_REFERENCE = 50


def reference_for_site(profile: ReferenceProfile, site: str) -> tuple[ReferenceProfile, bool]:
    """The site's own reference when the profile has enough of it, else the whole profile."""
    own = profile.for_site(site)
    if len(own) >= MIN_SITE_REFERENCE:
        return own, True
    return profile, False


def usable_columns(
    reference: dict[str, npt.NDArray[Any]], current: dict[str, npt.NDArray[Any]], min_samples: int
) -> tuple[list[str], dict[str, str]]:
    """Columns a window can be tested on, and why the others were skipped.

    A column with one value across both samples carries no evidence either way (a single-vendor
    site has a constant ``manufacturer`` until the vendor changes, and then it is not constant).
    A numeric column with too few recorded values (a producer that sends no kVp) is skipped
    rather than failing the whole window.
    """
    keep: list[str] = []
    skipped: dict[str, str] = {}
    for name in (*CATEGORICAL, *NUMERIC):
        ref, cur = reference[name], current[name]
        if name in NUMERIC:
            ref, cur = ref[~np.isnan(ref)], cur[~np.isnan(cur)]
            if min(len(ref), len(cur)) < min_samples:
                skipped[name] = f"fewer than {min_samples} recorded values"
                continue
        if len(set(ref.tolist()) | set(cur.tolist())) < 2:
            skipped[name] = "one value in both reference and window"
            continue
        keep.append(name)
    return keep, skipped


def permutations_needed(n_tests: int, alpha: float) -> int:
    """Permutations B such that the smallest attainable p-value, 1/(B+1), is at most half of the
    Bonferroni per-test level alpha/n_tests. With fewer, a permutation test could never reach
    significance after correction (500 permutations cannot beat 0.01/8 = 0.00125)."""
    return math.ceil(2 * n_tests / alpha) - 1


def drift_config(settings: Settings, columns: Sequence[str], seed: int) -> DriftConfig:
    n_tests = len(columns) + 1  # every column plus the embedding MMD
    return DriftConfig(
        alpha=settings.monitor_alpha,
        correction="bonferroni",
        categorical_columns=tuple(c for c in columns if c in CATEGORICAL),
        numeric_columns=tuple(c for c in columns if c in NUMERIC),
        n_permutations=max(
            settings.monitor_permutations, permutations_needed(n_tests, settings.monitor_alpha)
        ),
        seed=seed,
        min_samples=min(20, settings.monitor_window),
    )


def compute_next_window(
    session: Session,
    *,
    settings: Settings,
    deployment: Deployment,
    profile: ReferenceProfile,
    site: str,
) -> MonitorResult | None:
    """Compute the site's next complete window if there is one, and open an alert if due.

    Returns None when no complete window is waiting. The unique key on
    (monitor, model, site, window_index) means a racing worker's duplicate fails to insert; the
    caller's transaction then rolls back and nothing is stored twice.
    """
    last = repository.last_result(
        session, monitor=MONITOR, model_name=deployment.model_name, site=site
    )
    after_id = last.last_event_id if last else 0
    index = last.window_index + 1 if last else 0
    rows = events.window(
        session,
        model_name=deployment.model_name,
        site=site,
        after_id=after_id,
        size=settings.monitor_window,
        up_to_id=events.committed_watermark(session),
    )
    if len(rows) < settings.monitor_window:
        return None

    reference, site_specific = reference_for_site(profile, site)
    current_emb = event_embeddings(rows)
    if current_emb.shape[1] != reference.embeddings.shape[1]:
        raise ValueError(
            f"Events carry {current_emb.shape[1]}-dim embeddings but the reference has "
            f"{reference.embeddings.shape[1]} (expected {EMBEDDING_DIM})."
        )
    ref_cols, cur_cols = profile_columns(reference), event_columns(rows)
    config_min = min(20, settings.monitor_window)
    columns, skipped = usable_columns(ref_cols, cur_cols, config_min)
    report = run_drift(
        {c: ref_cols[c] for c in columns},
        {c: cur_cols[c] for c in columns},
        drift_config(settings, columns, seed=index),
        reference_embeddings=reference.embeddings,
        current_embeddings=current_emb,
    )
    statistic, p_value = _headline(report)
    details = report.to_dict()
    details["site_specific_reference"] = site_specific
    details["skipped_columns"] = skipped
    result = repository.add_result(
        session,
        MonitorResult(
            monitor=MONITOR,
            model_name=deployment.model_name,
            model_version=deployment.model_version,
            site=site,
            window_index=index,
            first_event_id=rows[0].id,
            last_event_id=rows[-1].id,
            n_current=len(rows),
            n_reference=len(reference),
            statistic=statistic,
            p_value=p_value,
            drift=bool(report.drift),
            details=details,
        ),
    )
    _maybe_open_alert(session, settings=settings, result=result)
    return result


def _headline(report: DriftReport) -> tuple[float, float]:
    """The embedding MMD statistic and the smallest corrected p-value of the window."""
    mmd = [m for m in report.multivariate if m.test == "mmd"]
    statistic = float(mmd[0].statistic) if mmd else float("nan")
    pvals = [float(c.p_value) for c in report.columns if c.p_value is not None]
    pvals += [float(m.p_value) for m in report.multivariate if m.p_value is not None]
    return statistic, (min(pvals) if pvals else 1.0)


def _drifted_columns(details: dict[str, Any]) -> list[str]:
    """Human-readable evidence, strongest first: the embedding test, then up to 4 columns."""
    parts = [
        f"embedding {name} p={m['p_value']:.2g}"
        for name, m in details.get("multivariate", {}).items()
        if m.get("drift")
    ]
    drifted = sorted(
        ((name, c) for name, c in details.get("columns", {}).items() if c.get("drift")),
        key=lambda item: item[1]["p_value"],
    )
    for name, c in drifted[:4]:
        new = c.get("details", {}).get("new_categories")
        extra = f" (new: {', '.join(map(str, new))})" if new else ""
        parts.append(f"{name} {c['test']} p={c['p_value']:.2g}{extra}")
    return parts


def alert_policy(settings: Settings) -> AlertPolicy:
    """k of the last m windows significant (the latest among them) opens an alert."""
    return AlertPolicy(
        alpha=settings.monitor_alpha,
        persistence_k=settings.monitor_persistence_k,
        persistence_m=settings.monitor_persistence_m,
    )


def _maybe_open_alert(
    session: Session, *, settings: Settings, result: MonitorResult
) -> Alert | None:
    if not result.drift:
        return None
    recent = repository.recent_results(
        session,
        monitor=result.monitor,
        model_name=result.model_name,
        site=result.site,
        limit=settings.monitor_persistence_m,
    )
    # Every test of the window has a p-value and the report is Bonferroni-corrected, so the
    # stored smallest corrected p-value is below alpha exactly when the window drifted.
    history = [
        WindowOutcome(p_value=r.p_value, label=f"window {r.window_index}") for r in reversed(recent)
    ]
    decision = alert_policy(settings).evaluate(history)
    if not decision.fire:
        return None
    if repository.open_alert(
        session, monitor=result.monitor, model_name=result.model_name, site=result.site
    ):
        return None
    evidence = "; ".join(_drifted_columns(result.details)) or "drift flagged"
    detail = (
        f"Acquisition drift at site '{result.site}': {decision.significant} of the last "
        f"{decision.considered} windows of {result.n_current} studies drifted from the reference. "
        f"Latest window {result.window_index}: {evidence}."
    )
    severity = decision.severity
    # The same monitor and key never opens a second alert while one is unresolved: an
    # acknowledged alert still blocks (someone is working on it), only a resolved one frees the
    # key. ``open_alert`` above and the partial unique index below both apply that rule.
    from services.alerts import service as alerts

    try:
        with session.begin_nested():
            alert = repository.add_alert(
                session,
                Alert(
                    monitor=result.monitor,
                    model_name=result.model_name,
                    site=result.site,
                    severity=severity,
                    detail=detail,
                    result_id=result.id,
                    opened_after_predictions=events.count(
                        session, model_name=result.model_name, up_to_id=result.last_event_id
                    ),
                ),
            )
            # Webhook outbox rows in the same transaction: they commit or roll back with it.
            alerts.alert_opened(session, alert, settings=settings)
    except IntegrityError:
        # Another worker opened it first; the partial unique index kept it to one.
        return None
    log.info("alert opened: monitor=%s site=%s severity=%s", result.monitor, result.site, severity)
    return alert


def due_targets(session: Session) -> list[tuple[int, str]]:
    """(deployment id, site) pairs to examine: every site seen by every active champion."""
    from services.serving import repository as deployments

    targets: list[tuple[int, str]] = []
    for name in deployments.model_names(session):
        champion = deployments.active(session, name)
        if champion is None:
            continue
        targets.extend((champion.id, site) for site in events.sites(session, name))
    return targets
