"""Queries of the retraining tables: runs and the dossiers that judge their candidates."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from services.core.models import Dossier, RetrainingRun, RetrainingState

ACTIVE = (RetrainingState.QUEUED, RetrainingState.RUNNING)


# --- runs ------------------------------------------------------------------------------------


def add_run(session: Session, run: RetrainingRun) -> RetrainingRun:
    session.add(run)
    session.flush()
    return run


def get_run(session: Session, run_id: int, *, for_update: bool = False) -> RetrainingRun | None:
    stmt = select(RetrainingRun).where(RetrainingRun.id == run_id)
    if for_update:
        stmt = stmt.with_for_update()
    return session.scalars(stmt).first()


def list_runs(
    session: Session, *, model_name: str | None = None, state: str | None = None, limit: int = 100
) -> Sequence[RetrainingRun]:
    """Newest first."""
    stmt = select(RetrainingRun).order_by(RetrainingRun.id.desc()).limit(limit)
    if model_name:
        stmt = stmt.where(RetrainingRun.model_name == model_name)
    if state:
        stmt = stmt.where(RetrainingRun.state == state)
    return session.scalars(stmt).all()


def active_run(session: Session, model_name: str) -> RetrainingRun | None:
    """The model's queued or running run, if any (at most one by the service's rule)."""
    stmt = select(RetrainingRun).where(
        RetrainingRun.model_name == model_name, RetrainingRun.state.in_(ACTIVE)
    )
    return session.scalars(stmt.order_by(RetrainingRun.id)).first()


def in_state(session: Session, state: RetrainingState) -> Sequence[RetrainingRun]:
    """Every run in ``state``, locked until the transaction ends."""
    stmt = select(RetrainingRun).where(RetrainingRun.state == state).with_for_update()
    return session.scalars(stmt).all()


def last_run_at(session: Session, model_name: str) -> datetime | None:
    return session.scalar(
        select(func.max(RetrainingRun.created_at)).where(RetrainingRun.model_name == model_name)
    )


def set_progress(session: Session, run_id: int, *, progress: float, message: str) -> None:
    """Progress of a running run (no effect once it finished)."""
    session.execute(
        update(RetrainingRun)
        .where(RetrainingRun.id == run_id, RetrainingRun.state == RetrainingState.RUNNING)
        .values(progress=progress, message=message)
    )


def counts(session: Session) -> dict[tuple[str, str], int]:
    """(model, state) -> number of runs."""
    stmt = select(RetrainingRun.model_name, RetrainingRun.state, func.count()).group_by(
        RetrainingRun.model_name, RetrainingRun.state
    )
    return {(m, s): int(n) for m, s, n in session.execute(stmt)}


# --- dossiers --------------------------------------------------------------------------------


def add_dossier(session: Session, dossier: Dossier) -> Dossier:
    session.add(dossier)
    session.flush()
    return dossier


def dossier(session: Session, dossier_id: int) -> Dossier | None:
    return session.get(Dossier, dossier_id)


def dossier_of_run(session: Session, run_id: int) -> Dossier | None:
    """The newest dossier of a run's candidate."""
    stmt = select(Dossier).where(Dossier.retraining_run_id == run_id).order_by(Dossier.id.desc())
    return session.scalars(stmt).first()
