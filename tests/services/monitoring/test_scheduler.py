"""Declared monitors on a real PostgreSQL: count and time windows, per-site and global scope,
exactly-once under concurrent workers and after a crash, late labels for performance."""

from __future__ import annotations

import random
import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from pipelines.contract import EMBEDDING_DIM, FINDINGS
from services.core.db import session_scope
from services.core.models import Alert, Deployment, Monitor, MonitorResult, PredictionEvent
from services.core.pseudonym import pseudonymise
from services.core.settings import Settings
from services.events.ingest import ingest_events
from services.labels.service import ingest_labels
from services.monitoring import scheduler
from services.monitoring import service as monitors
from services.monitoring.specs import (
    DriftSpec,
    EstimateSpec,
    FairnessSpec,
    PerformanceSpec,
    PolicySpec,
    WindowSpec,
)
from services.serving.service import deploy_champion
from tests.conftest import enqueuer_for
from tests.services.monitoring.test_drift_windows import _add_events, _profile, run_due

PROFILE = _profile()


@pytest.fixture
def deployment(sessions: sessionmaker[Session]) -> int:
    with session_scope(sessions) as s:
        d = deploy_champion(s, model_name="m", model_version=1, mlflow_run_id="r", triton_model="m")
    return d.id


def declare(sessions: sessionmaker[Session], name: str, spec: Any) -> int:
    with session_scope(sessions) as s:
        return monitors.create(s, model_name="m", name=name, spec=spec, actor="test").id


def run_all(
    sessions: sessionmaker[Session], settings: Settings, *, now: datetime | None = None
) -> int:
    return run_due(sessions, settings, PROFILE, now=now)


def results(sessions: sessionmaker[Session], name: str) -> list[MonitorResult]:
    with session_scope(sessions) as s:
        rows = s.scalars(
            select(MonitorResult)
            .where(MonitorResult.monitor == name)
            .order_by(MonitorResult.site, MonitorResult.window_index)
        ).all()
        s.expunge_all()
        return list(rows)


DRIFT_50 = DriftSpec(window=WindowSpec(size=50))


def test_declared_drift_monitor_alerts_on_the_switched_site(
    sessions: Any, settings: Settings, deployment: int
) -> None:
    declare(sessions, "vendor", DRIFT_50)
    _add_events(sessions, "north", 150, seed=1)
    _add_events(sessions, "south", 50, seed=2)
    _add_events(sessions, "south", 100, seed=3, shifted=True)
    assert run_all(sessions, settings) == 6
    assert run_all(sessions, settings) == 0
    with session_scope(sessions) as s:
        alerts = s.scalars(select(Alert)).all()
        assert [(a.monitor, a.site) for a in alerts] == [("vendor", "south")]
        assert "Acquisition drift at site 'south'" in alerts[0].detail


def test_global_scope_has_one_series(sessions: Any, settings: Settings, deployment: int) -> None:
    declare(sessions, "all", DriftSpec(scope="global", window=WindowSpec(size=60)))
    _add_events(sessions, "north", 70, seed=1)
    _add_events(sessions, "south", 70, seed=2)
    assert run_all(sessions, settings) == 2
    assert {r.site for r in results(sessions, "all")} == {"*"}


def test_disabled_monitor_is_not_scheduled(
    sessions: Any, settings: Settings, deployment: int
) -> None:
    mid = declare(sessions, "vendor", DRIFT_50)
    with session_scope(sessions) as s:
        monitors.update(s, mid, actor="test", active=False)
    _add_events(sessions, "north", 60, seed=1)
    assert run_all(sessions, settings) == 0
    with session_scope(sessions) as s:
        monitors.update(s, mid, actor="test", active=True)
        changes = [c.change for c in monitors.history(s, mid)]
    assert changes == ["created", "disabled", "enabled"]
    assert run_all(sessions, settings) == 1


def _backdate(sessions: sessionmaker[Session], start: datetime, step: timedelta) -> None:
    with session_scope(sessions) as s:
        rows = s.scalars(select(PredictionEvent).order_by(PredictionEvent.id)).all()
        for i, r in enumerate(rows):
            r.created_at = start + i * step


def test_time_windows_cover_every_event_once(
    sessions: Any, settings: Settings, deployment: int
) -> None:
    declare(sessions, "hourly", DriftSpec(window=WindowSpec(type="time", seconds=3600)))
    _add_events(sessions, "north", 300, seed=1)
    start = datetime(2026, 11, 20, 0, 0, tzinfo=UTC)
    _backdate(sessions, start, timedelta(seconds=30))  # 300 events over 2.5 hours
    assert run_all(sessions, settings) == 3
    rows = results(sessions, "hourly")
    assert [r.n_current for r in rows] == [120, 120, 60]
    assert [r.window_start for r in rows] == [start + timedelta(hours=h) for h in range(3)]
    assert rows[0].first_event_id < rows[0].last_event_id < rows[1].first_event_id
    assert run_all(sessions, settings) == 0  # empty hours since then are not windows
    _add_events(sessions, "north", 30, seed=2)  # new events today: the next window is today's
    with session_scope(sessions) as s:
        newest = s.scalars(select(PredictionEvent).order_by(PredictionEvent.id.desc())).first()
        assert newest is not None
        newest.created_at = datetime(2026, 11, 21, 5, 10, tzinfo=UTC)
    assert run_all(sessions, settings) == 1
    last = results(sessions, "hourly")[-1]
    assert last.window_start == datetime(2026, 11, 21, 5, 0, tzinfo=UTC)
    assert last.n_current == 1
    assert last.details["skipped"].startswith("1 events")


def test_concurrent_workers_compute_each_window_once(
    sessions: Any, settings: Settings, deployment: int
) -> None:
    declare(sessions, "vendor", DRIFT_50)
    _add_events(sessions, "north", 200, seed=1)
    counts: list[int] = []
    barrier = threading.Barrier(3)

    def worker() -> None:
        barrier.wait()
        counts.append(run_all(sessions, settings))

    threads = [threading.Thread(target=worker) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert sum(counts) == 4
    assert [r.window_index for r in results(sessions, "vendor")] == [0, 1, 2, 3]


def test_a_crashed_window_is_retried(sessions: Any, settings: Settings, deployment: int) -> None:
    mid = declare(sessions, "vendor", DRIFT_50)
    _add_events(sessions, "north", 50, seed=1)

    def crash() -> None:
        with session_scope(sessions) as s:
            monitor, dep = s.get(Monitor, mid), s.get(Deployment, deployment)
            assert monitor is not None
            assert dep is not None
            r = scheduler.compute_next_window(
                s,
                enqueuer=enqueuer_for(settings),
                monitor=monitor,
                deployment=dep,
                profile=PROFILE,
                site="north",
            )
            assert r is not None
            raise RuntimeError("worker died before commit")

    with pytest.raises(RuntimeError):
        crash()
    assert results(sessions, "vendor") == []
    assert run_all(sessions, settings) == 1
    assert len(results(sessions, "vendor")) == 1


def _scored_events(
    sessions: sessionmaker[Session], settings: Settings, n: int, rng: np.random.Generator
) -> dict[str, int]:
    """Events (through the ingestion path, so ids are pseudonymised) whose effusion score
    carries signal; returns the true label per raw study id."""
    truth: dict[str, int] = {}
    items = []
    for i in range(n):
        y = int(rng.random() < 0.4)
        score = float(np.clip(rng.normal(0.35 + 0.3 * y, 0.15), 0.001, 0.999))
        items.append(
            {
                "event_id": f"perf-{i}",
                "model": "m",
                "model_version": 1,
                "metadata": {"study_id": f"study-{i}", "site": "north", "manufacturer": "Acme"},
                "scores": {f: (score if f == "effusion" else 0.5) for f in FINDINGS},
                "embedding": rng.standard_normal(EMBEDDING_DIM).tolist(),
                "image_stats": {"mean": 0.4, "std": 0.2, "p01": 0.05, "p99": 0.9},
            }
        )
        truth[f"study-{i}"] = y
    with session_scope(sessions) as s:
        assert ingest_events(s, settings=settings, items=items).result.stored == n
    return truth


def test_performance_waits_for_late_labels_and_equals_a_direct_computation(
    sessions: Any, settings: Settings, deployment: int
) -> None:
    """Acceptance 3 of issue 4: labels arrive in random order up to 14 days late, some never,
    some corrected; each window's AUROC equals one computed directly on the joined data."""
    spec = PerformanceSpec(
        finding="effusion",
        baseline=0.9,
        margin=0.05,
        window=WindowSpec(size=100),
        label_wait_s=14 * 86400,
        policy=PolicySpec(alpha=0.05),
    )
    declare(sessions, "effusion_auroc", spec)
    truth = _scored_events(sessions, settings, 300, np.random.default_rng(11))
    assert run_all(sessions, settings) == 0  # events younger than the 14-day label wait

    pyrng = random.Random(3)
    now = datetime.now(UTC)
    labels: list[dict[str, Any]] = []
    final: dict[str, int] = {}
    for raw, y in truth.items():
        if pyrng.random() < 0.2:
            continue  # never labelled
        late = pyrng.uniform(0, 14)
        first = y if pyrng.random() < 0.9 else 1 - y  # a wrong first report, corrected later
        labels.append(_label(raw, first, now + timedelta(days=late)))
        if first != y:
            labels.append(_label(raw, y, now + timedelta(days=late + 0.5), source="review"))
        final[raw] = y
    pyrng.shuffle(labels)
    for start in range(0, len(labels), 37):
        with session_scope(sessions) as s:
            assert not ingest_labels(
                s, settings=settings, items=labels[start : start + 37]
            ).rejected

    assert run_all(sessions, settings, now=now + timedelta(days=15)) == 3
    pid = {pseudonymise(raw, settings.pseudonym_key, kind="study"): raw for raw in truth}
    rows = results(sessions, "effusion_auroc")
    with session_scope(sessions) as s:
        for r in rows:
            window = s.scalars(
                select(PredictionEvent)
                .where(PredictionEvent.id.between(r.first_event_id, r.last_event_id))
                .order_by(PredictionEvent.id)
            ).all()
            assert len(window) == 100
            pairs = [
                (final[pid[e.study_pid]], e.scores["effusion"])
                for e in window
                if pid[e.study_pid] in final
            ]
            assert r.details["n_labelled"] == len(pairs)
            y_true = [p[0] for p in pairs]
            y_score = [p[1] for p in pairs]
            assert r.statistic == pytest.approx(roc_auc_score(y_true, y_score), abs=1e-12)
            auroc = r.details["report"]["metrics"]["auroc"]
            assert r.drift == (auroc["upper"] < 0.85)
            print(f"window {r.window_index}: labelled {len(pairs)}/100 AUROC {r.statistic:.4f}")


def _label(raw: str, y: int, at: datetime, source: str = "report") -> dict[str, Any]:
    return {
        "study_id": raw,
        "finding": "effusion",
        "label": bool(y),
        "source": source,
        "reported_at": at.isoformat(),
    }


def test_estimate_monitor_reports_before_labels(
    sessions: Any, settings: Settings, deployment: int
) -> None:
    declare(
        sessions,
        "effusion_estimate",
        EstimateSpec(finding="effusion", window=WindowSpec(size=100)),
    )
    _scored_events(sessions, settings, 100, np.random.default_rng(2))
    assert run_all(sessions, settings) == 1
    (r,) = results(sessions, "effusion_estimate")
    assert 0.0 <= r.statistic <= 1.0
    assert r.details["report"]["metrics"]["auroc"]["method"].startswith("cbpe")
    assert r.details["kind"] == "estimate"


def _fair_events(
    sessions: sessionmaker[Session], settings: Settings, n: int, *, degrade_f: bool, seed: int
) -> None:
    """Labelled events of both sexes; with ``degrade_f`` the model barely sees effusion in
    women (their positives score like negatives), the subgroup failure the monitor must catch."""
    rng = np.random.default_rng(seed)
    items, labels = [], []
    for i in range(n):
        sex = "F" if i % 2 else "M"
        y = int(rng.random() < 0.4)
        signal = 0.05 if (degrade_f and sex == "F") else 0.35
        score = float(np.clip(rng.normal(0.35 + signal * y, 0.1), 0.001, 0.999))
        items.append(
            {
                "event_id": f"fair-{seed}-{i}",
                "model": "m",
                "model_version": 1,
                "metadata": {"study_id": f"fs-{seed}-{i}", "site": "north", "sex": sex, "age": 50},
                "scores": {f: (score if f == "effusion" else 0.5) for f in FINDINGS},
                "embedding": [0.0] * EMBEDDING_DIM,
                "image_stats": {"mean": 0.4, "std": 0.2, "p01": 0.05, "p99": 0.9},
            }
        )
        labels.append(
            {
                "study_id": f"fs-{seed}-{i}",
                "finding": "effusion",
                "label": bool(y),
                "source": "report",
                "reported_at": "2026-11-20T00:00:00+00:00",
            }
        )
    with session_scope(sessions) as s:
        assert ingest_events(s, settings=settings, items=items).result.stored == n
        assert ingest_labels(s, settings=settings, items=labels).stored == n


@pytest.mark.parametrize("degrade_f", [True, False])
def test_fairness_monitor_flags_the_worse_subgroup(
    sessions: Any, settings: Settings, deployment: int, degrade_f: bool
) -> None:
    spec = FairnessSpec(
        finding="effusion",
        groups=["sex"],
        metric="tpr",
        threshold=0.5,
        max_gap=0.1,
        window=WindowSpec(size=400),
        label_wait_s=0,
        policy=PolicySpec(alpha=0.05),
    )
    declare(sessions, "effusion_tpr_gap", spec)
    _fair_events(sessions, settings, 400, degrade_f=degrade_f, seed=4)
    assert run_all(sessions, settings) == 1
    (r,) = results(sessions, "effusion_tpr_gap")
    assert r.site == "*"
    worst = r.details["worst"]
    print(f"degrade_f={degrade_f}: worst {worst['group']} gap {r.statistic:.3f} p={r.p_value:.3g}")
    assert r.drift is degrade_f
    if degrade_f:
        assert worst["group"] == "sex=F"
        assert r.statistic > 0.3


def test_events_without_image_stats_still_get_drift_windows(
    sessions: Any, settings: Settings, deployment: int
) -> None:
    """Producers that infer elsewhere may send no image statistics; the window must not fail
    (it once raised KeyError and stayed stuck), those columns are skipped with a reason."""
    declare(sessions, "vendor", DRIFT_50)
    rng = np.random.default_rng(0)
    items = [
        {
            "event_id": f"bare-{i}",
            "model": "m",
            "model_version": 1,
            "metadata": {"study_id": f"b-{i}", "site": "north", "manufacturer": "Acme"},
            "scores": dict.fromkeys(FINDINGS, 0.5),
            "embedding": rng.standard_normal(EMBEDDING_DIM).tolist(),
        }
        for i in range(50)
    ]
    with session_scope(sessions) as s:
        assert ingest_events(s, settings=settings, items=items).result.stored == 50
    assert run_all(sessions, settings) == 1
    (r,) = results(sessions, "vendor")
    assert "img_mean" in r.details["skipped_columns"]
    assert "mmd" in r.details["multivariate"]
