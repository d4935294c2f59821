"""The declarative base, the column types every model shares, and the enumerations of states.

Timestamps are stored with their time zone and always come back as aware UTC datetimes
(:class:`UtcDateTime`), on PostgreSQL and SQLite alike, so no caller needs a naive-to-UTC
fix-up. States and roles are ``StrEnum``: they compare equal to the strings stored in the
database and serialize as those strings in JSON and audit payloads.
"""

from __future__ import annotations

import enum
from datetime import UTC, datetime
from typing import Any, ClassVar

from sqlalchemy import JSON, BigInteger, DateTime, Dialect, Integer
from sqlalchemy.orm import DeclarativeBase
from sqlalchemy.types import TypeDecorator

# SQLite only auto-increments INTEGER PRIMARY KEY; PostgreSQL gets a BIGINT identity.
BigIntPK = BigInteger().with_variant(Integer(), "sqlite")


def _enum_values(enum_cls: type[enum.Enum]) -> list[str]:
    return [str(m.value) for m in enum_cls]


def utcnow() -> datetime:
    return datetime.now(UTC)


def as_utc(value: datetime) -> datetime:
    """``value`` as an aware UTC datetime; a naive one is taken to be UTC already."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class UtcDateTime(TypeDecorator[datetime]):
    """``TIMESTAMP WITH TIME ZONE`` that binds and returns aware UTC datetimes.

    PostgreSQL returns aware values in the session's zone and SQLite returns naive ones; both
    come back as UTC here. Binding converts to UTC first, so SQLite (which stores no offset)
    stores the UTC wall time, never a local one.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return None if value is None else as_utc(value)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return None if value is None else as_utc(value)


class Base(DeclarativeBase):
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        dict[str, Any]: JSON,
        datetime: UtcDateTime(),
    }


class Role(enum.StrEnum):
    MLOPS_ENGINEER = "mlops_engineer"
    CLINICAL_SAFETY_OFFICER = "clinical_safety_officer"
    AUDITOR = "auditor"


class AlertState(enum.StrEnum):
    OPEN = "open"
    ACKNOWLEDGED = "acknowledged"
    RESOLVED = "resolved"


class DeliveryStatus(enum.StrEnum):
    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"


class Severity(enum.StrEnum):
    """Alert severity; :attr:`rank` orders them (the one place that does)."""

    WARNING = "warning"
    CRITICAL = "critical"

    @property
    def rank(self) -> int:
        return _SEVERITY_RANK[self]

    @classmethod
    def rank_of(cls, value: str) -> int:
        """Rank of a stored severity string; an unknown one ranks below warning."""
        try:
            return cls(value).rank
        except ValueError:
            return -1


_SEVERITY_RANK = {Severity.WARNING: 0, Severity.CRITICAL: 1}


class DeploymentRole(enum.StrEnum):
    CHAMPION = "champion"
    CANDIDATE = "candidate"


class RoutingMode(enum.StrEnum):
    """How a model's traffic is routed; a promotion's stage is one of these too."""

    CHAMPION = "champion"
    SHADOW = "shadow"
    CANARY = "canary"


class PromotionKind(enum.StrEnum):
    PROMOTION = "promotion"
    ROLLBACK = "rollback"


class PromotionState(enum.StrEnum):
    IN_PROGRESS = "in_progress"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class RetrainingState(enum.StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class ApprovalState(enum.StrEnum):
    PENDING = "pending"
    APPROVED = "approved"
    REJECTED = "rejected"
    WITHDRAWN = "withdrawn"
    EXPIRED = "expired"
