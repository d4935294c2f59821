"""Sign-off rules in the service (real PostgreSQL): four eyes, re-authentication, mandatory
reason, override needs two approvers, end states are final, expiry, signatures."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from services.approvals import service as approvals
from services.auth import users
from services.core.db import session_scope
from services.core.errors import (
    ConflictError,
    ForbiddenError,
    UnauthenticatedError,
    ValidationFailedError,
)
from services.core.models import ApprovalDecision, ApprovalRequest, AuditRecord, Role
from services.core.settings import Settings
from tests.fixtures.lifecycle import ENGINEER, OFFICER, OFFICER_2, PASSWORD, request_for

MODEL = "cxr-approvals"
REASON = "Reviewed the dossier; all criteria are met."


def _decide(
    sessions: sessionmaker[Session], settings: Settings, request_id: int, who: str, **kw: object
) -> ApprovalRequest:
    role = kw.pop("role", Role.CLINICAL_SAFETY_OFFICER)
    params = {"decision": "approve", "reason": REASON, "password": PASSWORD, **kw}
    with session_scope(sessions) as s:
        req = approvals.decide(
            s,
            settings,
            request_id=request_id,
            signer=approvals.Signer(who, role),  # type: ignore[arg-type]
            **params,  # type: ignore[arg-type]
        )
        s.flush()
        s.expunge(req)
        return req


def _state(sessions: sessionmaker[Session], request_id: int) -> tuple[str, int]:
    with session_scope(sessions) as s:
        req = s.get(ApprovalRequest, request_id)
        assert req is not None
        n = len(
            s.scalars(
                select(ApprovalDecision).where(ApprovalDecision.request_id == request_id)
            ).all()
        )
        return req.state, n


@pytest.fixture
def request_id(sessions: sessionmaker[Session], people: dict[str, str]) -> int:
    with session_scope(sessions) as s:
        return request_for(s, MODEL, 2)


def test_approve_with_password_signs_and_audits(
    sessions: sessionmaker[Session], settings: Settings, request_id: int
) -> None:
    req = _decide(sessions, settings, request_id, OFFICER)
    assert req.state == "approved"
    with session_scope(sessions) as s:
        d = s.scalars(
            select(ApprovalDecision).where(ApprovalDecision.request_id == request_id)
        ).one()
        assert (d.approver, d.reauth, d.reason) == (OFFICER, "password", REASON)
        assert d.signature == approvals.signature(
            s.get(ApprovalRequest, request_id),  # type: ignore[arg-type]
            approver=OFFICER,
            decision="approve",
            reason=REASON,
            override=False,
            signed_at=d.signed_at,
        )
        actions = list(s.scalars(select(AuditRecord.action).order_by(AuditRecord.id)))
    assert actions[-2:] == ["approval.signed", "approval.approved"]


@pytest.mark.parametrize(
    ("who", "kw", "error", "match"),
    [
        (ENGINEER, {"role": Role.CLINICAL_SAFETY_OFFICER}, ForbiddenError, "Four-eyes"),
        (OFFICER, {"role": Role.MLOPS_ENGINEER}, ForbiddenError, "clinical_safety_officer"),
        (OFFICER, {"password": "wrong password!"}, UnauthenticatedError, "Wrong"),
        (OFFICER, {"password": None}, UnauthenticatedError, "re-authenticated"),
        (OFFICER, {"reason": "ok"}, ValidationFailedError, "reason"),
        ("Dr Nobody", {}, UnauthenticatedError, "no user account"),
    ],
)
def test_refused_decisions_write_nothing(
    sessions: sessionmaker[Session],
    settings: Settings,
    request_id: int,
    who: str,
    kw: dict[str, object],
    error: type[Exception],
    match: str,
) -> None:
    with pytest.raises(error, match=match):
        _decide(sessions, settings, request_id, who, **kw)
    assert _state(sessions, request_id) == ("pending", 0)


def test_reauth_token_works_and_expires(
    sessions: sessionmaker[Session], settings: Settings, request_id: int
) -> None:
    old = users.issue_reauth_token(settings.session_secret, OFFICER, now=1_000.0)
    with pytest.raises(UnauthenticatedError, match="older than"):
        _decide(sessions, settings, request_id, OFFICER, password=None, reauth_token=old)
    other = users.issue_reauth_token(settings.session_secret, OFFICER_2)
    with pytest.raises(UnauthenticatedError, match="Invalid"):
        _decide(sessions, settings, request_id, OFFICER, password=None, reauth_token=other)
    fresh = users.issue_reauth_token(settings.session_secret, OFFICER)
    assert (
        _decide(sessions, settings, request_id, OFFICER, password=None, reauth_token=fresh).state
        == "approved"
    )


def test_rejection_is_final(
    sessions: sessionmaker[Session], settings: Settings, request_id: int
) -> None:
    assert _decide(sessions, settings, request_id, OFFICER, decision="reject").state == "rejected"
    with pytest.raises(ConflictError, match="not pending"):
        _decide(sessions, settings, request_id, OFFICER_2)
    with session_scope(sessions) as s, pytest.raises(ConflictError, match="never be promoted"):
        approvals.require_promotable(s, MODEL, 2)


def test_failed_criteria_need_an_override_by_two(
    sessions: sessionmaker[Session], settings: Settings, people: dict[str, str]
) -> None:
    with session_scope(sessions) as s:
        rid = request_for(s, MODEL, 3, passed=False)
    with pytest.raises(ConflictError, match="override"):
        _decide(sessions, settings, rid, OFFICER)
    assert _decide(sessions, settings, rid, OFFICER, override=True).state == "pending"
    with pytest.raises(ConflictError, match="already signed"):
        _decide(sessions, settings, rid, OFFICER, override=True)
    req = _decide(sessions, settings, rid, OFFICER_2, override=True)
    assert (req.state, req.override) == ("approved", True)
    with session_scope(sessions) as s:
        assert approvals.require_promotable(s, MODEL, 3).override


def test_override_is_refused_for_a_passing_candidate(
    sessions: sessionmaker[Session], settings: Settings, request_id: int
) -> None:
    with pytest.raises(ValidationFailedError, match="only for candidates that failed"):
        _decide(sessions, settings, request_id, OFFICER, override=True)


def test_expired_requests_cannot_be_decided(
    sessions: sessionmaker[Session], settings: Settings, request_id: int
) -> None:
    later = datetime.now(UTC) + timedelta(days=30)
    with pytest.raises(ConflictError, match="expired"):
        _decide(sessions, settings, request_id, OFFICER, now=later)
    with session_scope(sessions) as s:
        assert approvals.expire_due(s, now=later) == 1
    assert _state(sessions, request_id) == ("expired", 0)


def test_withdraw_and_one_pending_per_candidate(
    sessions: sessionmaker[Session], settings: Settings, request_id: int
) -> None:
    with session_scope(sessions) as s, pytest.raises(ConflictError, match="already has pending"):
        request_for(s, MODEL, 2)
    with session_scope(sessions) as s:
        approvals.withdraw(s, request_id=request_id, actor=ENGINEER, reason="Superseded by v4.")
    assert _state(sessions, request_id) == ("withdrawn", 0)
    with session_scope(sessions) as s:
        assert request_for(s, MODEL, 2) != request_id
