"""The candidate's drift reference: rebased on the recent data it was retrained and judged on.

A candidate trained because a site's acquisition changed (a new scanner vendor) is approved for
that new acquisition. If its reference profile kept only the original validation rows, the drift
monitor would keep flagging the very change the safety officer accepted, and any new problem at
that site would hide behind the old alert. So for each site named by the run's trigger alerts,
the site's reference rows become its labelled events *since the change* (from the first
significant window that led to the alert): embeddings, the candidate's scores, labels and
acquisition metadata, as recorded by the gateway. Other sites did not change and keep their
original rows, as does every site when fewer than ``MIN_SITE_REFERENCE`` post-change events are
labelled, or when the run was started by hand (no alert names a change). The MLflow run's
lineage records which sites were rebased and on how many events.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy.orm import Session

from pipelines.acquisition import CATEGORICAL_METADATA, IMAGE_STATS, NUMERIC_METADATA
from pipelines.model import RadiographNet
from pipelines.profile import METADATA_COLUMNS, ReferenceProfile
from pipelines.retrain import score_embeddings
from services.alerts import repository as alerts
from services.core.models import PredictionEvent
from services.events import repository as events_repository
from services.monitoring import repository as monitoring
from services.monitoring.drift import MIN_SITE_REFERENCE

#: Newest events per site that become the site's reference.
PER_SITE = 300


def _metadata(events: list[PredictionEvent]) -> pd.DataFrame:
    rows: list[dict[str, Any]] = []
    for e in events:
        row: dict[str, Any] = {"site": e.site}
        for c in CATEGORICAL_METADATA:
            row[c] = getattr(e, c, None)
        for c in NUMERIC_METADATA:
            value = getattr(e, c, None)
            row[c] = np.nan if value is None else float(value)
        for k in IMAGE_STATS:
            row[f"img_{k}"] = float(e.image_stats.get(k, np.nan))
        rows.append(row)
    return pd.DataFrame(rows, columns=list(METADATA_COLUMNS))


def rebase(
    session: Session,
    profile: ReferenceProfile,
    candidate: RadiographNet,
    *,
    event_ids: np.ndarray[Any, Any],
    labels: np.ndarray[Any, Any],
    since: dict[str, int],
    per_site: int = PER_SITE,
    min_site: int = MIN_SITE_REFERENCE,
) -> tuple[ReferenceProfile, dict[str, int]]:
    """``profile`` with the rows of each site in ``since`` (site -> first event id after the
    change) replaced by its newest labelled events from that id on.

    ``event_ids``/``labels`` are the run's labelled events in time order (row-aligned, labels
    int8 [N, F] with -1 for none); only events with every finding labelled are used, because
    the profile's labels calibrate the label-free performance estimate. Returns the profile and
    {site: rows now from post-change events}.
    """
    if not since:
        return profile, {}
    complete = (labels >= 0).all(axis=1)
    ids = [int(i) for i in event_ids[complete]]
    lab = labels[complete]
    if not ids:
        return profile, {}
    by_id = {e.id: e for e in events_repository.by_ids(session, ids)}
    events = [by_id[i] for i in ids if i in by_id]
    sites: dict[str, list[int]] = {}
    for row, e in enumerate(events):
        if e.site in since and e.id >= since[e.site]:
            sites.setdefault(e.site, []).append(row)
    rebased = {s: rows[-per_site:] for s, rows in sites.items() if len(rows) >= min_site}
    if not rebased:
        return profile, {}
    take = sorted(r for rows in rebased.values() for r in rows)
    chosen = [events[r] for r in take]
    emb = np.stack([np.frombuffer(e.embedding, dtype="<f4") for e in chosen]).astype(np.float32)
    if emb.shape[1] != profile.embedding_dim:
        return profile, {}
    recent = ReferenceProfile(
        embeddings=emb,
        scores=score_embeddings(candidate, emb),
        labels=lab[take].astype(np.int8),
        metadata=_metadata(chosen),
        findings=profile.findings,
    )
    keep = ~profile.metadata["site"].isin(list(rebased)).to_numpy()
    merged = ReferenceProfile(
        embeddings=np.concatenate([profile.embeddings[keep], recent.embeddings]),
        scores=np.concatenate([profile.scores[keep], recent.scores]),
        labels=np.concatenate([profile.labels[keep], recent.labels]),
        metadata=pd.concat(
            [profile.metadata.loc[keep].reset_index(drop=True), recent.metadata],
            ignore_index=True,
        ),
        findings=profile.findings,
    )
    return merged, {s: len(rows) for s, rows in rebased.items()}


def change_points(session: Session, alert_ids: list[int], *, lookback: int = 6) -> dict[str, int]:
    """Site -> first event id of the earliest significant window among the ``lookback`` windows
    up to each trigger alert's window: where the accepted change began."""
    out: dict[str, int] = {}
    for alert in alerts.by_ids(session, alert_ids):
        at = monitoring.get_result(session, alert.result_id)
        if at is None or alert.site == "*":
            continue
        first = monitoring.first_significant_event_id(
            session,
            monitor=at.monitor,
            model_name=at.model_name,
            site=at.site,
            windows=(at.window_index - lookback, at.window_index),
        )
        if first is not None:
            out[at.site] = min(first, out.get(at.site, first))
    return out
