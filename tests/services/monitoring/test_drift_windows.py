"""The windowed drift monitor on a real PostgreSQL: windows are cut per site, computed once,
and an alert opens after k of m drifted windows, never twice for the same site."""

from __future__ import annotations

from datetime import datetime

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from pipelines.contract import EMBEDDING_DIM, FINDINGS
from pipelines.profile import ReferenceProfile
from services.core.db import session_scope
from services.core.models import Alert, Deployment, Monitor, MonitorResult, PredictionEvent
from services.core.settings import Settings
from services.monitoring import drift, scheduler
from services.monitoring import service as monitors
from services.serving.service import deploy_champion
from tests.conftest import enqueuer_for

SITES = ("north", "south")
VENDOR = {"north": "Acme", "south": "Borealis"}


def _meta_row(rng: np.random.Generator, site: str, vendor: str, shift: float) -> dict[str, object]:
    return {
        "site": site,
        "manufacturer": vendor,
        "manufacturer_model": f"{vendor}-1",
        "view_position": "PA",
        "sex": "F",
        "race_ethnicity": "unknown",
        "kvp": float(rng.normal(110, 5)),
        "age": float(rng.integers(20, 90)),
        "img_mean": float(rng.normal(0.45 + shift, 0.03)),
        "img_std": float(rng.normal(0.2, 0.02)),
        "img_p01": float(rng.normal(0.05, 0.01)),
        "img_p99": float(rng.normal(0.9, 0.02)),
        "img_height": 256.0,
        "img_width": 256.0,
    }


def _profile(n_per_site: int = 150, seed: int = 0) -> ReferenceProfile:
    rng = np.random.default_rng(seed)
    rows = [_meta_row(rng, s, VENDOR[s], 0.0) for s in SITES for _ in range(n_per_site)]
    n = len(rows)
    return ReferenceProfile(
        embeddings=rng.standard_normal((n, EMBEDDING_DIM)).astype(np.float32),
        scores=rng.uniform(size=(n, len(FINDINGS))).astype(np.float32),
        labels=rng.integers(0, 2, size=(n, len(FINDINGS))).astype(np.int8),
        metadata=pd.DataFrame(rows),
    )


def _add_events(
    sessions: sessionmaker[Session], site: str, n: int, *, seed: int, shifted: bool = False
) -> None:
    rng = np.random.default_rng(seed)
    vendor = "Zenith" if shifted else VENDOR[site]
    with session_scope(sessions) as s:
        for i in range(n):
            meta = _meta_row(rng, site, vendor, 0.15 if shifted else 0.0)
            emb = rng.standard_normal(EMBEDDING_DIM) + (0.8 if shifted else 0.0)
            s.add(
                PredictionEvent(
                    event_id=f"{site}-{seed}-{i}",
                    model_name="m",
                    model_version=1,
                    study_pid=f"st_{seed}_{i}",
                    site=site,
                    manufacturer=vendor,
                    manufacturer_model=f"{vendor}-1",
                    view_position="PA",
                    kvp=meta["kvp"],
                    sex="F",
                    age=50.0,
                    scores={f: 0.5 for f in FINDINGS},
                    image_stats={k[4:]: v for k, v in meta.items() if k.startswith("img_")},
                    embedding=emb.astype("<f4").tobytes(),
                )
            )


@pytest.fixture
def deployment(sessions: sessionmaker[Session]) -> int:
    with session_scope(sessions) as s:
        d = deploy_champion(s, model_name="m", model_version=1, mlflow_run_id="r", triton_model="m")
    return d.id


def run_due(
    sessions: sessionmaker[Session],
    settings: Settings,
    profile: ReferenceProfile,
    *,
    now: datetime | None = None,
) -> int:
    """What a worker's tick does, one transaction per window, until no window is due; returns
    the number of windows computed."""
    computed = 0
    with session_scope(sessions) as s:
        targets = scheduler.due_targets(s)
    for t in targets:
        while True:
            with session_scope(sessions) as s:
                monitor = s.get(Monitor, t.monitor_id)
                dep = s.get(Deployment, t.deployment_id)
                assert monitor is not None
                assert dep is not None
                r = scheduler.compute_next_window(
                    s,
                    enqueuer=enqueuer_for(settings),
                    monitor=monitor,
                    deployment=dep,
                    profile=profile,
                    site=t.site,
                    now=now,
                )
            if r is None:
                break
            computed += 1
    return computed


def _run_all(sessions: sessionmaker[Session], settings: Settings, profile: ReferenceProfile) -> int:
    """The default drift monitor a deployment gets (window and policy from ``settings``), run
    until no window is due."""
    with session_scope(sessions) as s:
        monitors.ensure_default_drift(s, model_name="m", settings=settings)
    return run_due(sessions, settings, profile)


def test_no_shift_no_alert_and_windows_once(sessions, settings, deployment) -> None:  # type: ignore[no-untyped-def]
    cfg = settings.model_copy(update={"monitor_window": 50, "monitor_permutations": 200})
    profile = _profile()
    for site in SITES:
        _add_events(sessions, site, 160, seed=10 + SITES.index(site))
    assert _run_all(sessions, cfg, profile) == 6  # 3 complete windows per site; 10 events wait
    assert _run_all(sessions, cfg, profile) == 0  # nothing is computed twice
    with sessions() as s:
        assert s.scalar(select(func.count(Alert.id))) == 0
        drifted = s.scalar(select(func.count(MonitorResult.id)).where(MonitorResult.drift))
        assert drifted == 0


def test_vendor_switch_alerts_once_on_that_site(sessions, settings, deployment) -> None:  # type: ignore[no-untyped-def]
    cfg = settings.model_copy(update={"monitor_window": 50, "monitor_permutations": 200})
    profile = _profile()
    _add_events(sessions, "north", 250, seed=1)
    _add_events(sessions, "south", 100, seed=2)
    _add_events(sessions, "south", 150, seed=3, shifted=True)
    _run_all(sessions, cfg, profile)
    with sessions() as s:
        alerts = s.scalars(select(Alert)).all()
        assert [a.site for a in alerts] == ["south"]
        alert = alerts[0]
        assert "south" in alert.detail
        assert "manufacturer" in alert.detail
        # 2 of 3 windows: the alert opens at the second shifted window of south (window 3).
        result = s.get(MonitorResult, alert.result_id)
        assert result is not None
        assert result.window_index == 3
        assert alert.opened_after_predictions == s.scalar(
            select(func.count(PredictionEvent.id)).where(PredictionEvent.id <= result.last_event_id)
        )
    # More shifted data keeps the one alert open instead of opening another.
    _add_events(sessions, "south", 100, seed=4, shifted=True)
    _run_all(sessions, cfg, profile)
    with sessions() as s:
        assert s.scalar(select(func.count(Alert.id))) == 1


def test_permutation_count_lets_mmd_reach_corrected_significance(settings) -> None:  # type: ignore[no-untyped-def]
    n_tests = len(drift.CATEGORICAL) + len(drift.NUMERIC) + 1
    per_test_level = settings.monitor_alpha / n_tests
    needed = drift.permutations_needed(n_tests, settings.monitor_alpha)
    assert 1 / (needed + 1) <= per_test_level / 2


def test_embedding_shift_alone_is_detected(sessions, settings, deployment) -> None:  # type: ignore[no-untyped-def]
    """Same vendor and metadata, shifted embeddings: only the MMD can see it."""
    cfg = settings.model_copy(update={"monitor_window": 50})
    profile = _profile()
    rng = np.random.default_rng(5)
    with session_scope(sessions) as s:
        for i in range(50):
            meta = _meta_row(rng, "north", VENDOR["north"], 0.0)
            s.add(
                PredictionEvent(
                    event_id=f"emb-{i}",
                    model_name="m",
                    model_version=1,
                    study_pid=f"st_e{i}",
                    site="north",
                    manufacturer=VENDOR["north"],
                    manufacturer_model=f"{VENDOR['north']}-1",
                    view_position="PA",
                    kvp=meta["kvp"],
                    sex="F",
                    age=50.0,
                    scores={f: 0.5 for f in FINDINGS},
                    image_stats={k[4:]: v for k, v in meta.items() if k.startswith("img_")},
                    embedding=(rng.standard_normal(EMBEDDING_DIM) + 1.0).astype("<f4").tobytes(),
                )
            )
    _run_all(sessions, cfg, profile)
    with sessions() as s:
        result = s.scalars(select(MonitorResult)).one()
    assert result.drift
    assert result.details["multivariate"]["mmd"]["drift"]
    assert not any(c["drift"] for c in result.details["columns"].values())
