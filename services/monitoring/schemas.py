"""API models of monitoring: declared monitors, their versions, and computed windows."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class MonitorResultOut(BaseModel):
    model_config = ConfigDict(from_attributes=True, protected_namespaces=())

    id: int
    monitor: str
    monitor_id: int | None = None
    model_name: str
    model_version: int
    site: str
    window_index: int
    window_start: datetime | None = None
    window_end: datetime | None = None
    first_event_id: int
    last_event_id: int
    n_current: int
    n_reference: int
    statistic: float
    p_value: float
    drift: bool
    created_at: datetime
    details: dict[str, Any] | None = None


def results_out(rows: Sequence[Any], *, include_details: bool) -> list[MonitorResultOut]:
    """API items for stored windows; ``details`` (the full test report) only on request."""
    out = []
    for r in rows:
        item = MonitorResultOut.model_validate(r)
        if not include_details:
            item.details = None
        out.append(item)
    return out


class MonitorCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    model: str = Field(..., min_length=1, max_length=128, description="Deployed model name.")
    name: str = Field(..., min_length=1, max_length=64, pattern=r"^[a-z0-9_\-]+$")
    spec: dict[str, Any] = Field(
        ..., description="Kind and parameters; see services/monitoring/specs.py and the README."
    )


class MonitorUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    spec: dict[str, Any] | None = None
    active: bool | None = None


class MonitorOut(BaseModel):
    model_config = ConfigDict(from_attributes=True, protected_namespaces=())

    id: int
    model_name: str
    name: str
    kind: str
    spec: dict[str, Any]
    active: bool
    version: int
    created_at: datetime
    updated_at: datetime
    updated_by: str


class MonitorChangeOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    version: int
    change: str
    spec: dict[str, Any]
    active: bool
    changed_by: str
    changed_at: datetime
