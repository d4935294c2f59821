"""What Triton serves: deployments, the per-model routing row, shadow predictions."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, Float, Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from services.core.models.base import Base, BigIntPK, utcnow


class Deployment(Base):
    """A model version that is (or was) served: the link between MLflow and Triton."""

    __tablename__ = "deployments"
    __table_args__ = (UniqueConstraint("model_name", "model_version"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    model_name: Mapped[str] = mapped_column(String(128))
    model_version: Mapped[int] = mapped_column(Integer)
    mlflow_run_id: Mapped[str] = mapped_column(String(64))
    triton_model: Mapped[str] = mapped_column(String(128))
    role: Mapped[str] = mapped_column(String(32), default="champion")
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    operating_threshold: Mapped[float] = mapped_column(Float, default=0.5)
    #: Length of the embeddings its events carry; ingestion rejects other lengths. ``None`` for
    #: deployments registered before the column existed (no check).
    embedding_dim: Mapped[int | None] = mapped_column(Integer, default=None)
    #: The :class:`~pipelines.spec.ModelSpec` it serves (canonical JSON as a mapping) and its
    #: digest. ``None`` for deployments made before specs existed: the built-in model.
    spec: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    spec_sha256: Mapped[str | None] = mapped_column(String(64), default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ModelRouting(Base):
    """How the gateway routes one model's traffic. One row per model, switched in one UPDATE so
    that routing never shows a half-done change. ``mode`` is ``champion``, ``shadow`` (the
    candidate gets a mirrored copy, never returned) or ``canary`` (``canary_share`` of requests
    get the candidate's answer)."""

    __tablename__ = "model_routing"

    model_name: Mapped[str] = mapped_column(String(128), primary_key=True)
    champion_version: Mapped[int] = mapped_column(Integer)
    previous_champion_version: Mapped[int | None] = mapped_column(Integer, default=None)
    candidate_version: Mapped[int | None] = mapped_column(Integer, default=None)
    mode: Mapped[str] = mapped_column(String(16), default="champion")
    canary_share: Mapped[float] = mapped_column(Float, default=0.0)
    generation: Mapped[int] = mapped_column(Integer, default=1)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class ShadowPrediction(Base):
    """The candidate's answer to a mirrored request during shadow: logged and compared with the
    champion's event (``event_id``), never returned, and kept out of ``prediction_events`` so
    monitors only ever see answers that reached a clinician."""

    __tablename__ = "shadow_predictions"
    __table_args__ = (Index("ix_shadow_model_version", "model_name", "candidate_version", "id"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    event_id: Mapped[str] = mapped_column(String(64))
    model_name: Mapped[str] = mapped_column(String(128))
    candidate_version: Mapped[int] = mapped_column(Integer)
    champion_version: Mapped[int] = mapped_column(Integer)
    scores: Mapped[dict[str, Any]] = mapped_column(JSON)
    champion_scores: Mapped[dict[str, Any]] = mapped_column(JSON)
    latency_ms: Mapped[float] = mapped_column(Float)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
