"""Probe retraining: refit a probe's heads on the stored embeddings of its labelled events.

A probe (linear heads over a frozen foundation encoder, :mod:`pipelines.probes`) needs no
pixels to retrain: the gateway stored the encoder's embedding with every prediction, so the
heads are refitted on the older labelled events in seconds, and the dossier judges both
versions on the newest ones (the same time split as any retraining run). The candidate stays
pinned to the champion's encoder version. Its reference profile is the champion's rows with the
candidate's scores, so the drift monitors keep comparing the same acquisitions.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy.orm import Session, sessionmaker

from pipelines.dossier import DossierInputs, EvaluationSet
from pipelines.probes import apply, fit_probes, load
from pipelines.profile import ReferenceProfile
from pipelines.spec import ModelSpec
from services.approvals import service as approvals
from services.change_protocols.document import ChangeProtocolDocument
from services.core.db import session_scope
from services.core.errors import ValidationFailedError, pipeline_errors
from services.core.ports import ModelRegistry
from services.registry.probes import register_probe
from services.retraining import dossiers
from services.retraining.service import (
    CANDIDATE_ALIAS,
    Progress,
    get,
    mark_succeeded,
    record_candidate,
)
from services.serving.probes import L2


@dataclass(frozen=True)
class ProbeRun:
    """What the run loaded before it knew it was a probe's."""

    run_id: int
    actor: str
    model_name: str
    parent: int
    spec: ModelSpec
    finding: str
    threshold: float
    protocol_version: int
    protocol: ChangeProtocolDocument
    snapshot: dossiers.EventSnapshot
    train_part: dossiers.EventSnapshot
    held: dossiers.EventSnapshot
    drift: dict[str, Any]
    requested_by: str


def refit_probe(
    sessions: sessionmaker[Session], registry: ModelRegistry, job: ProbeRun, report: Progress
) -> int:
    """Fit, register (alias ``candidate``), write the dossier and open the approval request;
    the candidate's version."""
    spec, name = job.spec, job.model_name
    assert spec.encoder is not None
    assert spec.findings is not None
    with tempfile.TemporaryDirectory(prefix="radwatch-probe-") as tmp:
        champion = load(registry.download_serving_artifact(name, job.parent, Path(tmp)))
    reference = registry.load_reference_profile(name, job.parent)
    report("training", 0, 1)
    started = time.perf_counter()
    with pipeline_errors():
        candidate = fit_probes(
            job.train_part.embeddings,
            job.train_part.labels,
            spec.findings.names,
            encoder=spec.encoder,
            l2=L2,
        )
    seconds = time.perf_counter() - started
    report("training", 1, 1)
    if candidate.weights.shape != champion.weights.shape:
        raise ValidationFailedError(
            f"The refitted heads have shape {candidate.weights.shape}, the champion's "
            f"{champion.weights.shape}; the stored embeddings do not match the encoder."
        )

    report("registering", 0, 1)
    profile = ReferenceProfile(
        embeddings=reference.embeddings,
        scores=apply(candidate, reference.embeddings),
        labels=reference.labels,
        metadata=reference.metadata,
        findings=reference.findings,
    )
    with session_scope(sessions) as session:
        registered = register_probe(
            registry,
            name=name,
            probe=candidate,
            spec=spec,
            profile=profile,
            params={
                "retraining_run": job.run_id,
                "parent_version": job.parent,
                "n_train_events": len(job.train_part),
                "n_holdout_events": len(job.held),
                "fit_seconds": round(seconds, 3),
                "l2": L2,
            },
            session=session,
            actor=job.actor,
        )
    registry.set_alias(name, CANDIDATE_ALIAS, registered.version)
    lineage = {
        "kind": "probe-refit",
        "candidate_version": registered.version,
        "mlflow_run_id": registered.run_id,
        "encoder": f"{spec.encoder.name}:{spec.encoder.version}",
        "n_train_events": len(job.train_part),
        "n_holdout_events": len(job.held),
        "fit_seconds": round(seconds, 3),
    }
    with session_scope(sessions) as session:
        run = get(session, job.run_id, for_update=True)
        record_candidate(
            session,
            run,
            actor=job.actor,
            version=registered.version,
            mlflow_run_id=registered.run_id,
            lineage=lineage,
        )
    report("registering", 1, 1)

    j = job.held.findings.index(job.finding)
    champion_scores = job.held.scores[:, j]
    if not np.isfinite(champion_scores).all():
        raise ValidationFailedError(
            f"Some held-out events have no stored '{job.finding}' score; the champion's "
            "production scores are needed for the paired comparison."
        )
    evaluation = EvaluationSet(
        labels=job.held.labels[:, j] == 1,
        champion_scores=champion_scores.astype(np.float64),
        candidate_scores=apply(candidate, job.held.embeddings)[:, j].astype(np.float64),
        attributes=dict(job.held.attributes),
    )
    report("evaluating", 0, 1)
    inputs = DossierInputs(
        model_name=name,
        candidate_version=registered.version,
        champion_version=job.parent,
        protocol_version=job.protocol_version,
        criteria=dossiers.criteria_for(job.protocol, job.threshold),
        evaluation=evaluation,
        training_attributes=job.train_part.attributes,
        robustness={"error": "a probe refit is judged on stored embeddings; no pixels to perturb"},
        drift_evidence=job.drift,
        retraining_run_id=job.run_id,
        evaluation_source={
            "held_out_events": len(job.held),
            "embeddings": f"stored by the gateway from {spec.encoder.name} v{spec.encoder.version}",
        },
    )
    document, html = dossiers.render(inputs)
    report("evaluating", 1, 1)
    with session_scope(sessions) as session:
        run = get(session, job.run_id, for_update=True)
        dossier = dossiers.store(
            session, document=document, html=html, retraining_run_id=job.run_id, actor=job.actor
        )
        approvals.open_request(
            session,
            model_name=name,
            candidate_version=registered.version,
            dossier_id=dossier.id,
            criteria_passed=dossier.passed,
            protocol=job.protocol,
            requested_by=job.requested_by,
            conflicted=[job.requested_by, job.actor],
        )
        mark_succeeded(session, run, actor=job.actor, dossier_id=dossier.id, passed=dossier.passed)
    return registered.version
