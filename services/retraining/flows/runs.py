"""Executing a retraining run (a flow: it owns its short transactions, because a run takes
minutes): the pipeline, the MLflow run with its lineage, the candidate, the rebased reference,
the dossier and the approval request. Requests, triggers and run records are
:mod:`services.retraining.service`."""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.metadata
import json
import logging
import math
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from pipelines.dossier import DossierInputs
from pipelines.retrain import RecentData, RetrainConfig, config_from_params, retrain
from pipelines.spec import ModelSpec
from pipelines.train import TrainConfig
from services.approvals import service as approvals
from services.audit import actions
from services.change_protocols import service as protocols
from services.core.db import session_scope
from services.core.errors import RadwatchError, ValidationFailedError
from services.core.models import RetrainingRun, RetrainingState
from services.core.ports import ModelRegistry
from services.core.runtime import Runtime
from services.registry.service import RegisteredModel, record_registration
from services.retraining import dossiers, repository
from services.retraining import reference as reference_profile
from services.retraining.evaluations import EVALUATION_KIND
from services.retraining.flows.candidates import evaluate_run
from services.retraining.flows.external import ExternalRun, run_external
from services.retraining.flows.probes import ProbeRun, refit_probe
from services.retraining.service import (
    _STAGES,
    CANDIDATE_ALIAS,
    Progress,
    get,
    mark_failed,
    mark_running,
    mark_succeeded,
    record_candidate,
)
from services.serving import repository as deployments

#: Progress is committed at most this often (seconds), and on every stage change.
log = logging.getLogger(__name__)

PROGRESS_INTERVAL_S = 1.0


class _ProgressWriter:
    """Commits a run's progress in its own short transactions, so a watcher (API, CLI) sees it
    while the run's work is in flight; throttled so training is not slowed by the database."""

    def __init__(
        self, sessions: sessionmaker[Session], run_id: int, forward: Progress | None
    ) -> None:
        self.sessions, self.run_id, self.forward = sessions, run_id, forward
        self.stage, self.last = "", 0.0

    def __call__(self, stage: str, done: int, total: int) -> None:
        if self.forward is not None:
            self.forward(stage, done, total)
        now = time.monotonic()
        if stage == self.stage and now - self.last < PROGRESS_INTERVAL_S and done < total:
            return
        self.stage, self.last = stage, now
        lo, hi = _STAGES.get(stage, (0.0, 0.0))
        value = lo + (hi - lo) * (done / total if total > 0 else 1.0)
        with session_scope(self.sessions) as session:
            repository.set_progress(
                session, self.run_id, progress=round(value, 4), message=f"{stage} {done}/{total}"
            )


def code_version() -> str:
    """``git:<commit>`` of the running code when it is a git checkout, else the package
    version (an installed wheel has no .git)."""
    root = Path(__file__).resolve().parents[2]
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        )
        return f"git:{out.stdout.strip()}"
    except (OSError, subprocess.SubprocessError):
        try:
            return f"radwatch=={importlib.metadata.version('radwatch')}"
        except importlib.metadata.PackageNotFoundError:
            return "unknown"


def short_message(exc: BaseException) -> str:
    """A one-line reason for a failed run: the domain error's message, or the exception's type
    and first line. Never a traceback (that goes to the worker log)."""
    if isinstance(exc, RadwatchError):
        text_ = exc.message
    else:
        first = (str(exc).strip().splitlines() or [""])[0]
        text_ = f"{type(exc).__name__}: {first}" if first else type(exc).__name__
    return text_.strip()[:300]


def execute_run(
    sessions: sessionmaker[Session],
    registry: ModelRegistry,
    run_id: int,
    *,
    actor: str = actions.ACTOR_WORKER,
    progress: Progress | None = None,
    runtime: Runtime | None = None,
) -> RetrainingRun | None:
    """Run a queued run end to end: train (:func:`pipelines.retrain.retrain`), log to MLflow
    with lineage, register the candidate and point ``candidate`` at it, build and store the
    dossier, open the approval request. Returns the finished run, or None when the run was not
    queued (a duplicate task message). Any failure marks the run failed with a short message.
    A probe is refitted (:mod:`.probes`); a spec with ``external`` retraining runs its own
    entry point (:mod:`.external`, which needs the worker's ``runtime`` for Triton).
    """
    with session_scope(sessions) as session:
        run = get(session, run_id, for_update=True)
        if run.state != RetrainingState.QUEUED:
            log.info("retraining run %d is %s, not queued; nothing to do", run_id, run.state)
            return None
        mark_running(session, run, actor=actor)
        judged_only = run.lineage.get("kind") == EVALUATION_KIND
    registered: int | None = None
    try:
        if judged_only:
            report = _ProgressWriter(sessions, run_id, progress)
            registered = evaluate_run(sessions, runtime, run_id, actor, report)
        else:
            registered = _execute(sessions, registry, run_id, actor, progress, runtime)
    except Exception as exc:
        log.exception("retraining run %d failed", run_id)
        _fail(sessions, registry, run_id, exc, actor, registered)
    with session_scope(sessions) as session:
        return get(session, run_id)


def _fail(
    sessions: sessionmaker[Session],
    registry: ModelRegistry,
    run_id: int,
    exc: BaseException,
    actor: str,
    candidate: int | None,
) -> None:
    with session_scope(sessions) as session:
        run = get(session, run_id, for_update=True)
        candidate = candidate or run.candidate_version
        model_name = run.model_name
        mark_failed(session, run, actor=actor, message=short_message(exc))
    if candidate is not None:
        # A candidate without a dossier can never be approved; do not leave the alias on it.
        with contextlib.suppress(Exception):
            if registry.get_by_alias(model_name, CANDIDATE_ALIAS).version == candidate:
                registry.delete_alias(model_name, CANDIDATE_ALIAS)


def _execute(
    sessions: sessionmaker[Session],
    registry: ModelRegistry,
    run_id: int,
    actor: str,
    progress: Progress | None,
    runtime: Runtime | None = None,
) -> int:
    report = _ProgressWriter(sessions, run_id, progress)
    report("loading", 0, 1)
    with session_scope(sessions) as session:
        run = get(session, run_id)
        champion_spec = _champion_spec(registry, run.model_name, run.parent_version)
        assert champion_spec.findings is not None
        champion_findings = champion_spec.findings.names
        params, lineage = dict(run.params), dict(run.lineage)
        model_name, parent, trigger = run.model_name, run.parent_version, run.trigger
        requested_by = run.requested_by
        protocol_row = protocols.get(session, model_name, int(lineage["protocol_version"]))
        protocol = protocols.parse(protocol_row.document)
        deployment = deployments.by_version(session, model_name, parent)
        threshold = deployment.operating_threshold if deployment is not None else 0.5
        finding = str(params["finding"])
        snapshot = dossiers.load_events(
            session,
            model_name=model_name,
            version=parent,
            finding=finding,
            max_events=int(params["max_events"]),
            findings=champion_findings,
        )
        train_part, held = snapshot.split(float(params["holdout_fraction"]), finding)
        drift = dossiers.drift_evidence(
            session,
            model_name=model_name,
            alert_ids=lineage.get("trigger_alert_ids", []),
            trigger=trigger,
        )
    if champion_spec.retraining.kind == "external":
        return run_external(
            sessions,
            runtime,
            ExternalRun(
                run_id=run_id,
                actor=actor,
                model_name=model_name,
                parent=parent,
                spec=champion_spec,
                snapshot=snapshot,
                requested_by=requested_by,
            ),
            report,
        )
    if champion_spec.runtime == "probe":
        return refit_probe(
            sessions,
            registry,
            ProbeRun(
                run_id=run_id,
                actor=actor,
                model_name=model_name,
                parent=parent,
                spec=champion_spec,
                finding=finding,
                threshold=threshold,
                protocol_version=protocol_row.version,
                protocol=protocol,
                snapshot=snapshot,
                train_part=train_part,
                held=held,
                drift=drift,
                requested_by=requested_by,
            ),
            report,
        )
    champion_info = registry.get_version(model_name, parent)
    champion_model = registry.load_model(model_name, parent)
    reference = registry.load_reference_profile(model_name, parent)
    original = config_from_params(registry.run_params(champion_info.run_id))
    report("loading", 1, 1)

    config = RetrainConfig(
        epochs=int(params["epochs"]),
        batch_size=int(params["batch_size"]),
        lr=float(params["lr"]),
        replay_fraction=float(params["replay_fraction"]),
        seed=int(params["seed"]),
    )
    recent = RecentData(train_part.event_ids, train_part.embeddings, train_part.labels)
    result = retrain(
        champion_model,
        recent,
        config=config,
        reference=reference,
        original=original,
        progress=report,
    )

    # The accepted acquisition becomes the reference of the sites it covers (see reference.py).
    with session_scope(sessions) as session:
        since = reference_profile.change_points(
            session, [int(i) for i in lineage.get("trigger_alert_ids", [])]
        )
        profile, rebased = reference_profile.rebase(
            session,
            result.profile,
            result.model,
            event_ids=snapshot.event_ids,
            labels=snapshot.labels,
            since=since,
        )

    report("registering", 0, 1)
    new_lineage = {
        "reference_rebased_sites": rebased,
        "data_snapshot_sha256": result.snapshot_hash,
        "code_version": code_version(),
        "replay_source": result.replay_source,
        "n_replay": len(result.replay_indices),
        "n_train_events": len(train_part),
        "n_holdout_events": len(held),
        "parent_run_id": champion_info.run_id,
        "notes": result.notes,
    }
    mlflow_run_id = registry.log_training(
        experiment=model_name,
        run_name=f"retrain-{run_id}",
        params=_mlflow_params(original, config, params, new_lineage, parent, run_id),
        metrics={k: v for k, v in result.metrics.items() if math.isfinite(v)},
        model=result.model,
        profile=profile,
        model_card=_card(model_name, parent, run_id, result.replay_source, new_lineage),
        tags=_lineage_tags(run_id, parent, trigger, lineage, new_lineage, config.seed),
    )
    registry.log_text(
        mlflow_run_id,
        json.dumps(
            {
                "train_event_ids": train_part.event_ids.tolist(),
                "holdout_event_ids": held.event_ids.tolist(),
                "replay_source": result.replay_source,
                "replay_indices": result.replay_indices.tolist(),
                "seed": config.seed,
            }
        ),
        "lineage/snapshot.json",
    )
    version = registry.register(
        model_name, mlflow_run_id, description=f"Retraining run {run_id} of version {parent}."
    )
    registry.set_alias(model_name, CANDIDATE_ALIAS, version)
    with session_scope(sessions) as session:
        run = get(session, run_id, for_update=True)
        record_candidate(
            session,
            run,
            actor=actor,
            version=version,
            mlflow_run_id=mlflow_run_id,
            lineage={**new_lineage, "candidate_version": version, "mlflow_run_id": mlflow_run_id},
        )
        record_registration(
            session,
            RegisteredModel(model_name, version, mlflow_run_id, result.metrics),
            actor=actor,
            alias=CANDIDATE_ALIAS,
        )
    report("registering", 1, 1)

    inputs = DossierInputs(
        model_name=model_name,
        candidate_version=version,
        champion_version=parent,
        protocol_version=protocol_row.version,
        criteria=dossiers.criteria_for(protocol, threshold),
        evaluation=dossiers.evaluation_set(held, result.model, finding),
        training_attributes=train_part.attributes,
        robustness={},
        drift_evidence=drift,
        replay={"source": result.replay_source, "n": len(result.replay_indices)},
        retraining_run_id=run_id,
        seed=config.seed,
    )
    document, html = dossiers.compute(
        inputs,
        candidate=result.model,
        champion=champion_model,
        robustness_studies=int(params["robustness_studies"]),
        progress=report,
    )
    registry.log_text(mlflow_run_id, json.dumps(document), "dossier/dossier.json")
    registry.log_text(mlflow_run_id, html, "dossier/dossier.html")
    with session_scope(sessions) as session:
        run = get(session, run_id, for_update=True)
        dossier = dossiers.store(
            session, document=document, html=html, retraining_run_id=run_id, actor=actor
        )
        approvals.open_request(
            session,
            model_name=model_name,
            candidate_version=version,
            dossier_id=dossier.id,
            criteria_passed=dossier.passed,
            protocol=protocol,
            requested_by=run.requested_by,
            conflicted=[run.requested_by, actor],
        )
        mark_succeeded(session, run, actor=actor, dossier_id=dossier.id, passed=dossier.passed)
    return version


def _champion_spec(registry: ModelRegistry, model_name: str, version: int) -> ModelSpec:
    spec = registry.load_spec(model_name, version)
    if spec.findings is None or spec.retraining.kind == "none":
        raise ValidationFailedError(
            f"'{model_name}' version {version} declares retraining '{spec.retraining.kind}'"
            + ("" if spec.findings else " and has no findings")
            + "; radwatch retrains models whose spec says 'probe' or 'external'. Register a "
            "candidate with `radwatch models import` and `radwatch candidates evaluate`."
        )
    return spec


def _mlflow_params(
    original: TrainConfig | None,
    config: RetrainConfig,
    params: Mapping[str, Any],
    lineage: Mapping[str, Any],
    parent: int,
    run_id: int,
) -> dict[str, object]:
    """The original TrainConfig unprefixed (so this candidate's own successors can regenerate
    the same replay data) and the retraining settings prefixed ``retrain_``."""
    out: dict[str, object] = dict(dataclasses.asdict(original)) if original is not None else {}
    out.update({f"retrain_{k}": v for k, v in dataclasses.asdict(config).items()})
    out.update(
        {
            "parent_version": parent,
            "retraining_run_id": run_id,
            "holdout_fraction": params["holdout_fraction"],
            "finding": params["finding"],
            "replay_source": lineage["replay_source"],
            "n_replay": lineage["n_replay"],
            "n_train_events": lineage["n_train_events"],
            "n_holdout_events": lineage["n_holdout_events"],
        }
    )
    return out


def _lineage_tags(
    run_id: int,
    parent: int,
    trigger: str,
    lineage: Mapping[str, Any],
    new: Mapping[str, Any],
    seed: int,
) -> dict[str, str]:
    return {
        "radwatch.kind": "retraining",
        "radwatch.retraining_run_id": str(run_id),
        "radwatch.parent_version": str(parent),
        "radwatch.parent_run_id": str(new["parent_run_id"]),
        "radwatch.data_snapshot_sha256": str(new["data_snapshot_sha256"]),
        "radwatch.code_version": str(new["code_version"]),
        "radwatch.trigger": trigger,
        "radwatch.trigger_alert_ids": json.dumps(lineage.get("trigger_alert_ids", [])),
        "radwatch.seed": str(seed),
        "radwatch.protocol_version": str(lineage["protocol_version"]),
        "radwatch.replay_source": str(new["replay_source"]),
    }


def _card(
    model_name: str, parent: int, run_id: int, replay_source: str, lineage: Mapping[str, Any]
) -> str:
    return f"""# Model card: {model_name} (candidate from retraining run {run_id})

**Intended use.** As the parent version {parent}; not for use until a clinical safety officer
approves it against its change protocol.

**What changed.** The per-finding heads were fine-tuned on {lineage["n_train_events"]} recent
labelled production events plus {lineage["n_replay"]} replayed studies ({replay_source}); the
encoder is the parent's, unchanged, so embeddings and drift references stay comparable.

**Evidence.** The evaluation dossier (artifacts `dossier/`) judges it on the
{lineage["n_holdout_events"]} newest labelled events, held out from training.

**Lineage.** Data snapshot SHA-256 {lineage["data_snapshot_sha256"]}; code
{lineage["code_version"]}.
"""
