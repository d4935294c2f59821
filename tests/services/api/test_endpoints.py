"""Read endpoints, metrics and health on the real app with PostgreSQL and Triton."""

from __future__ import annotations

import numpy as np
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy.orm import Session, sessionmaker

from services.core.db import session_scope
from services.core.models import Alert, AlertState, MonitorResult
from tests.conftest import TEST_MODEL


def _predict(client, site: str) -> None:  # type: ignore[no-untyped-def]
    image = np.full((64, 64), 0.5).tolist()
    meta = {"study_id": f"s-{site}-{np.random.default_rng().integers(1e9)}", "site": site}
    assert (
        client.post("/v1/predictions", json={"image": image, "metadata": meta}).status_code == 200
    )


def _seed_alerts(sessions: sessionmaker[Session]) -> None:
    with session_scope(sessions) as s:
        for i, site in enumerate(["north", "south"]):
            r = MonitorResult(
                monitor="acquisition_drift",
                model_name=TEST_MODEL,
                model_version=1,
                site=site,
                window_index=0,
                first_event_id=1,
                last_event_id=10,
                n_current=10,
                n_reference=10,
                statistic=0.1 * (i + 1),
                p_value=0.001,
                drift=True,
                details={},
            )
            s.add(r)
            s.flush()
            s.add(
                Alert(
                    monitor="acquisition_drift",
                    model_name=TEST_MODEL,
                    site=site,
                    severity="critical" if i else "warning",
                    detail=f"drift at {site}",
                    result_id=r.id,
                    opened_after_predictions=10,
                    state=AlertState.OPEN if i else AlertState.RESOLVED,
                )
            )


def test_models_lists_the_loaded_champion(client) -> None:  # type: ignore[no-untyped-def]
    models = client.get("/v1/models").json()
    assert [(m["model_name"], m["model_version"], m["role"], m["loaded"]) for m in models] == [
        (TEST_MODEL, 1, "champion", True)
    ]


def test_alerts_filters(client, sessions, keys) -> None:  # type: ignore[no-untyped-def]
    _seed_alerts(sessions)
    client.headers["Authorization"] = f"Bearer {keys['auditor']}"  # any role may read
    assert len(client.get("/v1/alerts").json()) == 2
    assert [a["site"] for a in client.get("/v1/alerts", params={"state": "open"}).json()] == [
        "south"
    ]
    assert [a["site"] for a in client.get("/v1/alerts", params={"site": "north"}).json()] == [
        "north"
    ]
    crit = client.get("/v1/alerts", params={"severity": "critical"}).json()
    assert [a["severity"] for a in crit] == ["critical"]
    bad = client.get("/v1/alerts", params={"state": "sleeping"})
    assert bad.status_code == 422
    assert "state" in bad.json()["error"]["message"]


def test_alerts_need_a_key(client) -> None:  # type: ignore[no-untyped-def]
    del client.headers["Authorization"]
    assert client.get("/v1/alerts").status_code == 401


def test_metrics_exposes_requests_predictions_monitors_and_alerts(client, sessions) -> None:  # type: ignore[no-untyped-def]
    _predict(client, "north")
    _predict(client, "north")
    _seed_alerts(sessions)
    text = client.get("/metrics").text
    families = {f.name: f for f in text_string_to_metric_families(text)}
    preds = {
        s.labels["site"]: s.value
        for s in families["radwatch_predictions"].samples
        if s.name.endswith("_total") and s.labels.get("model") == TEST_MODEL
    }
    assert preds.get("north", 0) >= 2
    reqs = [
        s
        for s in families["radwatch_http_requests"].samples
        if s.labels.get("route") == "/v1/predictions" and s.labels.get("status") == "200"
    ]
    assert reqs
    assert reqs[0].value >= 2
    assert "radwatch_http_request_duration_seconds" in families
    stat = {s.labels["site"]: s.value for s in families["radwatch_monitor_statistic"].samples}
    assert stat == {"north": 0.1, "south": 0.2}
    open_alerts = [
        (s.labels["site"], s.labels["severity"], s.value)
        for s in families["radwatch_alerts_open"].samples
    ]
    assert open_alerts == [("south", "critical", 1.0)]
    assert families["radwatch_database_up"].samples[0].value == 1.0


def test_healthz(client) -> None:  # type: ignore[no-untyped-def]
    body = client.get("/healthz").json()
    assert body == {"status": "ok", "database": True, "triton": True}


def test_openapi_documents_errors_and_both_bodies(client) -> None:  # type: ignore[no-untyped-def]
    spec = client.get("/openapi.json").json()
    post = spec["paths"]["/v1/predictions"]["post"]
    assert set(post["requestBody"]["content"]) == {"application/json", "multipart/form-data"}
    assert {"400", "401", "403", "404", "413", "415", "422", "503"} <= set(post["responses"])
    assert "/v1/alerts" in spec["paths"]
    assert "/v1/models" in spec["paths"]


def test_unknown_route_is_a_clean_404(client) -> None:  # type: ignore[no-untyped-def]
    resp = client.get("/v1/nope")
    assert resp.status_code == 404
    assert set(resp.json()) == {"error"}
