"""The candidate's reference is rebased only where the accepted change happened, and only on the
events since it began (real PostgreSQL)."""

from __future__ import annotations

import numpy as np
import pandas as pd
from sqlalchemy.orm import Session, sessionmaker

from pipelines.contract import EMBEDDING_DIM, FINDINGS
from pipelines.profile import METADATA_COLUMNS, ReferenceProfile
from services.core.db import session_scope
from services.core.models import Alert, MonitorResult, PredictionEvent
from services.retraining.reference import change_points, rebase
from tests.fixtures.triton import make_test_model

MODEL = "cxr-ref"


def _profile(sites: dict[str, int]) -> ReferenceProfile:
    n = sum(sites.values())
    rng = np.random.default_rng(0)
    meta = pd.DataFrame({c: ["x"] * n for c in METADATA_COLUMNS})
    meta["site"] = [s for s, k in sites.items() for _ in range(k)]
    meta["manufacturer"] = "Acme"
    return ReferenceProfile(
        embeddings=rng.normal(size=(n, EMBEDDING_DIM)).astype(np.float32),
        scores=rng.uniform(size=(n, len(FINDINGS))).astype(np.float32),
        labels=np.zeros((n, len(FINDINGS)), dtype=np.int8),
        metadata=meta,
    )


def _events(session: Session, site: str, n: int, vendor: str, start: int) -> list[int]:
    rng = np.random.default_rng(start)
    ids = []
    for i in range(n):
        e = PredictionEvent(
            event_id=f"{site}-{start + i}",
            model_name=MODEL,
            model_version=1,
            study_pid=f"p{site}{start + i}",
            site=site,
            manufacturer=vendor,
            kvp=110.0,
            sex="F",
            age=60.0,
            scores={f: 0.5 for f in FINDINGS},
            image_stats={"mean": 0.4, "std": 0.2},
            embedding=rng.normal(size=EMBEDDING_DIM).astype("<f4").tobytes(),
        )
        session.add(e)
        session.flush()
        ids.append(e.id)
    return ids


def _window(session: Session, site: str, index: int, first: int, drift: bool) -> MonitorResult:
    r = MonitorResult(
        monitor="acquisition_drift",
        model_name=MODEL,
        model_version=1,
        site=site,
        window_index=index,
        first_event_id=first,
        last_event_id=first + 49,
        n_current=50,
        n_reference=100,
        statistic=1.0,
        p_value=0.001 if drift else 0.5,
        drift=drift,
        details={},
    )
    session.add(r)
    session.flush()
    return r


def test_only_the_changed_site_is_rebased_on_post_change_events(
    sessions: sessionmaker[Session],
) -> None:
    with session_scope(sessions) as s:
        north = _events(s, "north", 120, "Acme", 0)
        south_old = _events(s, "south", 100, "Acme", 1000)
        south_new = _events(s, "south", 80, "Delta", 2000)
        _window(s, "south", 0, south_old[0], drift=False)
        _window(s, "south", 1, south_old[50], drift=False)
        _window(s, "south", 2, south_new[0], drift=True)
        last = _window(s, "south", 3, south_new[50] if len(south_new) > 50 else south_new[-1], True)
        alert = Alert(
            monitor="acquisition_drift",
            model_name=MODEL,
            site="south",
            severity="warning",
            detail="t",
            result_id=last.id,
            opened_after_predictions=300,
        )
        s.add(alert)
        s.flush()
        since = change_points(s, [alert.id])
        assert since == {"south": south_new[0]}

        ids = np.array(north + south_old + south_new, dtype=np.int64)
        labels = np.zeros((len(ids), len(FINDINGS)), dtype=np.int8)
        profile = _profile({"north": 60, "south": 60})
        out, rebased = rebase(
            s, profile, make_test_model(1), event_ids=ids, labels=labels, since=since
        )
    assert rebased == {"south": 80}
    south = out.for_site("south")
    assert len(south) == 80
    assert set(south.metadata["manufacturer"]) == {"Delta"}
    assert len(out.for_site("north")) == 60  # untouched: no change was accepted there

    # A hand-started run names no change: nothing is rebased.
    with session_scope(sessions) as s:
        same, none = rebase(s, profile, make_test_model(1), event_ids=ids, labels=labels, since={})
    assert none == {}
    assert same is profile
