from __future__ import annotations

from collections.abc import Sequence
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
    #: Lifecycle (``POST /v1/alerts/{id}/acknowledge`` and ``/resolve``): who, by API key name
    #: and id, when, and the note they left. ``None`` until that step happens; an alert resolved
    #: straight from open has no acknowledgement.
    acknowledged_at: datetime | None = None
    acknowledged_by: str | None = None
    acknowledged_by_key_id: int | None = None
    acknowledged_note: str | None = None
    resolved_at: datetime | None = None
    resolved_by: str | None = None
    resolved_by_key_id: int | None = None
    resolved_note: str | None = None


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
