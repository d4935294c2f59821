"""``/v1/monitors``: declare, change, disable and inspect monitors and their window history;
``/v1/monitor-results``: the computed windows of every monitor."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query

from services.core.models import Role
from services.http.deps import ANY_ROLE, PrincipalDep, SessionDep, require_roles
from services.http.errors import COMMON_RESPONSES, ErrorBody
from services.monitoring import repository
from services.monitoring import service as monitors
from services.monitoring.schemas import (
    MonitorChangeOut,
    MonitorCreate,
    MonitorOut,
    MonitorResultOut,
    MonitorUpdate,
    results_out,
)
from services.serving import service as serving

router = APIRouter(tags=["monitors"])

_WRITE = [Depends(require_roles(Role.MLOPS_ENGINEER))]
_READ = [Depends(require_roles(*ANY_ROLE))]
_ERRORS = {
    404: {"model": ErrorBody, "description": "Unknown monitor or model."},
    409: {"model": ErrorBody, "description": "Name already taken for this model."},
    422: {"model": ErrorBody, "description": "Invalid spec."},
    **COMMON_RESPONSES,
}


@router.post(
    "/v1/monitors",
    response_model=MonitorOut,
    status_code=201,
    summary="Declare a monitor for a deployed model",
    responses=_ERRORS,
    dependencies=_WRITE,
)
def create_monitor(body: MonitorCreate, session: SessionDep, who: PrincipalDep) -> MonitorOut:
    serving.champion(session, body.model)  # 404 with the known models if it is not deployed
    spec = monitors.parse_spec(body.spec)
    monitor = monitors.create(
        session, model_name=body.model, name=body.name, spec=spec, actor=who.name
    )
    return MonitorOut.model_validate(monitor)


@router.get(
    "/v1/monitors",
    response_model=list[MonitorOut],
    summary="Declared monitors",
    responses=COMMON_RESPONSES,
    dependencies=_READ,
)
def list_monitors(
    session: SessionDep, model: str | None = None, active: bool | None = None
) -> list[MonitorOut]:
    rows = monitors.list_monitors(session, model_name=model, active=active)
    return [MonitorOut.model_validate(m) for m in rows]


@router.get(
    "/v1/monitors/{monitor_id}",
    response_model=MonitorOut,
    summary="One monitor",
    responses=_ERRORS,
    dependencies=_READ,
)
def get_monitor(monitor_id: int, session: SessionDep) -> MonitorOut:
    return MonitorOut.model_validate(monitors.get(session, monitor_id))


@router.patch(
    "/v1/monitors/{monitor_id}",
    response_model=MonitorOut,
    summary="Change a monitor's spec, or disable/enable it (every change is kept)",
    responses=_ERRORS,
    dependencies=_WRITE,
)
def update_monitor(
    monitor_id: int, body: MonitorUpdate, session: SessionDep, who: PrincipalDep
) -> MonitorOut:
    spec = monitors.parse_spec(body.spec) if body.spec is not None else None
    monitor = monitors.update(session, monitor_id, actor=who.name, spec=spec, active=body.active)
    return MonitorOut.model_validate(monitor)


@router.get(
    "/v1/monitors/{monitor_id}/history",
    response_model=list[MonitorChangeOut],
    summary="Every version of a monitor's declaration",
    responses=_ERRORS,
    dependencies=_READ,
)
def monitor_history(monitor_id: int, session: SessionDep) -> list[MonitorChangeOut]:
    return [MonitorChangeOut.model_validate(c) for c in monitors.history(session, monitor_id)]


@router.get(
    "/v1/monitors/{monitor_id}/results",
    response_model=list[MonitorResultOut],
    summary="The monitor's computed windows, oldest first",
    responses=_ERRORS,
    dependencies=_READ,
)
def monitor_results(
    monitor_id: int,
    session: SessionDep,
    site: str | None = None,
    after_window: int = Query(-1, ge=-1, description="Only windows with a larger index."),
    include_details: bool = False,
    limit: int = Query(1000, ge=1, le=10000),
) -> list[MonitorResultOut]:
    monitor = monitors.get(session, monitor_id)
    rows = repository.results_of(
        session, monitor=monitor, site=site, after_window=after_window, limit=limit
    )
    return results_out(rows, include_details=include_details)


@router.get(
    "/v1/monitor-results",
    response_model=list[MonitorResultOut],
    summary="Computed monitor windows, oldest first",
    responses=COMMON_RESPONSES,
    dependencies=_READ,
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
