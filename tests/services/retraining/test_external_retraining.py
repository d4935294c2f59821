"""External retraining on real components (embedded MLflow, PostgreSQL, the session's
tritonserver, the real API app, and ``mlflow.projects.run`` of a real MLflow Project): the
project receives the snapshot of labelled events, writes its model, and radwatch imports it as
the candidate, judges it on the spec's evaluation set through Triton, and opens its approval
request."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from pipelines.dicom import study_to_bytes
from pipelines.spec import parse_spec
from pipelines.synth import RadiographGenerator
from services.api.app import create_app
from services.auth.service import create_key
from services.core.db import session_scope
from services.core.models import ApprovalRequest, ApprovalState, Dossier, Role
from services.core.settings import Settings
from services.monitoring.flows import deploy
from services.registry.evaluation_sets import register
from services.registry.imports import import_version
from services.retraining import service as retraining
from services.retraining.flows import execute_run
from services.serving.server import TritonServerProcess
from services.wiring import build_runtime
from tests.e2e.harness import labelled_studies
from tests.fixtures.foreign_models import build_onnx_classifier, vendor_trainer_project
from tests.fixtures.triton import ExportedModelRepo


def test_an_external_run_imports_what_the_entry_point_trained(
    settings: Settings,
    sessions: sessionmaker[Session],
    tmp_path: Path,
    triton_server: TritonServerProcess,
    exported_model_repo: ExportedModelRepo,
) -> None:
    name = exported_model_repo.unique_name("vendor")
    champion = build_onnx_classifier(tmp_path / "v1", seed=1)
    trained = build_onnx_classifier(tmp_path / "v2", seed=2)
    seen_path = tmp_path / "seen.json"
    project = vendor_trainer_project(tmp_path / "trainer", trained.path, seen_path)
    spec = parse_spec(
        {
            **champion.spec,
            "retraining": {
                "kind": "external",
                "entry_point": str(project),
                "evaluation_set": "holdout",
            },
        }
    )
    runtime_settings = settings.model_copy(
        update={
            "triton_url": triton_server.url,
            "mlflow_tracking_uri": f"sqlite:///{tmp_path / 'mlflow.db'}",
            "triton_model_repository": triton_server.model_repository,
            "model_name": name,
        }
    )
    rt = build_runtime(runtime_settings)
    try:
        import_version(rt.registry, name=name, source=champion.path, spec=spec)
        deploy(rt, model_name=name, version=1, default_monitor=False, actor="test")
        studies, labels = labelled_studies(tmp_path / "eval", ["nodule"], seed=31, per_site=20)
        register(rt.registry, name="holdout", studies=studies, labels_csv=labels)

        with session_scope(sessions) as s:
            key = create_key(s, name="ext", role=Role.MLOPS_ENGINEER)
        stream = RadiographGenerator(seed=8).generate(230, site="north")
        with TestClient(create_app(runtime_settings)) as api:
            api.headers["Authorization"] = f"Bearer {key}"
            for i, study in enumerate(stream):
                r = api.post(
                    "/v1/predictions",
                    files={"file": ("s.dcm", study_to_bytes(study), "application/dicom")},
                    data={"site": "north", "event_id": f"ext-{i}", "study_id": study.study_id},
                )
                assert r.status_code == 200, r.text
            now = datetime.now(UTC).isoformat()
            labels_body = [
                {
                    "study_id": s.study_id,
                    "finding": "nodule",
                    "label": bool(s.labels["nodule"]),
                    "source": "report",
                    "reported_at": now,
                }
                for s in stream
            ]
            assert api.post("/v1/labels", json={"labels": labels_body}).status_code == 200

        with session_scope(sessions) as s:
            run_id = retraining.request_run(
                s, model_name=name, trigger="manual", requested_by="eng", reason="vendor retrain"
            ).id
        done = execute_run(rt.sessions, rt.registry, run_id, actor="worker", runtime=rt)
        assert done is not None
        assert done.state == "succeeded", done.message
        assert done.candidate_version == 2
        assert done.lineage["kind"] == "external"
        assert done.lineage["mlflow_project_run_id"]

        artifact = rt.registry.download_serving_artifact(name, 2, tmp_path / "dl")
        assert artifact.read_bytes() == trained.path.read_bytes()
        with session_scope(sessions) as s:
            dossier = s.query(Dossier).filter_by(retraining_run_id=run_id).one()
            request = s.query(ApprovalRequest).filter_by(dossier_id=dossier.id).one()
            assert request.state == ApprovalState.PENDING
            assert request.candidate_version == 2
            source = dossier.document["sections"]["data"]["source"]
        assert source["evaluation_set"] == "holdout"
        assert dossier.document["finding"] == "nodule"  # the spec's first finding
    finally:
        rt.close()
    # The entry point read the snapshot of labelled events radwatch handed it.
    seen = json.loads(seen_path.read_text())
    assert seen["rows"] == done.lineage["n_snapshot_events"] >= 200
    assert {"event_id", "embedding", "label_nodule", "score_nodule", "site"} <= set(seen["columns"])
