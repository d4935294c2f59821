"""Ingestion load (issue 4, acceptance 1): ``POST /v1/events`` with 256-dim embeddings.

    PYTHONPATH=. .venv/bin/python -m benchmarks.ingest.run [--seconds 60] [--batch 1000]
        [--concurrency 4] [--api-workers 2]

Starts a real uvicorn API process on a fresh PostgreSQL database (127.0.0.1:5432), registers a
deployment that produces 256-dim embeddings, and drives it from a separate load-generator
process for ``--seconds`` with ``--concurrency`` batches in flight. Everything shares this
machine's cores: the producer, the API and PostgreSQL. Reports sustained events/s (stored rows
counted in the database afterwards, not claimed by responses), per-batch latency percentiles,
and checks that every accepted event is stored exactly once.

Writes ``benchmarks/results/ingest_load.json``.
"""

from __future__ import annotations

import argparse
import asyncio
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
from sqlalchemy import func, select

from services.auth.service import create_key
from services.core.db import make_engine, make_sessionmaker, migrate, session_scope
from services.core.models import Deployment, PredictionEvent, Role
from services.core.processes import api_process, free_port, settings_env

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "benchmarks" / "results" / "ingest_load.json"
PG = os.environ.get("RADWATCH_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432")
DB = "radwatch_bench_ingest"
MODEL = "bench-cxr"
DIM = 256
SITES = ("north", "central", "south")


def _fresh_database() -> str:
    with psycopg.connect(PG.replace("+psycopg", "") + "/postgres", autocommit=True) as conn:
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
            "image_stats": {"img_mean": 0.4, "img_std": 0.2},
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


def _pct(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q)) if values else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--api-workers", type=int, default=2)
    args = parser.parse_args()

    url = _fresh_database()
    sessions = make_sessionmaker(make_engine(url))
    with session_scope(sessions) as s:
        s.add(
            Deployment(
                model_name=MODEL,
                model_version=1,
                mlflow_run_id="bench",
                triton_model=MODEL,
                embedding_dim=DIM,
            )
        )
        key = create_key(s, name="bench-producer", role=Role.MLOPS_ENGINEER)

    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        env = settings_env({"database_url": url, "data_dir": tmp, "max_upload_mb": 64})
        api = api_process(env, port=port, log_path=Path(tmp) / "api.log", workers=args.api_workers)
        with api:
            api.wait_http(f"http://127.0.0.1:{port}/healthz", timeout_s=60)
            print(
                f"API up on :{port} ({args.api_workers} workers); driving {args.seconds:.0f} s, "
                f"batch {args.batch}, {args.concurrency} in flight",
                flush=True,
            )
            queue: Any = mp.get_context("spawn").Queue()
            proc = mp.get_context("spawn").Process(
                target=_producer,
                args=(
                    (
                        f"http://127.0.0.1:{port}/v1/events",
                        key,
                        args.seconds,
                        args.batch,
                        args.concurrency,
                        0,
                    ),
                    queue,
                ),
            )
            load_before = os.getloadavg()
            proc.start()
            run = queue.get()
            proc.join()
            load_after = os.getloadavg()

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
        "exactly_once": in_db == distinct == run["stored"],
        "target_events_per_second": 5000,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: result[k] for k in ("events_per_second", "batch_latency_seconds")}))
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
