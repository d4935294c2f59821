"""Models radwatch did not train, end to end on real components: PostgreSQL, Redis (Celery
broker), an ``mlflow server`` process, ``tritonserver``, the API as a uvicorn process, a Celery
worker with beat (monitoring and training queues), and the ``radwatch`` CLI as a subprocess
(:mod:`tests.e2e.harness`).

Each model is imported (an ONNX classifier exported by torch.onnx from an architecture unlike
the built-in one, and a MONAI Bundle around a ``monai.networks`` DenseNet), deployed, given a
reference profile from DICOM studies through Triton, and fed DICOM predictions from three sites,
one of which switches scanner vendor halfway: the drift monitor must alert on that site only.
Then each gets its next version the way its spec declares:

- the ONNX model declares ``external`` retraining: late labels arrive, a retraining run on the
  training queue runs the vendor's MLflow Project with the snapshot of labelled events, imports
  what it wrote as the candidate and judges it on the spec's evaluation set through Triton;
- the bundle declares ``none``: the vendor's second version is imported by hand and judged on
  the evaluation set by a queued run (``POST /v1/models/{name}/candidates``).

Both candidates are then signed by a safety officer and promoted through shadow and canary.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import pytest

from pipelines.synth import DEFAULT_SITES
from services.core.db import session_scope
from services.core.models import PredictionEvent
from services.demo.lifecycle import post_labels
from services.demo.stream import plan_stream, stream
from tests.e2e.harness import (
    Stack,
    approve,
    cli,
    labelled_studies,
    make_stack,
    promote,
    start_api_and_worker,
    start_triton,
    wait_for_run,
)
from tests.fixtures.foreign_models import (
    ForeignModel,
    build_monai_bundle,
    build_onnx_classifier,
    vendor_trainer_project,
)

#: Reference studies per site: above the drift monitor's per-site minimum (50).
REFERENCE_PER_SITE = 80

BUILDERS: dict[str, Callable[..., ForeignModel]] = {
    "onnx": build_onnx_classifier,
    "monai-bundle": build_monai_bundle,
}
#: The retraining kind each model's spec declares in this test.
RETRAINING = {"onnx": "external", "monai-bundle": "none"}
EVALUATION_SET = "holdout"
#: The hospital's protocol in this test: lenient criteria, short rollout. The models have
#: seeded random weights, so this test checks the loop (dossier, sign-off, saga), not accuracy.
LENIENT: dict[str, Any] = {
    "acceptance": {
        "auroc_noninferiority_margin": 0.5,
        "min_sensitivity": 0.0,
        "max_subgroup_gap": {},  # 60 studies: no subgroup reaches n >= 30 positives
        "max_ece": 1.0,
        "robustness": {"max_auroc_drop": 1.0},
    },
    "retraining": {"min_labelled_events": 200},
    "rollout": {"shadow_studies": 40, "canary_share": 0.5, "canary_studies": 40},
}


def _import(stack: Stack, kind: str, name: str, model: ForeignModel, spec: Path) -> int:
    args = ["models", "import", "--name", name, str(model.path), "--json"]
    if kind == "onnx":
        args[-1:-1] = ["--spec", str(spec)]
    version: int = cli(stack.env, *args)["version"]
    return version


@pytest.mark.e2e
@pytest.mark.parametrize("kind", sorted(BUILDERS))
def test_an_imported_model_alerts_on_a_vendor_shift_at_that_site_only(
    kind: str,
    database_url: str,
    redis_db_url: str,
    mlflow_server_uri: str,
    tmp_path: Path,
) -> None:
    name = f"imported-{kind}"
    stack = make_stack(
        tmp_path,
        database_url=database_url,
        broker_url=redis_db_url,
        mlflow_uri=mlflow_server_uri,
        model_name=name,
    )
    model = BUILDERS[kind](tmp_path / "model")
    # The vendor's next version: trained by its own project (external) or shipped (none).
    candidate = BUILDERS[kind](tmp_path / "candidate", seed=77)
    retraining: dict[str, Any] = {"kind": RETRAINING[kind]}
    if kind == "onnx":
        project = vendor_trainer_project(
            tmp_path / "trainer", candidate.path, tmp_path / "trainer-saw.json"
        )
        retraining.update(entry_point=str(project), evaluation_set=EVALUATION_SET)
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({**model.spec, "retraining": retraining}))
    assert _import(stack, kind, name, model, spec) == 1
    findings = [f["name"] for f in model.spec["outputs"][0]["findings"]]

    with ExitStack() as exits:
        start_triton(stack, exits)
        cli(stack.env, "deploy", "--model-name", name, "--version", "1")
        table, _ = labelled_studies(  # the reference is built without labels
            tmp_path / "reference", findings, seed=2024, per_site=REFERENCE_PER_SITE,
            label_of="nodule",
        )  # fmt: skip
        reference = cli(
            stack.env, "reference", "build", "--name", name, "--version", "1",
            "--studies", str(table), "--json",
        )  # fmt: skip
        assert reference["studies"] == REFERENCE_PER_SITE * len(DEFAULT_SITES)
        assert reference["rejected"] == 0
        assert set(reference["sites"]) == {s.name for s in DEFAULT_SITES}
        registered = _register_evaluation_set(stack, tmp_path, findings[0])

        start_api_and_worker(stack, exits, queues="monitoring,training")
        plan = plan_stream(900)
        truth: list[tuple[str, dict[str, int]]] = []
        sent = stream(
            plan, base_url=stack.base_url, api_key=stack.api_key, seed=99, event_prefix=kind,
            truth=truth,
        )  # fmt: skip
        assert sent == 900
        stack.wait_for_windows(sum(n // 50 for n in plan.per_site.values()))
        with stack.client() as client:
            alerts = client.get("/v1/alerts").json()
            protocol = {**LENIENT, "acceptance": {**LENIENT["acceptance"], "finding": findings[0]}}
            client.put(f"/v1/models/{name}/protocol", json=protocol).raise_for_status()
            if kind == "onnx":
                run = _retrain_after_the_alert(client, name, truth, findings[0])
            else:
                assert _import(stack, kind, name, candidate, spec) == 2
                run = _judge_the_imported_candidate(client, name)
            run = wait_for_run(client, run["id"])
            assert run["state"] == "succeeded", run
            request = _approval_request(client, name, run["candidate_version"])
            approve(stack, client, request["id"])
            routing = promote(stack, client, name, 2)
            dossier = client.get(f"/v1/dossiers/{request['dossier_id']}").json()
            models = client.get("/v1/models").json()
        assert stack.rt is not None
        with session_scope(stack.rt.sessions) as session:
            scored = {frozenset(e.scores) for e in session.query(PredictionEvent).limit(50)}

    print(json.dumps(alerts, indent=2))
    assert {a["site"] for a in alerts} == {plan.shifted_site}, alerts
    assert all(a["opened_after_predictions"] > plan.shift_after_predictions for a in alerts)
    # The predictions carried the imported model's own findings, not the built-in ones.
    assert scored == {frozenset(findings)}
    # The next version came the way the spec declares, and was judged on the evaluation set.
    assert run["state"] == "succeeded", run
    assert (
        run["lineage"]["kind"] == {"onnx": "external", "monai-bundle": "candidate-evaluation"}[kind]
    )
    assert (run["candidate_version"], request["criteria_passed"]) == (2, True), request
    source = dossier["document"]["sections"]["data"]["source"]
    assert (source["evaluation_set"], source["sha256"]) == (EVALUATION_SET, registered["sha256"])
    if kind == "onnx":  # the vendor's project read the snapshot of labelled events
        saw = json.loads((tmp_path / "trainer-saw.json").read_text())
        assert saw["rows"] == run["lineage"]["n_snapshot_events"] >= 200
    champions = [m for m in models if m["role"] == "champion" and m["active"]]
    assert [(m["model_name"], m["model_version"], m["loaded"]) for m in champions] == [
        (name, 2, True)
    ]
    assert routing["champion_version"] == 2, routing


def _register_evaluation_set(stack: Stack, tmp_path: Path, finding: str) -> dict[str, Any]:
    """The hospital's sequestered set. The generator has no label of a foreign finding: its
    nodule label stands in (untrained models; the loop, not the numbers, is under test)."""
    studies, labels = labelled_studies(
        tmp_path / "evalset", [finding], seed=31, per_site=20, label_of="nodule"
    )
    registered: dict[str, Any] = cli(
        stack.env, "evaluation-sets", "register", "--name", EVALUATION_SET, "--studies",
        str(studies), "--labels", str(labels), "--json",
    )  # fmt: skip
    assert registered["studies"] == 60
    return registered


def _retrain_after_the_alert(
    client: httpx.Client, name: str, truth: list[tuple[str, dict[str, int]]], finding: str
) -> dict[str, Any]:
    """Late labels arrive (the finding the protocol judges); a retraining run is queued, by
    the engineer or, if it got there first, by the beat sweep on the persistent alert."""
    labelled = [(study, {finding: found["nodule"]}) for study, found in truth]
    assert post_labels(client, labelled) == len(labelled)
    started = client.post(f"/v1/models/{name}/retraining", json={"reason": "e2e: vendor"})
    if started.status_code == 409:
        run: dict[str, Any] = client.get("/v1/retraining", params={"model": name}).json()[0]
        return run
    assert started.status_code == 202, started.text
    queued: dict[str, Any] = started.json()
    return queued


def _judge_the_imported_candidate(client: httpx.Client, name: str) -> dict[str, Any]:
    started = client.post(
        f"/v1/models/{name}/candidates",
        json={"version": 2, "evaluation_set": EVALUATION_SET, "reason": "e2e: vendor release"},
    )
    assert started.status_code == 202, started.text
    queued: dict[str, Any] = started.json()
    assert queued["lineage"]["kind"] == "candidate-evaluation"
    return queued


def _approval_request(client: httpx.Client, name: str, version: int) -> dict[str, Any]:
    requests = client.get("/v1/approvals", params={"model": name}).json()
    found: dict[str, Any] = next(r for r in requests if r["candidate_version"] == version)
    return found
