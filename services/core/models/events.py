"""Predictions and the ground-truth labels that join them later."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, Float, Index, Integer, LargeBinary, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from services.core.models.base import Base, BigIntPK, utcnow


class PredictionEvent(Base):
    """One prediction. Identifiers are pseudonyms; the embedding is float32 little-endian bytes."""

    __tablename__ = "prediction_events"
    __table_args__ = (Index("ix_events_model_site_id", "model_name", "site", "id"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    event_id: Mapped[str] = mapped_column(String(64), unique=True)
    model_name: Mapped[str] = mapped_column(String(128))
    model_version: Mapped[int] = mapped_column(Integer)
    study_pid: Mapped[str] = mapped_column(String(32), index=True)
    patient_pid: Mapped[str | None] = mapped_column(String(32))
    site: Mapped[str] = mapped_column(String(64))
    manufacturer: Mapped[str | None] = mapped_column(String(64))
    manufacturer_model: Mapped[str | None] = mapped_column(String(64))
    view_position: Mapped[str | None] = mapped_column(String(8))
    kvp: Mapped[float | None] = mapped_column(Float)
    sex: Mapped[str | None] = mapped_column(String(8))
    age: Mapped[float | None] = mapped_column(Float)
    race_ethnicity: Mapped[str | None] = mapped_column(String(64))
    scores: Mapped[dict[str, Any]] = mapped_column(JSON)
    image_stats: Mapped[dict[str, Any]] = mapped_column(JSON)
    embedding: Mapped[bytes] = mapped_column(LargeBinary)
    #: When the producer ran inference (its clock); ``created_at`` is when radwatch stored it.
    occurred_at: Mapped[datetime | None] = mapped_column(default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class GroundTruthLabel(Base):
    """A ground-truth label for one finding of one study, as reported by one source.

    Labels arrive days or weeks after the prediction, or before it: they join events by the
    pseudonymised study id at query time, so the order of arrival does not matter. Rows are never
    updated: a correction is a new row with a later ``reported_at``, and the latest one wins.
    The unique key makes a re-sent label a no-op.
    """

    __tablename__ = "ground_truth_labels"
    __table_args__ = (
        UniqueConstraint("study_pid", "finding", "source", "reported_at"),
        Index("ix_labels_study_finding", "study_pid", "finding"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    study_pid: Mapped[str] = mapped_column(String(32))
    finding: Mapped[str] = mapped_column(String(64))
    label: Mapped[bool] = mapped_column(Boolean)
    source: Mapped[str] = mapped_column(String(64))
    reported_at: Mapped[datetime] = mapped_column()
    received_at: Mapped[datetime] = mapped_column(default=utcnow)
