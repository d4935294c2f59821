"""Evaluation dossiers: gather the evidence for a candidate, compute and render it
(:mod:`pipelines.dossier`, :mod:`pipelines.dossier_report`), store it, and read it back.

The evidence is the labelled production events of the champion version, in time order. A run
trains on the older part and the dossier judges on the newest part (see
:meth:`EventSnapshot.split`), so both models are compared on the same cases, which neither was
fitted to. Services never commit: the caller's unit of work does.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from sqlalchemy.orm import Session

from pipelines.dossier import DossierCriteria, DossierInputs, EvaluationSet
from pipelines.dossier import build_document as build_dossier_document
from pipelines.dossier_report import render_html, render_plots
from pipelines.model import RadiographNet
from pipelines.perturb import evaluate_robustness
from pipelines.retrain import NO_LABEL, score_embeddings, split_by_time
from pipelines.synth import RadiographGenerator
from services.alerts import repository as alerts_repository
from services.audit import actions
from services.audit.service import record
from services.change_protocols.document import ChangeProtocolDocument
from services.core.errors import NotFoundError, ValidationFailedError
from services.core.models import Dossier, PredictionEvent
from services.labels import repository as labels
from services.monitoring import repository as monitoring
from services.monitoring.kinds import age_band
from services.retraining import repository

#: Seed of the synthetic robustness studies: a stream no training run uses by default, so the
#: robustness set is patients neither model saw.
ROBUSTNESS_SEED = 7919
#: Monitor windows per (monitor, site) shown in the drift timeline.
TIMELINE_WINDOWS = 50
#: Smallest held-out set that can carry a dossier (and at least this many of each class).
MIN_HOLDOUT, MIN_HOLDOUT_CLASS = 30, 5

ObjectArray = npt.NDArray[np.object_]


@dataclass(frozen=True)
class EventSnapshot:
    """Labelled events of one model version in time order, row-aligned.

    ``labels`` int8 [N, F] (``NO_LABEL`` = none), ``scores`` float64 [N, F] the probabilities the
    model produced in production (NaN if missing), ``attributes`` sex, age_band, site, vendor
    and race_ethnicity (None if unknown).
    """

    event_ids: npt.NDArray[np.int64]
    embeddings: npt.NDArray[np.float32]
    labels: npt.NDArray[np.int8]
    scores: npt.NDArray[np.float64]
    attributes: Mapping[str, ObjectArray]
    #: The model's findings (its spec's), the column order of ``labels`` and ``scores``.
    findings: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.event_ids)

    def rows(self, sl: slice) -> EventSnapshot:
        return EventSnapshot(
            event_ids=self.event_ids[sl],
            embeddings=self.embeddings[sl],
            labels=self.labels[sl],
            scores=self.scores[sl],
            attributes={k: v[sl] for k, v in self.attributes.items()},
            findings=self.findings,
        )

    def split(self, holdout_fraction: float, finding: str) -> tuple[EventSnapshot, EventSnapshot]:
        """(training, held-out): the newest ``holdout_fraction`` are held out. 422 when the
        held-out part is too small or lacks a class for ``finding``."""
        try:
            cut = split_by_time(len(self), holdout_fraction, min_holdout=MIN_HOLDOUT)
        except ValueError:
            raise ValidationFailedError(
                f"{len(self)} labelled events are too few to hold out {MIN_HOLDOUT} for the "
                "dossier and train on the rest."
            ) from None
        train, held = self.rows(slice(0, cut)), self.rows(slice(cut, None))
        y = held.labels[:, self.findings.index(finding)]
        n_pos, n_neg = int((y == 1).sum()), int((y == 0).sum())
        if min(n_pos, n_neg) < MIN_HOLDOUT_CLASS:
            raise ValidationFailedError(
                f"The held-out events have {n_pos} positive and {n_neg} negative '{finding}' "
                f"labels; the dossier needs at least {MIN_HOLDOUT_CLASS} of each. Wait for more "
                "labels or raise holdout_fraction."
            )
        return train, held


def _attributes(events: Sequence[PredictionEvent]) -> dict[str, ObjectArray]:
    def col(values: list[Any]) -> ObjectArray:
        return np.array(values, dtype=object)

    return {
        "sex": col([e.sex or None for e in events]),
        "age_band": col([age_band(e.age) if e.age is not None else None for e in events]),
        "site": col([e.site for e in events]),
        "vendor": col([e.manufacturer or None for e in events]),
        "race_ethnicity": col([e.race_ethnicity or None for e in events]),
    }


def load_events(
    session: Session,
    *,
    model_name: str,
    version: int,
    finding: str,
    max_events: int,
    findings: tuple[str, ...],
) -> EventSnapshot:
    """The newest ``max_events`` events of ``model_name`` ``version`` labelled for ``finding``,
    oldest first (by the producer's time, else storage time), with the label of each of the
    model's ``findings``."""
    if finding not in findings:
        raise ValidationFailedError(
            f"'{finding}' is not a finding of '{model_name}' ({', '.join(findings)})."
        )
    rows = [
        (e, label)
        for e, label in labels.labelled_events(session, model_name=model_name, finding=finding)
        if e.model_version == version
    ]
    rows.sort(key=lambda r: (r[0].occurred_at or r[0].created_at, r[0].id))
    rows = rows[-max_events:]
    events = [e for e, _ in rows]
    pids = [e.study_pid for e in events]
    lab = np.full((len(events), len(findings)), NO_LABEL, dtype=np.int8)
    for j, f in enumerate(findings):
        known = (
            {e.study_pid: label for e, label in rows}
            if f == finding
            else labels.labels_for_events(session, pids, finding=f)
        )
        lab[:, j] = [int(known[p]) if p in known else NO_LABEL for p in pids]
    dims = {len(e.embedding) // 4 for e in events}
    if len(dims) > 1:
        raise ValidationFailedError(
            f"Events of '{model_name}' version {version} carry embeddings of different lengths "
            f"{sorted(dims)}; they cannot be retrained on together."
        )
    dim = dims.pop() if dims else 0
    emb = np.zeros((len(events), dim), dtype=np.float32)
    for i, e in enumerate(events):
        emb[i] = np.frombuffer(e.embedding, dtype="<f4")
    scores = np.array(
        [[float(e.scores.get(f, math.nan)) for f in findings] for e in events], dtype=np.float64
    ).reshape(len(events), len(findings))
    return EventSnapshot(
        event_ids=np.array([e.id for e in events], dtype=np.int64),
        embeddings=emb,
        labels=lab,
        scores=scores,
        attributes=_attributes(events),
        findings=findings,
    )


def evaluation_set(held: EventSnapshot, candidate: RadiographNet, finding: str) -> EvaluationSet:
    """Both models on the held-out events: the champion's stored production scores, the
    candidate's heads on the stored embeddings."""
    j = held.findings.index(finding)
    champion_scores = held.scores[:, j]
    if not np.isfinite(champion_scores).all():
        raise ValidationFailedError(
            f"Some held-out events have no stored '{finding}' score; the champion's production "
            "scores are needed for the paired comparison."
        )
    return EvaluationSet(
        labels=held.labels[:, j] == 1,
        champion_scores=champion_scores.astype(np.float64),
        candidate_scores=score_embeddings(candidate, held.embeddings)[:, j].astype(np.float64),
        attributes=dict(held.attributes),
    )


def criteria_for(protocol: ChangeProtocolDocument, threshold: float) -> DossierCriteria:
    """The protocol's acceptance criteria; the operating point defaults to the deployment's."""
    a = protocol.acceptance
    return DossierCriteria(
        finding=a.finding,
        noninferiority_margin=a.auroc_noninferiority_margin,
        min_sensitivity=a.min_sensitivity,
        operating_threshold=a.operating_threshold
        if a.operating_threshold is not None
        else threshold,
        max_subgroup_gap=dict(a.max_subgroup_gap),
        max_ece=a.max_ece,
        perturbations=tuple(a.robustness.perturbations),
        max_auroc_drop=a.robustness.max_auroc_drop,
        alpha=a.alpha,
    )


def drift_evidence(
    session: Session, *, model_name: str, alert_ids: Sequence[int], trigger: str
) -> dict[str, Any]:
    """The alerts behind the run and their monitors' windows over time (oldest first). A run
    started by hand names no alerts; the model's unresolved alerts are then shown as context."""
    if alert_ids:
        alerts = list(alerts_repository.by_ids(session, alert_ids))
        note = "Alerts that met the protocol's persistence rule and triggered the run."
    else:
        alerts = list(alerts_repository.unresolved(session, model_name))
        note = "Requested by hand; unresolved alerts of the model at the time are shown."
    timeline = []
    for monitor, site in sorted({(a.monitor, a.site) for a in alerts}):
        windows = monitoring.recent_results(
            session, monitor=monitor, model_name=model_name, site=site, limit=TIMELINE_WINDOWS
        )
        timeline.append(
            {
                "monitor": monitor,
                "site": site,
                "points": [
                    {
                        "window_index": w.window_index,
                        "created_at": w.created_at.isoformat(),
                        "n_current": w.n_current,
                        "statistic": w.statistic,
                        "p_value": w.p_value,
                        "drift": w.drift,
                    }
                    for w in reversed(windows)
                ],
            }
        )
    return {
        "trigger": trigger,
        "note": note,
        "alerts": [
            {
                "id": a.id,
                "monitor": a.monitor,
                "site": a.site,
                "severity": a.severity,
                "state": str(a.state),
                "opened_at": a.opened_at.isoformat(),
                "detail": a.detail,
            }
            for a in sorted(alerts, key=lambda a: a.id)
        ],
        "timeline": timeline,
    }


def compute(
    inputs: DossierInputs,
    *,
    candidate: RadiographNet,
    champion: RadiographNet,
    robustness_studies: int,
    progress: Callable[[str, int, int], None] | None = None,
) -> tuple[dict[str, Any], str]:
    """The document (with plots) and its HTML page. ``inputs.robustness`` is filled here: the
    protocol's perturbations on synthetic studies through both full models."""
    report = progress or (lambda stage, done, total: None)
    report("evaluating", 0, 3)
    studies = RadiographGenerator(ROBUSTNESS_SEED).generate(robustness_studies)
    robustness = evaluate_robustness(
        candidate,
        champion,
        studies,
        finding=inputs.criteria.finding,
        perturbations=inputs.criteria.perturbations,
        alpha=inputs.criteria.alpha,
        seed=inputs.seed,
    )
    del studies
    report("evaluating", 1, 3)
    document, html = render(dataclasses.replace(inputs, robustness=robustness))
    report("evaluating", 3, 3)
    return document, html


def render(inputs: DossierInputs) -> tuple[dict[str, Any], str]:
    """The document (with its plots) and its self-contained HTML page."""
    document = build_dossier_document(inputs)
    document["plots"] = render_plots(document)
    return document, render_html(document)


def store(
    session: Session,
    *,
    document: Mapping[str, Any],
    html: str,
    retraining_run_id: int | None,
    actor: str,
) -> Dossier:
    """Store the dossier and audit ``dossier.created`` (the caller commits)."""
    row = Dossier(
        model_name=document["model"],
        candidate_version=int(document["candidate_version"]),
        champion_version=int(document["champion_version"]),
        retraining_run_id=retraining_run_id,
        protocol_version=int(document["protocol_version"]),
        passed=bool(document["passed"]),
        document=dict(document),
        html=html,
    )
    repository.add_dossier(session, row)
    record(
        session,
        actor=actor,
        action=actions.DOSSIER_CREATED,
        entity_type=actions.DOSSIER,
        entity_id=row.id,
        payload={
            "model": row.model_name,
            "candidate_version": row.candidate_version,
            "champion_version": row.champion_version,
            "protocol_version": row.protocol_version,
            "retraining_run_id": retraining_run_id,
            "passed": row.passed,
            "criteria": {c["name"]: c["passed"] for c in document["criteria"]},
        },
    )
    return row


def get(session: Session, dossier_id: int) -> Dossier:
    row = repository.dossier(session, dossier_id)
    if row is None:
        raise NotFoundError(
            f"No dossier {dossier_id}; a run's dossier id is in GET /v1/retraining/{{id}}."
        )
    return row
