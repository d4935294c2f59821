"""The sign-off rules exist once (services.approvals.rules): for every rule that can refuse, the
error approvals.decide raises is the one the page displays, word for word and with the same
status, and a rule that depends only on who is looking is listed on the page before any form.

Real app, real PostgreSQL, real password checks; each case is set up through the service.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient
from markupsafe import escape
from sqlalchemy.orm import Session, sessionmaker

from services.approvals import rules
from services.approvals import service as approvals
from services.core.db import session_scope
from services.core.errors import RadwatchError
from services.core.models import ApprovalRequest, Role
from services.core.settings import Settings
from tests.services.ui.conftest import (
    ADA,
    AUDREY,
    BEN,
    CARL,
    PASSWORDS,
    Seed,
    csrf_of,
    decisions,
    sign_in,
)

REASON = "Reviewed the dossier and every criterion; fine for clinical use."
ROLES = {ADA: Role.CLINICAL_SAFETY_OFFICER, BEN: Role.CLINICAL_SAFETY_OFFICER}
ROLES |= {CARL: Role.CLINICAL_SAFETY_OFFICER, AUDREY: Role.AUDITOR}


def _sign(
    sessions: sessionmaker[Session], settings: Settings, request_id: int, who: str, **kw: object
) -> None:
    with session_scope(sessions) as s:
        approvals.decide(
            s,
            settings,
            request_id=request_id,
            signer=rules.Signer(who, ROLES[who]),
            decision=kw.pop("decision", "approve"),  # type: ignore[arg-type]
            reason=REASON,
            password=PASSWORDS[who],
            **kw,  # type: ignore[arg-type]
        )


def _expire(sessions: sessionmaker[Session], settings: Settings, request_id: int) -> None:
    with session_scope(sessions) as s:
        row = s.get(ApprovalRequest, request_id)
        assert row is not None
        row.expires_at = datetime.now(UTC) - timedelta(minutes=1)


@dataclass(frozen=True)
class Case:
    rule: str
    who: str
    request: str  # which seeded request: approve_id, reject_id, failed_id
    decision: str = "approve"
    override: bool = False
    reason: str = REASON
    before: Callable[[sessionmaker[Session], Settings, Seed], None] | None = None
    #: The rule depends only on who looks (and when): the page lists it before any form.
    shown_before_the_form: bool = False


CASES = [
    Case("role", AUDREY, "approve_id", shown_before_the_form=True),
    Case("four_eyes", CARL, "approve_id", shown_before_the_form=True),
    Case(
        "already_signed",
        ADA,
        "failed_id",
        override=True,
        before=lambda ss, st, seed: _sign(ss, st, seed.failed_id, ADA, override=True),
        shown_before_the_form=True,
    ),
    Case("needs_override", ADA, "failed_id"),
    Case("override_not_needed", ADA, "approve_id", override=True),
    Case("reason", ADA, "approve_id", reason="too short"),
    Case(
        "closed",
        ADA,
        "reject_id",
        before=lambda ss, st, seed: _sign(ss, st, seed.reject_id, BEN, decision="reject"),
        shown_before_the_form=True,
    ),
    # A page load sweeps requests past their deadline (approvals.expire_due), so on the pages an
    # expired request is a closed one; the "expired" rule itself is checked without a sweep in
    # test_a_request_past_its_deadline_is_refused_before_the_sweep.
    Case(
        "closed",
        ADA,
        "approve_id",
        before=lambda ss, st, seed: _expire(ss, st, seed.approve_id),
        shown_before_the_form=True,
    ),
]


@pytest.mark.parametrize(
    "case", CASES, ids=[f"{c.rule}-{c.request}-{i}" for i, c in enumerate(CASES)]
)
def test_every_refusal_the_service_raises_is_the_one_the_page_shows(
    case: Case,
    ui_client: TestClient,
    sessions: sessionmaker[Session],
    settings: Settings,
    seed: Seed,
) -> None:
    if case.before is not None:
        case.before(sessions, settings, seed)
    request_id = getattr(seed, case.request)
    signed_before = len(decisions(sessions, request_id))
    # The page first (a page load may sweep expired requests), then the service on that state.
    sign_in(ui_client, case.who)
    view = ui_client.get(f"/ui/approvals/{request_id}")
    assert view.status_code == 200

    # What the service raises (nothing of it is kept).
    s = sessions()
    try:
        with pytest.raises(RadwatchError) as raised:
            approvals.decide(
                s,
                settings,
                request_id=request_id,
                signer=rules.Signer(case.who, ROLES[case.who]),
                decision=case.decision,  # type: ignore[arg-type]
                reason=case.reason,
                password=PASSWORDS[case.who],
                override=case.override,
            )
    finally:
        s.rollback()
        s.close()
    error = raised.value
    with session_scope(sessions) as s:
        request = approvals.get(s, request_id)
        first = rules.refusals(
            rules.Signer(case.who, ROLES[case.who]),
            request,
            approvals.decisions(s, request_id),
            datetime.now(UTC),
            decision=case.decision,  # type: ignore[arg-type]
            override=case.override,
            reason=case.reason,
        )[0]
    assert first.rule == case.rule
    assert error.message == first.message

    # What the page shows for the same person and the same form.
    if case.shown_before_the_form:
        assert str(escape(error.message)) in view.text
        assert 'class="card decision-form"' not in view.text
    posted = ui_client.post(
        f"/ui/approvals/{request_id}/decision",
        data={
            "csrf": csrf_of(view.text),
            "decision": case.decision,
            "reason": case.reason,
            "password": PASSWORDS[case.who],
            "override": "yes" if case.override else "",
        },
    )
    assert posted.status_code == error.status_code, posted.text[-2000:]
    assert str(escape(error.message)) in posted.text
    assert len(decisions(sessions, request_id)) == signed_before  # nothing was signed


def test_a_signer_the_rules_accept_is_offered_the_form_and_can_sign(
    ui_client: TestClient, sessions: sessionmaker[Session], seed: Seed
) -> None:
    sign_in(ui_client, ADA)
    view = ui_client.get(f"/ui/approvals/{seed.approve_id}")
    assert 'class="card decision-form"' in view.text
    assert 'id="cannot-decide"' not in view.text
    posted = ui_client.post(
        f"/ui/approvals/{seed.approve_id}/decision",
        data={
            "csrf": csrf_of(view.text),
            "decision": "approve",
            "reason": REASON,
            "password": PASSWORDS[ADA],
        },
        follow_redirects=False,
    )
    assert posted.status_code == 303
    assert [d.approver for d in decisions(sessions, seed.approve_id)] == [ADA]


def test_a_request_past_its_deadline_is_refused_before_the_sweep(
    sessions: sessionmaker[Session], settings: Settings, seed: Seed
) -> None:
    _expire(sessions, settings, seed.approve_id)
    with session_scope(sessions) as s:
        request = approvals.get(s, seed.approve_id)
        assert request.state == "pending"  # nothing swept it yet
        refused = rules.refusals(
            rules.Signer(ADA, ROLES[ADA]), request, [], datetime.now(UTC), decision="approve"
        )
        assert [r.rule for r in refused] == ["expired"]
        with pytest.raises(RadwatchError) as raised:
            approvals.decide(
                s,
                settings,
                request_id=seed.approve_id,
                signer=rules.Signer(ADA, ROLES[ADA]),
                decision="approve",
                reason=REASON,
                password=PASSWORDS[ADA],
            )
        assert raised.value.message == refused[0].message
        assert raised.value.status_code == 409
