"""``/v1/registry``: import by upload, list, read; refusals are 4xx and register nothing.

The real app (lifespan runs) on PostgreSQL, with the embedded MLflow store of the test's data
directory, and real ONNX files built by torch.onnx."""

from __future__ import annotations

import json
from pathlib import Path

from tests.fixtures.foreign_models import build_embedding_encoder, build_onnx_classifier


def _upload(client, name: str, path: Path, spec: dict[str, object] | None):  # type: ignore[no-untyped-def]
    data = {"spec": json.dumps(spec)} if spec is not None else {}
    with path.open("rb") as fh:
        return client.post(
            f"/v1/registry/models/{name}/versions",
            files={"file": (path.name, fh.read(), "application/octet-stream")},
            data=data,
        )


def test_import_by_upload_then_list_and_read(client, tmp_path: Path, keys) -> None:  # type: ignore[no-untyped-def]
    model = build_onnx_classifier(tmp_path / "onnx")
    created = _upload(client, "vendor-cls", model.path, model.spec)
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["version"] == 1
    assert body["source_format"] == "onnx"
    assert len(body["source_sha256"]) == 64

    assert "vendor-cls" in client.get("/v1/registry/models").json()
    versions = client.get("/v1/registry/models/vendor-cls/versions").json()
    assert [(v["version"], v["spec_sha256"]) for v in versions] == [(1, body["spec_sha256"])]
    assert versions[0]["spec"]["runtime"] == "onnx"

    client.headers["Authorization"] = f"Bearer {keys['auditor']}"
    assert client.get("/v1/registry/models").status_code == 200  # any role reads
    denied = _upload(client, "vendor-cls", model.path, model.spec)
    assert denied.status_code == 403


def test_refused_uploads_are_4xx_with_the_reason_and_register_nothing(
    client, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    model = build_onnx_classifier(tmp_path / "onnx")
    wrong_type = tmp_path / "model.h5"
    wrong_type.write_bytes(b"hdf5?")
    r = _upload(client, "cls", wrong_type, model.spec)
    assert r.status_code == 400
    assert ".onnx" in r.json()["error"]["message"]

    r = _upload(client, "cls", model.path, None)
    assert r.status_code == 422
    assert "needs a spec" in r.json()["error"]["message"]

    r = _upload(client, "cls", model.path, {**model.spec, "runtime": "tensorflow"})
    assert r.status_code == 422
    assert "runtime" in r.json()["error"]["message"]

    assert _upload(client, "cls", model.path, model.spec).status_code == 201
    encoder = build_embedding_encoder(tmp_path / "enc")
    r = _upload(client, "cls", encoder.path, encoder.spec)
    assert r.status_code == 409
    assert "different spec" in r.json()["error"]["message"]
    assert [v["version"] for v in client.get("/v1/registry/models/cls/versions").json()] == [1]

    assert client.get("/v1/registry/models/nope/versions").status_code == 404
