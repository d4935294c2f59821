"""Alert lifecycle (``/v1/alerts/{id}``...) and webhook subscriptions (``/v1/webhooks``)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query

from services.alerts import repository, service
from services.alerts.schemas import (
    MAX_ID,
    AlertActionIn,
    AlertOut,
    WebhookCreate,
    WebhookCreated,
    WebhookOut,
)
from services.auth.service import Principal
from services.core.models import AlertState, Role
from services.http.deps import ANY_ROLE, SessionDep, StateDep, require_roles
from services.http.errors import COMMON_RESPONSES, ErrorBody

router = APIRouter(tags=["alerts"])

AlertId = Annotated[int, Path(ge=1, le=MAX_ID, description="The alert's id.")]
SubscriptionId = Annotated[int, Path(ge=1, le=MAX_ID, description="The subscription's id.")]

#: Who may acknowledge and resolve: the people who act on alerts. Auditors only read.
Responder = Annotated[
    Principal, Depends(require_roles(Role.MLOPS_ENGINEER, Role.CLINICAL_SAFETY_OFFICER))
]
#: Subscriptions point alert traffic at other systems, so only MLOps engineers manage them.
Operator = Annotated[Principal, Depends(require_roles(Role.MLOPS_ENGINEER))]

Responses = dict[int | str, dict[str, Any]]

_NOT_FOUND: Responses = {404: {"model": ErrorBody, "description": "No alert with this id."}}
_TRANSITION: Responses = {
    **_NOT_FOUND,
    409: {"model": ErrorBody, "description": "The alert's state does not allow this step."},
    422: {"model": ErrorBody, "description": "Bad body (unknown field, note too long)."},
    **COMMON_RESPONSES,
}


@router.get(
    "/v1/alerts",
    response_model=list[AlertOut],
    summary="Alerts, oldest first, optionally filtered",
    responses=COMMON_RESPONSES,
    dependencies=[Depends(require_roles(*ANY_ROLE))],
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
    "/v1/alerts/{alert_id}",
    response_model=AlertOut,
    summary="One alert with its lifecycle (who acknowledged and resolved it, when, and why)",
    responses={**_NOT_FOUND, **COMMON_RESPONSES},
    dependencies=[Depends(require_roles(*ANY_ROLE))],
)
def get_alert(alert_id: AlertId, session: SessionDep) -> AlertOut:
    return AlertOut.model_validate(service.get_alert(session, alert_id))


@router.post(
    "/v1/alerts/{alert_id}/acknowledge",
    response_model=AlertOut,
    summary="Acknowledge an open alert: someone is working on it",
    description=(
        "open -> acknowledged. The alert keeps blocking a new alert for the same monitor, model "
        'and site until it is resolved. Optional body `{"note": "..."}` (at most 2,000 '
        "characters). 409 if the alert is already acknowledged or resolved."
    ),
    responses=_TRANSITION,
)
def acknowledge_alert(
    alert_id: AlertId,
    principal: Responder,
    session: SessionDep,
    state: StateDep,
    body: AlertActionIn | None = None,
) -> AlertOut:
    alert = service.acknowledge(
        session,
        alert_id,
        principal=principal,
        note=body.note if body else None,
        enqueuer=state.enqueuer,
    )
    return AlertOut.model_validate(alert)


@router.post(
    "/v1/alerts/{alert_id}/resolve",
    response_model=AlertOut,
    summary="Resolve an open or acknowledged alert",
    description=(
        "open or acknowledged -> resolved. Frees the monitor to open a new alert for the same "
        'monitor, model and site if the problem comes back. Optional body `{"note": "..."}` '
        "(at most 2,000 characters). 409 if the alert is already resolved."
    ),
    responses=_TRANSITION,
)
def resolve_alert(
    alert_id: AlertId,
    principal: Responder,
    session: SessionDep,
    state: StateDep,
    body: AlertActionIn | None = None,
) -> AlertOut:
    alert = service.resolve(
        session,
        alert_id,
        principal=principal,
        note=body.note if body else None,
        enqueuer=state.enqueuer,
    )
    return AlertOut.model_validate(alert)


@router.post(
    "/v1/webhooks",
    response_model=WebhookCreated,
    status_code=201,
    summary="Subscribe a URL to alert events (the secret is shown once, here)",
    description=(
        "Events `alert.opened`, `alert.acknowledged` and `alert.resolved` are POSTed as JSON "
        "with an `X-Radwatch-Signature: sha256=<hex>` header, the HMAC-SHA256 of "
        '`"{X-Radwatch-Timestamp}.{raw body}"` keyed with the secret. Without `secret`, a '
        "256-bit one is generated. Store the `secret` of this response: it is never shown again."
    ),
    responses={
        422: {"model": ErrorBody, "description": "Bad URL, secret or severity."},
        **COMMON_RESPONSES,
    },
)
def create_webhook(body: WebhookCreate, _: Operator, session: SessionDep) -> WebhookCreated:
    sub = service.create_subscription(
        session, url=str(body.url), secret=body.secret, min_severity=body.min_severity
    )
    return WebhookCreated(
        id=sub.id,
        url=sub.url,
        active=sub.active,
        min_severity=sub.min_severity,
        created_at=sub.created_at,
        secret=sub.secret,
    )


@router.get(
    "/v1/webhooks",
    response_model=list[WebhookOut],
    summary="Webhook subscriptions (never their secrets)",
    responses=COMMON_RESPONSES,
)
def list_webhooks(
    _: Operator, session: SessionDep, include_inactive: bool = False
) -> list[WebhookOut]:
    rows = service.list_subscriptions(session, include_inactive=include_inactive)
    return [WebhookOut.model_validate(r) for r in rows]


@router.delete(
    "/v1/webhooks/{subscription_id}",
    response_model=WebhookOut,
    summary="Deactivate a subscription; its pending deliveries are dropped",
    responses={
        404: {"model": ErrorBody, "description": "No such subscription."},
        **COMMON_RESPONSES,
    },
)
def deactivate_webhook(
    subscription_id: SubscriptionId, _: Operator, session: SessionDep
) -> WebhookOut:
    return WebhookOut.model_validate(service.deactivate_subscription(session, subscription_id))
