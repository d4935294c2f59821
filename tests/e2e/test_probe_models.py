"""An embedding-only foundation encoder served with linear probes, end to end on real components:
PostgreSQL, Redis (Celery broker), an ``mlflow server`` process, ``tritonserver``, the API as a
uvicorn process, a Celery worker with beat, and the ``radwatch`` CLI as a subprocess.

The encoder (an ONNX ``TinyEncoder``: pixels in, a 64-d embedding out, no findings) is imported;
``radwatch probes fit`` runs labelled DICOM studies from three sites through it on Triton, fits
one head per finding and registers the probe with its reference profile; a second probe (two
other heads, another name) is fitted on the same encoder version. The encoder itself is never
deployed: deploying a probe makes the encoder version ready, and both probes share it. DICOM
predictions then stream from three sites, one of which switches scanner vendor halfway, and the
drift monitor must alert on that site only; late labels arrive and a ``probe`` retraining run
refits the heads on the stored embeddings, which is signed off and promoted. Last, importing a
second encoder version flags both probes for revalidation, which ``radwatch models list`` shows.
"""

from __future__ import annotations

import json
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest

from pipelines.dicom import study_to_bytes
from pipelines.synth import DEFAULT_SITES, RadiographGenerator
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
from tests.fixtures.foreign_models import build_embedding_encoder

#: Labelled studies per site: above the drift monitor's per-site minimum (50), and 240 in all,
#: above the spec's reference.min_studies (200).
PER_SITE = 80
FINDINGS = ("effusion", "nodule", "cardiomegaly", "pneumothorax")
ENCODER = "foundation-encoder"
PROBE = "foundation-probes"
#: The second probe on the same encoder: other heads, its own name and versions.
TRIAGE = "foundation-triage"
TRIAGE_FINDINGS = ("pneumothorax", "cardiomegaly")


def _import_encoder(stack: Stack, folder: Path, seed: int) -> Any:
    encoder = build_embedding_encoder(folder, seed=seed)
    spec_path = folder / "spec.json"
    spec_path.write_text(json.dumps(encoder.spec))
    return cli(
        stack.env, "models", "import", "--name", ENCODER, str(encoder.path), "--spec",
        str(spec_path), "--json",
    )  # fmt: skip


@pytest.mark.e2e
def test_a_probe_on_a_foundation_encoder_alerts_on_a_vendor_shift_at_that_site_only(
    database_url: str,
    redis_db_url: str,
    mlflow_server_uri: str,
    tmp_path: Path,
) -> None:
    started = time.monotonic()
    stack = make_stack(
        tmp_path,
        database_url=database_url,
        broker_url=redis_db_url,
        mlflow_uri=mlflow_server_uri,
        model_name=PROBE,
    )
    assert _import_encoder(stack, tmp_path / "encoder-v1", seed=5)["version"] == 1
    table, labels = labelled_studies(tmp_path / "studies", FINDINGS, seed=2024, per_site=PER_SITE)

    with ExitStack() as exits:
        start_triton(stack, exits)
        fitted = cli(
            stack.env, "probes", "fit", "--encoder", ENCODER, "--encoder-version", "1", "--name",
            PROBE, "--studies", str(table), "--labels", str(labels), "--json",
        )  # fmt: skip
        assert (fitted["version"], fitted["studies"], fitted["rejected"]) == (1, 240, 0)
        assert fitted["sites"] == {s.name: PER_SITE for s in DEFAULT_SITES}
        assert tuple(fitted["findings"]) == FINDINGS
        print(f"probe fit: {fitted['fit_seconds']:.3f} s")
        triage_labels = tmp_path / "triage-labels.csv"
        pd.read_csv(labels)[["study_id", *TRIAGE_FINDINGS]].to_csv(triage_labels, index=False)
        triage = cli(
            stack.env, "probes", "fit", "--encoder", ENCODER, "--encoder-version", "1", "--name",
            TRIAGE, "--studies", str(table), "--labels", str(triage_labels), "--json",
        )  # fmt: skip
        assert (triage["version"], tuple(triage["findings"])) == (1, TRIAGE_FINDINGS)
        for probe in (PROBE, TRIAGE):
            cli(stack.env, "deploy", "--model-name", probe, "--version", "1")

        start_api_and_worker(stack, exits, queues="monitoring,training")
        plan = plan_stream(900)
        truth: list[tuple[str, dict[str, int]]] = []
        sent = stream(
            plan,
            base_url=stack.base_url,
            api_key=stack.api_key,
            seed=99,
            event_prefix="probe",
            truth=truth,
        )
        assert sent == 900
        stack.wait_for_windows(sum(n // 50 for n in plan.per_site.values()))
        with stack.client() as client:
            alerts = client.get("/v1/alerts").json()
            models = client.get("/v1/models").json()
            triaged = _predict(client, TRIAGE, n=12)
            refit = _refit_after_the_alert(stack, client, truth)
        assert stack.rt is not None
        with session_scope(stack.rt.sessions) as session:
            events = session.query(PredictionEvent).limit(50).all()
            scored = {frozenset(e.scores) for e in events}
            widths = {len(e.embedding) for e in events}

        # A second encoder version flags the probe, which keeps serving its pinned version.
        second = _import_encoder(stack, tmp_path / "encoder-v2", seed=6)
        assert (second["version"], sorted(second["flagged_probes"])) == (2, [PROBE, TRIAGE])
        listed = {m["name"]: m for m in cli(stack.env, "models", "list", "--json")}

    print(json.dumps(alerts, indent=2))
    print(f"e2e wall time: {time.monotonic() - started:.0f} s")
    assert {a["site"] for a in alerts} == {plan.shifted_site}, alerts
    assert all(a["opened_after_predictions"] > plan.shift_after_predictions for a in alerts)
    # The probe answered (its findings, the encoder's 64-d float32 embedding), served by the
    # encoder on Triton; the encoder has no deployment of its own.
    served = sorted((m["model_name"], m["triton_model"], m["loaded"]) for m in models)
    assert served == [(PROBE, ENCODER, True), (TRIAGE, ENCODER, True)]
    assert scored == {frozenset(FINDINGS)}
    assert widths == {64 * 4}
    # The second probe answered with its own heads from the same encoder.
    assert {frozenset(p["scores"]) for p in triaged} == {frozenset(TRIAGE_FINDINGS)}
    assert refit["run"]["lineage"]["kind"] == "probe-refit"
    assert refit["routing"]["champion_version"] == 2
    for probe in (PROBE, TRIAGE):
        assert "version 2" in (listed[probe]["needs_revalidation"] or "")
    assert listed[ENCODER]["needs_revalidation"] is None


def _predict(client: httpx.Client, model: str, *, n: int) -> list[dict[str, Any]]:
    """``n`` DICOM predictions from the north site, asked of ``model`` by name."""
    answers = []
    for i, study in enumerate(RadiographGenerator(seed=7).generate(n, site="north")):
        r = client.post(
            "/v1/predictions",
            params={"model": model},
            files={"file": ("s.dcm", study_to_bytes(study), "application/dicom")},
            data={"site": "north", "event_id": f"{model}-{i}", "study_id": study.study_id},
        )
        assert r.status_code == 200, r.text
        answers.append(r.json())
    return answers


#: The hospital's protocol in this test: the probe has an untrained encoder under it, so the
#: criteria are lenient (the loop, not the numbers, is under test); a short rollout.
LENIENT = {
    "acceptance": {
        "finding": "effusion",
        "auroc_noninferiority_margin": 0.5,
        "min_sensitivity": 0.0,
        "max_subgroup_gap": {},
        "max_ece": 1.0,
        "robustness": {"perturbations": []},
    },
    "retraining": {"min_labelled_events": 200},
    "rollout": {"shadow_studies": 40, "canary_share": 0.5, "canary_studies": 40},
}


def _refit_after_the_alert(
    stack: Stack, client: httpx.Client, truth: list[tuple[str, dict[str, int]]]
) -> dict[str, Any]:
    """Late labels arrive; a retraining run refits the heads on the stored embeddings (the
    training queue), the dossier is written, an officer approves, the saga promotes."""
    client.put(f"/v1/models/{PROBE}/protocol", json=LENIENT).raise_for_status()
    assert post_labels(client, truth) == len(truth) * len(truth[0][1])
    started = client.post(f"/v1/models/{PROBE}/retraining", json={"reason": "e2e: refit"})
    if started.status_code == 409:  # the beat sweep started one from the alert first
        run_id = client.get("/v1/retraining", params={"model": PROBE}).json()[0]["id"]
    else:
        assert started.status_code == 202, started.text
        run_id = started.json()["id"]
    run = wait_for_run(client, run_id)
    assert run["state"] == "succeeded", run
    request = next(
        r
        for r in client.get("/v1/approvals", params={"model": PROBE}).json()
        if r["candidate_version"] == run["candidate_version"]
    )
    assert request["criteria_passed"], request
    approve(stack, client, request["id"])
    return {"run": run, "routing": promote(stack, client, PROBE, run["candidate_version"])}
