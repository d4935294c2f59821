"""An embedding-only foundation encoder served with linear probes, end to end on real components:
PostgreSQL, Redis (Celery broker), an ``mlflow server`` process, ``tritonserver``, the API as a
uvicorn process, a Celery worker with beat, and the ``radwatch`` CLI as a subprocess.

The encoder (an ONNX ``TinyEncoder``: pixels in, a 64-d embedding out, no findings) is imported;
``radwatch probes fit`` runs labelled DICOM studies from three sites through it on Triton, fits
one head per finding and registers the probe with its reference profile. The encoder itself is
never deployed: deploying the probe makes the encoder version ready. DICOM predictions then
stream from three sites, one of which switches scanner vendor halfway, and the drift monitor
must alert on that site only. Last, importing a second encoder version flags the probe for
revalidation, which ``radwatch models list`` shows.
"""

from __future__ import annotations

import csv
import json
import subprocess
import sys
import time
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
from services.core.settings import Settings
from services.demo.runner import child_env
from services.demo.stream import plan_stream, stream
from services.serving.server import TritonServerProcess
from services.wiring import build_runtime
from tests.fixtures.foreign_models import build_embedding_encoder

RADWATCH = str(Path(sys.executable).with_name("radwatch"))
#: Labelled studies per site: above the drift monitor's per-site minimum (50), and 240 in all,
#: above the spec's reference.min_studies (200).
PER_SITE = 80
FINDINGS = ("effusion", "nodule", "cardiomegaly", "pneumothorax")
ENCODER = "foundation-encoder"
PROBE = "foundation-probes"


def _cli(env: dict[str, str], *args: str) -> Any:
    done = subprocess.run(
        [RADWATCH, *args], env=env, capture_output=True, text=True, timeout=600, check=False
    )
    assert done.returncode == 0, f"radwatch {' '.join(args)}:\n{done.stdout}\n{done.stderr}"
    return json.loads(done.stdout.strip().splitlines()[-1])


def _labelled_studies(folder: Path) -> tuple[Path, Path]:
    """DICOM files of every default site in a parquet table with their site keys, and a labels
    CSV (study_id = AccessionNumber) from the studies' own labels."""
    gen = RadiographGenerator(seed=2024)
    rows = []
    labels = folder / "labels.csv"
    folder.mkdir(parents=True, exist_ok=True)
    with labels.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["study_id", *FINDINGS])
        for site in DEFAULT_SITES:
            for study in gen.generate(PER_SITE, site=site.name):
                path = folder / site.name / f"{study.study_id}.dcm"
                path.parent.mkdir(parents=True, exist_ok=True)
                write_dicom(study, path)
                rows.append({"path": str(path.relative_to(folder)), "site": site.name})
                writer.writerow([study.study_id, *(study.labels[f] for f in FINDINGS)])
    table = folder / "studies.parquet"
    pd.DataFrame(rows).to_parquet(table, index=False)
    return table, labels


def _import_encoder(env: dict[str, str], folder: Path, seed: int) -> Any:
    encoder = build_embedding_encoder(folder, seed=seed)
    spec_path = folder / "spec.json"
    spec_path.write_text(json.dumps(encoder.spec))
    return _cli(
        env, "models", "import", "--name", ENCODER, str(encoder.path), "--spec", str(spec_path),
        "--json",
    )  # fmt: skip


@pytest.mark.e2e
def test_a_probe_on_a_foundation_encoder_alerts_on_a_vendor_shift_at_that_site_only(
    database_url: str,
    redis_db_url: str,
    mlflow_server_uri: str,
    tmp_path: Path,
) -> None:
    started = time.monotonic()
    ports = {"http_port": free_port(), "grpc_port": free_port(), "metrics_port": free_port()}
    settings = Settings(
        environment="test",
        data_dir=tmp_path / "data",
        database_url=database_url,
        broker_url=redis_db_url,
        mlflow_tracking_uri=mlflow_server_uri,
        triton_url=f"127.0.0.1:{ports['http_port']}",
        model_name=PROBE,
        monitor_window=50,
        monitor_interval_s=1.0,
        monitor_permutations=200,
    )
    migrate(settings.resolved_database_url)
    env = child_env(settings)
    logs = settings.data_dir / "logs"
    assert _import_encoder(env, tmp_path / "encoder-v1", seed=5)["version"] == 1
    table, labels = _labelled_studies(tmp_path / "studies")

    with ExitStack() as stack:
        settings.triton_repository.mkdir(parents=True, exist_ok=True)
        triton = TritonServerProcess(
            settings.triton_repository, **ports, log_path=logs / "triton.log"
        )
        triton.start()
        stack.callback(triton.stop)
        fitted = _cli(
            env, "probes", "fit", "--encoder", ENCODER, "--encoder-version", "1", "--name", PROBE,
            "--studies", str(table), "--labels", str(labels), "--json",
        )  # fmt: skip
        assert (fitted["version"], fitted["studies"], fitted["rejected"]) == (1, 240, 0)
        assert fitted["sites"] == {s.name: PER_SITE for s in DEFAULT_SITES}
        assert tuple(fitted["findings"]) == FINDINGS
        print(f"probe fit: {fitted['fit_seconds']:.3f} s")
        deployed = subprocess.run(
            [RADWATCH, "deploy", "--model-name", PROBE, "--version", "1"],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert deployed.returncode == 0, deployed.stderr

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
        sent = stream(plan, base_url=base_url, api_key=api_key, seed=99, event_prefix="probe")
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
            models = client.get("/v1/models").json()
        with session_scope(rt.sessions) as session:
            events = session.query(PredictionEvent).limit(50).all()
            scored = {frozenset(e.scores) for e in events}
            widths = {len(e.embedding) for e in events}

        # A second encoder version flags the probe, which keeps serving its pinned version.
        second = _import_encoder(env, tmp_path / "encoder-v2", seed=6)
        assert (second["version"], second["flagged_probes"]) == (2, [PROBE])
        listed = {m["name"]: m for m in _cli(env, "models", "list", "--json")}

    print(json.dumps(alerts, indent=2))
    print(f"e2e wall time: {time.monotonic() - started:.0f} s")
    assert {a["site"] for a in alerts} == {plan.shifted_site}, alerts
    assert all(a["opened_after_predictions"] > plan.shift_after_predictions for a in alerts)
    # The probe answered (its findings, the encoder's 64-d float32 embedding), served by the
    # encoder on Triton; the encoder has no deployment of its own.
    assert [(m["model_name"], m["triton_model"], m["loaded"]) for m in models] == [
        (PROBE, ENCODER, True)
    ]
    assert scored == {frozenset(FINDINGS)}
    assert widths == {64 * 4}
    assert "version 2" in (listed[PROBE]["needs_revalidation"] or "")
    assert listed[ENCODER]["needs_revalidation"] is None
