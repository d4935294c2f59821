"""A candidate radwatch did not train, judged on a sequestered evaluation set through Triton.

Real parts: PostgreSQL, an embedded MLflow store, the session's tritonserver, ONNX models
exported by torch.onnx (two versions of one architecture with different weights), and DICOM
studies from the synthetic generator with their own labels.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient

from pipelines.dicom import read_dicom, write_dicom
from pipelines.preprocess import prepare
from pipelines.spec import parse_spec
from pipelines.synth import DEFAULT_SITES, RadiographGenerator
from services.api.app import create_app
from services.auth.service import create_key
from services.core.db import session_scope
from services.core.errors import (
    ConflictError,
    NotFoundError,
    UnknownModelError,
    ValidationFailedError,
)
from services.core.models import ApprovalRequest, ApprovalState, Dossier, Role
from services.core.runtime import Runtime
from services.core.settings import Settings
from services.registry.evaluation_sets import register
from services.registry.imports import import_version
from services.retraining import evaluations
from services.retraining import service as retraining
from services.retraining.flows import execute_run
from services.retraining.flows.candidates import evaluate_candidate
from services.serving.server import TritonServerProcess
from services.serving.service import deploy_champion, make_ready
from services.wiring import build_runtime
from tests.fixtures.foreign_models import build_onnx_classifier

NAME = "vendor-cls"


def _evaluation_studies(folder: Path, n_per_site: int = 20) -> tuple[Path, Path]:
    gen = RadiographGenerator(seed=4242)
    rows, labels = [], []
    for site in DEFAULT_SITES:
        for study in gen.generate(n_per_site, site=site.name):
            path = folder / f"{study.study_id}.dcm"
            write_dicom(study, path)
            rows.append({"path": path.name, "site": site.name})
            labels.append({"study_id": study.study_id[:16], "nodule": study.labels["nodule"]})
    table = folder / "studies.parquet"
    pd.DataFrame(rows).to_parquet(table, index=False)
    csv_path = folder / "labels.csv"
    with csv_path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["study_id", "nodule"])
        writer.writeheader()
        writer.writerows(labels)
    return table, csv_path


@pytest.fixture
def stack(database_url: str, tmp_path: Path, triton_server: TritonServerProcess) -> Runtime:
    settings = Settings(
        environment="test",
        data_dir=tmp_path / "data",
        database_url=database_url,
        triton_url=triton_server.url,
        triton_model_repository=triton_server.model_repository,
        mlflow_tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}",
    )
    rt = build_runtime(settings)
    for seed in (1, 2):
        model = build_onnx_classifier(tmp_path / f"m{seed}", seed=seed)
        import_version(rt.registry, name=NAME, source=model.path, spec=parse_spec(model.spec))
    make_ready(rt.triton, rt.registry, rt.model_repository, NAME, 1)
    with session_scope(rt.sessions) as session:
        deploy_champion(
            session,
            model_name=NAME,
            model_version=1,
            mlflow_run_id=rt.registry.get_version(NAME, 1).run_id,
            triton_model=NAME,
            spec=rt.registry.load_spec(NAME, 1),
        )
    return rt


def test_an_imported_candidate_gets_a_dossier_on_the_evaluation_set(
    stack: Runtime, tmp_path: Path
) -> None:
    rt = stack
    studies, labels = _evaluation_studies(tmp_path / "eval")
    info = register(rt.registry, name="cxr-eval", studies=studies, labels_csv=labels)
    assert (info.version, info.studies) == (1, 60)
    again = register(rt.registry, name="cxr-eval", studies=studies, labels_csv=labels)
    assert again.version == 2
    assert again.sha256 == info.sha256  # same content, same identity

    done = evaluate_candidate(
        rt, model_name=NAME, candidate_version=2, evaluation_set="cxr-eval", requested_by="eng"
    )
    with session_scope(rt.sessions) as session:
        dossier = session.get(Dossier, done.dossier_id)
        assert dossier is not None
        document = dossier.document
        request = session.get(ApprovalRequest, done.approval_request_id)
        assert request is not None
        assert request.state == ApprovalState.PENDING
        assert request.candidate_version == 2
    assert document["finding"] == "nodule"  # the imported model's first finding
    source = document["sections"]["data"]["source"]
    assert (source["evaluation_set"], source["version"], source["sha256"]) == (
        "cxr-eval",
        2,
        info.sha256,
    )
    assert source["sha256"] in dossier.html
    assert set(document["sections"]["robustness"]["perturbations"]) == {
        "noise",
        "contrast",
        "blur",
        "exposure",
    }
    assert done.criteria == {c["name"]: c["passed"] for c in document["criteria"]}

    # The champion's scores in the dossier are what Triton answers for the set's pixels.
    first = sorted((tmp_path / "eval").glob("*.dcm"))[0]
    spec = rt.registry.load_spec(NAME, 1)
    direct = rt.triton.infer(
        NAME, 1, prepare(spec, [read_dicom(first.read_bytes()).image]), spec=spec
    )
    assert direct.findings[0] == "nodule"
    assert np.isfinite(direct.probs).all()
    assert json.dumps(document)  # stored as JSON


def test_refusals_name_what_to_fix(stack: Runtime, tmp_path: Path) -> None:
    rt = stack
    with pytest.raises(ConflictError, match="is the champion"):
        evaluate_candidate(
            rt, model_name=NAME, candidate_version=1, evaluation_set="x", requested_by="eng"
        )
    with pytest.raises(UnknownModelError, match="No evaluation set named 'x'"):
        evaluate_candidate(
            rt, model_name=NAME, candidate_version=2, evaluation_set="x", requested_by="eng"
        )
    folder = tmp_path / "few"
    folder.mkdir()
    studies, labels = _evaluation_studies(folder, n_per_site=3)
    with pytest.raises(ValidationFailedError, match="at least 30"):
        register(rt.registry, name="few", studies=studies, labels_csv=labels)
    (folder / "junk.dcm").write_bytes(b"not dicom")
    with pytest.raises(ValidationFailedError, match="not radiographs radwatch reads"):
        register(rt.registry, name="few", studies=folder, labels_csv=labels)


def test_a_queued_evaluation_run_pins_the_set_and_writes_the_dossier_on_the_worker(
    stack: Runtime, tmp_path: Path
) -> None:
    """``POST /v1/models/{name}/candidates``'s service and flow: the run is queued like a
    retraining run (it survives a lost message), executed by the training worker's flow."""
    rt = stack
    studies, labels = _evaluation_studies(tmp_path / "eval")
    first = register(rt.registry, name="cxr-eval", studies=studies, labels_csv=labels)
    with session_scope(rt.sessions) as session:
        run = evaluations.request(
            session, rt.registry, model_name=NAME, candidate_version=2,
            evaluation_set="cxr-eval", evaluation_set_version=None, requested_by="eng",
            reason="vendor release 2",
        )  # fmt: skip
        run_id = run.id
    # A newer set registered after the request does not change what the run judges on.
    register(rt.registry, name="cxr-eval", studies=studies, labels_csv=labels)
    with session_scope(rt.sessions) as session, pytest.raises(ConflictError, match="already"):
        evaluations.request(
            session, rt.registry, model_name=NAME, candidate_version=2,
            evaluation_set="cxr-eval", evaluation_set_version=None, requested_by="eng",
            reason="again",
        )  # fmt: skip

    done = execute_run(rt.sessions, rt.registry, run_id, runtime=rt)
    assert done is not None
    assert done.state == "succeeded", done.message
    assert done.candidate_version == 2
    assert done.lineage["kind"] == evaluations.EVALUATION_KIND
    with session_scope(rt.sessions) as session:
        dossier = retraining.dossier_of(session, run_id)
        assert dossier is not None
        source = dossier.document["sections"]["data"]["source"]
        request = session.query(ApprovalRequest).filter_by(dossier_id=dossier.id).one()
    assert (source["evaluation_set"], source["version"]) == ("cxr-eval", first.version)
    assert request.candidate_version == 2
    assert request.state == ApprovalState.PENDING
    # A duplicate task message finds the run finished and does nothing.
    assert execute_run(rt.sessions, rt.registry, run_id, runtime=rt) is None


@pytest.mark.parametrize(
    ("version", "evaluation_set", "set_version", "error", "message"),
    [
        (1, "cxr-eval", None, ConflictError, "is the champion"),
        (9, "cxr-eval", None, UnknownModelError, "9"),
        (2, "nope", None, NotFoundError, "No evaluation set 'nope'; register one"),
        (2, "cxr-eval", 5, NotFoundError, "version 5 \\(it has 1\\)"),
    ],
)
def test_evaluation_requests_are_refused_with_what_to_fix(
    stack: Runtime,
    tmp_path: Path,
    version: int,
    evaluation_set: str,
    set_version: int | None,
    error: type[Exception],
    message: str,
) -> None:
    rt = stack
    studies, labels = _evaluation_studies(tmp_path / "eval")
    register(rt.registry, name="cxr-eval", studies=studies, labels_csv=labels)
    with session_scope(rt.sessions) as session, pytest.raises(error, match=message):
        evaluations.request(
            session, rt.registry, model_name=NAME, candidate_version=version,
            evaluation_set=evaluation_set, evaluation_set_version=set_version,
            requested_by="eng", reason="vendor release",
        )  # fmt: skip


def test_a_model_that_declares_retraining_none_is_never_queued_for_training(
    stack: Runtime, tmp_path: Path
) -> None:
    rt = stack
    model = build_onnx_classifier(tmp_path / "none", seed=3)
    spec = parse_spec({**model.spec, "retraining": {"kind": "none"}})
    imported = import_version(rt.registry, name="vendor-none", source=model.path, spec=spec)
    with session_scope(rt.sessions) as session:
        deploy_champion(
            session, model_name="vendor-none", model_version=1, mlflow_run_id=imported.run_id,
            triton_model="vendor-none", spec=spec,
        )  # fmt: skip
    with (
        session_scope(rt.sessions) as session,
        pytest.raises(
            ValidationFailedError, match=r"declares retraining 'none'.*POST /v1/models/vendor-none/"
        ),
    ):
        retraining.request_run(
            session, model_name="vendor-none", trigger="manual", requested_by="eng",
            reason="retrain it",
        )  # fmt: skip


def test_the_candidates_endpoint_queues_a_run_and_answers_4xx_with_what_to_fix(
    stack: Runtime, tmp_path: Path
) -> None:
    rt = stack
    studies, labels = _evaluation_studies(tmp_path / "eval")
    register(rt.registry, name="cxr-eval", studies=studies, labels_csv=labels)
    with session_scope(rt.sessions) as session:
        engineer = create_key(session, name="eng", role=Role.MLOPS_ENGINEER)
        officer = create_key(session, name="cso", role=Role.CLINICAL_SAFETY_OFFICER)
    url = f"/v1/models/{NAME}/candidates"
    body = {"version": 2, "evaluation_set": "cxr-eval", "reason": "vendor release 2"}
    with TestClient(create_app(rt.settings)) as api:
        api.headers["Authorization"] = f"Bearer {officer}"
        assert api.post(url, json=body).status_code == 403
        api.headers["Authorization"] = f"Bearer {engineer}"
        answers = {
            "unknown set": api.post(url, json={**body, "evaluation_set": "nope"}),
            "champion": api.post(url, json={**body, "version": 1}),
            "extra field": api.post(url, json={**body, "epochs": 3}),
            "unknown model": api.post("/v1/models/nobody/candidates", json=body),
        }
        queued = api.post(url, json=body)
        again = api.post(url, json=body)
    codes = {k: (r.status_code, r.json()["error"]["message"]) for k, r in answers.items()}
    print(json.dumps(codes, indent=2))
    assert {k: c for k, (c, _) in codes.items()} == {
        "unknown set": 404,
        "champion": 409,
        "extra field": 422,
        "unknown model": 404,
    }
    assert "register one with `radwatch evaluation-sets register`" in codes["unknown set"][1]
    assert queued.status_code == 202, queued.text
    run = queued.json()
    assert (run["state"], run["candidate_version"], run["lineage"]["kind"]) == (
        "queued",
        2,
        "candidate-evaluation",
    )
    assert run["params"]["evaluation_set_version"] == 1
    assert again.status_code == 409
    assert f"run {run['id']}" in again.json()["error"]["message"]
