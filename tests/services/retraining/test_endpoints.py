"""The retraining and dossier API: roles, 4xx cases, enqueue after commit, and once end to end
through a real Celery worker on the training queue (SQLite broker, PostgreSQL, MLflow server)."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from services.change_protocols import service as protocols
from services.core.db import session_scope
from services.core.models import Dossier
from services.core.processes import ManagedProcess, worker_argv
from services.core.settings import Settings
from services.retraining import service as retraining
from tests.fixtures.broker import queued
from tests.services.retraining import test_service as rt
from tests.services.retraining.test_service import FINDING, Scenario, make_protocol

# The scenario fixtures of the service tests, used here under the same names.
scenario = rt.scenario
server_registry = rt.server_registry

REPO = Path(__file__).resolve().parents[3]
BODY = {"reason": "Site south switched scanners; retrain on recent labels."}


@pytest.fixture
def api(settings: Settings, keys: dict[str, str]) -> Iterator[TestClient]:
    """The real app with the retraining router, whether or not app.py includes it yet."""
    from services.api.app import create_app
    from services.retraining.endpoints import router

    app = create_app(settings)
    if not any(getattr(r, "path", None) == "/v1/retraining" for r in app.routes):
        app.include_router(router)
    with TestClient(app, raise_server_exceptions=False) as c:
        yield c


def auth(keys: dict[str, str], role: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {keys[role]}"}


def sent(settings: Settings) -> list[tuple[str, tuple[object, ...]]]:
    """What the API's real producer published to the embedded broker's training queue."""
    return queued(settings, "training")


def _dossier(sessions: sessionmaker[Session], model: str) -> int:
    with session_scope(sessions) as s:
        row = Dossier(
            model_name=model,
            candidate_version=2,
            champion_version=1,
            protocol_version=1,
            passed=False,
            document={"model": model, "passed": False, "criteria": [], "sections": {}},
            html="<!doctype html><html><body><span class='FAIL'>FAIL</span></body></html>",
        )
        s.add(row)
        s.flush()
        return row.id


def test_start_run_roles_and_enqueue_after_commit(
    api: TestClient,
    keys: dict[str, str],
    scenario: Scenario,
    settings: Settings,
) -> None:
    url = f"/v1/models/{scenario.model}/retraining"
    assert api.post(url, json=BODY).status_code == 401
    for role in ("clinical_safety_officer", "auditor"):
        r = api.post(url, json=BODY, headers=auth(keys, role))
        assert r.status_code == 403, r.text
        assert r.json()["error"]["code"] == "forbidden"
    assert sent(settings) == []
    r = api.post(url, json={**BODY, "epochs": 3, "seed": 4}, headers=auth(keys, "mlops_engineer"))
    assert r.status_code == 202, r.text
    run = r.json()
    assert run["state"] == "queued"
    assert run["trigger"] == "manual"
    assert run["requested_by"] == "test-mlops_engineer"
    assert (run["seed"], run["params"]["epochs"], run["parent_version"]) == (4, 3, 1)
    assert run["dossier_id"] is None
    assert sent(settings) == [(retraining.TASK_NAME, (run["id"],))]

    r = api.post(url, json=BODY, headers=auth(keys, "mlops_engineer"))
    assert r.status_code == 409
    assert f"run {run['id']}" in r.json()["error"]["message"]
    assert len(sent(settings)) == 1  # nothing is sent for a refused (rolled back) request

    for role in ("mlops_engineer", "clinical_safety_officer", "auditor"):
        listed = api.get("/v1/retraining", headers=auth(keys, role))
        assert listed.status_code == 200
        assert [x["id"] for x in listed.json()] == [run["id"]]
        one = api.get(f"/v1/retraining/{run['id']}", headers=auth(keys, role))
        assert one.json()["lineage"]["protocol_version"] == 1
    assert api.get("/v1/retraining?state=failed", headers=auth(keys, "auditor")).json() == []
    assert api.get("/v1/retraining").status_code == 401


@pytest.mark.parametrize(
    ("body", "status", "needle"),
    [
        ({"reason": "x"}, 422, "reason"),
        ({**BODY, "epochs": 0}, 422, "epochs"),
        ({**BODY, "learning_rate": 1}, 422, "learning_rate"),
        ({}, 422, "reason"),
    ],
)
def test_start_run_rejects_bad_bodies(
    api: TestClient,
    keys: dict[str, str],
    scenario: Scenario,
    body: dict[str, Any],
    status: int,
    needle: str,
) -> None:
    r = api.post(
        f"/v1/models/{scenario.model}/retraining", json=body, headers=auth(keys, "mlops_engineer")
    )
    assert r.status_code == status, r.text
    assert needle in r.text


def test_start_run_404_and_422_for_too_few_labels(
    api: TestClient, keys: dict[str, str], scenario: Scenario, settings: Settings
) -> None:
    h = auth(keys, "mlops_engineer")
    r = api.post("/v1/models/unknown-model/retraining", json=BODY, headers=h)
    assert r.status_code == 404
    assert r.json()["error"]["code"] == "unknown_model"
    with session_scope(scenario.sessions) as s:
        protocols.create_version(
            s, scenario.model, make_protocol(min_labelled_events=5000), actor="t"
        )
    r = api.post(f"/v1/models/{scenario.model}/retraining", json=BODY, headers=h)
    assert r.status_code == 422
    err = r.json()["error"]
    assert "needs at least 5000" in err["message"]
    assert err["details"] == {"labelled": 300, "required": 5000}
    assert sent(settings) == []


def test_dossier_endpoints(
    api: TestClient, keys: dict[str, str], sessions: sessionmaker[Session]
) -> None:
    dossier_id = _dossier(sessions, "cxr-x")
    for role in ("clinical_safety_officer", "mlops_engineer", "auditor"):
        r = api.get(f"/v1/dossiers/{dossier_id}", headers=auth(keys, role))
        assert r.status_code == 200, r.text
        assert r.json()["document"]["model"] == "cxr-x"
        assert r.json()["passed"] is False
        page = api.get(f"/v1/dossiers/{dossier_id}/html", headers=auth(keys, role))
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")
        assert "FAIL" in page.text
    assert api.get(f"/v1/dossiers/{dossier_id}").status_code == 401
    assert api.get(f"/v1/dossiers/{dossier_id}/html").status_code == 401
    missing = api.get("/v1/dossiers/999999", headers=auth(keys, "auditor"))
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "not_found"
    assert api.get("/v1/dossiers/0", headers=auth(keys, "auditor")).status_code == 422
    assert api.get("/v1/retraining/999999", headers=auth(keys, "auditor")).status_code == 404


def test_post_to_a_real_worker_end_to_end(
    api: TestClient,
    keys: dict[str, str],
    scenario: Scenario,
    settings: Settings,
    database_url: str,
    tmp_path: Path,
) -> None:
    """The whole path once with a real Celery worker: API -> broker -> training worker ->
    MLflow candidate + dossier + approval request -> dossier readable through the API."""
    env = {
        "RADWATCH_DATABASE_URL": database_url,
        "RADWATCH_DATA_DIR": str(settings.data_dir),
        "RADWATCH_MLFLOW_TRACKING_URI": scenario.registry.tracking_uri,
        "RADWATCH_ENVIRONMENT": "test",
        "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""),
    }
    worker = ManagedProcess(
        "training worker",
        worker_argv(beat=False, concurrency=1, pool="solo", queues="training"),
        env=env,
        log_path=tmp_path / "worker.log",
        cwd=REPO,
    )
    with worker:
        worker.wait_log("ready", timeout_s=120)
        r = api.post(
            f"/v1/models/{scenario.model}/retraining",
            json={**BODY, "epochs": 4},
            headers=auth(keys, "mlops_engineer"),
        )
        assert r.status_code == 202, r.text
        run_id = r.json()["id"]
        deadline = time.monotonic() + 240
        run: dict[str, Any] = {}
        while time.monotonic() < deadline:
            run = api.get(f"/v1/retraining/{run_id}", headers=auth(keys, "auditor")).json()
            if run["state"] in ("succeeded", "failed"):
                break
            time.sleep(1)
    log = (tmp_path / "worker.log").read_text(errors="replace")
    assert run.get("state") == "succeeded", (run, log[-3000:])
    assert "Task training.retrain[" in log
    assert run["candidate_version"] == 2
    assert run["progress"] == 1.0
    doc = api.get(f"/v1/dossiers/{run['dossier_id']}", headers=auth(keys, "auditor")).json()
    assert doc["document"]["finding"] == FINDING
    assert doc["document"]["sections"]["performance"]["n"] == 90
    page = api.get(f"/v1/dossiers/{run['dossier_id']}/html", headers=auth(keys, "auditor"))
    assert 'id="plot-roc"' in page.text
    assert scenario.registry.get_by_alias(scenario.model, "candidate").version == 2
