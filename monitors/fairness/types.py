"""Typed, JSON-ready results of the subgroup fairness monitor."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from monitors._json import json_safe
from monitors.performance.types import MetricCI


@dataclass(frozen=True, slots=True)
class GroupResult:
    """Metrics of one subgroup (one attribute value, or one combination of values).

    ``too_small`` groups (n < min_n) still carry their metrics and intervals, but are left out
    of the gaps and the worst-group comparison: a 12-case group's TPR of 0.5 is noise, and
    letting it set the headline gap would page people for nothing. A metric is ``None`` where
    the group has no positives (TPR, AUROC) or no negatives (FPR, AUROC).
    """

    name: str
    attributes: dict[str, str]
    n: int
    n_pos: int
    n_neg: int
    too_small: bool
    tpr: MetricCI
    fpr: MetricCI
    auroc: MetricCI
    ece: MetricCI

    def metric(self, name: str) -> MetricCI:
        return {"tpr": self.tpr, "fpr": self.fpr, "auroc": self.auroc, "ece": self.ece}[name]

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "attributes": dict(self.attributes),
            "n": self.n,
            "n_pos": self.n_pos,
            "n_neg": self.n_neg,
            "too_small": self.too_small,
            "metrics": {k: self.metric(k).to_dict() for k in ("tpr", "fpr", "auroc", "ece")},
        }


@dataclass(frozen=True, slots=True)
class GapResult:
    """Largest minus smallest value of one metric over the eligible groups of one family.

    A family is one attribute (``"sex"``) or one intersection (``"sex&age_band"``). The TPR gap
    is the equal-opportunity gap; the ECE gap is the calibration gap.
    """

    family: str
    metric: str
    gap: float
    max_group: str
    max_value: float
    min_group: str
    min_value: float
    n_groups: int

    def to_dict(self) -> dict[str, Any]:
        return dict(
            json_safe(
                {
                    "family": self.family,
                    "metric": self.metric,
                    "gap": self.gap,
                    "max_group": self.max_group,
                    "max_value": self.max_value,
                    "min_group": self.min_group,
                    "min_value": self.min_value,
                    "n_groups": self.n_groups,
                }
            )
        )


@dataclass(frozen=True, slots=True)
class WorstVsRest:
    """The worst eligible group of a family against all other cases, for one metric.

    Worst means lowest TPR or AUROC, highest FPR or ECE. ``difference = group - rest`` with a
    percentile bootstrap interval (group and rest are disjoint, so they are resampled
    independently, each stratified by class).
    """

    family: str
    metric: str
    group: str
    group_value: float
    rest_value: float
    difference: float
    lower: float | None
    upper: float | None
    n_group: int
    n_rest: int

    def to_dict(self) -> dict[str, Any]:
        return dict(
            json_safe(
                {
                    "family": self.family,
                    "metric": self.metric,
                    "group": self.group,
                    "group_value": self.group_value,
                    "rest_value": self.rest_value,
                    "difference": self.difference,
                    "lower": self.lower,
                    "upper": self.upper,
                    "n_group": self.n_group,
                    "n_rest": self.n_rest,
                }
            )
        )


@dataclass(frozen=True, slots=True)
class FairnessReport:
    """Per-group metrics, gaps and worst-vs-rest comparisons for one labelled window."""

    n: int
    threshold: float
    min_n: int
    n_bootstrap: int
    alpha: float
    attributes: tuple[str, ...]
    groups: tuple[GroupResult, ...]
    gaps: tuple[GapResult, ...]
    worst_vs_rest: tuple[WorstVsRest, ...]

    @property
    def too_small_groups(self) -> list[str]:
        return [g.name for g in self.groups if g.too_small]

    def to_dict(self) -> dict[str, Any]:
        return {
            "n": self.n,
            "threshold": json_safe(self.threshold),
            "min_n": self.min_n,
            "n_bootstrap": self.n_bootstrap,
            "alpha": self.alpha,
            "attributes": list(self.attributes),
            "groups": [g.to_dict() for g in self.groups],
            "gaps": [g.to_dict() for g in self.gaps],
            "worst_vs_rest": [w.to_dict() for w in self.worst_vs_rest],
        }
