"""Which windows are due, and computing each one exactly once.

For every active declared monitor of a model with an active champion, and every scope key (each
site for ``per_site`` monitors, ``"*"`` for ``global`` ones), the next window is:

* **count**: the next ``size`` events after the last window's last event id, up to the committed
  watermark (events cannot appear behind it later);
* **time**: ``[start, start + seconds)`` of the time radwatch stored the events, starting where
  the last window ended, once the committed watermark time has passed its end.

Time windows align to multiples of ``seconds``; stretches with no events are skipped, not
stored. A ``performance`` window additionally waits ``label_wait_s`` after its last event (its
end, for time windows) so that late labels can arrive; it is then evaluated on its labelled
events only.

Exactly once: the computing transaction holds a PostgreSQL advisory lock on (monitor, scope key)
(``pg_try_advisory_xact_lock``; a second worker skips instead of computing it twice), and the
unique key (monitor, model, site, window_index) refuses a duplicate row regardless. A worker
that crashes mid-window rolls back, releasing the lock, and the next tick computes it again.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy.orm import Session

from pipelines.profile import ReferenceProfile
from services.core.db import advisory_lock
from services.core.models import Deployment, Monitor, MonitorResult, PredictionEvent
from services.core.ports import Enqueuer
from services.events import repository as events
from services.labels.repository import labels_for_events
from services.monitoring import kinds, repository
from services.monitoring import service as monitors
from services.monitoring.alerting import open_alert_if_due
from services.monitoring.specs import (
    GLOBAL_SITE,
    DriftSpec,
    EstimateSpec,
    FairnessSpec,
    MonitorSpec,
    PerformanceSpec,
)
from services.serving import repository as deployments

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Target:
    monitor_id: int
    deployment_id: int
    site: str


def due_targets(session: Session) -> list[Target]:
    """(monitor, champion deployment, scope key) triples to examine on this tick."""
    targets: list[Target] = []
    for monitor in monitors.list_monitors(session, active=True):
        champion = deployments.active(session, monitor.model_name)
        if champion is None:
            continue
        spec = monitors.spec_of(monitor)
        keys = (
            [GLOBAL_SITE] if spec.scope == "global" else events.sites(session, monitor.model_name)
        )
        targets.extend(Target(monitor.id, champion.id, key) for key in keys)
    return targets


def _try_lock(session: Session, monitor_id: int, site: str) -> bool:
    """One worker computes a (monitor, scope key) at a time; the others skip it this tick."""
    return advisory_lock(session, (monitor_id, site), wait=False)


@dataclass(frozen=True)
class _Window:
    index: int
    rows: list[PredictionEvent]
    start: datetime | None
    end: datetime | None
    first_event_id: int
    last_event_id: int


def _next_window(
    session: Session,
    *,
    monitor: Monitor,
    spec: MonitorSpec,
    site: str,
    last: MonitorResult | None,
    now: datetime,
    mark: events.Watermark,
) -> _Window | None:
    ready_at = min(now, mark.at)
    wait = (
        timedelta(seconds=spec.label_wait_s)
        if isinstance(spec, PerformanceSpec | FairnessSpec)
        else None
    )
    index = last.window_index + 1 if last else 0
    after_id = last.last_event_id if last else 0
    scope = None if site == GLOBAL_SITE else site
    if spec.window.type == "count":
        size = spec.window.size
        assert size is not None
        rows = list(
            events.window(
                session,
                model_name=monitor.model_name,
                site=scope,
                after_id=after_id,
                size=size,
                up_to_id=mark.event_id,
            )
        )
        if len(rows) < size:
            return None
        if wait is not None and rows[-1].created_at + wait > now:
            return None
        return _Window(index, rows, None, None, rows[0].id, rows[-1].id)

    seconds = spec.window.seconds
    assert seconds is not None
    length = timedelta(seconds=seconds)
    # Windows are aligned to multiples of ``seconds`` since the Unix epoch. Stretches without
    # events are skipped rather than stored as empty windows: the next window is the aligned
    # one that holds the next stored event.
    after = last.window_end if last is not None and last.window_end is not None else None
    first = events.first_stored_at(
        session, model_name=monitor.model_name, site=scope, at_or_after=after
    )
    if first is None:
        return None
    aligned = math.floor(first.timestamp() / seconds) * seconds
    start = datetime.fromtimestamp(aligned, tz=UTC)
    if after is not None and start < after:
        start = after
    end = start + length
    if end > ready_at or (wait is not None and end + wait > now):
        return None
    rows = list(
        events.time_window(session, model_name=monitor.model_name, site=scope, start=start, end=end)
    )
    first_id = rows[0].id if rows else after_id
    last_id = rows[-1].id if rows else after_id
    return _Window(index, rows, start, end, first_id, last_id)


def _skipped(reason: str, n_reference: int) -> kinds.WindowEvaluation:
    return kinds.WindowEvaluation(0.0, 1.0, False, n_reference, {"skipped": reason})


def _evaluate(
    session: Session,
    *,
    spec: MonitorSpec,
    window: _Window,
    deployment: Deployment,
    profile: ReferenceProfile,
    site: str,
) -> kinds.WindowEvaluation:
    rows = window.rows
    if isinstance(spec, DriftSpec):
        if len(rows) < 20:
            return _skipped(f"{len(rows)} events in the window; drift needs 20", len(profile))
        return kinds.evaluate_drift(spec, rows, profile, site=site, seed=window.index)
    threshold = spec.threshold if spec.threshold is not None else deployment.operating_threshold
    if isinstance(spec, EstimateSpec):
        if len(rows) < 20:
            return _skipped(f"{len(rows)} events in the window; needs 20", len(profile))
        baseline = _baseline(spec, profile, threshold)
        return kinds.evaluate_estimate(
            spec, rows, profile, threshold=threshold, baseline=baseline, seed=window.index
        )
    labels = labels_for_events(session, [r.study_pid for r in rows], finding=spec.finding)
    labelled = [(r, labels[r.study_pid]) for r in rows if r.study_pid in labels]
    positives = sum(1 for _, y in labelled if y)
    if len(labelled) < spec.min_labelled or positives in (0, len(labelled)):
        reason = (
            f"{len(labelled)} of {len(rows)} events labelled ({positives} positive); needs "
            f"{spec.min_labelled} with both classes"
        )
        return _skipped(reason, len(profile))
    if isinstance(spec, FairnessSpec):
        return kinds.evaluate_fairness(
            spec, labelled, threshold=threshold, n_reference=len(profile), seed=window.index
        )
    return kinds.evaluate_labelled(
        spec,
        labelled,
        threshold=threshold,
        baseline=_baseline(spec, profile, threshold),
        n_reference=len(profile),
    )


def _baseline(
    spec: PerformanceSpec | EstimateSpec, profile: ReferenceProfile, threshold: float
) -> float:
    if spec.baseline is not None:
        return spec.baseline
    return kinds.reference_baseline(profile, spec.finding, spec.metric, threshold)


def compute_next_window(
    session: Session,
    *,
    enqueuer: Enqueuer,
    monitor: Monitor,
    deployment: Deployment,
    profile: ReferenceProfile,
    site: str,
    now: datetime | None = None,
    mark: events.Watermark | None = None,
) -> MonitorResult | None:
    """Compute, store and (if the policy says so) alert on the next due window of one monitor
    and scope key; ``None`` when none is due or another worker holds it. ``now`` may be given
    to evaluate as of a later time (label waits in tests). ``mark`` is the committed watermark
    to read up to; a tick reads it once for all its windows (an older mark is still safe, it
    only defers newer events to the next tick), otherwise it is read here."""
    if not _try_lock(session, monitor.id, site):
        return None
    spec = monitors.spec_of(monitor)
    last = repository.last_result(
        session, monitor=monitor.name, model_name=monitor.model_name, site=site
    )
    window = _next_window(
        session,
        monitor=monitor,
        spec=spec,
        site=site,
        last=last,
        now=now or datetime.now(UTC),
        mark=mark or events.committed_watermark_at(session),
    )
    if window is None:
        return None
    evaluation = _evaluate(
        session, spec=spec, window=window, deployment=deployment, profile=profile, site=site
    )
    details = dict(evaluation.details)
    details["kind"] = spec.kind
    details["monitor_version"] = monitor.version
    result = repository.add_result(
        session,
        MonitorResult(
            monitor=monitor.name,
            monitor_id=monitor.id,
            model_name=monitor.model_name,
            model_version=deployment.model_version,
            site=site,
            window_index=window.index,
            window_start=window.start,
            window_end=window.end,
            first_event_id=window.first_event_id,
            last_event_id=window.last_event_id,
            n_current=len(window.rows),
            n_reference=evaluation.n_reference,
            statistic=evaluation.statistic,
            p_value=evaluation.p_value,
            drift=evaluation.significant,
            details=details,
        ),
    )
    open_alert_if_due(session, enqueuer=enqueuer, spec=spec, result=result)
    return result
