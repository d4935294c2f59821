from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query

from services.core.errors import NotFoundError
from services.core.models import RoutingMode
from services.http.deps import ANY_ROLE, Anyone, ModelName, SessionDep, StateDep, require_roles
from services.http.errors import COMMON_RESPONSES, ErrorBody
from services.serving import routing as routing_service
from services.serving import service, shadow
from services.serving.schemas import MAX_ID, DeploymentOut, RoutingOut, ShadowSummary
from services.serving.service import champion

router = APIRouter(tags=["models"])
lifecycle_router = APIRouter(tags=["lifecycle"])

_ERR: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorBody, "description": "Unknown model or version."},
    422: {"model": ErrorBody, "description": "Bad parameters."},
    **COMMON_RESPONSES,
}


@router.get(
    "/v1/models",
    response_model=list[DeploymentOut],
    summary="Deployed model versions and whether Triton has them loaded",
    responses=COMMON_RESPONSES,
    dependencies=[Depends(require_roles(*ANY_ROLE))],
)
def list_models(session: SessionDep, state: StateDep) -> list[DeploymentOut]:
    out = []
    for d in service.list_deployments(session):
        item = DeploymentOut.model_validate(d)
        # A probe is loaded when its encoder version is (its heads are read on first use).
        served = service.served_by(service.spec_of(d), d.triton_model, d.model_version)
        item.loaded = state.triton.is_model_ready(*served) if d.active else False
        out.append(item)
    return out


@lifecycle_router.get(
    "/v1/models/{model}/routing",
    response_model=RoutingOut,
    summary="How the gateway routes the model's traffic now",
    responses=_ERR,
)
def get_routing(model: ModelName, _: Anyone, session: SessionDep) -> RoutingOut:
    row = routing_service.get_routing(session, model)
    if row is None:
        champ = champion(session, model)
        return RoutingOut(
            model_name=model,
            champion_version=champ.model_version,
            previous_champion_version=None,
            candidate_version=None,
            mode=RoutingMode.CHAMPION,
            canary_share=0.0,
            generation=0,
            updated_at=champ.created_at,
        )
    return RoutingOut.model_validate(row)


@lifecycle_router.get(
    "/v1/models/{model}/shadow",
    response_model=ShadowSummary,
    summary="The shadow candidate's agreement with the champion on mirrored studies",
    responses=_ERR,
)
def shadow_summary(
    model: ModelName,
    _: Anyone,
    session: SessionDep,
    version: Annotated[int | None, Query(ge=1, le=MAX_ID)] = None,
) -> ShadowSummary:
    champ = champion(session, model)
    row = routing_service.get_routing(session, model)
    target = version or (row.candidate_version if row else None)
    if target is None:
        raise NotFoundError(f"{model} has no candidate in shadow; pass ?version=N.")
    return ShadowSummary.model_validate(
        shadow.compare(session, model, target, threshold=champ.operating_threshold)
    )
