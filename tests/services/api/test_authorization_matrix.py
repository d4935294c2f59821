"""Every lifecycle endpoint x every role (and no key), plus the four-eyes rule over HTTP.

The table below is the authorization policy; a test fails when a lifecycle route exists that the
table does not cover, so a new endpoint cannot ship without a decision about who may call it.
Allowed roles must get past authorization (any status but 401/403); others get 403; no key 401.
"""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy.orm import Session, sessionmaker

from services.auth.users import create_user
from services.core.db import session_scope
from services.core.models import Role
from tests.conftest import TEST_MODEL
from tests.fixtures.lifecycle import PASSWORD, request_for

E, C, A = "mlops_engineer", "clinical_safety_officer", "auditor"
ALL = (E, C, A)

#: (method, path template, allowed roles, JSON body)
MATRIX: list[tuple[str, str, tuple[str, ...], dict[str, Any] | None]] = [
    ("GET", "/v1/approvals", ALL, None),
    ("GET", "/v1/registry/models", ALL, None),
    ("GET", "/v1/registry/models/{name}/versions", ALL, None),
    ("POST", "/v1/registry/models/{name}/versions", (E,), {}),
    ("GET", "/v1/approvals/{request_id}", ALL, None),
    (
        "POST",
        "/v1/approvals/{request_id}/decision",
        (C,),
        {"decision": "reject", "reason": "matrix test reason", "password": "not-it"},
    ),
    ("POST", "/v1/approvals/{request_id}/withdraw", (E,), {"reason": "matrix test reason"}),
    ("POST", "/v1/auth/reauth", ALL, {"password": "not-it"}),
    ("GET", "/v1/models/{model}/protocol", ALL, None),
    ("GET", "/v1/models/{model}/protocol/history", ALL, None),
    ("PUT", "/v1/models/{model}/protocol", (E, C), {"approvals_required": 2}),
    ("POST", "/v1/models/{model}/promotion", (E,), {"version": 99, "reason": "matrix"}),
    ("POST", "/v1/models/{model}/promotion/advance", (E,), {}),
    ("POST", "/v1/models/{model}/rollback", (E, C), {"reason": "matrix"}),
    ("GET", "/v1/promotions", ALL, None),
    ("GET", "/v1/models/{model}/routing", ALL, None),
    ("GET", "/v1/models/{model}/shadow", ALL, None),
    ("POST", "/v1/models/{name}/retraining", (E,), {"reason": "matrix test"}),
    ("GET", "/v1/retraining", ALL, None),
    ("GET", "/v1/retraining/{run_id}", ALL, None),
    ("GET", "/v1/dossiers/{dossier_id}", ALL, None),
    ("GET", "/v1/dossiers/{dossier_id}/html", ALL, None),
    ("GET", "/v1/audit", ALL, None),
    ("GET", "/v1/audit/verify", (C, A), None),
]

LIFECYCLE_PREFIXES = (
    "/v1/approvals",
    "/v1/auth",
    "/v1/promotions",
    "/v1/audit",
    "/v1/retraining",
    "/v1/dossiers",
)
LIFECYCLE_MODEL_SUFFIXES = (
    "/protocol",
    "/promotion",
    "/rollback",
    "/routing",
    "/shadow",
    "/retraining",
)


def _is_lifecycle(path: str) -> bool:
    if path.startswith(LIFECYCLE_PREFIXES):
        return True
    return path.startswith("/v1/registry/") or (
        path.startswith("/v1/models/{") and any(s in path for s in LIFECYCLE_MODEL_SUFFIXES)
    )


def test_the_matrix_covers_every_lifecycle_route(client: Any) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    routes = {
        (method.upper(), path)
        for path, ops in paths.items()
        for method in ops
        if _is_lifecycle(path)
    }
    covered = {(m, p) for m, p, _, _ in MATRIX}
    assert routes - covered == set(), "lifecycle routes without an authorization decision"
    assert covered - routes == set(), "the matrix names routes that do not exist"


@pytest.fixture
def pending(sessions: sessionmaker[Session]) -> int:
    with session_scope(sessions) as s:
        return request_for(s, TEST_MODEL, 2, conflicted=("someone-else",))


@pytest.mark.parametrize("role", [None, *ALL])
@pytest.mark.parametrize(
    ("method", "path", "allowed", "body"), MATRIX, ids=[f"{m} {p}" for m, p, _, _ in MATRIX]
)
def test_authorization(
    client: Any,
    keys: dict[str, str],
    pending: int,
    role: str | None,
    method: str,
    path: str,
    allowed: tuple[str, ...],
    body: dict[str, Any] | None,
) -> None:
    url = path.format(request_id=pending, model=TEST_MODEL, name=TEST_MODEL, run_id=1, dossier_id=1)
    headers = {"Authorization": f"Bearer {keys[role]}"} if role else {"Authorization": ""}
    r = client.request(method, url, json=body, headers=headers)
    if role is None:
        assert r.status_code == 401, r.text
    elif role in allowed:
        assert (
            r.status_code not in (401, 403) or "password" in r.text or "user account" in r.text
        ), (
            r.status_code,
            r.text,
        )
        assert r.status_code < 500, r.text
    else:
        assert r.status_code == 403, r.text
        assert (
            "may not" in r.json()["error"]["message"]
            or "needs one of" in r.json()["error"]["message"]
        )


def test_four_eyes_over_http(
    client: Any, keys: dict[str, str], sessions: sessionmaker[Session]
) -> None:
    """The safety officer whose key name is among those who triggered/trained is refused even
    with the right password; another officer may decide."""
    officer = "test-clinical_safety_officer"
    with session_scope(sessions) as s:
        create_user(
            s, name=officer, role=Role.CLINICAL_SAFETY_OFFICER, password=PASSWORD, actor="t"
        )
        rid = request_for(s, TEST_MODEL, 5, conflicted=(officer,))
        other = request_for(s, TEST_MODEL, 6, conflicted=("eng-lin",))
    body = {"decision": "approve", "reason": "Looks fine to me, really.", "password": PASSWORD}
    headers = {"Authorization": f"Bearer {keys['clinical_safety_officer']}"}
    r = client.post(f"/v1/approvals/{rid}/decision", json=body, headers=headers)
    assert r.status_code == 403
    assert "Four-eyes" in r.json()["error"]["message"]
    r = client.post(f"/v1/approvals/{other}/decision", json=body, headers=headers)
    assert r.status_code == 200, r.text
    assert r.json()["state"] == "approved"
    assert r.json()["decisions"][0]["approver"] == officer
    # Wrong password: 401 and nothing recorded.
    third = None
    with session_scope(sessions) as s:
        third = request_for(s, TEST_MODEL, 7, conflicted=("eng-lin",))
    r = client.post(
        f"/v1/approvals/{third}/decision",
        json={**body, "password": "wrong-password"},
        headers=headers,
    )
    assert r.status_code == 401
    assert client.get(f"/v1/approvals/{third}", headers=headers).json()["decisions"] == []
