"""The pages' non-browser paths through the real app (TestClient): redirects, CSRF, the session
cookie, refusals that write nothing, and errors shown as pages, never as JSON or a traceback."""

from __future__ import annotations

import time

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from services.core.db import session_scope
from services.core.models import AuditRecord, Role
from services.core.settings import Settings
from services.ui import cookies
from tests.services.ui.conftest import (
    ADA,
    AUDREY,
    CARL,
    EVE,
    PASSWORDS,
    Seed,
    csrf_of,
    decisions,
    request_state,
    sign_in,
)


def _audit_count(sessions: sessionmaker[Session]) -> int:
    with session_scope(sessions) as s:
        return int(s.scalar(select(func.count()).select_from(AuditRecord)) or 0)


@pytest.mark.parametrize("path", ["/ui/approvals", "/ui/approvals/1", "/ui/history", "/ui/logout"])
def test_unauthenticated_pages_redirect_to_sign_in(ui_client: TestClient, path: str) -> None:
    response = ui_client.get(path, follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"].startswith("/ui/login")


def test_sign_in_remembers_where_you_were_going_but_never_leaves_the_site(
    ui_client: TestClient, seed: Seed
) -> None:
    first = ui_client.get(f"/ui/approvals/{seed.reject_id}", follow_redirects=False)
    assert first.headers["location"] == f"/ui/login?next=%2Fui%2Fapprovals%2F{seed.reject_id}"
    form = ui_client.get(first.headers["location"])
    assert f'name="next" value="/ui/approvals/{seed.reject_id}"' in form.text
    evil = ui_client.post(
        "/ui/login",
        data={
            "name": ADA,
            "password": PASSWORDS[ADA],
            "csrf": csrf_of(form.text),
            "next": "https://evil.example/ui/approvals",
        },
        follow_redirects=False,
    )
    assert evil.status_code == 303
    assert evil.headers["location"] == "/ui/approvals"


def test_session_cookie_is_signed_httponly_and_lax(ui_client: TestClient) -> None:
    page = ui_client.get("/ui/login")
    response = ui_client.post(
        "/ui/login",
        data={"name": ADA, "password": PASSWORDS[ADA], "csrf": csrf_of(page.text)},
        follow_redirects=False,
    )
    set_cookies = response.headers.get_list("set-cookie")
    session = next(c for c in set_cookies if c.startswith(f"{cookies.SESSION_COOKIE}="))
    lowered = session.lower()
    assert "httponly" in lowered
    assert "samesite=lax" in lowered
    assert "path=/ui" in lowered
    assert "max-age=28800" in lowered
    assert ui_client.get("/ui/approvals", follow_redirects=False).status_code == 200


def test_edited_forged_or_old_session_cookies_are_signed_out(
    ui_client: TestClient, settings: Settings
) -> None:
    secret = settings.session_secret
    good = cookies.issue_session(secret, EVE, Role.MLOPS_ENGINEER)
    _, good_mac = good.rsplit(".", 1)
    officer = cookies.issue_session("not-the-secret", EVE, Role.CLINICAL_SAFETY_OFFICER)
    edited = officer.rsplit(".", 1)[0] + "." + good_mac  # role edited, signature kept
    nine_hours_ago = time.time() - 9 * 3600
    old = cookies.issue_session(secret, ADA, Role.CLINICAL_SAFETY_OFFICER, now=nine_hours_ago)
    wrong_role = cookies.issue_session(secret, EVE, Role.CLINICAL_SAFETY_OFFICER)
    for value in (
        edited,
        officer,  # signed with another secret
        old,
        wrong_role,  # correctly signed, but Eve's account is not an officer's
        "garbage",
    ):
        ui_client.cookies.set(cookies.SESSION_COOKIE, value, path="/ui")
        response = ui_client.get("/ui/approvals", follow_redirects=False)
        assert response.status_code == 303, value
        ui_client.cookies.clear()
    ui_client.cookies.set(cookies.SESSION_COOKIE, good, path="/ui")
    assert ui_client.get("/ui/approvals", follow_redirects=False).status_code == 200


def test_session_survives_a_name_with_the_separator(settings: Settings) -> None:
    value = cookies.issue_session(settings.session_secret, "a|b|c", Role.AUDITOR, now=1000)
    read = cookies.read_session(settings.session_secret, value, max_age_s=60, now=1010)
    assert read == cookies.WebSession(name="a|b|c", role=Role.AUDITOR, issued_at=1000)


def test_decision_without_csrf_token_is_refused_and_writes_nothing(
    ui_client: TestClient, sessions: sessionmaker[Session], seed: Seed
) -> None:
    sign_in(ui_client, ADA)
    before = _audit_count(sessions)
    form = {"decision": "reject", "reason": "Forged by another site.", "password": PASSWORDS[ADA]}
    for extra in ({}, {"csrf": "0" * 64}):
        response = ui_client.post(
            f"/ui/approvals/{seed.reject_id}/decision", data={**form, **extra}
        )
        assert response.status_code == 403
        assert response.headers["content-type"].startswith("text/html")
        assert "CSRF" in response.text
    assert request_state(sessions, seed.reject_id) == "pending"
    assert decisions(sessions, seed.reject_id) == []
    assert _audit_count(sessions) == before


def test_csrf_token_of_one_person_is_worthless_in_anothers_session(
    ui_client: TestClient, settings: Settings, seed: Seed
) -> None:
    sign_in(ui_client, ADA)
    nonce = ui_client.cookies.get(cookies.CSRF_COOKIE)
    assert nonce
    token_for_ben = cookies.csrf_token(settings.session_secret, nonce, "Dr Ben")
    response = ui_client.post(
        f"/ui/approvals/{seed.reject_id}/decision",
        data={"csrf": token_for_ben, "decision": "reject", "reason": "x" * 20, "password": "y"},
    )
    assert response.status_code == 403


def test_sign_in_without_csrf_token_is_refused(ui_client: TestClient) -> None:
    response = ui_client.post("/ui/login", data={"name": ADA, "password": PASSWORDS[ADA]})
    assert response.status_code == 403
    assert cookies.SESSION_COOKIE not in ui_client.cookies


def test_post_after_the_session_ended_goes_to_sign_in(ui_client: TestClient, seed: Seed) -> None:
    response = ui_client.post(
        f"/ui/approvals/{seed.reject_id}/decision",
        data={"decision": "reject", "reason": "x" * 20},
        follow_redirects=False,
    )
    assert response.status_code == 303
    assert response.headers["location"] == (f"/ui/login?next=%2Fui%2Fapprovals%2F{seed.reject_id}")


def test_conflicted_officer_crafting_a_post_is_refused_by_four_eyes(
    ui_client: TestClient, sessions: sessionmaker[Session], seed: Seed
) -> None:
    """Dr Carl triggered the retraining of version 8: the page offers him no form, and a POST
    he makes up is refused by the lifecycle service, shown as a page, and writes nothing."""
    sign_in(ui_client, CARL)
    view = ui_client.get(f"/ui/approvals/{seed.approve_id}")
    assert "Four-eyes rule" in view.text
    assert 'class="card decision-form"' not in view.text
    before = _audit_count(sessions)
    response = ui_client.post(
        f"/ui/approvals/{seed.approve_id}/decision",
        data={
            "csrf": csrf_of(view.text),
            "decision": "approve",
            "reason": "I know this model well.",
            "password": PASSWORDS[CARL],
        },
    )
    assert response.status_code == 403
    assert "text/html" in response.headers["content-type"]
    assert "Four-eyes rule: &#39;Dr Carl&#39; triggered or trained" in response.text
    assert request_state(sessions, seed.approve_id) == "pending"
    assert decisions(sessions, seed.approve_id) == []
    assert _audit_count(sessions) == before


def test_auditor_reads_everything_and_signs_nothing(ui_client: TestClient, seed: Seed) -> None:
    sign_in(ui_client, AUDREY)
    listing = ui_client.get("/ui/approvals")
    assert listing.status_code == 200
    assert "only a clinical safety officer can sign decisions" in listing.text
    view = ui_client.get(f"/ui/approvals/{seed.reject_id}")
    assert view.status_code == 200
    assert "for whom sign-off is read-only" in view.text
    assert 'class="card decision-form"' not in view.text
    assert ui_client.get("/ui/history").status_code == 200
    document = ui_client.get(f"/ui/approvals/{seed.reject_id}/dossier.json")
    assert document.json()["candidate_version"] == 9


def test_unknown_request_and_state_are_pages_not_json(ui_client: TestClient) -> None:
    sign_in(ui_client, ADA)
    missing = ui_client.get("/ui/approvals/999999")
    assert missing.status_code == 404
    assert "text/html" in missing.headers["content-type"]
    assert "No approval request 999999" in missing.text
    odd = ui_client.get("/ui/approvals?state=<script>")
    assert odd.status_code == 422
    assert "<script>" not in odd.text
    assert "There is no state" in odd.text


def test_pages_send_security_headers(ui_client: TestClient) -> None:
    response = ui_client.get("/ui/login")
    assert "default-src 'none'" in response.headers["content-security-policy"]
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["cache-control"] == "no-store"
    css = ui_client.get("/ui/static/ui.css")
    assert css.status_code == 200
    assert css.headers["content-type"].startswith("text/css")


def test_decision_rules_are_checked_before_anything_is_written(
    ui_client: TestClient, sessions: sessionmaker[Session], seed: Seed
) -> None:
    sign_in(ui_client, ADA)
    token = csrf_of(ui_client.get(f"/ui/approvals/{seed.reject_id}").text)
    url = f"/ui/approvals/{seed.reject_id}/decision"
    base = {"csrf": token, "decision": "reject", "reason": "Fails the east site.", "password": ""}
    cases = [
        ({"decision": ""}, 422, "Choose whether to approve or reject"),
        ({"password": ""}, 422, "Enter your password to sign"),
        ({"password": PASSWORDS[ADA], "reason": "short"}, 422, "at least 10 characters"),
        ({"password": "wrong-password-1"}, 401, "That password is not right"),
    ]
    for change, status, message in cases:
        response = ui_client.post(url, data={**base, **change})
        assert response.status_code == status, change
        assert message in response.text, change
    assert request_state(sessions, seed.reject_id) == "pending"
    assert decisions(sessions, seed.reject_id) == []


def test_sign_ins_are_audited(ui_client: TestClient, sessions: sessionmaker[Session]) -> None:
    def trail() -> list[tuple[str, str]]:
        with session_scope(sessions) as s:
            rows = s.execute(
                select(AuditRecord.action, AuditRecord.entity_id)
                .where(AuditRecord.action.like("user.sign%"))
                .order_by(AuditRecord.id)
            ).all()
            return [(a, e) for a, e in rows]

    def attempt(name: str, password: str) -> int:
        csrf = csrf_of(ui_client.get("/ui/login").text)
        r = ui_client.post(
            "/ui/login",
            data={"name": name, "password": password, "csrf": csrf},
            follow_redirects=False,
        )
        return r.status_code

    assert attempt(ADA, "not her password") == 401
    assert attempt("nobody-at-all", "whatever123") == 401  # unknown names are not recorded
    assert attempt(ADA, PASSWORDS[ADA]) == 303
    assert trail() == [("user.sign_in_failed", ADA), ("user.signed_in", ADA)]
