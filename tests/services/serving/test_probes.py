"""Linear probes on an imported embedding-only encoder, on real components: an embedded MLflow
store, PostgreSQL, the session tritonserver and the real API app.

A probe is fitted over synthetic DICOM studies (their own labels), registered with its spec,
heads and reference profile, deployed (which makes its encoder ready on Triton), and asked for
a DICOM prediction through the gateway: the scores must be the heads applied to the embedding
Triton gives for that study. Importing a new encoder version flags the probe for revalidation;
a probe version fitted on the new encoder clears the flag.
"""

from __future__ import annotations

import csv
import hashlib
import time
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from pipelines.dicom import read_dicom, study_to_bytes, write_dicom
from pipelines.preprocess import prepare
from pipelines.probes import PROBE_TENSOR, apply, load, probe_spec
from pipelines.spec import EncoderRef, parse_spec
from pipelines.synth import DEFAULT_SITES, RadiographGenerator
from services.audit import actions
from services.audit.service import list_records
from services.auth.service import create_key
from services.core.db import session_scope
from services.core.errors import ValidationFailedError
from services.core.models import Deployment, PredictionEvent, Role, ShadowPrediction
from services.core.settings import Settings
from services.monitoring.flows import deploy
from services.registry.imports import import_version
from services.registry.mlflow_registry import MlflowRegistry
from services.registry.probes import REVALIDATION_TAG, needs_revalidation
from services.serving import flows as serving_flows
from services.serving.client import TritonClient
from services.serving.probes import fit_and_register
from services.serving.server import TritonServerProcess
from services.wiring import build_runtime
from tests.fixtures.foreign_models import ENCODER_WIDTH, build_embedding_encoder
from tests.fixtures.triton import ExportedModelRepo

PER_SITE = 80
FINDINGS = ("effusion", "nodule", "cardiomegaly", "pneumothorax")


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> MlflowRegistry:
    return MlflowRegistry(f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlflow.db'}")


@pytest.fixture(scope="module")
def studies(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """240 DICOM studies from the three default sites, and a labels CSV from their own labels
    (every seventh study's nodule cell left empty: no label)."""
    folder = tmp_path_factory.mktemp("studies")
    labels = folder.parent / f"{folder.name}-labels.csv"
    gen = RadiographGenerator(seed=2024)
    with labels.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["study_id", *FINDINGS])
        for site in DEFAULT_SITES:
            for i, study in enumerate(gen.generate(PER_SITE, site=site.name)):
                write_dicom(study, folder / site.name / f"{i:03d}.dcm")
                cells = [str(study.labels[f]) for f in FINDINGS]
                if i % 7 == 0:
                    cells[1] = ""
                writer.writerow([study.study_id, *cells])
    return folder, labels


@pytest.fixture
def runtime_settings(
    settings: Settings, registry: MlflowRegistry, triton_server: TritonServerProcess
) -> Settings:
    return settings.model_copy(
        update={
            "triton_url": triton_server.url,
            "mlflow_tracking_uri": registry.tracking_uri,
            "triton_model_repository": triton_server.model_repository,
        }
    )


@pytest.fixture
def names(exported_model_repo: ExportedModelRepo) -> tuple[str, str]:
    return exported_model_repo.unique_name("encoder"), exported_model_repo.unique_name("probe")


def _import_encoder(
    registry: MlflowRegistry, folder: Path, name: str, session: Session, seed: int = 5
) -> tuple[int, str, tuple[str, ...]]:
    encoder = build_embedding_encoder(folder, seed=seed)
    done = import_version(
        registry,
        name=name,
        source=encoder.path,
        spec=parse_spec(encoder.spec),
        session=session,
        actor="test",
    )
    artifact = registry.download_serving_artifact(name, done.version, folder / "dl")
    return done.version, hashlib.sha256(artifact.read_bytes()).hexdigest(), done.flagged_probes


def test_a_probe_is_fitted_registered_served_and_flagged_when_its_encoder_moves(
    registry: MlflowRegistry,
    studies: tuple[Path, Path],
    runtime_settings: Settings,
    sessions: sessionmaker[Session],
    triton_client: TritonClient,
    names: tuple[str, str],
    tmp_path: Path,
) -> None:
    encoder, name = names
    folder, labels_csv = studies
    repo = runtime_settings.triton_repository
    with session_scope(sessions) as session:
        v1, sha1, flagged = _import_encoder(registry, tmp_path / "enc1", encoder, session)
    assert (v1, flagged) == (1, ())
    assert registry.serving_sha256(encoder, 1) == sha1

    start = time.perf_counter()
    with session_scope(sessions) as session:
        summary = fit_and_register(
            triton_client,
            registry,
            repo,
            encoder=encoder,
            encoder_version=1,
            name=name,
            studies=folder,
            labels_csv=labels_csv,
            session=session,
            actor="test",
        )
    print(f"fit and register: {time.perf_counter() - start:.1f} s, fit {summary.fit_seconds:.3f} s")
    assert (summary.version, summary.studies, summary.rejected) == (1, 3 * PER_SITE, 0)
    assert summary.findings == FINDINGS
    # A folder has no site column: sites come from each file's InstitutionName.
    assert sorted(summary.sites.values()) == [PER_SITE] * len(DEFAULT_SITES)
    assert sum(summary.labelled["nodule"]) == 3 * PER_SITE - 3 * len(range(0, PER_SITE, 7))

    # The registered spec pins the encoder by its serving file's hash.
    encoder_spec = registry.load_spec(encoder, 1)
    spec = registry.load_spec(name, 1)
    assert spec == probe_spec(
        encoder_spec, EncoderRef(name=encoder, version=1, sha256=sha1), FINDINGS
    )
    heads = load(registry.download_serving_artifact(name, 1, tmp_path / "heads"))
    assert heads.findings == FINDINGS
    assert heads.weights.shape == (len(FINDINGS), ENCODER_WIDTH)
    assert heads.encoder == spec.encoder
    profile = registry.load_reference_profile(name, 1)
    assert profile.embeddings.shape == (3 * PER_SITE, ENCODER_WIDTH)
    np.testing.assert_array_equal(profile.scores, apply(heads, profile.embeddings))
    assert int((profile.labels[:, 1] == -1).sum()) == 3 * len(range(0, PER_SITE, 7))
    assert set(profile.metadata["site"]) == set(summary.sites)

    # Deploying the probe makes its encoder ready; the row names the encoder as Triton model.
    rt = build_runtime(runtime_settings.model_copy(update={"model_name": name}))
    try:
        deploy(rt, model_name=name, version=1, default_monitor=False, actor="test")
        assert triton_client.is_model_ready(encoder, 1)
        with sessions() as s:
            row = s.scalars(select(Deployment).where(Deployment.model_name == name)).one()
            assert row.triton_model == encoder
            assert row.embedding_dim == ENCODER_WIDTH

        # A DICOM prediction through the gateway: scores are the heads on Triton's embedding.
        study = RadiographGenerator(seed=77).generate(1, site="north")[0]
        data = study_to_bytes(study)
        with session_scope(sessions) as s:
            key = create_key(s, name="probe-test", role=Role.MLOPS_ENGINEER)
        from services.api.app import create_app

        with TestClient(create_app(rt.settings)) as api:
            api.headers["Authorization"] = f"Bearer {key}"
            resp = api.post(
                "/v1/predictions",
                files={"file": ("s.dcm", data, "application/dicom")},
                data={"site": "north", "event_id": "probe-event-1"},
            )
            assert resp.status_code == 200, resp.text
            body = resp.json()
            models = api.get("/v1/models").json()
        assert body["model"] == {"name": name, "version": 1}
        assert [m["loaded"] for m in models if m["model_name"] == name] == [True]
        pixels = prepare(spec, [read_dicom(data).image])
        embedding = triton_client.infer(encoder, 1, pixels, spec=spec.encoder_view()).embeddings
        expected = apply(heads, embedding)[0]
        got = np.array([body["scores"][f] for f in FINDINGS])
        difference = float(np.max(np.abs(got - expected)))
        print(f"gateway vs apply(probe, triton embedding): max |diff| = {difference:.2e}")
        assert difference <= 1e-6
        with sessions() as s:
            event = s.scalars(select(PredictionEvent)).one()
            np.testing.assert_array_equal(np.frombuffer(event.embedding, "<f4"), embedding[0])
            candidate = s.scalars(select(Deployment).where(Deployment.model_name == name)).one()
            s.expunge(candidate)

        # The shadow mirror scores a probe candidate the same way.
        serving_flows.mirror(
            rt.sessions,
            rt.triton,
            candidate=candidate,
            champion_version=1,
            event_id="probe-event-1",
            champion_scores=body["scores"],
            image=read_dicom(data).image,
            probes=rt.probe,
        )
        with sessions() as s:
            shadow = s.scalars(select(ShadowPrediction)).one()
        assert max(abs(shadow.scores[f] - body["scores"][f]) for f in FINDINGS) <= 1e-6
    finally:
        rt.close()

    # A new encoder version flags the probe; a probe fitted on it clears the flag.
    with session_scope(sessions) as session:
        v2, _, flagged = _import_encoder(registry, tmp_path / "enc2", encoder, session, seed=6)
    assert (v2, flagged) == (2, (name,))
    reason = needs_revalidation(registry, name)
    assert reason is not None
    assert f"{encoder} has version 2" in reason
    assert "version 1" in reason
    assert "\n" not in reason
    with session_scope(sessions) as session:
        refit = fit_and_register(
            triton_client,
            registry,
            repo,
            encoder=encoder,
            encoder_version=2,
            name=name,
            studies=folder,
            labels_csv=labels_csv,
            session=session,
            actor="test",
        )
    assert (refit.version, refit.cleared) == (2, reason)
    assert REVALIDATION_TAG not in registry.model_tags(name)
    with sessions() as s:
        trail = [
            (r.action, r.entity_id)
            for r in list_records(s, limit=1000)
            if r.entity_id.startswith((f"{name}:", f"{encoder}:"))
        ]
    assert trail == [
        (actions.MODEL_REGISTERED, f"{encoder}:1"),
        (actions.MODEL_REGISTERED, f"{name}:1"),
        (actions.MODEL_DEPLOYED, f"{name}:1"),
        (actions.MODEL_REGISTERED, f"{encoder}:2"),
        (actions.MODEL_REVALIDATION_FLAGGED, f"{name}:1"),
        (actions.MODEL_REVALIDATION_CLEARED, f"{name}:2"),
        (actions.MODEL_REGISTERED, f"{name}:2"),
    ]
    spec2 = registry.load_spec(name, 2)
    assert spec2.encoder is not None
    assert spec2.encoder.version == 2
    assert spec2.findings is not None
    assert spec2.findings.tensor == PROBE_TENSOR


def test_a_probe_without_enough_labels_registers_nothing(
    registry: MlflowRegistry,
    studies: tuple[Path, Path],
    runtime_settings: Settings,
    sessions: sessionmaker[Session],
    triton_client: TritonClient,
    names: tuple[str, str],
    tmp_path: Path,
) -> None:
    encoder, name = names
    folder, labels_csv = studies
    with session_scope(sessions) as session:
        _import_encoder(registry, tmp_path / "enc", encoder, session)
    rows = list(csv.reader(labels_csv.open()))
    scarce = tmp_path / "labels.csv"
    with scarce.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["study_id", "nodule"])
        positives = 0
        for row in rows[1:]:
            if row[2] == "1":
                positives += 1
                if positives > 4:
                    continue
            writer.writerow([row[0], row[2]])

    def fit(labels: Path, **over: object) -> None:
        kwargs: dict[str, object] = {
            "encoder": encoder,
            "encoder_version": 1,
            "name": name,
            "studies": folder,
            "labels_csv": labels,
        }
        kwargs.update(over)
        with session_scope(sessions) as session:
            fit_and_register(
                triton_client,
                registry,
                runtime_settings.triton_repository,
                session=session,
                **kwargs,  # type: ignore[arg-type]
            )

    with pytest.raises(ValidationFailedError, match="'nodule' has 4 labelled positive"):
        fit(scarce)
    bad = tmp_path / "bad.csv"
    bad.write_text("study,nodule\nx,1\n")
    with pytest.raises(ValidationFailedError, match="study_id"):
        fit(bad)
    with pytest.raises(ValidationFailedError, match="name of its own"):
        fit(labels_csv, name=encoder)
    assert name not in registry.model_names()
