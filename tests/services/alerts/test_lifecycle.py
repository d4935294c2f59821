"""Alert lifecycle through the real API on PostgreSQL: open -> acknowledged -> resolved, who and
when are recorded, nothing goes backwards, and roles are enforced."""

from __future__ import annotations

from datetime import datetime

from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from services.core.models import AlertState
from tests.services.alerts.conftest import auth, seed_alert

ENGINEER, SAFETY, AUDITOR = "mlops_engineer", "clinical_safety_officer", "auditor"


def test_acknowledge_then_resolve_records_who_when_and_why(
    api: TestClient, sessions: sessionmaker[Session], keys: dict[str, str]
) -> None:
    alert_id = seed_alert(sessions)
    fresh = api.get(f"/v1/alerts/{alert_id}", headers=auth(keys, AUDITOR))
    assert fresh.status_code == 200
    assert fresh.json()["state"] == "open"
    assert fresh.json()["acknowledged_at"] is None

    ack = api.post(
        f"/v1/alerts/{alert_id}/acknowledge",
        json={"note": "Looking at the scanner at north."},
        headers=auth(keys, ENGINEER),
    )
    assert ack.status_code == 200, ack.text
    body = ack.json()
    assert body["state"] == "acknowledged"
    assert body["acknowledged_by"] == "test-mlops_engineer"
    assert isinstance(body["acknowledged_by_key_id"], int)
    assert body["acknowledged_note"] == "Looking at the scanner at north."
    assert datetime.fromisoformat(body["acknowledged_at"]) >= datetime.fromisoformat(
        body["opened_at"]
    )
    assert body["resolved_at"] is None

    res = api.post(
        f"/v1/alerts/{alert_id}/resolve",
        json={"note": "Vendor firmware rolled back."},
        headers=auth(keys, SAFETY),
    )
    assert res.status_code == 200, res.text
    done = res.json()
    assert done["state"] == "resolved"
    assert done["resolved_by"] == "test-clinical_safety_officer"
    assert done["resolved_by_key_id"] != done["acknowledged_by_key_id"]
    assert done["resolved_note"] == "Vendor firmware rolled back."
    assert datetime.fromisoformat(done["resolved_at"]) >= datetime.fromisoformat(
        done["acknowledged_at"]
    )
    # The acknowledgement stays on the record, and the list shows the same lifecycle.
    assert done["acknowledged_by"] == "test-mlops_engineer"
    listed = api.get("/v1/alerts", headers=auth(keys, AUDITOR)).json()
    assert listed == [done]
    assert api.get(f"/v1/alerts/{alert_id}", headers=auth(keys, AUDITOR)).json() == done


def test_open_alert_can_be_resolved_directly_without_a_body(
    api: TestClient, sessions: sessionmaker[Session], keys: dict[str, str]
) -> None:
    alert_id = seed_alert(sessions)
    res = api.post(f"/v1/alerts/{alert_id}/resolve", headers=auth(keys, SAFETY))
    assert res.status_code == 200, res.text
    assert res.json()["state"] == "resolved"
    assert res.json()["resolved_note"] is None
    assert res.json()["acknowledged_at"] is None


def test_nothing_goes_backwards(
    api: TestClient, sessions: sessionmaker[Session], keys: dict[str, str]
) -> None:
    alert_id = seed_alert(sessions)
    headers = auth(keys, ENGINEER)
    assert api.post(f"/v1/alerts/{alert_id}/acknowledge", headers=headers).status_code == 200

    again = api.post(f"/v1/alerts/{alert_id}/acknowledge", headers=headers)
    assert again.status_code == 409
    err = again.json()["error"]
    assert err["code"] == "conflict"
    assert "already acknowledged by test-mlops_engineer" in err["message"]
    assert f"/v1/alerts/{alert_id}/resolve" in err["message"]
    assert err["details"] == {"alert_id": alert_id, "state": "acknowledged"}

    resolved = api.post(f"/v1/alerts/{alert_id}/resolve", headers=auth(keys, SAFETY)).json()
    for action, word in (("resolve", "resolved again"), ("acknowledge", "acknowledged")):
        refused = api.post(f"/v1/alerts/{alert_id}/{action}", headers=headers)
        assert refused.status_code == 409
        message = refused.json()["error"]["message"]
        assert "already resolved by test-clinical_safety_officer" in message
        assert f"cannot be {word}" in message
    # The refused calls changed nothing.
    assert api.get(f"/v1/alerts/{alert_id}", headers=headers).json() == resolved


def test_unknown_alert_is_404(api: TestClient, keys: dict[str, str]) -> None:
    headers = auth(keys, ENGINEER)
    for resp in (
        api.get("/v1/alerts/987654", headers=headers),
        api.post("/v1/alerts/987654/acknowledge", headers=headers),
        api.post("/v1/alerts/987654/resolve", json={"note": "x"}, headers=headers),
    ):
        assert resp.status_code == 404
        assert resp.json()["error"]["code"] == "not_found"
        assert "No alert with id 987654" in resp.json()["error"]["message"]


def test_auditor_reads_but_may_not_acknowledge_or_resolve(
    api: TestClient, sessions: sessionmaker[Session], keys: dict[str, str]
) -> None:
    alert_id = seed_alert(sessions)
    for action in ("acknowledge", "resolve"):
        resp = api.post(f"/v1/alerts/{alert_id}/{action}", headers=auth(keys, AUDITOR))
        assert resp.status_code == 403
        assert resp.json()["error"]["code"] == "forbidden"
        assert "clinical_safety_officer, mlops_engineer" in resp.json()["error"]["message"]
    assert api.get(f"/v1/alerts/{alert_id}", headers=auth(keys, AUDITOR)).json()["state"] == "open"
    assert api.post(f"/v1/alerts/{alert_id}/acknowledge").status_code == 401


def test_bad_bodies_are_422_and_change_nothing(
    api: TestClient, sessions: sessionmaker[Session], keys: dict[str, str]
) -> None:
    alert_id = seed_alert(sessions)
    headers = auth(keys, ENGINEER)
    url = f"/v1/alerts/{alert_id}/acknowledge"
    too_long = api.post(url, json={"note": "x" * 2001}, headers=headers)
    assert too_long.status_code == 422
    assert "note" in too_long.json()["error"]["message"]
    unknown = api.post(url, json={"note": "ok", "state": "resolved"}, headers=headers)
    assert unknown.status_code == 422
    assert "state" in unknown.json()["error"]["message"]
    assert api.post("/v1/alerts/abc/acknowledge", headers=headers).status_code == 422
    assert api.get(f"/v1/alerts/{alert_id}", headers=headers).json()["state"] == "open"
    longest = api.post(url, json={"note": "x" * 2000}, headers=headers)
    assert longest.status_code == 200
    assert longest.json()["acknowledged_note"] == "x" * 2000


def test_list_filters_by_the_new_states(
    api: TestClient, sessions: sessionmaker[Session], keys: dict[str, str]
) -> None:
    seed_alert(sessions, site="north")
    seed_alert(sessions, site="south", state=AlertState.ACKNOWLEDGED)
    seed_alert(sessions, site="east", state=AlertState.RESOLVED)
    headers = auth(keys, AUDITOR)
    for state, site in (("open", "north"), ("acknowledged", "south"), ("resolved", "east")):
        listed = api.get("/v1/alerts", params={"state": state}, headers=headers).json()
        assert [a["site"] for a in listed] == [site]


def test_input_the_database_cannot_store_is_a_4xx_not_a_500(
    api: TestClient, sessions: sessionmaker[Session], keys: dict[str, str]
) -> None:
    alert_id = seed_alert(sessions)
    headers = auth(keys, ENGINEER)
    nul = api.post(f"/v1/alerts/{alert_id}/acknowledge", json={"note": "a\u0000b"}, headers=headers)
    assert nul.status_code == 422
    assert "control characters" in nul.json()["error"]["message"]
    beyond_bigint = "99999999999999999999"
    for resp in (
        api.get(f"/v1/alerts/{beyond_bigint}", headers=headers),
        api.post(f"/v1/alerts/{beyond_bigint}/resolve", headers=headers),
        api.get("/v1/alerts/0", headers=headers),
    ):
        assert resp.status_code == 422
        assert "alert_id" in resp.json()["error"]["message"]
    multiline = api.post(
        f"/v1/alerts/{alert_id}/acknowledge", json={"note": "line 1\n\tline 2"}, headers=headers
    )
    assert multiline.status_code == 200
    assert multiline.json()["acknowledged_note"] == "line 1\n\tline 2"


def test_conflict_message_for_an_alert_resolved_before_lifecycle_fields_existed(
    api: TestClient, sessions: sessionmaker[Session], keys: dict[str, str]
) -> None:
    alert_id = seed_alert(sessions, state=AlertState.RESOLVED)  # no resolved_by/_at recorded
    resp = api.post(f"/v1/alerts/{alert_id}/resolve", headers=auth(keys, ENGINEER))
    assert resp.status_code == 409
    message = resp.json()["error"]["message"]
    assert message.startswith(f"Alert {alert_id} was already resolved; a resolved alert")
    assert "None" not in message
