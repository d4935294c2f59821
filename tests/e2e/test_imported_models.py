"""Models radwatch did not train, end to end on real components: PostgreSQL, Redis (Celery
broker), an ``mlflow server`` process, ``tritonserver``, the API as a uvicorn process, a Celery
worker with beat, and the ``radwatch`` CLI as a subprocess.

Each model is imported (an ONNX classifier exported by torch.onnx from an architecture unlike
the built-in one, and a MONAI Bundle around a ``monai.networks`` DenseNet), deployed, given a
reference profile from DICOM studies through Triton, and fed DICOM predictions from three sites,
one of which switches scanner vendor halfway. The drift monitor must alert on that site only.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest

from pipelines.dicom import write_dicom
from pipelines.synth import DEFAULT_SITES, RadiographGenerator
from services.auth.service import create_key
from services.core.db import migrate, session_scope
from services.core.models import PredictionEvent, Role
from services.core.processes import api_process, free_port, worker_process
from services.core.runtime import Runtime
from services.core.settings import Settings
from services.demo.lifecycle import add_people, promotion_state
from services.demo.runner import child_env
from services.demo.stream import plan_stream, stream
from services.serving.server import TritonServerProcess
from services.wiring import build_runtime
from tests.fixtures.foreign_models import ForeignModel, build_monai_bundle, build_onnx_classifier

RADWATCH = str(Path(sys.executable).with_name("radwatch"))
#: Reference studies per site: above the drift monitor's per-site minimum (50).
REFERENCE_PER_SITE = 80

BUILDERS: dict[str, Callable[..., ForeignModel]] = {
    "onnx": build_onnx_classifier,
    "monai-bundle": build_monai_bundle,
}
#: The hospital's protocol in this test: lenient criteria, short rollout. The models have
#: seeded random weights, so this test checks the loop (dossier, sign-off, saga), not accuracy.
LENIENT = {
    "acceptance": {
        "auroc_noninferiority_margin": 0.5,
        "min_sensitivity": 0.0,
        "max_subgroup_gap": {},  # 60 studies: no subgroup reaches n >= 30 positives
        "max_ece": 1.0,
        "robustness": {"max_auroc_drop": 1.0},
    },
    "rollout": {"shadow_studies": 40, "canary_share": 0.5, "canary_studies": 40},
}


def _cli(env: dict[str, str], *args: str) -> dict[str, Any]:
    done = subprocess.run(
        [RADWATCH, *args], env=env, capture_output=True, text=True, timeout=600, check=False
    )
    assert done.returncode == 0, f"radwatch {' '.join(args)}:\n{done.stdout}\n{done.stderr}"
    out: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return out


def _labelled_studies(folder: Path, finding: str, seed: int, per_site: int) -> tuple[Path, Path]:
    """DICOM files of every default site in a parquet table, and a labels CSV for ``finding``
    (the generator's own label of a correlated finding: the models are untrained anyway)."""
    gen = RadiographGenerator(seed=seed)
    rows, labels = [], []
    for site in DEFAULT_SITES:
        for study in gen.generate(per_site, site=site.name):
            path = folder / site.name / f"{study.study_id}.dcm"
            path.parent.mkdir(parents=True, exist_ok=True)
            write_dicom(study, path)
            rows.append({"path": str(path.relative_to(folder)), "site": site.name})
            labels.append(f"{study.study_id[:16]},{study.labels['nodule']}")
    table = folder / "studies.parquet"
    pd.DataFrame(rows).to_parquet(table, index=False)
    csv_path = folder / "labels.csv"
    csv_path.write_text(f"study_id,{finding}\n" + "\n".join(labels) + "\n")
    return table, csv_path


def _reference_studies(folder: Path) -> Path:
    """DICOM files of every default site, listed in a parquet table with their site keys."""
    gen = RadiographGenerator(seed=2024)
    rows = []
    for site in DEFAULT_SITES:
        for study in gen.generate(REFERENCE_PER_SITE, site=site.name):
            path = folder / site.name / f"{study.study_id}.dcm"
            path.parent.mkdir(parents=True, exist_ok=True)
            write_dicom(study, path)
            rows.append({"path": str(path.relative_to(folder)), "site": site.name})
    table = folder / "reference.parquet"
    pd.DataFrame(rows).to_parquet(table, index=False)
    return table


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
    ports = {"http_port": free_port(), "grpc_port": free_port(), "metrics_port": free_port()}
    settings = Settings(
        environment="test",
        data_dir=tmp_path / "data",
        database_url=database_url,
        broker_url=redis_db_url,
        mlflow_tracking_uri=mlflow_server_uri,
        triton_url=f"127.0.0.1:{ports['http_port']}",
        model_name=name,
        monitor_window=50,
        monitor_interval_s=1.0,
        monitor_permutations=200,
    )
    migrate(settings.resolved_database_url)
    env = child_env(settings)
    logs = settings.data_dir / "logs"

    model = BUILDERS[kind](tmp_path / "model")
    args = ["models", "import", "--name", name, str(model.path), "--json"]
    if kind == "onnx":
        spec_path = tmp_path / "spec.json"
        # The vendor ships new versions itself: retraining "none" (candidates are imported).
        spec_path.write_text(json.dumps({**model.spec, "retraining": {"kind": "none"}}))
        args[-1:-1] = ["--spec", str(spec_path)]
    imported = _cli(env, *args)
    assert imported["version"] == 1

    with ExitStack() as stack:
        settings.triton_repository.mkdir(parents=True, exist_ok=True)
        triton = TritonServerProcess(
            settings.triton_repository, **ports, log_path=logs / "triton.log"
        )
        triton.start()
        stack.callback(triton.stop)
        deployed = subprocess.run(
            [RADWATCH, "deploy", "--model-name", name, "--version", "1"],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert deployed.returncode == 0, deployed.stderr
        reference = _cli(
            env,
            "reference",
            "build",
            "--name",
            name,
            "--version",
            "1",
            "--studies",
            str(_reference_studies(tmp_path / "reference")),
            "--json",
        )
        assert reference["studies"] == REFERENCE_PER_SITE * len(DEFAULT_SITES)
        assert reference["rejected"] == 0
        assert set(reference["sites"]) == {s.name for s in DEFAULT_SITES}

        rt = build_runtime(settings)
        stack.callback(rt.close)
        with session_scope(rt.sessions) as session:
            api_key = create_key(session, name="e2e-engineer", role=Role.MLOPS_ENGINEER)
        api_port = free_port()
        api = api_process(env, port=api_port, log_path=logs / "api.log").start()
        stack.callback(api.stop)
        worker = worker_process(env, log_path=logs / "worker.log", queues="monitoring").start()
        stack.callback(worker.stop)
        base_url = f"http://127.0.0.1:{api_port}"
        api.wait_http(f"{base_url}/healthz", timeout_s=90)
        worker.wait_log("ready", timeout_s=90)

        plan = plan_stream(900)
        sent = stream(plan, base_url=base_url, api_key=api_key, seed=99, event_prefix=kind)
        assert sent == 900
        expected = sum(n // settings.monitor_window for n in plan.per_site.values())
        headers = {"Authorization": f"Bearer {api_key}"}
        with httpx.Client(base_url=base_url, headers=headers, timeout=30) as client:
            deadline = time.monotonic() + 300
            results: list[dict[str, Any]] = []
            while time.monotonic() < deadline and len(results) < expected and worker.alive():
                time.sleep(1.0)
                results = client.get("/v1/monitor-results").json()
            assert len(results) == expected, f"{len(results)} of {expected} windows"
            alerts = client.get("/v1/alerts").json()
            promoted = _candidate_loop(
                client, env, tmp_path, kind, name, model, rt, base_url, api_key, worker.alive
            )
            models = client.get("/v1/models").json()
        with session_scope(rt.sessions) as session:
            scored = {frozenset(e.scores) for e in session.query(PredictionEvent).limit(50)}

    print(json.dumps(alerts, indent=2))
    assert {a["site"] for a in alerts} == {plan.shifted_site}, alerts
    assert all(a["opened_after_predictions"] > plan.shift_after_predictions for a in alerts)
    # The predictions carried the imported model's own findings, not the built-in ones.
    findings = [f["name"] for f in model.spec["outputs"][0]["findings"]]
    champions = [m for m in models if m["role"] == "champion" and m["active"]]
    assert [(m["model_name"], m["model_version"], m["loaded"]) for m in champions] == [
        (name, 2, True)
    ]
    assert scored == {frozenset(findings)}
    assert promoted["dossier"]["evaluation_set"]["sha256"]
    assert promoted["routing"]["champion_version"] == 2, promoted


def _candidate_loop(
    client: httpx.Client,
    env: dict[str, str],
    tmp_path: Path,
    kind: str,
    name: str,
    model: ForeignModel,
    rt: Runtime,
    base_url: str,
    api_key: str,
    alive: Callable[[], bool],
) -> dict[str, Any]:
    """A second version (other weights) imported by hand, judged on an evaluation set through
    Triton, signed by a safety officer, promoted by the saga through shadow and canary."""
    candidate = BUILDERS[kind](tmp_path / "candidate", seed=77)
    args = ["models", "import", "--name", name, str(candidate.path), "--json"]
    if kind == "onnx":
        args[-1:-1] = ["--spec", str(tmp_path / "spec.json")]
    assert _cli(env, *args)["version"] == 2
    finding = model.spec["outputs"][0]["findings"][0]["name"]
    protocol = {**LENIENT, "acceptance": {**LENIENT["acceptance"], "finding": finding}}
    client.put(f"/v1/models/{name}/protocol", json=protocol).raise_for_status()
    studies, labels = _labelled_studies(tmp_path / "evalset", finding, seed=31, per_site=20)
    registered = _cli(
        env,
        "evaluation-sets",
        "register",
        "--name",
        "holdout",
        "--studies",
        str(studies),
        "--labels",
        str(labels),
        "--json",
    )
    assert registered["studies"] == 60
    dossier = _cli(
        env,
        "candidates",
        "evaluate",
        "--model",
        name,
        "--version",
        "2",
        "--evaluation-set",
        "holdout",
        "--json",
    )
    assert dossier["evaluation_set"]["sha256"] == registered["sha256"]
    assert dossier["passed"], json.dumps(dossier["criteria"])

    people = add_people(rt.sessions, "e2e-officer")
    decided = client.post(
        f"/v1/approvals/{dossier['approval_request_id']}/decision",
        json={
            "decision": "approve",
            "reason": "e2e: lenient protocol",
            "password": people.password,
        },
        headers={"Authorization": f"Bearer {people.officer_key}"},
    )
    assert decided.status_code == 200, decided.text
    client.post(
        f"/v1/models/{name}/promotion", json={"version": 2, "reason": "e2e"}
    ).raise_for_status()
    for round_ in range(10):
        state = promotion_state(client, name)
        if state is None or state["state"] != "in_progress" or not alive():
            break
        stream(
            plan_stream(120),
            base_url=base_url,
            api_key=api_key,
            seed=500 + round_,
            event_prefix=f"promo{round_}",
        )
    state = promotion_state(client, name)
    assert state is not None
    assert state["state"] == "succeeded", state
    return {"dossier": dossier, "routing": client.get(f"/v1/models/{name}/routing").json()}
