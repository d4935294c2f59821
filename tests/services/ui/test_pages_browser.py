"""Acceptance tests of the sign-off pages in a real browser (Debian's Chromium through Playwright)
against the real app under uvicorn and a real PostgreSQL database. Each test leaves screenshots
in tests/artifacts/ui/; the dossier view is also copied to docs/img/ for the README."""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from tests.services.ui.conftest import (
    ADA,
    BEN,
    EVE,
    PASSWORDS,
    Seed,
    decisions,
    request_state,
    screenshot,
)


def sign_in(page: Any, name: str, password: str | None = None) -> None:
    page.goto("/ui/login")
    page.get_by_label("User name").fill(name)
    page.get_by_label("Password").fill(password or PASSWORDS[name])
    page.get_by_role("button", name="Sign in").click()


def sign_out(page: Any) -> None:
    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url(re.compile(r"/ui/login\?signed_out=1$"))


def fill_decision(page: Any, decision: str, reason: str, password: str) -> Any:
    """Fill and submit the decision form; the POST's response."""
    form = page.locator("form.decision-form")
    form.get_by_label("Approve" if decision == "approve" else "Reject").check()
    form.get_by_label("Reason").fill(reason)
    form.get_by_label("Your password").fill(password)
    with page.expect_response(lambda r: r.request.method == "POST") as info:
        form.get_by_role("button", name="Sign decision").click()
    page.wait_for_load_state()
    return info.value


def test_sign_in_wrong_password_then_the_list(page: Any, seed: Seed) -> None:
    page.goto("/ui/approvals")
    assert "/ui/login?next=" in page.url
    # The sign-in form takes the focus, so typing starts in the user name.
    assert page.evaluate("document.activeElement.id") == "name"

    with page.expect_response(lambda r: r.request.method == "POST") as info:
        sign_in(page, ADA, "not-her-password")
    assert info.value.status == 401
    alert = page.get_by_role("alert")
    assert "Wrong user name or password." in alert.inner_text()
    assert page.get_by_label("User name").input_value() == ADA
    screenshot(page, "login-error")

    sign_in(page, ADA)
    page.wait_for_url(re.compile(r"/ui/approvals$"))
    table = page.locator("table.requests")
    rows = table.locator("tbody tr")
    assert rows.count() == 3
    text = table.inner_text()
    for version in (8, 9, 10):
        assert f"cxr-classifier version {version}" in text
    assert "5 h ago" in text
    assert "in 6 d 19 h" in text or "in 6 d 18 h" in text  # created 5 h ago, expires after 7 d
    assert "40 min ago" in text or "41 min ago" in text
    failed_row = rows.filter(has_text="version 10")
    assert "FAIL" in failed_row.inner_text()
    assert "override needs 2 approvers" in failed_row.inner_text()
    screenshot(page, "approvals")
    # Keyboard users meet the skip link first.
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent.trim()") == "Skip to main content"

    page.get_by_label("Show requests that are").select_option("approved")
    page.get_by_role("button", name="Show").click()
    page.wait_for_url(re.compile(r"state=approved"))
    assert page.get_by_text("No approved requests.").is_visible()

    sign_out(page)
    assert page.get_by_role("status").inner_text().strip() == "You are signed out."
    page.goto("/ui/approvals")
    assert "/ui/login" in page.url


def test_review_dossier_then_wrong_password_then_reject(
    page: Any, seed: Seed, sessions: sessionmaker[Session]
) -> None:
    sign_in(page, ADA)
    page.get_by_role("link", name="cxr-classifier version 9").click()
    page.wait_for_url(re.compile(rf"/ui/approvals/{seed.reject_id}$"))
    assert page.get_by_role("heading", level=1).inner_text().startswith("cxr-classifier version 9")
    summary = page.locator(".summary-grid").inner_text()
    assert "version 7" in summary  # champion
    assert "Change protocol\nversion 2" in summary

    criteria = page.locator("table.criteria tbody tr")
    assert criteria.count() == 6
    for i in range(6):
        assert "PASS" in criteria.nth(i).locator("td").first.inner_text()
    assert "6 of 6 criteria met" in page.locator("table.criteria caption").inner_text()

    images = page.locator("#plots figure img")
    assert images.count() == 4
    for i in range(4):
        img = images.nth(i)
        assert len(img.get_attribute("alt") or "") > 20
        assert img.evaluate("i => i.complete && i.naturalWidth > 100")
    for title in ("Data", "Performance", "Fairness", "Calibration", "Robustness", "Sites"):
        assert page.get_by_role("heading", name=title, exact=True).is_visible()
    assert page.get_by_role("heading", name="Drift evidence").is_visible()
    sites = page.locator("#section-sites table").inner_text()
    assert "east" in sites
    assert "0.905" in sites
    drift = page.locator("#section-drift_evidence").inner_text()
    assert "Alert IDs\n12, 14" in drift
    performance = page.locator("#section-performance").inner_text()
    assert "0.897 to 0.926" in performance
    # Criteria passed: no override offered.
    assert page.locator("#override").count() == 0
    screenshot(page, "dossier", docs=True)

    response = fill_decision(
        page, "reject", "Site east AUROC is below the champion's.", "wrong-password-1"
    )
    assert response.status == 401
    assert "That password is not right" in page.get_by_role("alert").inner_text()
    form = page.locator("form.decision-form")
    assert form.get_by_label("Reason").input_value() == "Site east AUROC is below the champion's."
    assert form.get_by_label("Your password").input_value() == ""
    assert form.get_by_label("Reject").is_checked()
    screenshot(page, "decision-wrong-password")
    assert request_state(sessions, seed.reject_id) == "pending"
    assert decisions(sessions, seed.reject_id) == []

    form.get_by_label("Your password").fill(PASSWORDS[ADA])
    form.get_by_role("button", name="Sign decision").click()
    page.wait_for_url(re.compile(rf"/ui/approvals/{seed.reject_id}\?signed=reject"))
    assert "Your rejection has been signed" in page.get_by_role("status").inner_text()
    assert request_state(sessions, seed.reject_id) == "rejected"
    (decision,) = decisions(sessions, seed.reject_id)
    assert (decision.approver, decision.decision, decision.reauth) == (ADA, "reject", "password")
    assert re.fullmatch(r"[0-9a-f]{64}", decision.signature)
    assert decision.signature in page.locator("table.decisions").inner_text()
    assert "is rejected, not pending" in page.locator("#cannot-decide").inner_text()
    screenshot(page, "dossier-rejected")

    page.get_by_role("link", name="History").click()
    rows = page.locator("table.history tbody tr")
    newest = rows.nth(0).inner_text()
    assert "Request closed" in newest
    assert "REJECTED" in newest
    signed = rows.nth(1).inner_text()
    assert "Signed decision" in signed
    assert ADA in signed
    assert "Site east AUROC is below the champion's." in signed
    history = page.locator("table.history").inner_text()
    assert "Rollback" in history
    assert "v7 → v6" in history
    screenshot(page, "history")


def test_approve_a_passing_candidate(
    page: Any, seed: Seed, sessions: sessionmaker[Session]
) -> None:
    sign_in(page, BEN)
    page.goto(f"/ui/approvals/{seed.approve_id}")
    response = fill_decision(
        page, "approve", "All criteria met with margin; sites consistent.", PASSWORDS[BEN]
    )
    assert response.status == 303
    page.wait_for_url(re.compile(r"signed=approve"))
    assert request_state(sessions, seed.approve_id) == "approved"
    (decision,) = decisions(sessions, seed.approve_id)
    assert (decision.approver, decision.decision, decision.override) == (BEN, "approve", False)
    assert "APPROVED" in page.locator(".summary-grid").inner_text()


def test_engineer_who_trained_it_is_refused(
    page: Any, seed: Seed, sessions: sessionmaker[Session]
) -> None:
    sign_in(page, EVE)
    page.wait_for_url(re.compile(r"/ui/approvals$"))
    assert "only a clinical safety officer can sign decisions" in page.inner_text("main")
    page.goto(f"/ui/approvals/{seed.approve_id}")
    blocked = page.locator("#cannot-decide").inner_text()
    assert "Four-eyes rule: 'eve.engineer' triggered or trained cxr-classifier version 8" in (
        blocked
    )
    assert "for whom sign-off is read-only" in blocked
    assert page.locator("form.decision-form").count() == 0
    screenshot(page, "four-eyes")

    # A POST she makes up (with her own valid CSRF token) is refused too, and writes nothing.
    token = page.locator("input[name=csrf]").first.get_attribute("value")
    response = page.request.post(
        f"/ui/approvals/{seed.approve_id}/decision",
        form={
            "csrf": token,
            "decision": "approve",
            "reason": "I trained it, it is fine.",
            "password": PASSWORDS[EVE],
        },
    )
    assert response.status == 403
    assert "Only a clinical_safety_officer may decide" in response.text()
    assert request_state(sessions, seed.approve_id) == "pending"
    assert decisions(sessions, seed.approve_id) == []


def test_failed_criteria_need_an_override_and_two_approvers(
    page: Any, seed: Seed, sessions: sessionmaker[Session]
) -> None:
    sign_in(page, ADA)
    page.goto(f"/ui/approvals/{seed.failed_id}")
    failed = page.locator("table.criteria tr.row-fail")
    assert failed.count() == 1
    assert "subgroup_tpr_gap" in failed.inner_text()
    assert "FAIL" in failed.inner_text()
    assert "5 of 6 criteria met" in page.locator("table.criteria caption").inner_text()
    hint = page.locator("#override-hint").inner_text()
    assert "two different clinical safety officers" in hint
    screenshot(page, "dossier-failed-criteria")

    reason = "Gap is driven by 402 studies; accepted with follow-up audit."
    response = fill_decision(page, "approve", reason, PASSWORDS[ADA])
    assert response.status == 409
    assert "tick the override box" in page.get_by_role("alert").inner_text()
    assert decisions(sessions, seed.failed_id) == []

    form = page.locator("form.decision-form")
    form.get_by_label("Override").check()
    form.get_by_label("Your password").fill(PASSWORDS[ADA])
    form.get_by_role("button", name="Sign decision").click()
    page.wait_for_url(re.compile(r"signed=approve"))
    assert "waits for 1 more approval" in page.get_by_role("status").inner_text()
    assert request_state(sessions, seed.failed_id) == "pending"
    assert "'Dr Ada' already signed request" in page.locator("#cannot-decide").inner_text()
    screenshot(page, "override-first-approval")
    sign_out(page)

    sign_in(page, BEN)
    page.goto(f"/ui/approvals/{seed.failed_id}")
    assert "1 of 2" in page.locator(".summary-grid").inner_text()
    page.locator("form.decision-form").get_by_label("Override").check()
    response = fill_decision(page, "approve", "Second approval of the override.", PASSWORDS[BEN])
    assert response.status == 303
    assert request_state(sessions, seed.failed_id) == "approved"
    rows = decisions(sessions, seed.failed_id)
    assert [(d.approver, d.override) for d in rows] == [(ADA, True), (BEN, True)]
    screenshot(page, "override-approved")
