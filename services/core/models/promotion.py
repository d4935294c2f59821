"""Promotions (shadow, canary, champion) and rollbacks."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from services.core.models.base import Base, BigIntPK, utcnow


class Promotion(Base):
    """A promotion (shadow -> canary -> champion) or a rollback, with where it got to."""

    __tablename__ = "promotions"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    model_name: Mapped[str] = mapped_column(String(128))
    kind: Mapped[str] = mapped_column(String(16))
    from_version: Mapped[int | None] = mapped_column(Integer, default=None)
    to_version: Mapped[int] = mapped_column(Integer)
    stage: Mapped[str] = mapped_column(String(16))
    state: Mapped[str] = mapped_column(String(16), default="in_progress")
    approval_request_id: Mapped[int | None] = mapped_column(
        ForeignKey("approval_requests.id"), default=None
    )
    started_by: Mapped[str] = mapped_column(String(128))
    reason: Mapped[str] = mapped_column(Text)
    error: Mapped[str | None] = mapped_column(Text, default=None)
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    #: When it entered its current stage: the rollout plan's minutes count from here.
    stage_started_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(default=None)
