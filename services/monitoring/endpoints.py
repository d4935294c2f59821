from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Depends, Query

from services.api.deps import ANY_ROLE, SessionDep, require_roles
from services.api.errors import COMMON_RESPONSES
from services.core.models import AlertState
from services.monitoring import repository
from services.monitoring.schemas import AlertOut, MonitorResultOut, results_out

router = APIRouter(tags=["monitoring"], dependencies=[Depends(require_roles(*ANY_ROLE))])


@router.get(
    "/v1/alerts",
    response_model=list[AlertOut],
    summary="Alerts, oldest first, optionally filtered",
    responses=COMMON_RESPONSES,
)
def list_alerts(
    session: SessionDep,
    model: str | None = None,
    site: str | None = None,
    state: AlertState | None = None,
    severity: Literal["warning", "critical"] | None = None,
    limit: int = Query(500, ge=1, le=5000),
) -> list[AlertOut]:
    rows = repository.alerts(
        session, model_name=model, site=site, state=state, severity=severity, limit=limit
    )
    return [AlertOut.model_validate(r) for r in rows]


@router.get(
    "/v1/monitor-results",
    response_model=list[MonitorResultOut],
    summary="Computed monitor windows, oldest first",
    responses=COMMON_RESPONSES,
)
def list_results(
    session: SessionDep,
    model: str | None = None,
    site: str | None = None,
    include_details: bool = False,
    limit: int = Query(1000, ge=1, le=10000),
) -> list[MonitorResultOut]:
    rows = repository.results(session, model_name=model, site=site, limit=limit)
    return results_out(rows, include_details=include_details)
