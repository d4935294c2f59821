from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict

from services.core.models import AlertState


class AlertOut(BaseModel):
    model_config = ConfigDict(from_attributes=True, protected_namespaces=())

    id: int
    monitor: str
    model_name: str
    site: str
    state: AlertState
    severity: str
    detail: str
    opened_after_predictions: int
    opened_at: datetime


class MonitorResultOut(BaseModel):
    model_config = ConfigDict(from_attributes=True, protected_namespaces=())

    id: int
    monitor: str
    model_name: str
    model_version: int
    site: str
    window_index: int
    first_event_id: int
    last_event_id: int
    n_current: int
    n_reference: int
    statistic: float
    p_value: float
    drift: bool
    created_at: datetime
    details: dict[str, Any] | None = None
