"""Queries over monitor results and alerts."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from services.core.models import Alert, AlertState, Monitor, MonitorResult


def last_result(
    session: Session, *, monitor: str, model_name: str, site: str
) -> MonitorResult | None:
    newest = recent_results(session, monitor=monitor, model_name=model_name, site=site, limit=1)
    return newest[0] if newest else None


def recent_results(
    session: Session, *, monitor: str, model_name: str, site: str, limit: int
) -> Sequence[MonitorResult]:
    """The newest ``limit`` windows, newest first."""
    stmt = (
        select(MonitorResult)
        .where(
            MonitorResult.monitor == monitor,
            MonitorResult.model_name == model_name,
            MonitorResult.site == site,
        )
        .order_by(MonitorResult.window_index.desc())
        .limit(limit)
    )
    return session.scalars(stmt).all()


def add_result(session: Session, result: MonitorResult) -> MonitorResult:
    session.add(result)
    session.flush()
    return result


def latest_results(session: Session) -> Sequence[MonitorResult]:
    """The newest window of every (monitor, model, site)."""
    newest = (
        select(
            MonitorResult.monitor,
            MonitorResult.model_name,
            MonitorResult.site,
            func.max(MonitorResult.window_index).label("w"),
        )
        .group_by(MonitorResult.monitor, MonitorResult.model_name, MonitorResult.site)
        .subquery()
    )
    stmt = select(MonitorResult).join(
        newest,
        (MonitorResult.monitor == newest.c.monitor)
        & (MonitorResult.model_name == newest.c.model_name)
        & (MonitorResult.site == newest.c.site)
        & (MonitorResult.window_index == newest.c.w),
    )
    return session.scalars(stmt).all()


def results(
    session: Session, *, model_name: str | None = None, site: str | None = None, limit: int = 1000
) -> Sequence[MonitorResult]:
    stmt = select(MonitorResult).order_by(MonitorResult.id)
    if model_name:
        stmt = stmt.where(MonitorResult.model_name == model_name)
    if site:
        stmt = stmt.where(MonitorResult.site == site)
    return session.scalars(stmt.limit(limit)).all()


def results_of(
    session: Session, *, monitor: Monitor, site: str | None, after_window: int, limit: int
) -> Sequence[MonitorResult]:
    """A declared monitor's windows, by site then window index (results are keyed by the
    monitor's name and model)."""
    stmt = (
        select(MonitorResult)
        .where(
            MonitorResult.monitor == monitor.name,
            MonitorResult.model_name == monitor.model_name,
            MonitorResult.window_index > after_window,
        )
        .order_by(MonitorResult.site, MonitorResult.window_index)
        .limit(limit)
    )
    if site is not None:
        stmt = stmt.where(MonitorResult.site == site)
    return session.scalars(stmt).all()


def open_alert(session: Session, *, monitor: str, model_name: str, site: str) -> Alert | None:
    """The alert that blocks a new one for this key: open *or acknowledged*.

    Acknowledged means someone is working on the problem, so it still counts; only a resolved
    alert frees the key. The predicate matches the partial unique index
    ``uq_alerts_one_unresolved``, which enforces the same rule when two workers race.
    """
    stmt = select(Alert).where(
        Alert.monitor == monitor,
        Alert.model_name == model_name,
        Alert.site == site,
        Alert.state != AlertState.RESOLVED,
    )
    return session.scalars(stmt).first()


def add_alert(session: Session, alert: Alert) -> Alert:
    session.add(alert)
    session.flush()
    return alert


def alerts(
    session: Session,
    *,
    model_name: str | None = None,
    site: str | None = None,
    state: AlertState | None = None,
    severity: str | None = None,
    limit: int = 500,
) -> Sequence[Alert]:
    stmt = select(Alert).order_by(Alert.id)
    if model_name:
        stmt = stmt.where(Alert.model_name == model_name)
    if site:
        stmt = stmt.where(Alert.site == site)
    if state:
        stmt = stmt.where(Alert.state == state)
    if severity:
        stmt = stmt.where(Alert.severity == severity)
    return session.scalars(stmt.limit(limit)).all()


def open_alert_counts(session: Session) -> dict[tuple[str, str, str], int]:
    stmt = (
        select(Alert.model_name, Alert.site, Alert.severity, func.count(Alert.id))
        .where(Alert.state == AlertState.OPEN)
        .group_by(Alert.model_name, Alert.site, Alert.severity)
    )
    return {(m, s, sev): int(n) for m, s, sev, n in session.execute(stmt)}


def alert_counts(session: Session) -> dict[tuple[str, str, str, str], int]:
    """Alerts by (model, site, severity, state)."""
    stmt = select(Alert.model_name, Alert.site, Alert.severity, Alert.state, func.count()).group_by(
        Alert.model_name, Alert.site, Alert.severity, Alert.state
    )
    return {(m, s, sev, str(st)): int(n) for m, s, sev, st, n in session.execute(stmt)}


def monitor_kinds(session: Session) -> dict[int, str]:
    """Declared monitor id -> kind (drift, performance, estimate, fairness)."""
    return {i: k for i, k in session.execute(select(Monitor.id, Monitor.kind))}
