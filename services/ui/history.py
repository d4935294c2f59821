"""The history page: signed decisions, request openings and closings, promotions and
rollbacks of every model, newest first."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.orm import Session

from services.approvals import repository as approvals
from services.core.models import (
    ApprovalDecision,
    ApprovalRequest,
    ApprovalState,
    Promotion,
    PromotionKind,
)
from services.promotion import repository as promotions
from services.ui.render import fmt_time, humanize, utc

HISTORY_LIMIT = 200


@dataclass(frozen=True)
class HistoryEntry:
    at: datetime
    when: str
    kind: str
    actor: str
    model: str
    summary: str
    outcome: str
    reason: str = ""
    request_id: int | None = None
    signature: str = ""
    #: Breaks ties between entries at the same instant: a request closes after its last
    #: decision, which comes after the request was opened.
    order: int = 0


def _decision_entry(d: ApprovalDecision, r: ApprovalRequest) -> HistoryEntry:
    verb = "Approved" if d.decision == "approve" else "Rejected"
    return HistoryEntry(
        at=utc(d.signed_at),
        when=fmt_time(d.signed_at),
        kind="Signed decision",
        actor=d.approver,
        model=f"{r.model_name} v{r.candidate_version}",
        summary=f"{verb}{' as an override' if d.override else ''} (re-authenticated by {d.reauth})",
        outcome="approved" if d.decision == "approve" else "rejected",
        reason=d.reason,
        request_id=r.id,
        signature=d.signature,
        order=1,
    )


def _request_entries(r: ApprovalRequest) -> list[HistoryEntry]:
    model = f"{r.model_name} v{r.candidate_version}"
    criteria = "criteria passed" if r.criteria_passed else "criteria FAILED"
    out = [
        HistoryEntry(
            at=utc(r.created_at),
            when=fmt_time(r.created_at),
            kind="Sign-off requested",
            actor=r.requested_by,
            model=model,
            summary=f"Request #{r.id} opened ({criteria})",
            outcome="opened",
            request_id=r.id,
        )
    ]
    if r.decided_at is not None and r.state != ApprovalState.PENDING:
        out.append(
            HistoryEntry(
                at=utc(r.decided_at),
                when=fmt_time(r.decided_at),
                kind="Request closed",
                actor="system" if r.state == ApprovalState.EXPIRED else "",
                model=model,
                summary=f"Request #{r.id} {r.state}{' (override)' if r.override else ''}",
                outcome=r.state,
                request_id=r.id,
                order=2,
            )
        )
    return out


def _promotion_entry(p: Promotion) -> HistoryEntry:
    kind = "Rollback" if p.kind == PromotionKind.ROLLBACK else humanize(p.kind or "promotion")
    versions = f"v{p.from_version} → v{p.to_version}" if p.from_version else f"v{p.to_version}"
    approval = f", sign-off #{p.approval_request_id}" if p.approval_request_id else ""
    summary = f"{versions}, stage {p.stage}{approval}"
    if p.error:
        summary += f"; error: {p.error}"
    return HistoryEntry(
        at=utc(p.started_at),
        when=fmt_time(p.started_at),
        kind=kind,
        actor=p.started_by,
        model=p.model_name,
        summary=summary,
        outcome=p.state,
        reason=p.reason,
        request_id=p.approval_request_id,
    )


def history(session: Session, *, model_name: str | None) -> list[HistoryEntry]:
    """Decisions, request openings and closings, promotions and rollbacks, newest first."""
    entries = [
        _decision_entry(d, r)
        for d, r in approvals.recent_decisions(session, model_name=model_name, limit=HISTORY_LIMIT)
    ]
    for r in approvals.list_requests(session, model_name=model_name, limit=HISTORY_LIMIT):
        entries.extend(_request_entries(r))
    entries.extend(
        _promotion_entry(p)
        for p in promotions.recent_by_start(session, model_name=model_name, limit=HISTORY_LIMIT)
    )
    entries.sort(key=lambda e: (e.at, e.order), reverse=True)
    return entries[:HISTORY_LIMIT]


def history_models(session: Session) -> list[str]:
    """Models that ever had an approval request or a promotion, for the history filter."""
    return sorted(approvals.model_names(session) | set(promotions.model_names(session)))
