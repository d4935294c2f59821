"""Ground-truth labels: they arrive late and join prediction events by study pseudonym."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from services.core.models.base import Base, BigIntPK, utcnow


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
