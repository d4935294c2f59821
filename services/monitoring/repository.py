"""Queries of the monitoring tables: declared monitors, their change history, and the windows
they computed (alerts are the alerts domain's)."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from services.core.models import Monitor, MonitorChange, MonitorResult


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


def get_result(session: Session, result_id: int) -> MonitorResult | None:
    return session.get(MonitorResult, result_id)


def first_significant_event_id(
    session: Session, *, monitor: str, model_name: str, site: str, windows: tuple[int, int]
) -> int | None:
    """First event id of the earliest significant window with index in ``(lo, hi]``."""
    lo, hi = windows
    stmt = (
        select(MonitorResult.first_event_id)
        .where(
            MonitorResult.monitor == monitor,
            MonitorResult.model_name == model_name,
            MonitorResult.site == site,
            MonitorResult.drift.is_(True),
            MonitorResult.window_index > lo,
            MonitorResult.window_index <= hi,
        )
        .order_by(MonitorResult.window_index)
        .limit(1)
    )
    first = session.scalars(stmt).first()
    return None if first is None else int(first)


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


def monitor_kinds(session: Session) -> dict[int, str]:
    """Declared monitor id -> kind (drift, performance, estimate, fairness)."""
    return {i: k for i, k in session.execute(select(Monitor.id, Monitor.kind))}


# --- declared monitors -------------------------------------------------------------------------


def add_monitor(session: Session, monitor: Monitor) -> Monitor:
    session.add(monitor)
    session.flush()
    return monitor


def get_monitor(session: Session, monitor_id: int, *, for_update: bool = False) -> Monitor | None:
    stmt = select(Monitor).where(Monitor.id == monitor_id)
    if for_update:
        stmt = stmt.with_for_update()
    return session.scalars(stmt).first()


def list_monitors(
    session: Session, *, model_name: str | None = None, active: bool | None = None
) -> list[Monitor]:
    stmt = select(Monitor).order_by(Monitor.model_name, Monitor.id)
    if model_name is not None:
        stmt = stmt.where(Monitor.model_name == model_name)
    if active is not None:
        stmt = stmt.where(Monitor.active == active)
    return list(session.scalars(stmt))


def add_change(session: Session, change: MonitorChange) -> None:
    session.add(change)
    session.flush()


def changes(session: Session, monitor_id: int) -> list[MonitorChange]:
    stmt = (
        select(MonitorChange)
        .where(MonitorChange.monitor_id == monitor_id)
        .order_by(MonitorChange.version)
    )
    return list(session.scalars(stmt))
