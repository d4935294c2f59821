"""The generic dossier rendering: any JSON the evaluation step writes must give a readable page,
and nothing in the document may turn into a fetched URL or markup."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from services.core.db import session_scope
from services.core.models import ApprovalRequest, Dossier, Role
from services.ui import render
from tests.services.ui.conftest import ADA, MODEL, sign_in


def test_shapes_become_tables_lists_and_pairs() -> None:
    sites = render.to_node(
        {"north": {"n": 800, "auroc": 0.91}, "east": {"n": 12, "auroc": None}}, key="sites"
    )
    assert sites.kind == "table"
    assert sites.row_headers
    assert sites.columns == ["Site", "n", "AUROC"]
    assert [c.text for c in sites.rows[1]] == ["east", "12", "not reported"]

    groups = render.to_node([{"group": "sex=F", "ci": [0.8, 0.9], "passed": False}], key="groups")
    assert groups.kind == "table"
    assert groups.columns == ["Group", "CI", "Passed"]
    assert groups.rows[0][1].text == "0.8 to 0.9"
    assert groups.rows[0][2].kind == "verdict"
    assert groups.rows[0][2].text == "FAIL"

    pairs = render.to_node({"alert_ids": [12, 14], "p_value": 0.000123456, "note": "ok"})
    assert pairs.kind == "pairs"
    assert [(label, n.text) for label, n in pairs.pairs] == [
        ("Alert IDs", "12, 14"),
        ("p value", "0.0001235"),
        ("Note", "ok"),
    ]


def test_deep_and_long_values_are_cut_with_a_note() -> None:
    deep: object = "bottom"
    for _ in range(20):
        deep = {"level": deep, "other": [1, {"x": 2}]}
    node = render.to_node(deep)
    seen_note = False
    stack = [node]
    while stack:
        n = stack.pop()
        seen_note = seen_note or "nested too deeply" in n.note
        stack.extend(child for _, child in n.pairs)
        stack.extend(n.items)
    assert seen_note
    assert render.to_node([1, 2, 3], key="values").text == "1, 2, 3"  # short: one line
    series = render.to_node(list(range(1000)), key="values")  # a series: summarised, not listed
    assert (series.kind, series.text) == ("text", "1000 values from 0 to 999")
    assert "plots" in series.note
    long = render.to_node([{"x": i, "y": [i]} for i in range(1000)], key="rows")
    assert len(long.rows) == render.MAX_ITEMS
    assert "first 200 of 1000" in long.note
    many = render.to_node([{"a": i} for i in range(1000)])
    assert len(many.rows) == render.MAX_ITEMS
    assert "first 200 of 1000" in many.note


def test_only_data_uri_images_become_plots() -> None:
    png = (
        "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9aw"
        "AAAABJRU5ErkJggg=="
    )
    assert render.plot("roc", png) is not None  # bare base64 PNG
    assert render.plot("roc", "data:image/png;base64," + png) is not None
    custom = render.plot("x", {"src": "data:image/png;base64," + png, "alt": "Mine", "title": "T"})
    assert custom is not None
    assert (custom.alt, custom.title) == ("Mine", "T")
    for bad in (
        "https://evil.example/track.png",
        "javascript:alert(1)",
        "data:text/html;base64,PHNjcmlwdD4=",
        {"src": "//evil.example/x.png"},
        None,
        42,
    ):
        assert render.plot("roc", bad) is None, bad


def test_times_read_as_people_say_them() -> None:
    now = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
    assert render.ago(now - timedelta(hours=5, minutes=3), now) == "5 h 3 min ago"
    assert render.until(now + timedelta(days=6, hours=19, minutes=59), now) == "in 6 d 19 h"
    assert render.until(now - timedelta(minutes=90), now) == "expired 1 h 30 min ago"
    assert render.ago(now, now) == "under a minute ago"


def test_an_odd_dossier_still_renders(
    ui_client: TestClient, sessions: sessionmaker[Session]
) -> None:
    """A document from a newer or broken generator: wrong types everywhere, markup in text, a
    remote image. The page renders, escapes the text and fetches nothing."""
    document = {
        "criteria": [
            {"name": "<b>bold</b>", "passed": "yes", "value": {"estimate": 0.9, "ci": [0.8, 1]}},
            "not an object",
            {"passed": False},
        ],
        "sections": {"performance": "<script>alert(1)</script>", "new_section": [[1, 2], [3]]},
        "plots": {"roc": "https://evil.example/roc.png", "calibration": {"alt": "no src"}},
    }
    now = datetime.now(UTC)
    with session_scope(sessions) as s:
        dossier = Dossier(
            model_name=MODEL,
            candidate_version=99,
            champion_version=7,
            protocol_version=3,
            passed=False,
            document=document,
            html="",
        )
        s.add(dossier)
        s.flush()
        request = ApprovalRequest(
            model_name=MODEL,
            candidate_version=99,
            dossier_id=dossier.id,
            state="pending",
            approver_role=Role.CLINICAL_SAFETY_OFFICER.value,
            required_approvals=1,
            criteria_passed=False,
            conflicted={},
            requested_by="worker",
            expires_at=now + timedelta(days=1),
        )
        s.add(request)
        s.flush()
        request_id = request.id
    sign_in(ui_client, ADA)
    page = ui_client.get(f"/ui/approvals/{request_id}")
    assert page.status_code == 200
    html = page.text
    assert "<script>alert(1)</script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<b>bold</b>" not in html
    assert "evil.example" not in html
    assert "NOT REPORTED" in html  # a criterion whose 'passed' is not a boolean
    assert "Estimate 0.9; CI 0.8 to 1" in html
    assert "New section" in html
    assert 'id="plots"' not in html  # no usable plot, no empty section
    assert 'id="override"' in html


def test_large_evidence_sections_start_folded() -> None:
    from services.ui.service import FOLD_ABOVE, Section

    small = Section("s", "Small", render.to_node({"n": 3, "auroc": [0.9, 0.95]}))
    big = Section(
        "b",
        "Big",
        render.to_node({f"group{i}": {"n": i, "tpr": 0.5, "fpr": 0.1} for i in range(40)}),
    )
    assert render.node_size(small.node) <= FOLD_ABOVE
    assert not small.folded
    assert big.folded
