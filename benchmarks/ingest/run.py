"""Ingestion load (issue 4, acceptance 1): ``POST /v1/events`` with 256-dim embeddings.

    PYTHONPATH=. .venv/bin/python -m benchmarks.ingest.run [--seconds 60] [--batch 1000]
        [--concurrency 4] [--api-workers 2] [--no-worker] [--window-seconds 10]

Starts a real uvicorn API process on a fresh PostgreSQL database (127.0.0.1:5432), registers a
deployment that produces 256-dim embeddings, and drives it from a separate load-generator
process for ``--seconds`` with ``--concurrency`` batches in flight. Everything shares this
machine's cores: the producer, the API and PostgreSQL. Reports sustained events/s (stored rows
counted in the database afterwards, not claimed by responses), per-batch latency percentiles,
and checks that every accepted event is stored exactly once.

With the worker (the default), a model producing 256-dim embeddings is registered in an
embedded MLflow store (an untrained encoder: the benchmark measures the plumbing, not the
model), a per-site drift monitor over ``--window-seconds`` time windows is declared, and a real
Celery worker with beat (Redis broker, db 9 of the machine's Redis) computes windows while the
load runs. Staleness is, for every event inside a computed window, the time from its commit
(its ``created_at``, stamped under the ingest lock) to the commit of the window's result.

Writes ``benchmarks/results/ingest_load.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing as mp
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import psycopg
import redis
from sqlalchemy import func, select

from services.auth.service import create_key
from services.core.db import make_engine, make_sessionmaker, migrate, session_scope
from services.core.models import Deployment, PredictionEvent, Role
from services.core.processes import api_process, free_port, settings_env, worker_process
from services.monitoring import service as monitors
from services.monitoring.specs import DriftSpec, WindowSpec

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "benchmarks" / "results" / "ingest_load.json"
PG_ADMIN = os.environ.get("RADWATCH_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
PG = PG_ADMIN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1)
REDIS = os.environ.get("RADWATCH_TEST_REDIS", "redis://127.0.0.1:6379") + "/9"
DB = "radwatch_bench_ingest"
MODEL = "bench-cxr"
DIM = 256
SITES = ("north", "central", "south")


def _fresh_database() -> str:
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {DB}")
    url = f"{PG}/{DB}"
    migrate(url)
    return url


def _fragments(n: int, seed: int = 0) -> list[tuple[bytes, bytes]]:
    """Per-event JSON split around the event id, so a batch with fresh ids is a bytes join."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        body = {
            "event_id": "@@",
            "model": MODEL,
            "model_version": 1,
            "occurred_at": "2026-11-24T09:00:00+00:00",
            "metadata": {
                "study_id": f"S{seed}-{i}",
                "patient_id": f"P{i % 997}",
                "site": SITES[i % len(SITES)],
                "manufacturer": "Acme",
                "kvp": 110.0,
                "sex": "FM"[i % 2],
                "age": float(20 + i % 70),
            },
            "scores": {"effusion": 0.1, "nodule": 0.2, "cardiomegaly": 0.3, "pneumothorax": 0.4},
            "embedding": [round(float(x), 6) for x in rng.standard_normal(DIM)],
            "image_stats": {"mean": 0.4, "std": 0.2, "p01": 0.05, "p99": 0.9},
        }
        head, tail = json.dumps(body).encode().split(b'"@@"')
        out.append((head + b'"', b'"' + tail))
    return out


async def _drive(
    url: str, key: str, seconds: float, batch: int, concurrency: int, producer: int
) -> dict[str, Any]:
    frags = _fragments(batch, seed=producer)
    latencies: list[float] = []
    statuses: dict[str, int] = {}
    stored = duplicates = rejected = 0
    counter = 0
    headers = {"Authorization": f"Bearer {key}", "content-type": "application/json"}
    deadline = time.perf_counter() + seconds

    async def worker(client: httpx.AsyncClient, wid: int) -> None:
        nonlocal counter, stored, duplicates, rejected
        while time.perf_counter() < deadline:
            counter += 1
            tag = f"p{producer}w{wid}b{counter}-".encode()
            body = (
                b'{"events":['
                + b",".join(h + tag + str(i).encode() + t for i, (h, t) in enumerate(frags))
                + b"]}"
            )
            start = time.perf_counter()
            resp = await client.post(url, content=body, headers=headers)
            latencies.append(time.perf_counter() - start)
            statuses[str(resp.status_code)] = statuses.get(str(resp.status_code), 0) + 1
            if resp.status_code == 200:
                got = resp.json()
                stored += got["stored"]
                duplicates += len(got["duplicates"])
                rejected += len(got["rejected"])

    limits = httpx.Limits(max_connections=concurrency)
    async with httpx.AsyncClient(timeout=120, limits=limits) as client:
        t0 = time.perf_counter()
        await asyncio.gather(*(worker(client, w) for w in range(concurrency)))
        wall = time.perf_counter() - t0
    return {
        "latencies": latencies,
        "statuses": statuses,
        "stored": stored,
        "duplicates": duplicates,
        "rejected": rejected,
        "wall": wall,
    }


def _producer(args: tuple[str, str, float, int, int, int], out: Any) -> None:
    out.put(asyncio.run(_drive(*args)))


def _register_model(mlflow_uri: str) -> str:
    """A 256-dim encoder (untrained) and a reference profile of synthetic studies whose
    embeddings are drawn like the producer's, registered as version 1. The pipelines contract
    fixes the gateway model at 128 dims; producers that infer elsewhere may differ, which is
    what this benchmark's 256 dims stand for."""
    import torch

    from pipelines.model import RadiographNet
    from pipelines.profile import ReferenceProfile, study_labels, study_metadata
    from pipelines.synth import RadiographGenerator
    from services.registry.mlflow_registry import MlflowRegistry

    torch.manual_seed(0)
    model = RadiographNet(embedding_dim=DIM).eval()
    studies = []
    for site in SITES:
        studies += RadiographGenerator(3).generate(200, site=site)
    rng = np.random.default_rng(1)
    labels = study_labels(studies)
    profile = ReferenceProfile(
        embeddings=rng.standard_normal((len(studies), DIM)).astype(np.float32),
        scores=rng.uniform(size=labels.shape).astype(np.float32),
        labels=labels,
        metadata=study_metadata(studies),
    )
    registry = MlflowRegistry(mlflow_uri)
    run_id = registry.log_training(
        experiment="bench",
        run_name="bench-untrained",
        params={"embedding_dim": DIM},
        metrics={"val_auroc_mean": 0.5},
        model=model,
        profile=profile,
        model_card="Untrained encoder for the ingestion benchmark.",
    )
    version = registry.register(MODEL, run_id)
    registry.set_alias(MODEL, "champion", version)
    return run_id


def _staleness(sessions: Any) -> dict[str, Any]:
    """Per event in a computed window: result commit time - event commit time (seconds)."""
    from sqlalchemy import text

    sql = text(
        """
        SELECT extract(epoch FROM r.created_at - e.created_at) AS s
        FROM monitor_results r
        JOIN prediction_events e
          ON e.model_name = r.model_name AND e.site = r.site
         AND e.created_at >= r.window_start AND e.created_at < r.window_end
        """
    )
    with session_scope(sessions) as s:
        values = [float(v) for (v,) in s.execute(sql)]
        windows = int(s.scalar(text("SELECT count(*) FROM monitor_results")) or 0)
    return {
        "windows": windows,
        "events_in_windows": len(values),
        "p50": _pct(values, 50),
        "p95": _pct(values, 95),
        "max": max(values) if values else float("nan"),
    }


def _pct(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q)) if values else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--api-workers", type=int, default=2)
    parser.add_argument("--no-worker", action="store_true", help="ingestion only")
    parser.add_argument("--window-seconds", type=int, default=10)
    args = parser.parse_args()

    url = _fresh_database()
    sessions = make_sessionmaker(make_engine(url))
    with tempfile.TemporaryDirectory() as tmp:
        mlflow_uri = f"sqlite:///{tmp}/mlflow.db"
        run_id = "bench" if args.no_worker else _register_model(mlflow_uri)
        with session_scope(sessions) as s:
            s.add(
                Deployment(
                    model_name=MODEL,
                    model_version=1,
                    mlflow_run_id=run_id,
                    triton_model=MODEL,
                    embedding_dim=DIM,
                )
            )
            key = create_key(s, name="bench-producer", role=Role.MLOPS_ENGINEER)
            if not args.no_worker:
                spec = DriftSpec(window=WindowSpec(type="time", seconds=args.window_seconds))
                monitors.create(s, model_name=MODEL, name="drift", spec=spec, actor="bench")
        redis.Redis.from_url(REDIS).flushdb()
        env = settings_env(
            {
                "database_url": url,
                "data_dir": tmp,
                "max_upload_mb": 64,
                "mlflow_tracking_uri": mlflow_uri,
                "broker_url": REDIS,
                "monitor_interval_s": 1,
            }
        )
        port = free_port()
        logs = Path(tmp)
        with contextlib.ExitStack() as stack:
            api = stack.enter_context(
                api_process(env, port=port, log_path=logs / "api.log", workers=args.api_workers)
            )
            api.wait_http(f"http://127.0.0.1:{port}/healthz", timeout_s=60)
            if not args.no_worker:
                worker = stack.enter_context(worker_process(env, log_path=logs / "worker.log"))
                worker.wait_log("ready", timeout_s=120)
            print(
                f"API up on :{port} ({args.api_workers} workers, worker: {not args.no_worker}); "
                f"driving {args.seconds:.0f} s, batch {args.batch}, {args.concurrency} in flight",
                flush=True,
            )
            ctx = mp.get_context("spawn")
            queue: Any = ctx.Queue()
            target = f"http://127.0.0.1:{port}/v1/events"
            proc = ctx.Process(
                target=_producer,
                args=((target, key, args.seconds, args.batch, args.concurrency, 0), queue),
            )
            load_before = os.getloadavg()
            proc.start()
            run = queue.get()
            proc.join()
            load_after = os.getloadavg()
            stale: dict[str, Any] = {}
            if not args.no_worker:
                # Let the worker finish the windows that closed during the run.
                deadline = time.monotonic() + 3 * args.window_seconds + 60
                last = -1
                while time.monotonic() < deadline:
                    stale = _staleness(sessions)
                    if stale["windows"] == last:
                        break
                    last = stale["windows"]
                    time.sleep(args.window_seconds + 2)
                stale["worker_log_tail"] = (logs / "worker.log").read_text()[-1500:]

    with session_scope(sessions) as s:
        in_db = int(s.scalar(select(func.count(PredictionEvent.id))) or 0)
        distinct = int(s.scalar(select(func.count(func.distinct(PredictionEvent.event_id)))) or 0)
    lat = run["latencies"]
    result = {
        "benchmark": "ingest_load",
        "machine": {
            "platform": platform.platform(),
            "cpu_count": os.cpu_count(),
            "load_average_before": load_before,
            "load_average_after": load_after,
        },
        "config": vars(args) | {"embedding_dim": DIM},
        "wall_seconds": run["wall"],
        "batches": len(lat),
        "statuses": run["statuses"],
        "events_stored_per_response": run["stored"],
        "events_in_database": in_db,
        "distinct_event_ids_in_database": distinct,
        "duplicates_reported": run["duplicates"],
        "rejected_reported": run["rejected"],
        "events_per_second": in_db / run["wall"],
        "batch_latency_seconds": {
            "p50": _pct(lat, 50),
            "p95": _pct(lat, 95),
            "p99": _pct(lat, 99),
            "max": max(lat) if lat else float("nan"),
            "mean": statistics.fmean(lat) if lat else float("nan"),
        },
        "staleness_seconds": stale,
        "exactly_once": in_db == distinct == run["stored"],
        "targets": {"events_per_second": 5000, "staleness_p95_seconds": 60},
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    summary = {k: result[k] for k in ("events_per_second", "batch_latency_seconds")}
    summary["staleness"] = {k: v for k, v in stale.items() if k != "worker_log_tail"}
    print(json.dumps(summary))
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
