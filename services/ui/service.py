"""What the sign-off pages show and who may do what on them.

Policy (the rules themselves are enforced by :mod:`services.approvals.service`; this module
decides what to offer, so nobody is shown a form that would only be refused):

- Anyone with a user account signs in: ``clinical_safety_officer``, ``auditor`` and
  ``mlops_engineer``. All three read the approvals list, dossiers and history: engineers need to
  see why a candidate was rejected, auditors review the record.
- The decision form is offered only when :func:`services.approvals.rules.refusals` refuses
  nothing; otherwise the page lists every refusal, in the rules' own words.

Services never commit; the request dependency does.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from services.approvals import repository as approval_rows_of
from services.approvals import rules
from services.approvals import service as approvals
from services.audit import actions
from services.audit.service import record
from services.auth import users
from services.core.errors import NotFoundError, UnauthenticatedError
from services.core.models import ApprovalDecision, ApprovalRequest, ApprovalState, Role
from services.retraining import repository as retraining
from services.ui.cookies import WebSession
from services.ui.render import (
    Node,
    Plot,
    ago,
    fmt_time,
    fmt_value,
    humanize,
    iso,
    node_size,
    plot,
    to_node,
    until,
)

STATES = tuple(ApprovalState)
ROLE_LABELS = {
    Role.CLINICAL_SAFETY_OFFICER: "clinical safety officer",
    Role.MLOPS_ENGINEER: "MLOps engineer",
    Role.AUDITOR: "auditor",
}
#: The dossier sections in reading order; others the generator adds follow, in its order.
SECTION_ORDER = (
    "data",
    "performance",
    "fairness",
    "calibration",
    "robustness",
    "sites",
    "drift_evidence",
)


@dataclass(frozen=True)
class Viewer:
    name: str
    role: Role

    @property
    def role_label(self) -> str:
        return ROLE_LABELS.get(self.role, self.role.value)

    @property
    def may_sign(self) -> bool:
        return self.role == Role.CLINICAL_SAFETY_OFFICER


def signed_in(session: Session, web: WebSession) -> Viewer | None:
    """The person behind a valid session cookie, if their account still exists, is enabled and
    still has the role the cookie was issued for (a role change signs them out)."""
    user = users.by_name(session, web.name)
    if user is None or user.disabled_at is not None or user.role != web.role:
        return None
    return Viewer(name=user.name, role=user.role)


def sign_in(session: Session, name: str, password: str) -> Viewer:
    """Check the password and audit the sign-in; a failed attempt on an existing account is
    audited too (by the account's name), attempts on unknown names are not, so typing noise
    cannot flood the trail."""
    try:
        user = users.authenticate_password(session, name.strip(), password)
    except UnauthenticatedError:
        known = users.by_name(session, name.strip())
        if known is not None:
            record(
                session,
                actor=known.name,
                action=actions.USER_SIGN_IN_FAILED,
                entity_type=actions.USER,
                entity_id=known.name,
                payload={"channel": "web"},
            )
        raise
    record(
        session,
        actor=user.name,
        action=actions.USER_SIGNED_IN,
        entity_type=actions.USER,
        entity_id=user.name,
        payload={"channel": "web", "role": user.role.value},
    )
    return Viewer(name=user.name, role=user.role)


# --- the approvals list ------------------------------------------------------------------------


@dataclass(frozen=True)
class RequestRow:
    id: int
    model_name: str
    candidate_version: int
    state: str
    criteria_passed: bool
    override: bool
    approvals: int
    needed: int
    requested_by: str
    created_at: str
    created_iso: str
    age: str
    expires_at: str
    expires_iso: str
    expiry: str
    decided_at: str


def _row(request: ApprovalRequest, n_approvals: int, now: datetime) -> RequestRow:
    pending = request.state == ApprovalState.PENDING
    return RequestRow(
        id=request.id,
        model_name=request.model_name,
        candidate_version=request.candidate_version,
        state=request.state,
        criteria_passed=request.criteria_passed,
        override=request.override,
        approvals=n_approvals,
        needed=rules.approvals_needed(request),
        requested_by=request.requested_by,
        created_at=fmt_time(request.created_at),
        created_iso=iso(request.created_at),
        age=ago(request.created_at, now),
        expires_at=fmt_time(request.expires_at),
        expires_iso=iso(request.expires_at),
        expiry=until(request.expires_at, now) if pending else "",
        decided_at=fmt_time(request.decided_at),
    )


def approval_rows(session: Session, *, state: str | None, now: datetime) -> list[RequestRow]:
    requests = approvals.list_requests(session, state=state)
    signed = approval_rows_of.decisions_by_request(session, [r.id for r in requests])
    return [_row(r, _approvals(signed[r.id]), now) for r in requests]


def _approvals(signed: Sequence[ApprovalDecision]) -> int:
    """Approvals signed so far (a rejection ends a request, so it is not counted)."""
    return sum(1 for d in signed if d.decision == "approve")


# --- the dossier page --------------------------------------------------------------------------


@dataclass(frozen=True)
class Criterion:
    name: str
    passed: bool | None
    value: str
    threshold: str
    detail: str


@dataclass(frozen=True)
class DecisionRow:
    approver: str
    decision: str
    override: bool
    reason: str
    reauth: str
    signature: str
    signed_at: str


#: Sections with more displayed values than this start folded (the summary stays a heading), so
#: the criteria and plots are not pushed thousands of pixels down by a large evidence section.
FOLD_ABOVE = 80


@dataclass(frozen=True)
class Section:
    anchor: str
    title: str
    node: Node

    @property
    def folded(self) -> bool:
        return node_size(self.node) > FOLD_ABOVE


@dataclass(frozen=True)
class DossierPage:
    request: RequestRow
    conflicted: list[str]
    champion_version: int | None
    protocol_version: int | None
    dossier_id: int
    dossier_created_at: str
    passed: bool
    criteria: list[Criterion]
    failed: int
    plots: list[Plot]
    sections: list[Section]
    decisions: list[DecisionRow]
    #: Why the viewer may not decide, in words; empty when the form is offered.
    blockers: list[str] = field(default_factory=list)

    @property
    def may_decide(self) -> bool:
        return not self.blockers


def _cell(value: object) -> str:
    if isinstance(value, Mapping):
        return "; ".join(f"{humanize(k)} {fmt_value(v, k)}" for k, v in value.items())
    return fmt_value(value) if value is not None else "—"


def _criteria(document: Mapping[str, Any]) -> list[Criterion]:
    raw = document.get("criteria")
    if not isinstance(raw, list):
        return []
    out = []
    for i, item in enumerate(raw):
        if not isinstance(item, Mapping):
            continue
        passed = item.get("passed")
        out.append(
            Criterion(
                name=str(item.get("name") or f"criterion {i + 1}"),
                passed=passed if isinstance(passed, bool) else None,
                value=_cell(item.get("value")),
                threshold=_cell(item.get("threshold")),
                detail=str(item.get("detail") or ""),
            )
        )
    return out


def _sections(document: Mapping[str, Any]) -> list[Section]:
    raw = document.get("sections")
    if not isinstance(raw, Mapping):
        return []
    keys = [k for k in SECTION_ORDER if k in raw] + [k for k in raw if k not in SECTION_ORDER]
    return [
        Section(anchor=f"section-{k}", title=humanize(k), node=to_node(raw[k], key=k)) for k in keys
    ]


def _plots(document: Mapping[str, Any]) -> list[Plot]:
    raw = document.get("plots")
    if not isinstance(raw, Mapping):
        return []
    found = (plot(str(k), v) for k, v in raw.items())
    return [p for p in found if p is not None]


def _int_or_none(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def blockers(
    viewer: Viewer,
    request: ApprovalRequest,
    signed: Sequence[ApprovalDecision],
    now: datetime,
) -> list[str]:
    """Why ``viewer`` may not decide on ``request`` now: every refusal of the sign-off rules
    that does not depend on what would be signed, in the rules' own words."""
    signer = rules.Signer(name=viewer.name, role=viewer.role)
    return [r.message for r in rules.refusals(signer, request, signed, now)]


def refusals(
    session: Session,
    *,
    request_id: int,
    viewer: Viewer,
    now: datetime,
    decision: rules.Decision,
    override: bool,
    reason: str,
) -> list[rules.Refusal]:
    """What the sign-off rules refuse if ``viewer`` signs this decision now (404 for an unknown
    request)."""
    request = approvals.get(session, request_id)
    return rules.refusals(
        rules.Signer(name=viewer.name, role=viewer.role),
        request,
        approvals.decisions(session, request.id),
        now,
        decision=decision,
        override=override and decision == "approve",
        reason=reason,
    )


def dossier_page(
    session: Session, *, request_id: int, viewer: Viewer, now: datetime
) -> DossierPage:
    request = approvals.get(session, request_id)
    dossier = retraining.dossier(session, request.dossier_id)
    if dossier is None:
        raise NotFoundError(f"The dossier of approval request {request_id} is missing.")
    document: Mapping[str, Any] = dossier.document if isinstance(dossier.document, dict) else {}
    signed = approvals.decisions(session, request.id)
    criteria = _criteria(document)
    n_approvals = _approvals(signed)
    return DossierPage(
        request=_row(request, n_approvals, now),
        conflicted=rules.conflicted(request),
        champion_version=dossier.champion_version
        if dossier.champion_version is not None
        else _int_or_none(document.get("champion_version")),
        protocol_version=dossier.protocol_version
        if dossier.protocol_version is not None
        else _int_or_none(document.get("protocol_version")),
        dossier_id=dossier.id,
        dossier_created_at=fmt_time(dossier.created_at),
        passed=request.criteria_passed,
        criteria=criteria,
        failed=sum(1 for c in criteria if c.passed is False),
        plots=_plots(document),
        sections=_sections(document),
        decisions=[
            DecisionRow(
                approver=d.approver,
                decision=d.decision,
                override=d.override,
                reason=d.reason,
                reauth=d.reauth,
                signature=d.signature,
                signed_at=fmt_time(d.signed_at),
            )
            for d in signed
        ],
        blockers=blockers(viewer, request, signed, now),
    )


def dossier_document(session: Session, request_id: int) -> dict[str, Any]:
    request = approvals.get(session, request_id)
    dossier = retraining.dossier(session, request.dossier_id)
    if dossier is None:
        raise NotFoundError(f"The dossier of approval request {request_id} is missing.")
    return dict(dossier.document)
