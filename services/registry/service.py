"""Training a model version and registering it in MLflow with its reference profile and card."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy.orm import Session

from pipelines.model import ModelConfig, builtin_spec
from pipelines.train import TrainConfig, TrainResult, operating_thresholds, train
from services.audit import actions
from services.audit import service as audit
from services.core.ports import ModelRegistry

CHAMPION = "champion"


@dataclass(frozen=True)
class RegisteredModel:
    name: str
    version: int
    run_id: str
    metrics: dict[str, float]


def model_card(name: str, result: TrainResult) -> str:
    """A short model card: intended use, data, performance and known limits."""
    findings = result.profile.findings
    rows = "\n".join(
        f"| {f} | {result.metrics.get(f'val_auroc_{f}', float('nan')):.3f} |" for f in findings
    )
    return f"""# Model card: {name}

**Intended use.** Triage support on adult frontal chest radiographs (PA/AP). Not a diagnostic
device; every output is reviewed by a radiologist. Trained on radwatch's synthetic radiograph
generator, so it is a stand-in for a foundation-model classifier, not a clinical model.

**Architecture.** Small CNN encoder ({result.model.embedding_dim}-dim embedding) with one linear
head per finding: {", ".join(findings)}.

**Training data.** {result.config.n_train} synthetic studies, validation {result.config.n_val},
seed {result.config.seed}, all default sites and vendors.

**Validation AUROC.**

| finding | AUROC |
|---|---|
{rows}

**Reference profile.** Validation-set scores, embeddings and acquisition metadata, used by the
drift monitors as the no-shift reference.

**Known limits.** Synthetic data only; subgroup performance must be checked by the fairness
monitors before any clinical use.
"""


def train_and_register(
    registry: ModelRegistry,
    *,
    model_name: str,
    config: TrainConfig,
    progress: Callable[[str, int, int], None] | None = None,
    alias: str = CHAMPION,
    session: Session | None = None,
    actor: str = actions.ACTOR_SYSTEM,
) -> tuple[RegisteredModel, TrainResult]:
    """Train, log and register a version (and point ``alias`` at it). With ``session``, a
    ``model.registered`` audit record by ``actor`` is appended there (the caller commits)."""
    result = train(config, progress)
    params = {k: v for k, v in dataclasses.asdict(config).items()}
    spec = builtin_spec(
        ModelConfig(embedding_dim=result.model.embedding_dim),
        thresholds=operating_thresholds(result.profile),
    )
    run_id = registry.log_training(
        experiment=model_name,
        run_name=f"train-{model_name}",
        params=params,
        metrics=result.metrics,
        model=result.model,
        profile=result.profile,
        model_card=model_card(model_name, result),
        tags={"radwatch.kind": "training"},
        spec=spec,
    )
    version = registry.register(model_name, run_id, description="Trained by radwatch.")
    if alias:
        registry.set_alias(model_name, alias, version)
    registered = RegisteredModel(model_name, version, run_id, dict(result.metrics))
    if session is not None:
        record_registration(session, registered, actor=actor, alias=alias or None)
    return registered, result


def record_registration(
    session: Session, registered: RegisteredModel, *, actor: str, alias: str | None = None
) -> None:
    """Append the ``model.registered`` audit record of a version registered in MLflow.

    MLflow and the service database cannot share a transaction: the registration is already
    durable in MLflow when this runs, so a rollback here loses the record, not the version.
    Whoever registers a version (training, retraining) calls this in its own unit of work.
    """
    audit.record(
        session,
        actor=actor,
        action=actions.MODEL_REGISTERED,
        entity_type=actions.MODEL_VERSION,
        entity_id=actions.model_version_id(registered.name, registered.version),
        payload={
            "model": registered.name,
            "version": registered.version,
            "mlflow_run_id": registered.run_id,
            "alias": alias,
            "metrics": registered.metrics,
        },
    )
