"""Probe retraining on real components (embedded MLflow, PostgreSQL, the session tritonserver,
the real API app): a probe on an imported encoder is deployed, predictions arrive through the
gateway, labels arrive late, and a retraining run refits the heads on the stored embeddings,
registers the candidate pinned to the same encoder, and writes its dossier and approval request.
"""

from __future__ import annotations

import csv
from datetime import UTC, datetime
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from pipelines.dicom import study_to_bytes, write_dicom
from pipelines.probes import load
from pipelines.spec import parse_spec
from pipelines.synth import DEFAULT_SITES, RadiographGenerator
from services.api.app import create_app
from services.auth.service import create_key
from services.core.db import session_scope
from services.core.models import ApprovalRequest, ApprovalState, Dossier, Role
from services.core.settings import Settings
from services.monitoring.flows import deploy
from services.registry.imports import import_version
from services.registry.mlflow_registry import MlflowRegistry
from services.retraining import service as retraining
from services.retraining.flows import execute_run
from services.serving.client import TritonClient
from services.serving.probes import fit_and_register
from services.serving.server import TritonServerProcess
from services.wiring import build_runtime
from tests.fixtures.foreign_models import build_embedding_encoder
from tests.fixtures.triton import ExportedModelRepo

FINDINGS = ("effusion", "nodule")
PER_SITE = 80


@pytest.fixture
def stack(
    settings: Settings,
    tmp_path: Path,
    triton_server: TritonServerProcess,
    exported_model_repo: ExportedModelRepo,
) -> tuple[Settings, str, str]:
    registry = MlflowRegistry(f"sqlite:///{tmp_path / 'mlflow.db'}")
    encoder = exported_model_repo.unique_name("encoder")
    probe = exported_model_repo.unique_name("probe")
    built = build_embedding_encoder(tmp_path / "encoder")
    import_version(registry, name=encoder, source=built.path, spec=parse_spec(built.spec))
    folder, labels = tmp_path / "fit", tmp_path / "fit.csv"
    with labels.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["study_id", *FINDINGS])
        for site in DEFAULT_SITES:
            for i, study in enumerate(
                RadiographGenerator(seed=5).generate(PER_SITE, site=site.name)
            ):
                write_dicom(study, folder / site.name / f"{i:03d}.dcm")
                writer.writerow([study.study_id, *(study.labels[f] for f in FINDINGS)])
    runtime_settings = settings.model_copy(
        update={
            "triton_url": triton_server.url,
            "mlflow_tracking_uri": registry.tracking_uri,
            "triton_model_repository": triton_server.model_repository,
            "model_name": probe,
        }
    )
    rt = build_runtime(runtime_settings)
    try:
        fit_and_register(
            rt.triton,
            rt.registry,
            rt.model_repository,
            encoder=encoder,
            encoder_version=1,
            name=probe,
            studies=folder,
            labels_csv=labels,
        )
        deploy(rt, model_name=probe, version=1, default_monitor=False, actor="test")
    finally:
        rt.close()
    return runtime_settings, encoder, probe


def test_a_retraining_run_refits_the_probe_on_stored_embeddings(
    stack: tuple[Settings, str, str],
    sessions: sessionmaker[Session],
    triton_client: TritonClient,
    tmp_path: Path,
) -> None:
    settings, _encoder, probe = stack
    with session_scope(sessions) as s:
        key = create_key(s, name="probe-retrain", role=Role.MLOPS_ENGINEER)
    studies = RadiographGenerator(seed=91).generate(260, site="north")
    rt = build_runtime(settings)
    try:
        with TestClient(create_app(settings)) as api:
            api.headers["Authorization"] = f"Bearer {key}"
            for i, study in enumerate(studies):
                r = api.post(
                    "/v1/predictions",
                    files={"file": ("s.dcm", study_to_bytes(study), "application/dicom")},
                    data={"site": "north", "event_id": f"pr-{i}", "study_id": study.study_id},
                )
                assert r.status_code == 200, r.text
            now = datetime.now(UTC).isoformat()
            labels = [
                {
                    "study_id": s.study_id,
                    "finding": f,
                    "label": bool(s.labels[f]),
                    "source": "report",
                    "reported_at": now,
                }
                for s in studies
                for f in FINDINGS
            ]
            assert api.post("/v1/labels", json={"labels": labels}).status_code == 200

        with session_scope(sessions) as s:
            run = retraining.request_run(
                s, model_name=probe, trigger="manual", requested_by="eng", reason="refit heads"
            )
            run_id = run.id
        done = execute_run(rt.sessions, rt.registry, run_id, actor="worker")
        assert done is not None
        assert done.state == "succeeded", done.message
        assert done.candidate_version == 2
        assert done.lineage["kind"] == "probe-refit"
        assert done.lineage["fit_seconds"] < 5

        spec_v1, spec_v2 = rt.registry.load_spec(probe, 1), rt.registry.load_spec(probe, 2)
        assert spec_v2 == spec_v1  # same encoder, same pinned hash
        heads = load(rt.registry.download_serving_artifact(probe, 2, tmp_path / "heads"))
        assert heads.encoder == spec_v1.encoder
        assert rt.registry.alias_version(probe, "candidate") == 2
        with session_scope(sessions) as s:
            dossier = s.query(Dossier).filter_by(retraining_run_id=run_id).one()
            names = [c["name"] for c in dossier.document["criteria"]]
            request = s.query(ApprovalRequest).filter_by(dossier_id=dossier.id).one()
            assert request.state == ApprovalState.PENDING
        assert dossier.document["finding"] == "effusion"
        assert not [n for n in names if n.startswith("robustness_")]  # no pixels to perturb
        assert "auroc_noninferiority" in names
        assert dossier.document["sections"]["data"]["source"]["embeddings"].startswith(
            "stored by the gateway"
        )
    finally:
        rt.close()
