from __future__ import annotations

from fastapi import APIRouter, Depends, Query

from services.http.deps import ANY_ROLE, SessionDep, require_roles
from services.http.errors import COMMON_RESPONSES
from services.monitoring import repository
from services.monitoring.schemas import MonitorResultOut, results_out

router = APIRouter(tags=["monitoring"], dependencies=[Depends(require_roles(*ANY_ROLE))])


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
