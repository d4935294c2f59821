"""Queries over ground-truth labels, and their join with prediction events."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import Table, func, select
from sqlalchemy.orm import Session

from services.core.models import GroundTruthLabel, PredictionEvent
from services.events.repository import insert_ignoring_duplicates

KEY = ("study_pid", "finding", "source", "reported_at")


def insert_labels(session: Session, rows: Sequence[Mapping[str, Any]]) -> set[tuple[Any, ...]]:
    """Store new labels; returns the key tuples of the rows stored (see :data:`KEY`)."""
    table = GroundTruthLabel.__table__
    assert isinstance(table, Table)
    return insert_ignoring_duplicates(session, table, rows, key=list(KEY))


def labelled_events(
    session: Session,
    *,
    model_name: str,
    finding: str,
    site: str | None = None,
    after_id: int = 0,
    limit: int | None = None,
) -> list[tuple[PredictionEvent, bool]]:
    """Events of ``model_name`` that have a label for ``finding``, oldest first, each with its
    effective label: the one with the latest ``reported_at`` (ties: the latest received).

    Labels join by pseudonymised study id whenever they arrived, before or after the event.
    """
    ranked = (
        select(
            GroundTruthLabel.study_pid,
            GroundTruthLabel.label,
            func.row_number()
            .over(
                partition_by=GroundTruthLabel.study_pid,
                order_by=(GroundTruthLabel.reported_at.desc(), GroundTruthLabel.id.desc()),
            )
            .label("rank"),
        )
        .where(GroundTruthLabel.finding == finding)
        .subquery()
    )
    stmt = (
        select(PredictionEvent, ranked.c.label)
        .join(ranked, ranked.c.study_pid == PredictionEvent.study_pid)
        .where(
            ranked.c.rank == 1,
            PredictionEvent.model_name == model_name,
            PredictionEvent.id > after_id,
        )
        .order_by(PredictionEvent.id)
    )
    if site is not None:
        stmt = stmt.where(PredictionEvent.site == site)
    if limit is not None:
        stmt = stmt.limit(limit)
    return [(event, bool(label)) for event, label in session.execute(stmt).all()]


def labels_for_events(
    session: Session, study_pids: Sequence[str], *, finding: str
) -> dict[str, bool]:
    """The effective label of ``finding`` (latest ``reported_at``) for each of these studies
    that has one."""
    if not study_pids:
        return {}
    ranked = (
        select(
            GroundTruthLabel.study_pid,
            GroundTruthLabel.label,
            func.row_number()
            .over(
                partition_by=GroundTruthLabel.study_pid,
                order_by=(GroundTruthLabel.reported_at.desc(), GroundTruthLabel.id.desc()),
            )
            .label("rank"),
        )
        .where(
            GroundTruthLabel.finding == finding,
            GroundTruthLabel.study_pid.in_(sorted(set(study_pids))),
        )
        .subquery()
    )
    rows = session.execute(select(ranked.c.study_pid, ranked.c.label).where(ranked.c.rank == 1))
    return {pid: bool(label) for pid, label in rows}
