"""Training a model version and registering it in MLflow with its reference profile and card."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

from pipelines.contract import FINDINGS
from pipelines.train import TrainConfig, TrainResult, train
from services.registry.mlflow_registry import MlflowRegistry

CHAMPION = "champion"


@dataclass(frozen=True)
class RegisteredModel:
    name: str
    version: int
    run_id: str
    metrics: dict[str, float]


def model_card(name: str, result: TrainResult) -> str:
    """A short model card: intended use, data, performance and known limits."""
    rows = "\n".join(
        f"| {f} | {result.metrics.get(f'val_auroc_{f}', float('nan')):.3f} |" for f in FINDINGS
    )
    return f"""# Model card: {name}

**Intended use.** Triage support on adult frontal chest radiographs (PA/AP). Not a diagnostic
device; every output is reviewed by a radiologist. Trained on radwatch's synthetic radiograph
generator, so it is a stand-in for a foundation-model classifier, not a clinical model.

**Architecture.** Small CNN encoder ({result.model.embedding_dim}-dim embedding) with one linear
head per finding: {", ".join(FINDINGS)}.

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
    registry: MlflowRegistry,
    *,
    model_name: str,
    config: TrainConfig,
    progress: Callable[[str, int, int], None] | None = None,
    alias: str = CHAMPION,
) -> tuple[RegisteredModel, TrainResult]:
    result = train(config, progress)
    params = {k: v for k, v in dataclasses.asdict(config).items()}
    run_id = registry.log_training(
        experiment=model_name,
        run_name=f"train-{model_name}",
        params=params,
        metrics=result.metrics,
        model=result.model,
        profile=result.profile,
        model_card=model_card(model_name, result),
        tags={"radwatch.kind": "training"},
    )
    version = registry.register(model_name, run_id, description="Trained by radwatch.")
    if alias:
        registry.set_alias(model_name, alias, version)
    return RegisteredModel(model_name, version, run_id, dict(result.metrics)), result
