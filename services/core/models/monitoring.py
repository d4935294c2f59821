"""Declared monitors, their versions, and the windows they computed."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Float,
    ForeignKey,
    Integer,
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from services.core.models.base import Base, BigIntPK, utcnow


class MonitorResult(Base):
    """One computed window of one monitor. The unique key makes a window computed exactly once."""

    __tablename__ = "monitor_results"
    __table_args__ = (UniqueConstraint("monitor", "model_name", "site", "window_index"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    monitor: Mapped[str] = mapped_column(String(64))
    #: The declared monitor (``monitors.id``); ``monitor`` is its name. ``site`` is ``"*"`` for a
    #: global monitor. ``window_start``/``window_end`` are set for time windows.
    monitor_id: Mapped[int | None] = mapped_column(BigInteger, default=None, index=True)
    model_name: Mapped[str] = mapped_column(String(128))
    model_version: Mapped[int] = mapped_column(Integer)
    site: Mapped[str] = mapped_column(String(64))
    window_index: Mapped[int] = mapped_column(Integer)
    window_start: Mapped[datetime | None] = mapped_column(default=None)
    window_end: Mapped[datetime | None] = mapped_column(default=None)
    first_event_id: Mapped[int] = mapped_column(BigInteger)
    last_event_id: Mapped[int] = mapped_column(BigInteger)
    n_current: Mapped[int] = mapped_column(Integer)
    n_reference: Mapped[int] = mapped_column(Integer)
    statistic: Mapped[float] = mapped_column(Float)
    p_value: Mapped[float] = mapped_column(Float)
    drift: Mapped[bool] = mapped_column(Boolean)
    details: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Monitor(Base):
    """A declared monitor of one model (see :mod:`services.monitoring.specs` for ``spec``).

    Only the current declaration lives here; every version is also in ``monitor_changes``.
    """

    __tablename__ = "monitors"
    __table_args__ = (UniqueConstraint("model_name", "name"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    model_name: Mapped[str] = mapped_column(String(128))
    name: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(32))
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    version: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_by: Mapped[str] = mapped_column(String(128))


class MonitorChange(Base):
    """One version of a monitor's declaration: created, updated, disabled or enabled."""

    __tablename__ = "monitor_changes"
    __table_args__ = (UniqueConstraint("monitor_id", "version"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    monitor_id: Mapped[int] = mapped_column(ForeignKey("monitors.id"))
    version: Mapped[int] = mapped_column(Integer)
    change: Mapped[str] = mapped_column(String(32))
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)
    active: Mapped[bool] = mapped_column(Boolean)
    changed_by: Mapped[str] = mapped_column(String(128))
    changed_at: Mapped[datetime] = mapped_column(default=utcnow)
