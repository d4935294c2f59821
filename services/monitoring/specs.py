"""Monitor declarations: what a monitor watches, over which windows, and when it alerts.

A monitor belongs to one model (by name) and is one of these kinds:

* ``drift``: the acquisition metadata, image statistics and encoder embeddings of each window
  against the model's reference profile (MMD + per-column tests, Bonferroni-corrected);
* ``performance``: AUROC, sensitivity or specificity of one finding on the *labelled* events of
  each window, against a baseline minus a margin (one-sided). A window is evaluated once its
  labels had ``label_wait_s`` to arrive (labels may come weeks late);
* ``estimate``: the same metric estimated without labels (CBPE, calibrated on the reference),
  available as soon as the window closes, for the weeks before labels arrive;
* ``fairness``: TPR, FPR or AUROC of the worst subgroup (of declared attributes and their
  intersections) against the rest, on labelled events; significant when the gap exceeds
  ``max_gap`` with confidence.

Windows are by event **count** (the next ``size`` events of the scope) or by **time**
(``seconds``-long buckets of the time radwatch stored the event). ``scope`` is ``per_site``
(one series of windows per site) or ``global``. The alert policy is
:class:`monitors.policy.AlertPolicy` (k of the last m windows significant).
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from monitors.policy import AlertPolicy

Scope = Literal["per_site", "global"]
#: The site value of results and alerts of a ``global`` monitor.
GLOBAL_SITE = "*"

#: Columns a drift monitor can test: acquisition metadata and image statistics. Demographics are
#: not here on purpose: a change in who is scanned is a population shift, judged by the fairness
#: monitors, not a scanner problem.
DRIFT_CATEGORICAL = ("manufacturer", "manufacturer_model", "view_position")
DRIFT_NUMERIC = ("kvp", "img_mean", "img_std", "img_p01", "img_p99")
DRIFT_FEATURES = (*DRIFT_CATEGORICAL, *DRIFT_NUMERIC)


class WindowSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["count", "time"] = "count"
    size: int | None = Field(
        100, ge=20, le=1_000_000, description="Events per window (count windows)."
    )
    seconds: int | None = Field(
        None, ge=10, le=90 * 86400, description="Window length (time windows)."
    )

    @model_validator(mode="after")
    def _one_of(self) -> WindowSpec:
        if self.type == "count" and self.size is None:
            raise ValueError("a count window needs 'size' (events per window)")
        if self.type == "time" and self.seconds is None:
            raise ValueError("a time window needs 'seconds' (window length)")
        if self.type == "time":
            self.size = None
        else:
            self.seconds = None
        return self


class PolicySpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    alpha: float = Field(0.01, gt=0, lt=1)
    persistence_k: int = Field(2, ge=1, le=20)
    persistence_m: int = Field(3, ge=1, le=20)

    @model_validator(mode="after")
    def _k_le_m(self) -> PolicySpec:
        if self.persistence_k > self.persistence_m:
            raise ValueError("persistence_k must be <= persistence_m (k of the last m windows)")
        return self

    def policy(self) -> AlertPolicy:
        return AlertPolicy(
            alpha=self.alpha, persistence_k=self.persistence_k, persistence_m=self.persistence_m
        )


class _Common(BaseModel):
    model_config = ConfigDict(extra="forbid")

    scope: Scope = "per_site"
    window: WindowSpec = Field(default_factory=WindowSpec)
    policy: PolicySpec = Field(default_factory=PolicySpec)


class DriftSpec(_Common):
    kind: Literal["drift"] = "drift"
    features: list[str] | None = Field(
        None, description=f"Columns to test (default: all of {', '.join(DRIFT_FEATURES)})."
    )
    embeddings: bool = Field(True, description="Also test the encoder embeddings (MMD).")
    permutations: int = Field(
        500,
        ge=50,
        le=100_000,
        description="Least permutations of the MMD test; raised automatically so that its "
        "smallest p-value can pass the Bonferroni-corrected level.",
    )
    max_embedding_sample: int = Field(
        1000,
        ge=100,
        le=10_000,
        description="Embeddings per side in the MMD; larger windows are subsampled at random "
        "(seeded). The MMD's cost grows with the square of this.",
    )

    @model_validator(mode="after")
    def _known(self) -> DriftSpec:
        unknown = sorted(set(self.features or ()) - set(DRIFT_FEATURES))
        if unknown:
            raise ValueError(
                f"unknown drift features {unknown}; choose from {', '.join(DRIFT_FEATURES)}"
            )
        if self.features is not None and not self.features and not self.embeddings:
            raise ValueError("a drift monitor needs features or embeddings to test")
        return self


Metric = Literal["auroc", "sensitivity", "specificity"]


class _Metric(_Common):
    finding: str = Field(..., pattern=r"^[a-z0-9_]+$", max_length=64)
    metric: Metric = "auroc"
    threshold: float | None = Field(
        None, gt=0, lt=1, description="Operating threshold (default: the deployment's)."
    )
    baseline: float | None = Field(
        None, gt=0, le=1, description="Expected value (default: the reference profile's)."
    )
    margin: float = Field(0.05, ge=0, lt=1, description="Tolerated drop below the baseline.")


class PerformanceSpec(_Metric):
    kind: Literal["performance"] = "performance"
    label_wait_s: int = Field(
        14 * 86400, ge=0, le=365 * 86400, description="How long labels may take to arrive."
    )
    min_labelled: int = Field(30, ge=10, description="Fewer labelled events: not evaluated.")


class EstimateSpec(_Metric):
    kind: Literal["estimate"] = "estimate"


#: Attributes a fairness monitor can group by (``age_band`` is derived from the age in years).
GROUP_ATTRIBUTES = ("sex", "age_band", "race_ethnicity", "site", "manufacturer")


class FairnessSpec(_Common):
    kind: Literal["fairness"] = "fairness"
    scope: Scope = "global"
    finding: str = Field(..., pattern=r"^[a-z0-9_]+$", max_length=64)
    groups: list[str] = Field(
        default_factory=lambda: ["sex", "age_band"],
        min_length=1,
        max_length=3,
        description=f"Attributes (and their intersections) to compare: {GROUP_ATTRIBUTES}.",
    )
    metric: Literal["tpr", "fpr", "auroc"] = "tpr"
    threshold: float | None = Field(None, gt=0, lt=1)
    max_gap: float = Field(
        0.1, gt=0, lt=1, description="Tolerated gap between the worst group and the rest."
    )
    min_n: int = Field(30, ge=5, description="Smaller groups are reported as too small.")
    n_bootstrap: int = Field(500, ge=100, le=5000)
    label_wait_s: int = Field(14 * 86400, ge=0, le=365 * 86400)
    min_labelled: int = Field(100, ge=20)

    @model_validator(mode="after")
    def _known_groups(self) -> FairnessSpec:
        unknown = sorted(set(self.groups) - set(GROUP_ATTRIBUTES))
        if unknown:
            raise ValueError(f"unknown group attributes {unknown}; choose from {GROUP_ATTRIBUTES}")
        return self


#: Kinds evaluated on labelled events only (they wait ``label_wait_s`` for late labels).
LabelledSpec = PerformanceSpec | FairnessSpec

MonitorSpec = Annotated[
    DriftSpec | PerformanceSpec | EstimateSpec | FairnessSpec, Field(discriminator="kind")
]
