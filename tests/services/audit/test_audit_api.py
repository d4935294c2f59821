"""``/v1/audit`` through the real app on PostgreSQL: who may read and verify, paging and filters,
and a tampered log reported as such."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from services.audit import actions
from services.audit import service as audit
from services.core.db import session_scope
from tests.services.audit.conftest import append, as_superuser, auth

ENGINEER, SAFETY, AUDITOR = "mlops_engineer", "clinical_safety_officer", "auditor"


def test_reading_needs_a_key(api: TestClient) -> None:
    for path in ("/v1/audit", "/v1/audit/verify"):
        res = api.get(path)
        assert res.status_code == 401
        assert res.json()["error"]["code"] == "unauthenticated"


@pytest.mark.parametrize("role", [ENGINEER, SAFETY, AUDITOR])
def test_every_role_may_read(
    api: TestClient, sessions: sessionmaker[Session], keys: dict[str, str], role: str
) -> None:
    append(sessions, 2)
    res = api.get("/v1/audit", headers=auth(keys, role))
    assert res.status_code == 200, res.text
    items = res.json()["items"]
    assert [r["actor"] for r in items] == ["alice", "alice"]
    assert items[1]["prev_hash"] == items[0]["hash"]
    assert items[0]["at"].endswith("Z") or items[0]["at"].endswith("+00:00")


def test_only_oversight_roles_may_verify(
    api: TestClient, sessions: sessionmaker[Session], keys: dict[str, str]
) -> None:
    append(sessions, 3)
    refused = api.get("/v1/audit/verify", headers=auth(keys, ENGINEER))
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "forbidden"
    for role in (SAFETY, AUDITOR):
        res = api.get("/v1/audit/verify", headers=auth(keys, role))
        assert res.status_code == 200, res.text
        body = res.json()
        assert body["ok"] is True
        assert body["checked"] == 3
        assert body["broken_id"] is None
        anchored = api.get(
            "/v1/audit/verify", params={"anchor": body["head"]}, headers=auth(keys, role)
        )
        assert anchored.json()["ok"] is True
    bad = api.get("/v1/audit/verify", params={"anchor": "xyz"}, headers=auth(keys, AUDITOR))
    assert bad.status_code == 422


def test_verify_reports_the_first_broken_record(
    api: TestClient, sessions: sessionmaker[Session], keys: dict[str, str], database_url: str
) -> None:
    ids = append(sessions, 4)
    as_superuser(database_url, f"UPDATE audit_log SET actor = 'mallory' WHERE id = {ids[1]}")
    body = api.get("/v1/audit/verify", headers=auth(keys, AUDITOR)).json()
    assert body["ok"] is False
    assert (body["broken_id"], body["reason"], body["checked"]) == (ids[1], "content_edited", 1)
    assert f"record {ids[1]}" in body["message"]


def test_pages_by_id_and_filters(
    api: TestClient, sessions: sessionmaker[Session], keys: dict[str, str]
) -> None:
    ids = append(sessions, 5)
    with session_scope(sessions) as s:
        deployed = audit.record(
            s,
            actor="bob",
            action=actions.MODEL_DEPLOYED,
            entity_type=actions.MODEL_VERSION,
            entity_id=actions.model_version_id("cxr", 2),
        ).id
    headers = auth(keys, AUDITOR)
    seen: list[int] = []
    after = 0
    while True:
        page = api.get("/v1/audit", params={"after": after, "limit": 2}, headers=headers).json()
        seen += [r["id"] for r in page["items"]]
        if page["next_after"] is None:
            break
        after = page["next_after"]
    assert seen == [*ids, deployed]

    by_action = api.get("/v1/audit", params={"action": "model.deployed"}, headers=headers).json()
    assert [r["id"] for r in by_action["items"]] == [deployed]
    assert by_action["next_after"] is None
    by_entity = api.get(
        "/v1/audit", params={"entity_type": "alert", "entity_id": "3"}, headers=headers
    ).json()
    assert [r["id"] for r in by_entity["items"]] == [ids[2]]
    assert api.get("/v1/audit", params={"limit": 0}, headers=headers).status_code == 422
    assert api.get("/v1/audit", params={"after": -1}, headers=headers).status_code == 422
