"""The real stack for end-to-end tests of imported models: the ``radwatch`` CLI as a
subprocess, ``tritonserver``, the API as a uvicorn process and a Celery worker with beat, on
the test's PostgreSQL database, Redis database and ``mlflow server``.

:func:`start_stack` starts the server processes in an ``ExitStack`` (stopped when it closes)
after the caller has imported and deployed what it needs with :func:`cli`.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pandas as pd

from pipelines.dicom import write_dicom
from pipelines.synth import DEFAULT_SITES, RadiographGenerator
from services.auth.service import create_key
from services.core.db import migrate, session_scope
from services.core.models import Role
from services.core.processes import ManagedProcess, api_process, free_port, worker_process
from services.core.runtime import Runtime
from services.core.settings import Settings
from services.demo.lifecycle import add_people, promotion_state
from services.demo.runner import child_env
from services.demo.stream import plan_stream, stream
from services.serving.server import TritonServerProcess
from services.wiring import build_runtime

RADWATCH = str(Path(sys.executable).with_name("radwatch"))


def cli(env: dict[str, str], *args: str, timeout_s: float = 600) -> Any:
    """Run ``radwatch ARGS``; assert it succeeded; the JSON on its last stdout line (or None)."""
    done = subprocess.run(
        [RADWATCH, *args], env=env, capture_output=True, text=True, timeout=timeout_s, check=False
    )
    assert done.returncode == 0, f"radwatch {' '.join(args)}:\n{done.stdout}\n{done.stderr}"
    lines = done.stdout.strip().splitlines()
    try:
        return json.loads(lines[-1]) if lines else None
    except json.JSONDecodeError:
        return None


@dataclass
class Stack:
    settings: Settings
    env: dict[str, str]
    ports: dict[str, int]
    rt: Runtime | None = None
    base_url: str = ""
    api_key: str = ""
    worker: ManagedProcess | None = None

    @property
    def logs(self) -> Path:
        return self.settings.data_dir / "logs"

    def client(self) -> httpx.Client:
        headers = {"Authorization": f"Bearer {self.api_key}"}
        return httpx.Client(base_url=self.base_url, headers=headers, timeout=30)

    def wait_for_windows(self, expected: int, timeout_s: float = 300) -> list[dict[str, Any]]:
        """The monitor windows once the worker has computed ``expected`` of them."""
        deadline = time.monotonic() + timeout_s
        results: list[dict[str, Any]] = []
        with self.client() as client:
            while time.monotonic() < deadline and len(results) < expected:
                assert self.worker is not None
                assert self.worker.alive(), "the worker died; see its log"
                time.sleep(1.0)
                results = client.get("/v1/monitor-results").json()
        assert len(results) == expected, f"{len(results)} of {expected} windows"
        return results


def make_stack(
    tmp_path: Path, *, database_url: str, broker_url: str, mlflow_uri: str, model_name: str
) -> Stack:
    """Settings for a fresh data directory (migrated database, free Triton ports)."""
    ports = {"http_port": free_port(), "grpc_port": free_port(), "metrics_port": free_port()}
    settings = Settings(
        environment="test",
        data_dir=tmp_path / "data",
        database_url=database_url,
        broker_url=broker_url,
        mlflow_tracking_uri=mlflow_uri,
        triton_url=f"127.0.0.1:{ports['http_port']}",
        model_name=model_name,
        monitor_window=50,
        monitor_interval_s=1.0,
        monitor_permutations=200,
    )
    migrate(settings.resolved_database_url)
    return Stack(settings=settings, env=child_env(settings), ports=ports)


def start_triton(stack: Stack, exits: ExitStack) -> None:
    stack.settings.triton_repository.mkdir(parents=True, exist_ok=True)
    triton = TritonServerProcess(
        stack.settings.triton_repository,
        http_port=stack.ports["http_port"],
        grpc_port=stack.ports["grpc_port"],
        metrics_port=stack.ports["metrics_port"],
        log_path=stack.logs / "triton.log",
    )
    triton.start()
    exits.callback(triton.stop)


def start_api_and_worker(stack: Stack, exits: ExitStack, *, queues: str = "monitoring") -> None:
    """The API and a worker with beat (on ``queues``), and an MLOps engineer's key."""
    stack.rt = build_runtime(stack.settings)
    exits.callback(stack.rt.close)
    with session_scope(stack.rt.sessions) as session:
        stack.api_key = create_key(session, name="e2e-engineer", role=Role.MLOPS_ENGINEER)
    port = free_port()
    api = api_process(stack.env, port=port, log_path=stack.logs / "api.log").start()
    exits.callback(api.stop)
    stack.worker = worker_process(
        stack.env, log_path=stack.logs / "worker.log", queues=queues
    ).start()
    exits.callback(stack.worker.stop)
    stack.base_url = f"http://127.0.0.1:{port}"
    api.wait_http(f"{stack.base_url}/healthz", timeout_s=90)
    stack.worker.wait_log("ready", timeout_s=90)


def labelled_studies(
    folder: Path, findings: Sequence[str], *, seed: int, per_site: int, label_of: str | None = None
) -> tuple[Path, Path]:
    """DICOM files of every default site listed in a parquet table with their site keys, and a
    labels CSV (study_id = AccessionNumber) with one column per finding: each study's own label,
    or its ``label_of`` label for every column (for models whose findings the generator lacks)."""
    gen = RadiographGenerator(seed=seed)
    rows, lines = [], []
    for site in DEFAULT_SITES:
        for study in gen.generate(per_site, site=site.name):
            path = folder / site.name / f"{study.study_id}.dcm"
            path.parent.mkdir(parents=True, exist_ok=True)
            write_dicom(study, path)
            rows.append({"path": str(path.relative_to(folder)), "site": site.name})
            cells = [str(study.labels[label_of or f]) for f in findings]
            lines.append(",".join([study.study_id[:16], *cells]))
    table = folder / "studies.parquet"
    pd.DataFrame(rows).to_parquet(table, index=False)
    labels = folder / "labels.csv"
    labels.write_text(",".join(["study_id", *findings]) + "\n" + "\n".join(lines) + "\n")
    return table, labels


def approve(stack: Stack, client: httpx.Client, request_id: int) -> None:
    """A clinical safety officer (a new account) approves the request with their password."""
    assert stack.rt is not None
    people = add_people(stack.rt.sessions, "e2e-officer")
    decided = client.post(
        f"/v1/approvals/{request_id}/decision",
        json={"decision": "approve", "reason": "e2e sign-off", "password": people.password},
        headers={"Authorization": f"Bearer {people.officer_key}"},
    )
    assert decided.status_code == 200, decided.text


def wait_for_run(client: httpx.Client, run_id: int, timeout_s: float = 300) -> dict[str, Any]:
    """The retraining run once it has succeeded or failed (or as it is at the deadline)."""
    deadline = time.monotonic() + timeout_s
    run: dict[str, Any] = {}
    while time.monotonic() < deadline:
        run = client.get(f"/v1/retraining/{run_id}").json()
        if run["state"] in ("succeeded", "failed"):
            break
        time.sleep(1.0)
    return run


def promote(stack: Stack, client: httpx.Client, name: str, version: int) -> dict[str, Any]:
    """Start the promotion and stream studies until the saga has left shadow and canary;
    the model's routing afterwards."""
    client.post(
        f"/v1/models/{name}/promotion", json={"version": version, "reason": "e2e"}
    ).raise_for_status()
    for round_ in range(10):
        state = promotion_state(client, name)
        assert stack.worker is not None
        if state is None or state["state"] != "in_progress" or not stack.worker.alive():
            break
        stream(
            plan_stream(120),
            base_url=stack.base_url,
            api_key=stack.api_key,
            seed=500 + round_,
            event_prefix=f"promo{round_}",
        )
    state = promotion_state(client, name)
    assert state is not None
    assert state["state"] == "succeeded", state
    routing: dict[str, Any] = client.get(f"/v1/models/{name}/routing").json()
    return routing
