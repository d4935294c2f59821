"""/v1/monitors on the real app and PostgreSQL: declare, validate, change with history, roles."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import TEST_MODEL

DRIFT = {"kind": "drift", "window": {"type": "count", "size": 200}}
PERF = {"kind": "performance", "finding": "effusion", "baseline": 0.9, "margin": 0.05}


def create(client: Any, name: str, spec: dict[str, Any], **kw: Any) -> Any:
    return client.post("/v1/monitors", json={"model": TEST_MODEL, "name": name, "spec": spec}, **kw)


def test_declare_list_get_and_results(client: Any) -> None:
    resp = create(client, "vendor", DRIFT)
    assert resp.status_code == 201, resp.text
    body = resp.json()
    assert body["kind"] == "drift"
    assert body["version"] == 1
    assert body["spec"]["policy"] == {"alpha": 0.01, "persistence_k": 2, "persistence_m": 3}
    assert body["updated_by"] == "test-mlops_engineer"
    listed = client.get("/v1/monitors", params={"model": TEST_MODEL}).json()
    assert [m["name"] for m in listed] == ["vendor"]
    assert client.get(f"/v1/monitors/{body['id']}").json()["name"] == "vendor"
    assert client.get(f"/v1/monitors/{body['id']}/results").json() == []


def test_update_and_disable_keep_history(client: Any) -> None:
    mid = create(client, "effusion", PERF).json()["id"]
    changed = client.patch(f"/v1/monitors/{mid}", json={"spec": {**PERF, "margin": 0.02}})
    assert changed.status_code == 200
    assert changed.json()["version"] == 2
    same = client.patch(f"/v1/monitors/{mid}", json={"spec": {**PERF, "margin": 0.02}})
    assert same.json()["version"] == 2  # no change, no new version
    off = client.patch(f"/v1/monitors/{mid}", json={"active": False})
    assert off.json()["active"] is False
    history = client.get(f"/v1/monitors/{mid}/history").json()
    assert [(h["version"], h["change"], h["spec"]["margin"]) for h in history] == [
        (1, "created", 0.05),
        (2, "updated", 0.02),
        (3, "disabled", 0.02),
    ]


@pytest.mark.parametrize(
    ("spec", "needle"),
    [
        ({"kind": "nope"}, "kind"),
        ({"kind": "drift", "features": ["colour"]}, "unknown drift features"),
        ({"kind": "drift", "window": {"type": "time"}}, "needs 'seconds'"),
        ({"kind": "drift", "window": {"type": "count", "size": 5}}, "spec.window.size"),
        ({"kind": "drift", "policy": {"persistence_k": 4, "persistence_m": 3}}, "persistence_k"),
        ({"kind": "performance", "finding": "Effusion"}, "finding"),
        ({"kind": "performance", "finding": "effusion", "margin": 2}, "margin"),
    ],
)
def test_bad_specs_are_422_with_the_field(client: Any, spec: dict[str, Any], needle: str) -> None:
    resp = create(client, "bad", spec)
    assert resp.status_code == 422, resp.text
    assert needle in resp.json()["error"]["message"]


def test_duplicate_name_is_409_unknown_model_404_unknown_id_404(client: Any) -> None:
    assert create(client, "vendor", DRIFT).status_code == 201
    dup = create(client, "vendor", DRIFT)
    assert dup.status_code == 409
    assert "already has a monitor named 'vendor'" in dup.json()["error"]["message"]
    unknown = client.post("/v1/monitors", json={"model": "ghost", "name": "x", "spec": DRIFT})
    assert unknown.status_code == 404
    assert client.get("/v1/monitors/999999").status_code == 404
    assert client.patch("/v1/monitors/999999", json={"active": False}).status_code == 404


def test_kind_cannot_change(client: Any) -> None:
    mid = create(client, "vendor", DRIFT).json()["id"]
    resp = client.patch(f"/v1/monitors/{mid}", json={"spec": PERF})
    assert resp.status_code == 422
    assert "cannot change" in resp.json()["error"]["message"]


def test_roles(client: Any, keys: dict[str, str]) -> None:
    auditor = {"Authorization": f"Bearer {keys['auditor']}"}
    assert create(client, "vendor", DRIFT, headers=auditor).status_code == 403
    assert create(client, "vendor", DRIFT).status_code == 201
    assert client.get("/v1/monitors", headers=auditor).status_code == 200
