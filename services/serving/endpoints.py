from __future__ import annotations

from fastapi import APIRouter, Depends

from services.api.deps import ANY_ROLE, SessionDep, StateDep, require_roles
from services.api.errors import COMMON_RESPONSES
from services.serving import service
from services.serving.schemas import DeploymentOut

router = APIRouter(tags=["models"])


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
        item.loaded = (
            state.triton.is_model_ready(d.triton_model, d.model_version) if d.active else False
        )
        out.append(item)
    return out
