"""Models radwatch did not train, end to end on real components: PostgreSQL, Redis (Celery
broker), an ``mlflow server`` process, ``tritonserver``, the API as a uvicorn process, a Celery
worker with beat, and the ``radwatch`` CLI as a subprocess (:mod:`tests.e2e.harness`).

Each model is imported (an ONNX classifier exported by torch.onnx from an architecture unlike
the built-in one, and a MONAI Bundle around a ``monai.networks`` DenseNet), deployed, given a
reference profile from DICOM studies through Triton, and fed DICOM predictions from three sites,
one of which switches scanner vendor halfway: the drift monitor must alert on that site only.
Then the vendor's second version is imported, judged on a registered evaluation set through
Triton, signed by a safety officer and promoted through shadow and canary.
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
)
from tests.fixtures.foreign_models import ForeignModel, build_monai_bundle, build_onnx_classifier

#: Reference studies per site: above the drift monitor's per-site minimum (50).
REFERENCE_PER_SITE = 80

BUILDERS: dict[str, Callable[..., ForeignModel]] = {
    "onnx": build_onnx_classifier,
    "monai-bundle": build_monai_bundle,
}
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
    spec = tmp_path / "spec.json"
    # The vendor ships new versions itself: retraining "none" (candidates are imported).
    spec.write_text(json.dumps({**model.spec, "retraining": {"kind": "none"}}))
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

        start_api_and_worker(stack, exits)
        plan = plan_stream(900)
        sent = stream(
            plan, base_url=stack.base_url, api_key=stack.api_key, seed=99, event_prefix=kind
        )
        assert sent == 900
        stack.wait_for_windows(sum(n // 50 for n in plan.per_site.values()))
        with stack.client() as client:
            alerts = client.get("/v1/alerts").json()
            promoted = _candidate_loop(stack, client, tmp_path, kind, name, spec, findings[0])
            models = client.get("/v1/models").json()
        assert stack.rt is not None
        with session_scope(stack.rt.sessions) as session:
            scored = {frozenset(e.scores) for e in session.query(PredictionEvent).limit(50)}

    print(json.dumps(alerts, indent=2))
    assert {a["site"] for a in alerts} == {plan.shifted_site}, alerts
    assert all(a["opened_after_predictions"] > plan.shift_after_predictions for a in alerts)
    # The predictions carried the imported model's own findings, not the built-in ones.
    champions = [m for m in models if m["role"] == "champion" and m["active"]]
    assert [(m["model_name"], m["model_version"], m["loaded"]) for m in champions] == [
        (name, 2, True)
    ]
    assert scored == {frozenset(findings)}
    assert promoted["dossier"]["evaluation_set"]["sha256"]
    assert promoted["routing"]["champion_version"] == 2, promoted


def _candidate_loop(
    stack: Stack,
    client: httpx.Client,
    tmp_path: Path,
    kind: str,
    name: str,
    spec: Path,
    finding: str,
) -> dict[str, Any]:
    """A second version (other weights) imported by hand, judged on an evaluation set through
    Triton, signed by a safety officer, promoted by the saga through shadow and canary."""
    candidate = BUILDERS[kind](tmp_path / "candidate", seed=77)
    assert _import(stack, kind, name, candidate, spec) == 2
    protocol = {**LENIENT, "acceptance": {**LENIENT["acceptance"], "finding": finding}}
    client.put(f"/v1/models/{name}/protocol", json=protocol).raise_for_status()
    # The generator has no label of a foreign finding: its nodule label stands in (untrained
    # models; the loop, not the numbers, is under test).
    studies, labels = labelled_studies(
        tmp_path / "evalset", [finding], seed=31, per_site=20, label_of="nodule"
    )
    registered = cli(
        stack.env, "evaluation-sets", "register", "--name", "holdout", "--studies", str(studies),
        "--labels", str(labels), "--json",
    )  # fmt: skip
    assert registered["studies"] == 60
    dossier = cli(
        stack.env, "candidates", "evaluate", "--model", name, "--version", "2",
        "--evaluation-set", "holdout", "--json",
    )  # fmt: skip
    assert dossier["evaluation_set"]["sha256"] == registered["sha256"]
    assert dossier["passed"], json.dumps(dossier["criteria"])

    approve(stack, client, dossier["approval_request_id"])
    return {"dossier": dossier, "routing": promote(stack, client, name, 2)}
