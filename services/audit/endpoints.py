"""``/v1/audit``: read and verify the audit trail. Nothing here writes: records are appended by
the services whose changes they describe."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query

from services.audit import service
from services.audit.schemas import AuditPage, AuditRecordOut, AuditVerifyOut
from services.auth.service import Principal
from services.core.models import Role
from services.http.deps import SessionDep, require_roles
from services.http.errors import COMMON_RESPONSES

router = APIRouter(tags=["audit"])

#: Ids are BIGINT; a larger cursor would fail in the database instead of answering 422.
MAX_ID = 2**63 - 1

#: Everyone who answers for a model may read its history.
Reader = Annotated[
    Principal,
    Depends(require_roles(Role.AUDITOR, Role.CLINICAL_SAFETY_OFFICER, Role.MLOPS_ENGINEER)),
]
#: Verifying is the oversight roles' check on the people who operate the system.
Verifier = Annotated[Principal, Depends(require_roles(Role.AUDITOR, Role.CLINICAL_SAFETY_OFFICER))]


@router.get(
    "/v1/audit",
    response_model=AuditPage,
    summary="Audit records, oldest first, paginated by id",
    description=(
        "Pass `next_after` of one page as `after` to get the next. Filter by `entity_type` and "
        "`entity_id` (e.g. `alert` and `12`) or `action` (e.g. `model.deployed`)."
    ),
    responses=COMMON_RESPONSES,
)
def list_audit(
    _: Reader,
    session: SessionDep,
    entity_type: Annotated[str | None, Query(max_length=32)] = None,
    entity_id: Annotated[str | None, Query(max_length=128)] = None,
    action: Annotated[str | None, Query(max_length=64)] = None,
    after: Annotated[int, Query(ge=0, le=MAX_ID, description="Only ids above this.")] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> AuditPage:
    rows = service.list_records(
        session,
        after_id=after,
        limit=limit,
        entity_type=entity_type,
        entity_id=entity_id,
        action=action,
    )
    items = [AuditRecordOut.model_validate(r) for r in rows]
    return AuditPage(items=items, next_after=items[-1].id if len(items) == limit else None)


@router.get(
    "/v1/audit/verify",
    response_model=AuditVerifyOut,
    summary="Re-hash the whole chain and report the first broken record",
    description=(
        "200 with `ok: false` when the chain is broken: the check ran, the log failed it. "
        "Reads every record, so it takes time on a long log; "
        "`radwatch audit verify` does the same from the command line."
    ),
    responses=COMMON_RESPONSES,
)
def verify_audit(
    _: Verifier,
    session: SessionDep,
    anchor: Annotated[
        str | None,
        Query(
            pattern="^[0-9a-f]{64}$",
            description="A chain head recorded earlier; fails if no record has it.",
        ),
    ] = None,
) -> AuditVerifyOut:
    result = service.verify(session, anchor=anchor)
    broken = result.broken
    return AuditVerifyOut(
        ok=result.ok,
        checked=result.checked,
        head=result.head,
        broken_id=broken.record_id if broken else None,
        reason=broken.reason if broken else None,
        message=broken.message if broken else None,
    )
