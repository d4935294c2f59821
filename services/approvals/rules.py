"""The sign-off rules, once: who may decide which approval request, when, and how.

:func:`refusals` is a pure function of the signer, the request, its decisions so far and the
time (plus, when a decision is being made, what is being signed). It returns *every* rule that
refuses, in a fixed order, each with the message a person reads and the error it raises:

- :func:`services.approvals.service.decide` raises the first one (API, CLI, pages);
- the sign-off page displays them all before offering a form, so nobody is shown a form that
  would only be refused, and a refused POST shows the same words the service raised.

The rules:

1. only a pending request can be decided, and only before it expires (a closed request needs
   no other explanation, so these come alone);
2. only the protocol's approver role (``clinical_safety_officer``) decides;
3. four eyes: nobody who triggered or trained the candidate decides on it;
4. one signature per person per request;
5. approving a candidate that failed its acceptance criteria is an override, which must be asked
   for explicitly and needs two different approvers; an override of a passing candidate is
   refused;
6. a decision carries a reason of at least :data:`MIN_REASON` characters (it is signed).

Re-authentication (password or fresh token) is checked by the service after these rules, since
it needs the user store.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from services.core.errors import (
    ConflictError,
    ForbiddenError,
    RadwatchError,
    ValidationFailedError,
)
from services.core.models import ApprovalDecision, ApprovalRequest, ApprovalState, Role, as_utc

Decision = Literal["approve", "reject"]
#: Shortest reason a decision may carry, in characters (after trimming).
MIN_REASON = 10
#: An override (approving a candidate that failed its criteria) needs at least this many people.
OVERRIDE_APPROVERS = 2

_ROLE_LABELS = {
    Role.CLINICAL_SAFETY_OFFICER: "a clinical safety officer",
    Role.MLOPS_ENGINEER: "an MLOps engineer",
    Role.AUDITOR: "an auditor",
}


@dataclass(frozen=True)
class Signer:
    """Who is deciding: a person (their name is the API key's or the web session's name)."""

    name: str
    role: Role


@dataclass(frozen=True)
class Refusal:
    """One rule that refuses. ``field`` names the form input it concerns ("" for none)."""

    rule: str
    message: str
    error: type[RadwatchError]
    field: str = ""

    def exception(self) -> RadwatchError:
        return self.error(self.message)


def _when(at: datetime) -> str:
    return as_utc(at).strftime("%Y-%m-%d %H:%M UTC")


def conflicted(request: ApprovalRequest) -> list[str]:
    """Everyone who triggered or trained the candidate (none of them may decide on it)."""
    return sorted((request.conflicted or {}).get("names", []))


def approvals_needed(request: ApprovalRequest) -> int:
    """Approvals that approve ``request``: its protocol's count, or at least
    :data:`OVERRIDE_APPROVERS` for a candidate that failed its criteria (it can only be
    approved as an override)."""
    if request.override or not request.criteria_passed:
        return max(OVERRIDE_APPROVERS, request.required_approvals)
    return request.required_approvals


def refusals(
    signer: Signer,
    request: ApprovalRequest,
    decisions: Sequence[ApprovalDecision],
    now: datetime,
    *,
    decision: Decision | None = None,
    override: bool = False,
    reason: str | None = None,
) -> list[Refusal]:
    """Every rule that refuses ``signer`` deciding ``request`` at ``now``, in the order above;
    empty when they may. Without ``decision`` (and ``reason``), only the rules that do not
    depend on what is signed are checked: what a page shows before the form is filled."""
    if request.state != ApprovalState.PENDING:
        return [
            Refusal(
                "closed",
                f"Approval request {request.id} is {request.state}, not pending; it can no "
                "longer be decided.",
                ConflictError,
            )
        ]
    if request.expires_at <= now:
        return [
            Refusal(
                "expired",
                f"Approval request {request.id} expired at {_when(request.expires_at)}; it can no "
                "longer be decided.",
                ConflictError,
            )
        ]
    out: list[Refusal] = []
    who = f"{request.model_name} version {request.candidate_version}"
    if signer.role.value != request.approver_role:
        label = _ROLE_LABELS.get(signer.role, signer.role.value)
        out.append(
            Refusal(
                "role",
                f"Only a {request.approver_role} may decide approval requests; '{signer.name}' "
                f"is {label}, for whom sign-off is read-only.",
                ForbiddenError,
            )
        )
    if signer.name in conflicted(request):
        out.append(
            Refusal(
                "four_eyes",
                f"Four-eyes rule: '{signer.name}' triggered or trained {who} and may not decide "
                "on it; another clinical safety officer must review it.",
                ForbiddenError,
            )
        )
    mine = [d for d in decisions if d.approver == signer.name]
    if mine:
        out.append(
            Refusal(
                "already_signed",
                f"'{signer.name}' already signed request {request.id} ({mine[0].decision}, "
                f"{_when(mine[0].signed_at)}); any further approval must come from another "
                "clinical safety officer.",
                ConflictError,
            )
        )
    if decision == "approve" and not request.criteria_passed and not override:
        out.append(
            Refusal(
                "needs_override",
                "This candidate failed its acceptance criteria. Approving it anyway is an "
                "override (override=true; on the page, tick the override box): it needs "
                f"{OVERRIDE_APPROVERS} different approvers and is recorded as an override. "
                "Nothing was signed.",
                ConflictError,
                field="override",
            )
        )
    if decision == "approve" and override and request.criteria_passed:
        out.append(
            Refusal(
                "override_not_needed",
                "override=true is only for candidates that failed their criteria; this one passed.",
                ValidationFailedError,
                field="override",
            )
        )
    if decision is not None and reason is not None and len(reason.strip()) < MIN_REASON:
        out.append(
            Refusal(
                "reason",
                f"A decision needs a reason of at least {MIN_REASON} characters; it is part of "
                "the signed record.",
                ValidationFailedError,
                field="reason",
            )
        )
    return out
