"""Prediction events: one row per prediction, identifiers pseudonymised."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Float, Index, Integer, LargeBinary, String
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
