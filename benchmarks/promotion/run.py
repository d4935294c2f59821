"""Zero-downtime promotion and rollback under load (lifecycle issue, acceptance 3).

    PYTHONPATH=. .venv/bin/python -m benchmarks.promotion.run [--rate 60] [--phase-seconds 15]
        [--api-workers 2]

Starts a real tritonserver, a fresh PostgreSQL database, an embedded MLflow store and a uvicorn
API process, registers two versions of a model (untrained, seeded: the benchmark measures the
switch, not the model), has version 2 approved by a safety officer, and then drives
``POST /v1/predictions`` from a separate load-generator process at a fixed arrival rate (open
loop: a slow answer does not slow the arrivals). While the load runs it promotes version 2
through the API: shadow -> canary -> champion, then rolls back to version 1. Every request's
send time, latency, status and answering version is kept; the report gives, per phase, requests,
failures (any non-200 or transport error) and latency percentiles.

Writes ``benchmarks/results/promotion_zero_downtime.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import psycopg

from services.core.db import make_engine, make_sessionmaker, migrate, session_scope
from services.core.processes import api_process, free_port, settings_env

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "benchmarks" / "results" / "promotion_zero_downtime.json"
PG_ADMIN = os.environ.get("RADWATCH_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
PG = PG_ADMIN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1)
DB = "radwatch_bench_promotion"
MODEL = "bench-promo"
PASSWORD = "bench officer password"  # noqa: S105 (a throwaway benchmark user)


def _fresh_database() -> str:
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {DB}")
    url = f"{PG}/{DB}"
    migrate(url)
    return url


def _two_versions(mlflow_uri: str, repository: Path, triton_url: str, db_url: str) -> str:
    """v1 champion on Triton and in the DB; v2 registered and approved. Returns an engineer key."""
    import pandas as pd
    import torch

    from pipelines.contract import EMBEDDING_DIM, FINDINGS
    from pipelines.export_triton import export_model
    from pipelines.model import RadiographNet
    from pipelines.profile import METADATA_COLUMNS, ReferenceProfile
    from services.approvals import service as approvals
    from services.auth.service import create_key
    from services.auth.users import create_user
    from services.change_protocols import service as protocols
    from services.change_protocols.document import ChangeProtocolDocument, RolloutPlan
    from services.core.models import Dossier, Role
    from services.core.settings import Settings
    from services.registry.mlflow_registry import MlflowRegistry
    from services.serving.client import TritonClient
    from services.serving.service import deploy_champion

    rng = np.random.default_rng(0)
    meta = pd.DataFrame({c: rng.normal(size=30) for c in METADATA_COLUMNS})
    meta["site"] = "north"
    meta["sex"] = "F"
    profile = ReferenceProfile(
        embeddings=rng.normal(size=(30, EMBEDDING_DIM)).astype(np.float32),
        scores=rng.uniform(size=(30, len(FINDINGS))).astype(np.float32),
        labels=rng.integers(0, 2, size=(30, len(FINDINGS))).astype(np.int8),
        metadata=meta,
    )
    registry = MlflowRegistry(mlflow_uri)
    runs = {}
    for seed in (1, 2):
        torch.manual_seed(seed)
        model = RadiographNet().eval()
        run_id = registry.log_training(
            experiment="bench-promotion",
            run_name=f"v{seed}",
            params={"seed": seed},
            metrics={"val_auroc_mean": 0.5},
            model=model,
            profile=profile,
            model_card="Untrained, for the promotion benchmark.",
        )
        runs[registry.register(MODEL, run_id)] = (run_id, model)
    registry.set_alias(MODEL, "champion", 1)
    registry.set_alias(MODEL, "candidate", 2)
    export_model(runs[1][1], repository, MODEL, 1)
    TritonClient(triton_url).load_model(MODEL)
    sessions = make_sessionmaker(make_engine(db_url))
    settings = Settings(environment="test", database_url=db_url)
    with session_scope(sessions) as s:
        deploy_champion(
            s, model_name=MODEL, model_version=1, mlflow_run_id=runs[1][0], triton_model=MODEL
        )
        key = create_key(s, name="bench-engineer", role=Role.MLOPS_ENGINEER)
        create_user(
            s, name="bench-officer", role=Role.CLINICAL_SAFETY_OFFICER, password=PASSWORD, actor="b"
        )
        row = protocols.create_version(
            s,
            MODEL,
            ChangeProtocolDocument(
                rollout=RolloutPlan(shadow_studies=100, canary_share=0.25, canary_studies=40)
            ),
            actor="bench",
        )
        doc = ChangeProtocolDocument.model_validate(row.document)
        dossier = Dossier(
            model_name=MODEL,
            candidate_version=2,
            champion_version=1,
            protocol_version=row.version,
            passed=True,
            document={"passed": True, "criteria": [], "sections": {}, "plots": {}},
            html="",
        )
        s.add(dossier)
        s.flush()
        req = approvals.open_request(
            s,
            model_name=MODEL,
            candidate_version=2,
            dossier_id=dossier.id,
            criteria_passed=True,
            protocol=doc,
            requested_by="bench-engineer",
            conflicted=["bench-engineer"],
        )
        request_id = req.id
    with session_scope(sessions) as s:
        approvals.decide(
            s,
            settings,
            request_id=request_id,
            signer=approvals.Signer("bench-officer", Role.CLINICAL_SAFETY_OFFICER),
            decision="approve",
            reason="Benchmark approval of an untrained candidate.",
            password=PASSWORD,
        )
    return key


def _bodies(n: int) -> list[bytes]:
    rng = np.random.default_rng(7)
    out = []
    for i in range(n):
        image = np.clip(0.4 + 0.1 * rng.standard_normal((64, 64)), 0, 1).round(3).tolist()
        meta = {"study_id": f"B-{i}", "site": ("north", "south")[i % 2], "sex": "F", "age": 50}
        out.append(json.dumps({"image": image, "metadata": meta}).encode())
    return out


async def _drive(
    url: str, key: str, rate: float, seconds: float
) -> list[tuple[float, float, int, int]]:
    """Open-loop arrivals at ``rate``/s: (send time, latency s, status or -1, version or -1)."""
    bodies = _bodies(256)
    results: list[tuple[float, float, int, int]] = []
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=30, headers=headers) as c:

        async def one(i: int) -> None:
            sent = time.time()
            start = time.perf_counter()
            try:
                r = await c.post(f"/v1/predictions?model={MODEL}", content=bodies[i % len(bodies)])
                version = r.json()["model"]["version"] if r.status_code == 200 else -1
                results.append((sent, time.perf_counter() - start, r.status_code, version))
            except Exception:
                results.append((sent, time.perf_counter() - start, -1, -1))

        tasks = []
        t0 = time.perf_counter()
        n = int(rate * seconds)
        for i in range(n):
            delay = t0 + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(i)))
        await asyncio.gather(*tasks)
    return results


def _load(args: tuple[str, str, float, float], out: Any) -> None:
    out.put(asyncio.run(_drive(*args)))


def _pct(values: list[float], q: float) -> float | None:
    return float(np.percentile(values, q)) if values else None


def _phase(rows: list[tuple[float, float, int, int]], start: float, end: float) -> dict[str, Any]:
    inside = [r for r in rows if start <= r[0] < end]
    ok = [r for r in inside if r[2] == 200]
    lat = [r[1] * 1000 for r in ok]
    versions: dict[str, int] = {}
    for r in ok:
        versions[str(r[3])] = versions.get(str(r[3]), 0) + 1
    return {
        "requests": len(inside),
        "failed": len(inside) - len(ok),
        "rate_per_s": round(len(inside) / max(end - start, 1e-9), 1),
        "latency_ms_p50": _pct(lat, 50),
        "latency_ms_p99": _pct(lat, 99),
        "latency_ms_max": max(lat) if lat else None,
        "answered_by_version": versions,
        "seconds": round(end - start, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=60.0, help="Requests per second.")
    parser.add_argument("--phase-seconds", type=float, default=15.0)
    parser.add_argument("--api-workers", type=int, default=2)
    args = parser.parse_args()

    from services.serving.server import TritonServerProcess

    tmp = Path(tempfile.mkdtemp(prefix="radwatch-bench-promo-"))
    repository = tmp / "models"
    repository.mkdir()
    triton = TritonServerProcess(
        repository,
        http_port=free_port(),
        grpc_port=free_port(),
        metrics_port=free_port(),
        log_path=tmp / "triton.log",
    )
    triton.start(timeout_s=120)
    db_url = _fresh_database()
    mlflow_uri = f"sqlite:///{tmp / 'mlflow.db'}"
    key = _two_versions(mlflow_uri, repository, triton.url, db_url)
    port = free_port()
    env = settings_env(
        {
            "environment": "test",
            "data_dir": tmp / "data",
            "database_url": db_url,
            "mlflow_tracking_uri": mlflow_uri,
            "triton_url": triton.url,
            "triton_model_repository": repository,
            "model_name": MODEL,
        }
    )
    api = api_process(env, port=port, log_path=tmp / "api.log", workers=args.api_workers).start()
    base = f"http://127.0.0.1:{port}"
    headers = {"Authorization": f"Bearer {key}"}
    marks: dict[str, float] = {}
    load: mp.Process | None = None
    try:
        api.wait_http(f"{base}/readyz", timeout_s=90)
        for i in range(20):  # warm both workers and the Triton model
            httpx.post(
                f"{base}/v1/predictions?model={MODEL}",
                content=_bodies(1)[0].replace(b"B-0", f"W-{i}".encode()),
                headers={**headers, "Content-Type": "application/json"},
                timeout=30,
            )
        p = args.phase_seconds
        total = 8 * p + 30
        queue: Any = mp.Queue()
        load = mp.Process(target=_load, args=((base, key, args.rate, total), queue), daemon=True)
        load.start()
        t0 = time.time()
        marks["load_start"] = t0

        def at(offset: float) -> None:
            time.sleep(max(0.0, t0 + offset - time.time()))

        def call(path: str, body: dict[str, Any]) -> dict[str, Any]:
            r = httpx.post(f"{base}{path}", json=body, headers=headers, timeout=120)
            if r.status_code != 200:
                raise SystemExit(f"{path} answered {r.status_code}: {r.text}")
            return dict(r.json())

        def advance_when_ready(limit_s: float) -> None:
            """The rollout plan decides: retry the advance until its studies are reached."""
            deadline = time.time() + limit_s
            while True:
                r = httpx.post(
                    f"{base}/v1/models/{MODEL}/promotion/advance",
                    json={},
                    headers=headers,
                    timeout=120,
                )
                if r.status_code == 200:
                    return
                if r.status_code != 409 or time.time() > deadline:
                    raise SystemExit(f"advance answered {r.status_code}: {r.text}")
                time.sleep(1.0)

        at(p)
        marks["promotion_start"] = time.time()
        call(f"/v1/models/{MODEL}/promotion", {"version": 2, "reason": "benchmark"})
        marks["shadow"] = time.time()
        at(2 * p)
        marks["canary_call"] = time.time()
        advance_when_ready(3 * p)
        marks["canary"] = time.time()
        time.sleep(p)
        marks["champion_call"] = time.time()
        advance_when_ready(3 * p)
        marks["champion"] = time.time()
        time.sleep(p)
        marks["rollback_call"] = time.time()
        call(f"/v1/models/{MODEL}/rollback", {"reason": "benchmark rollback"})
        marks["rolled_back"] = time.time()
        rows = queue.get(timeout=total + 300)
        load.join()
        marks["load_end"] = max(r[0] for r in rows)
        with httpx.Client(base_url=base, headers=headers) as c:
            shadow_summary = c.get(f"/v1/models/{MODEL}/shadow?version=2").json()
    finally:
        if load is not None and load.is_alive():
            load.terminate()
        api.stop()
        triton.stop()

    m = marks
    phases = {
        "before": _phase(rows, m["load_start"], m["promotion_start"]),
        "shadow": _phase(rows, m["promotion_start"], m["canary_call"]),
        "canary": _phase(rows, m["canary_call"], m["champion_call"]),
        "after_promotion": _phase(rows, m["champion_call"], m["rollback_call"]),
        "after_rollback": _phase(rows, m["rollback_call"], m["load_end"] + 1),
    }
    promotion_window = _phase(rows, m["promotion_start"], m["champion"] + 2)
    rollback_window = _phase(rows, m["rollback_call"] - 2, m["rolled_back"] + 2)
    timeline = []
    start = m["load_start"]
    for k in range(int((m["load_end"] - start) // 2) + 1):
        w = _phase(rows, start + 2 * k, start + 2 * k + 2)
        timeline.append(
            {
                "t_s": 2 * k,
                "requests": w["requests"],
                "failed": w["failed"],
                "p50_ms": None if w["latency_ms_p50"] is None else round(w["latency_ms_p50"], 1),
                "p99_ms": None if w["latency_ms_p99"] is None else round(w["latency_ms_p99"], 1),
            }
        )
    events = {k: round(v - start, 2) for k, v in m.items()}
    report = {
        "benchmark": "promotion_zero_downtime",
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.node()} {os.cpu_count()} cores, {platform.machine()}",
        "command": "PYTHONPATH=. .venv/bin/python -m benchmarks.promotion.run "
        f"--rate {args.rate:g} --phase-seconds {args.phase_seconds:g} "
        f"--api-workers {args.api_workers}",
        "rate_per_s": args.rate,
        "api_workers": args.api_workers,
        "switch_seconds": {
            "start_to_shadow": round(m["shadow"] - m["promotion_start"], 3),
            "shadow_to_canary": round(m["canary"] - m["canary_call"], 3),
            "canary_to_champion": round(m["champion"] - m["champion_call"], 3),
            "rollback": round(m["rolled_back"] - m["rollback_call"], 3),
        },
        "shadow_comparison": shadow_summary,
        "phases": phases,
        "events_s": events,
        "timeline_2s": timeline,
        "whole_promotion": promotion_window,
        "rollback_window": rollback_window,
        "total": {
            "requests": len(rows),
            "failed": sum(1 for r in rows if r[2] != 200),
            "statuses": {str(s): sum(1 for r in rows if r[2] == s) for s in {r[2] for r in rows}},
        },
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    if report["total"]["failed"]:
        raise SystemExit(f"{report['total']['failed']} requests failed")


if __name__ == "__main__":
    main()
