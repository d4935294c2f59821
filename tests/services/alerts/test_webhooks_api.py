"""``/v1/webhooks`` on the real app: the secret is shown once and never again, URLs are checked,
only MLOps engineers manage subscriptions, and deleting one deactivates it."""

from __future__ import annotations

import logging
import re

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from services.core.db import session_scope
from services.core.models import WebhookSubscription
from tests.services.alerts.conftest import auth

ENGINEER = "mlops_engineer"


def test_generated_secret_is_shown_once_and_never_listed(
    api: TestClient,
    keys: dict[str, str],
    sessions: sessionmaker[Session],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    headers = auth(keys, ENGINEER)
    created = api.post(
        "/v1/webhooks", json={"url": "https://pager.example.org/radwatch"}, headers=headers
    )
    assert created.status_code == 201, created.text
    body = created.json()
    secret = body["secret"]
    assert re.fullmatch(r"whsec_[0-9a-f]{64}", secret)  # 256 bits
    assert body["url"] == "https://pager.example.org/radwatch"
    assert (body["active"], body["min_severity"]) == (True, "warning")
    with session_scope(sessions) as s:
        stored = s.get(WebhookSubscription, body["id"])
        assert stored is not None
        assert stored.secret == secret  # kept, because it signs every delivery

    other = api.post(
        "/v1/webhooks", json={"url": "https://pager.example.org/b"}, headers=headers
    ).json()
    assert other["secret"] != secret

    listed = api.get("/v1/webhooks", headers=headers)
    assert listed.status_code == 200
    assert [set(w) for w in listed.json()] == [
        {"id", "url", "active", "min_severity", "created_at"}
    ] * 2
    assert secret not in listed.text
    assert other["secret"] not in listed.text
    assert secret not in caplog.text


def test_own_secret_and_severity_are_kept(
    api: TestClient, keys: dict[str, str], sessions: sessionmaker[Session]
) -> None:
    mine = "my-own-signing-secret-" + "q" * 20
    created = api.post(
        "/v1/webhooks",
        json={"url": "http://10.0.0.5:8080/hook", "secret": mine, "min_severity": "critical"},
        headers=auth(keys, ENGINEER),
    ).json()
    assert created["secret"] == mine
    assert created["min_severity"] == "critical"
    with session_scope(sessions) as s:
        stored = s.get(WebhookSubscription, created["id"])
        assert stored is not None
        assert stored.secret == mine


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"url": "ftp://files.example.org/x"}, "url"),
        ({"url": "file:///etc/passwd"}, "url"),
        ({"url": "not a url"}, "url"),
        ({"url": "https://user:pw@example.org/x"}, "url"),
        ({"url": "https://example.org/" + "a" * 2040}, "url"),
        ({"url": "https://example.org/x", "secret": "short"}, "secret"),
        ({"url": "https://example.org/x", "secret": " " + "a" * 40}, "secret"),
        ({"url": "https://example.org/x", "min_severity": "info"}, "min_severity"),
        ({"url": "https://example.org/x", "events": ["alert.opened"]}, "events"),
        ({}, "url"),
    ],
)
def test_bad_subscriptions_are_422(
    api: TestClient, keys: dict[str, str], body: dict[str, object], field: str
) -> None:
    resp = api.post("/v1/webhooks", json=body, headers=auth(keys, ENGINEER))
    assert resp.status_code == 422
    err = resp.json()["error"]
    assert err["code"] == "validation_failed"
    assert field in err["message"]
    assert api.get("/v1/webhooks", headers=auth(keys, ENGINEER)).json() == []


def test_only_mlops_engineers_manage_webhooks(api: TestClient, keys: dict[str, str]) -> None:
    sub = api.post(
        "/v1/webhooks", json={"url": "https://example.org/x"}, headers=auth(keys, ENGINEER)
    ).json()
    for role in ("clinical_safety_officer", "auditor"):
        headers = auth(keys, role)
        for resp in (
            api.post("/v1/webhooks", json={"url": "https://example.org/y"}, headers=headers),
            api.get("/v1/webhooks", headers=headers),
            api.delete(f"/v1/webhooks/{sub['id']}", headers=headers),
        ):
            assert resp.status_code == 403
            assert resp.json()["error"]["code"] == "forbidden"
    assert api.get("/v1/webhooks").status_code == 401
    assert len(api.get("/v1/webhooks", headers=auth(keys, ENGINEER)).json()) == 1


def test_delete_deactivates_and_is_idempotent(api: TestClient, keys: dict[str, str]) -> None:
    headers = auth(keys, ENGINEER)
    sub = api.post("/v1/webhooks", json={"url": "https://example.org/x"}, headers=headers).json()
    for _ in range(2):
        gone = api.delete(f"/v1/webhooks/{sub['id']}", headers=headers)
        assert gone.status_code == 200
        assert gone.json()["active"] is False
        assert "secret" not in gone.json()
    assert api.get("/v1/webhooks", headers=headers).json() == []
    everything = api.get("/v1/webhooks", params={"include_inactive": True}, headers=headers)
    assert [(w["id"], w["active"]) for w in everything.json()] == [(sub["id"], False)]
    assert api.delete("/v1/webhooks/99999999999999999999", headers=headers).status_code == 422
    missing = api.delete("/v1/webhooks/424242", headers=headers)
    assert missing.status_code == 404
    assert "No webhook subscription with id 424242" in missing.json()["error"]["message"]


def test_openapi_lists_the_new_routes(api: TestClient) -> None:
    paths = api.get("/openapi.json").json()["paths"]
    assert {"409", "404", "403"} <= set(paths["/v1/alerts/{alert_id}/resolve"]["post"]["responses"])
    assert {"get", "post"} <= set(paths["/v1/webhooks"])
    assert "delete" in paths["/v1/webhooks/{subscription_id}"]
    assert "get" in paths["/v1/alerts/{alert_id}"]
