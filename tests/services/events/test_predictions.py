"""POST /v1/predictions against a real Triton and PostgreSQL: the happy paths and every bad input
we could think of. Each bad input must get a 4xx whose message says what to fix, never a 500."""

from __future__ import annotations

import io
import json
from typing import Any

import numpy as np
import pydicom
import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from pipelines.contract import FINDINGS
from pipelines.dicom import study_to_bytes
from pipelines.synth import RadiographGenerator
from services.core.models import PredictionEvent
from tests.conftest import TEST_MODEL


def _image(side: int = 96, value: float = 0.4) -> list[list[float]]:
    rng = np.random.default_rng(0)
    return np.clip(value + 0.1 * rng.standard_normal((side, side)), 0, 1).round(4).tolist()


def _meta(**over: Any) -> dict[str, Any]:
    base = {
        "study_id": "STUDY-123",
        "patient_id": "PAT-9",
        "site": "north",
        "sex": "F",
        "age": 61,
        "manufacturer": "Acme",
        "kvp": 110.0,
        "view_position": "PA",
    }
    base.update(over)
    return base


def _dicom_bytes() -> bytes:
    study = RadiographGenerator(seed=7).generate(1)[0]
    return study_to_bytes(study)


def _error(resp: Any, status: int, code: str | None = None) -> str:
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert set(body) == {"error"}, body
    assert body["error"]["message"], body
    assert "Traceback" not in resp.text
    if code:
        assert body["error"]["code"] == code, body
    message: str = body["error"]["message"]
    return message


def _count(sessions: sessionmaker[Session]) -> int:
    with sessions() as s:
        return int(s.scalar(select(func.count(PredictionEvent.id))) or 0)


# --- happy paths --------------------------------------------------------------------------------


def test_array_prediction_is_scored_and_recorded(client, sessions) -> None:  # type: ignore[no-untyped-def]
    resp = client.post("/v1/predictions", json={"image": _image(), "metadata": _meta()})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert set(body["scores"]) == set(FINDINGS)
    assert all(0.0 <= p <= 1.0 for p in body["scores"].values())
    assert body["model"] == {"name": TEST_MODEL, "version": 1}
    with sessions() as s:
        event = s.scalars(select(PredictionEvent)).one()
    # Identifiers are pseudonymised at the edge: the raw ids are stored nowhere.
    assert event.study_pid == body["study_pid"]
    assert "STUDY-123" not in event.study_pid
    assert event.patient_pid
    assert "PAT-9" not in event.patient_pid
    assert len(np.frombuffer(event.embedding, dtype="<f4")) == 128
    assert event.image_stats["height"] == 96


def test_dicom_upload_reads_tags(client, sessions) -> None:  # type: ignore[no-untyped-def]
    data = _dicom_bytes()
    ds = pydicom.dcmread(io.BytesIO(data))
    resp = client.post(
        "/v1/predictions",
        files={"file": ("x.dcm", data, "application/dicom")},
        data={"site": "north"},
    )
    assert resp.status_code == 200, resp.text
    with sessions() as s:
        event = s.scalars(select(PredictionEvent)).one()
    assert event.manufacturer == ds.Manufacturer
    assert event.sex == ds.PatientSex
    assert event.site == "north"


def test_same_event_id_is_recorded_once(client, sessions) -> None:  # type: ignore[no-untyped-def]
    payload = {"image": _image(), "metadata": _meta(event_id="evt-1")}
    first = client.post("/v1/predictions", json=payload)
    second = client.post("/v1/predictions", json=payload)
    assert first.status_code == second.status_code == 200
    assert first.json()["duplicate"] is False
    assert second.json()["duplicate"] is True
    assert first.json()["scores"] == second.json()["scores"]
    assert _count(sessions) == 1


# --- authentication and roles -------------------------------------------------------------------


def test_missing_key(client) -> None:  # type: ignore[no-untyped-def]
    del client.headers["Authorization"]
    msg = _error(client.post("/v1/predictions", json={}), 401, "unauthenticated")
    assert "API key" in msg


def test_unknown_key(client) -> None:  # type: ignore[no-untyped-def]
    client.headers["Authorization"] = "Bearer rw_nope_nope"
    _error(client.post("/v1/predictions", json={}), 401, "unauthenticated")


@pytest.mark.parametrize("role", ["auditor", "clinical_safety_officer"])
def test_wrong_role(client, keys, role) -> None:  # type: ignore[no-untyped-def]
    client.headers["Authorization"] = f"Bearer {keys[role]}"
    msg = _error(client.post("/v1/predictions", json={"image": _image(), "metadata": _meta()}), 403)
    assert "mlops_engineer" in msg


# --- malformed bodies ---------------------------------------------------------------------------


def test_unsupported_content_type(client) -> None:  # type: ignore[no-untyped-def]
    resp = client.post("/v1/predictions", content=b"hello", headers={"content-type": "text/plain"})
    assert "multipart/form-data" in _error(resp, 415, "unsupported_media_type")


def test_malformed_json(client) -> None:  # type: ignore[no-untyped-def]
    resp = client.post(
        "/v1/predictions", content=b"{not json", headers={"content-type": "application/json"}
    )
    _error(resp, 422, "validation_failed")


def test_missing_metadata(client) -> None:  # type: ignore[no-untyped-def]
    msg = _error(client.post("/v1/predictions", json={"image": _image()}), 422)
    assert "metadata" in msg


def test_missing_site(client) -> None:  # type: ignore[no-untyped-def]
    meta = _meta()
    del meta["site"]
    msg = _error(client.post("/v1/predictions", json={"image": _image(), "metadata": meta}), 422)
    assert "site" in msg


def test_missing_study_id(client) -> None:  # type: ignore[no-untyped-def]
    meta = _meta()
    del meta["study_id"]
    msg = _error(client.post("/v1/predictions", json={"image": _image(), "metadata": meta}), 422)
    assert "study_id" in msg


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("age", -3),
        ("age", 400),
        ("sex", "X"),
        ("kvp", "high"),
        ("kvp", 5000),
        ("view_position", "UP"),
        ("site", "north/../../etc"),
        ("colour", "blue"),
    ],
)
def test_invalid_metadata_values(client, field, value) -> None:  # type: ignore[no-untyped-def]
    resp = client.post(
        "/v1/predictions", json={"image": _image(), "metadata": _meta(**{field: value})}
    )
    assert field in _error(resp, 422)


def test_ragged_rows(client) -> None:  # type: ignore[no-untyped-def]
    image = _image()
    image[3] = image[3][:-5]
    resp = client.post("/v1/predictions", json={"image": image, "metadata": _meta()})
    assert "rows" in _error(resp, 400, "invalid_image")


def test_three_dimensional_image(client) -> None:  # type: ignore[no-untyped-def]
    resp = client.post("/v1/predictions", json={"image": [_image(40)], "metadata": _meta()})
    assert "image" in _error(resp, 422)


def test_empty_image(client) -> None:  # type: ignore[no-untyped-def]
    _error(
        client.post("/v1/predictions", json={"image": [], "metadata": _meta()}),
        400,
        "invalid_image",
    )


def test_tiny_image(client) -> None:  # type: ignore[no-untyped-def]
    resp = client.post("/v1/predictions", json={"image": _image(8), "metadata": _meta()})
    assert "between" in _error(resp, 400, "invalid_image")


def test_values_outside_unit_range(client) -> None:  # type: ignore[no-untyped-def]
    image = (np.array(_image()) * 255).tolist()
    _error(
        client.post("/v1/predictions", json={"image": image, "metadata": _meta()}),
        400,
        "invalid_image",
    )


def test_nan_pixels(client) -> None:  # type: ignore[no-untyped-def]
    image = _image()
    image[0][0] = float("nan")
    body = json.dumps({"image": image, "metadata": _meta()})  # Python writes the NaN literal
    resp = client.post(
        "/v1/predictions", content=body, headers={"content-type": "application/json"}
    )
    assert 400 <= resp.status_code < 500
    _error(resp, resp.status_code)


def test_body_too_large(api_settings, keys, deployed) -> None:  # type: ignore[no-untyped-def]
    from fastapi.testclient import TestClient

    from services.api.app import create_app

    small = api_settings.model_copy(update={"max_upload_mb": 0.05})
    with TestClient(create_app(small)) as c:
        c.headers["Authorization"] = f"Bearer {keys['mlops_engineer']}"
        resp = c.post("/v1/predictions", json={"image": _image(256), "metadata": _meta()})
    assert "MiB" in _error(resp, 413, "payload_too_large")


# --- DICOM uploads ------------------------------------------------------------------------------


def test_not_a_dicom_file(client) -> None:  # type: ignore[no-untyped-def]
    resp = client.post(
        "/v1/predictions",
        files={"file": ("x.dcm", b"this is not dicom", "application/dicom")},
        data={"site": "north"},
    )
    _error(resp, 400, "invalid_dicom")


def test_dicom_without_pixels(client) -> None:  # type: ignore[no-untyped-def]
    ds = pydicom.dcmread(io.BytesIO(_dicom_bytes()))
    del ds.PixelData
    buf = io.BytesIO()
    ds.save_as(buf)
    resp = client.post(
        "/v1/predictions",
        files={"file": ("x.dcm", buf.getvalue(), "application/dicom")},
        data={"site": "north"},
    )
    assert "pixel" in _error(resp, 400, "invalid_dicom").lower()


def test_multipart_without_file(client) -> None:  # type: ignore[no-untyped-def]
    resp = client.post("/v1/predictions", data={"site": "north"}, files={"other": ("a", b"x")})
    assert "'file'" in _error(resp, 400)


def test_multipart_bad_metadata_json(client) -> None:  # type: ignore[no-untyped-def]
    resp = client.post(
        "/v1/predictions",
        files={"file": ("x.dcm", _dicom_bytes(), "application/dicom")},
        data={"metadata": "{oops"},
    )
    assert "metadata" in _error(resp, 400)


# --- model and serving problems -----------------------------------------------------------------


def test_unknown_model(client) -> None:  # type: ignore[no-untyped-def]
    resp = client.post(
        "/v1/predictions",
        params={"model": "no-such-model"},
        json={"image": _image(), "metadata": _meta()},
    )
    msg = _error(resp, 404, "unknown_model")
    assert TEST_MODEL in msg  # tells the caller what does exist


def test_triton_down(api_settings, keys, deployed, sessions) -> None:  # type: ignore[no-untyped-def]
    from fastapi.testclient import TestClient

    from services.api.app import create_app
    from services.core.processes import free_port

    dead = api_settings.model_copy(update={"triton_url": f"127.0.0.1:{free_port()}"})
    with TestClient(create_app(dead)) as c:
        c.headers["Authorization"] = f"Bearer {keys['mlops_engineer']}"
        resp = c.post("/v1/predictions", json={"image": _image(), "metadata": _meta()})
    _error(resp, 503, "serving_unavailable")
    assert resp.headers.get("retry-after")
    assert _count(sessions) == 0  # nothing partial was written


def test_model_not_loaded(client, sessions) -> None:  # type: ignore[no-untyped-def]
    from services.core.db import session_scope
    from services.serving.service import deploy_champion

    with session_scope(sessions) as s:
        deploy_champion(
            s, model_name="ghost", model_version=3, mlflow_run_id="r", triton_model="ghost"
        )
    resp = client.post(
        "/v1/predictions", params={"model": "ghost"}, json={"image": _image(), "metadata": _meta()}
    )
    _error(resp, 503, "model_not_loaded")
    assert _count(sessions) == 0
