from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict


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
