"""Sign-off: approval requests and their signed decisions."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from services.core.models.base import Base, BigIntPK, utcnow


class ApprovalRequest(Base):
    """pending -> approved | rejected | withdrawn | expired. At most one pending request per
    candidate (partial unique index)."""

    __tablename__ = "approval_requests"
    __table_args__ = (
        Index(
            "uq_approval_one_pending",
            "model_name",
            "candidate_version",
            unique=True,
            postgresql_where=text("state = 'pending'"),
            sqlite_where=text("state = 'pending'"),
        ),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    model_name: Mapped[str] = mapped_column(String(128))
    candidate_version: Mapped[int] = mapped_column(Integer)
    dossier_id: Mapped[int] = mapped_column(ForeignKey("dossiers.id"))
    state: Mapped[str] = mapped_column(String(16), default="pending")
    approver_role: Mapped[str] = mapped_column(String(32))
    required_approvals: Mapped[int] = mapped_column(Integer)
    criteria_passed: Mapped[bool] = mapped_column(Boolean)
    #: Everyone who triggered or trained the candidate: none of them may approve it.
    conflicted: Mapped[dict[str, Any]] = mapped_column(JSON)
    requested_by: Mapped[str] = mapped_column(String(128))
    override: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime] = mapped_column()
    decided_at: Mapped[datetime | None] = mapped_column(default=None)


class ApprovalDecision(Base):
    """One signed decision on a request. ``signature`` is the SHA-256 of the signed content
    (request, candidate, decision, reason, signer, time), so the meaning of the signature is
    bound to the record (21 CFR 11.70 style)."""

    __tablename__ = "approval_decisions"
    __table_args__ = (UniqueConstraint("request_id", "approver"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    request_id: Mapped[int] = mapped_column(ForeignKey("approval_requests.id"))
    approver: Mapped[str] = mapped_column(String(128))
    decision: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str] = mapped_column(Text)
    override: Mapped[bool] = mapped_column(Boolean, default=False)
    reauth: Mapped[str] = mapped_column(String(16))
    signature: Mapped[str] = mapped_column(String(64))
    signed_at: Mapped[datetime] = mapped_column(default=utcnow)
