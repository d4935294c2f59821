"""Retraining runs and the dossiers that judge their candidates."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, Float, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from services.core.models.base import Base, BigIntPK, utcnow


class RetrainingRun(Base):
    """A retraining run: queued -> running -> succeeded | failed. ``lineage`` holds what the MLflow
    run records too (parent version, data snapshot hash, code version, trigger alert ids)."""

    __tablename__ = "retraining_runs"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    model_name: Mapped[str] = mapped_column(String(128))
    parent_version: Mapped[int] = mapped_column(Integer)
    state: Mapped[str] = mapped_column(String(16), default="queued")
    trigger: Mapped[str] = mapped_column(String(16))
    requested_by: Mapped[str] = mapped_column(String(128))
    seed: Mapped[int] = mapped_column(Integer, default=0)
    params: Mapped[dict[str, Any]] = mapped_column(JSON)
    lineage: Mapped[dict[str, Any]] = mapped_column(JSON)
    progress: Mapped[float] = mapped_column(Float, default=0.0)
    message: Mapped[str | None] = mapped_column(Text, default=None)
    candidate_version: Mapped[int | None] = mapped_column(Integer, default=None)
    mlflow_run_id: Mapped[str | None] = mapped_column(String(64), default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(default=None)
    finished_at: Mapped[datetime | None] = mapped_column(default=None)


class Dossier(Base):
    """The evaluation dossier of one candidate against one change-protocol version."""

    __tablename__ = "dossiers"
    __table_args__ = (Index("ix_dossiers_candidate", "model_name", "candidate_version"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    model_name: Mapped[str] = mapped_column(String(128))
    candidate_version: Mapped[int] = mapped_column(Integer)
    champion_version: Mapped[int] = mapped_column(Integer)
    retraining_run_id: Mapped[int | None] = mapped_column(
        ForeignKey("retraining_runs.id"), default=None
    )
    protocol_version: Mapped[int] = mapped_column(Integer)
    passed: Mapped[bool] = mapped_column(Boolean)
    document: Mapped[dict[str, Any]] = mapped_column(JSON)
    html: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
