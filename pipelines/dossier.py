"""The evaluation dossier: a candidate judged against its change protocol, next to the champion,
on the same held-out data.

Pure computation (numpy/torch and the statistics in :mod:`monitors`); no database, no MLflow.
:mod:`services.retraining.dossiers` gathers the inputs and stores the result;
:mod:`pipelines.dossier_report` draws the plots and the HTML page from the document alone.

What "the same data" means: the held-out events are the newest labelled events of the champion
version, never used for training (time-ordered split). The champion's scores are the scores it
actually produced in production (stored with each event); the candidate's are its heads applied
to the embeddings stored with the same events (its encoder is the champion's, frozen). So the
paired tests compare the two models case by case, which is what makes a DeLong non-inferiority
test on a few hundred cases informative.

Every metric carries its n and a confidence interval; subgroups below ``min_group_n`` are listed
as too small and never silently dropped. A criterion that cannot be judged on the data at hand
(no eligible subgroup, a one-class set) fails, with the reason in its ``detail``: the protocol's
promise is "shown to meet", not "not shown to fail". The document layout is in
docs/retraining.md; the web pages render exactly this JSON.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import numpy.typing as npt

from monitors._json import json_safe
from monitors.fairness import FairnessReport, subgroup_report
from monitors.performance import (
    MetricCI,
    auroc_delong,
    confusion_metrics,
    evaluate_performance,
    non_inferiority,
)
from monitors.stats import format_p
from pipelines.perturb import Perturbation

SCHEMA_VERSION = 1
#: The sections of ``document["sections"]``, in page order.
SECTIONS = (
    "data",
    "performance",
    "fairness",
    "calibration",
    "robustness",
    "sites",
    "drift_evidence",
)
#: Subgroup attributes counted in the data section.
COUNT_ATTRIBUTES = ("sex", "age_band", "site", "vendor")
_ROC_POINTS = 200

FloatArray = npt.NDArray[np.float64]
ObjectArray = npt.NDArray[np.object_]


@dataclass(frozen=True)
class DossierCriteria:
    """The acceptance criteria of a change protocol, as plain values (see
    :class:`services.change_protocols.document.AcceptanceCriteria` for their meaning)."""

    finding: str
    noninferiority_margin: float
    min_sensitivity: float
    operating_threshold: float
    max_subgroup_gap: Mapping[str, float]
    max_ece: float
    perturbations: tuple[Perturbation, ...]
    max_auroc_drop: float
    alpha: float = 0.05


@dataclass(frozen=True)
class EvaluationSet:
    """Held-out labelled events, row-aligned: labels, both models' scores for the criteria's
    finding (probabilities), and subgroup attributes (``sex``, ``age_band``, ``site``,
    ``vendor``...; missing values as None)."""

    labels: npt.NDArray[np.bool_]
    champion_scores: FloatArray
    candidate_scores: FloatArray
    attributes: Mapping[str, ObjectArray]

    def __post_init__(self) -> None:
        n = len(self.labels)
        for name, arr in (("champion", self.champion_scores), ("candidate", self.candidate_scores)):
            if arr.shape != (n,):
                raise ValueError(f"{name} scores shape {arr.shape} != ({n},)")
        for name, values in self.attributes.items():
            if len(values) != n:
                raise ValueError(f"attribute {name!r} has {len(values)} values for {n} events")
        n_pos = int(np.count_nonzero(self.labels))
        if n_pos == 0 or n_pos == n:
            raise ValueError(
                f"the held-out set has {n_pos} positives of {n}; the dossier needs both classes"
            )


@dataclass(frozen=True)
class DossierInputs:
    """Everything one dossier is computed from (see :func:`build_document`)."""

    model_name: str
    candidate_version: int
    champion_version: int
    protocol_version: int
    criteria: DossierCriteria
    evaluation: EvaluationSet
    training_attributes: Mapping[str, ObjectArray]
    robustness: Mapping[str, Any]
    drift_evidence: Mapping[str, Any]
    replay: Mapping[str, Any] = field(default_factory=dict)
    retraining_run_id: int | None = None
    #: How the evaluation cases were chosen; the default is a retraining run's time split.
    split: str = (
        "time-ordered: the newest labelled events of the champion version are held out for "
        "evaluation and never used for training"
    )
    #: Which data the dossier used (a sequestered evaluation set's name, version and hash).
    evaluation_source: Mapping[str, Any] = field(default_factory=dict)
    min_group_n: int = 30
    n_bootstrap: int = 500
    seed: int = 0


# --- small helpers -----------------------------------------------------------------------------


def _ci(m: MetricCI) -> dict[str, Any]:
    return m.to_dict()


def _criterion(
    name: str, passed: bool, value: float | None, threshold: float, detail: str
) -> dict[str, Any]:
    return dict(
        json_safe(
            {
                "name": name,
                "passed": bool(passed),
                "value": value,
                "threshold": threshold,
                "detail": detail,
            }
        )
    )


def _counts(values: ObjectArray) -> dict[str, int]:
    return dict(sorted(Counter("missing" if v is None else str(v) for v in values).items()))


def roc_points(y: npt.NDArray[np.bool_], score: FloatArray) -> dict[str, list[float]]:
    """The empirical ROC curve (one point per distinct score, thinned to about 200 points)."""
    order = np.argsort(-score, kind="mergesort")
    s, yy = score[order], y[order]
    distinct = np.flatnonzero(np.diff(s)) if len(s) > 1 else np.array([], dtype=np.intp)
    ends = np.concatenate([distinct, [len(s) - 1]])
    tp = np.cumsum(yy)[ends]
    fp = (ends + 1) - tp
    n_pos, n_neg = max(int(yy.sum()), 1), max(int((~yy).sum()), 1)
    fpr = np.concatenate([[0.0], fp / n_neg])
    tpr = np.concatenate([[0.0], tp / n_pos])
    if len(fpr) > _ROC_POINTS:
        keep = np.unique(np.linspace(0, len(fpr) - 1, _ROC_POINTS).round().astype(int))
        fpr, tpr = fpr[keep], tpr[keep]
    return {"fpr": [round(float(v), 5) for v in fpr], "tpr": [round(float(v), 5) for v in tpr]}


# --- sections ----------------------------------------------------------------------------------


def data_section(inputs: DossierInputs) -> dict[str, Any]:
    ev = inputs.evaluation
    n_train = len(next(iter(inputs.training_attributes.values()), []))
    return {
        "split": inputs.split,
        "source": dict(json_safe(dict(inputs.evaluation_source))),
        "training": {
            "n_events": n_train,
            "by": {
                a: _counts(inputs.training_attributes[a])
                for a in COUNT_ATTRIBUTES
                if a in inputs.training_attributes
            },
        },
        "evaluation": {
            "n_events": len(ev.labels),
            "n_pos": int(np.count_nonzero(ev.labels)),
            "by": {a: _counts(ev.attributes[a]) for a in COUNT_ATTRIBUTES if a in ev.attributes},
        },
        "replay": dict(json_safe(dict(inputs.replay))),
    }


def _model_metrics(
    y: npt.NDArray[np.bool_], score: FloatArray, c: DossierCriteria
) -> tuple[dict[str, Any], dict[str, Any]]:
    report = evaluate_performance(y, score, c.operating_threshold, alpha=c.alpha)
    metrics = {k: _ci(v) for k, v in report.metrics().items()}
    return metrics, report.calibration.to_dict()


def performance_and_calibration(
    inputs: DossierInputs,
) -> tuple[dict[str, Any], dict[str, Any], list[dict[str, Any]]]:
    """AUROC (DeLong CIs), paired DeLong non-inferiority, sensitivity/specificity (Wilson CIs) at
    the operating point, and calibration, for both models; with their criteria."""
    ev, c = inputs.evaluation, inputs.criteria
    y = ev.labels
    cand, cand_cal = _model_metrics(y, ev.candidate_scores, c)
    champ, champ_cal = _model_metrics(y, ev.champion_scores, c)
    ni = non_inferiority(
        y, ev.candidate_scores, ev.champion_scores, c.noninferiority_margin, c.alpha
    )
    performance = {
        "finding": c.finding,
        "threshold": c.operating_threshold,
        "alpha": c.alpha,
        "n": len(y),
        "n_pos": int(np.count_nonzero(y)),
        "n_neg": int(np.count_nonzero(~y)),
        "candidate": cand,
        "champion": champ,
        "noninferiority": ni.to_dict(),
        "roc": {
            "candidate": roc_points(y, ev.candidate_scores),
            "champion": roc_points(y, ev.champion_scores),
        },
    }
    calibration = {"candidate": cand_cal, "champion": champ_cal}
    sens = cand["sensitivity"]
    sens_lower = sens["lower"]
    criteria = [
        _criterion(
            "auroc_noninferiority",
            ni.non_inferior,
            ni.lower,
            -c.noninferiority_margin,
            f"AUROC candidate {ni.auc_candidate:.3f} vs champion {ni.auc_baseline:.3f} "
            f"(difference {ni.difference:+.3f}); one-sided {1 - c.alpha:.0%} lower bound "
            f"{ni.lower:+.3f} must exceed -{c.noninferiority_margin} (paired DeLong, "
            f"{format_p(ni.p_value)}, {ni.n_pos} positives / {ni.n_neg} negatives).",
        ),
        _criterion(
            "min_sensitivity",
            sens_lower is not None and sens_lower >= c.min_sensitivity,
            sens_lower,
            c.min_sensitivity,
            f"Sensitivity at threshold {c.operating_threshold:g}: "
            + (
                f"{sens['value']:.3f} ({1 - c.alpha:.0%} Wilson CI {sens['lower']:.3f}-"
                f"{sens['upper']:.3f}, n = {sens['n']} positives); the lower bound must reach "
                f"{c.min_sensitivity}."
                if sens["value"] is not None
                else "undefined (no positives)."
            ),
        ),
        _criterion(
            "max_ece",
            cand_cal["ece"] is not None and cand_cal["ece"] <= c.max_ece,
            cand_cal["ece"],
            c.max_ece,
            f"Expected calibration error {cand_cal['ece']:.3f} over {cand_cal['n_bins']} "
            f"equal-mass bins (champion {champ_cal['ece']:.3f}); at most {c.max_ece} allowed.",
        ),
    ]
    return performance, calibration, criteria


def _fairness_model(report: FairnessReport, attribute: str) -> dict[str, Any]:
    groups = [
        {
            "name": g.name,
            "value": g.attributes.get(attribute),
            "n": g.n,
            "n_pos": g.n_pos,
            "too_small": g.too_small,
            "tpr": _ci(g.tpr),
        }
        for g in report.groups
    ]
    worst = next(
        (w for w in report.worst_vs_rest if w.family == attribute and w.metric == "tpr"), None
    )
    gap: dict[str, Any] | None = None
    if worst is not None:
        # The gap is the worst group's TPR shortfall: rest - group (>= 0 when it trails).
        gap = dict(
            json_safe(
                {
                    "value": -worst.difference,
                    "lower": None if worst.upper is None else -worst.upper,
                    "upper": None if worst.lower is None else -worst.lower,
                    "worst_group": worst.group,
                    "worst_tpr": worst.group_value,
                    "rest_tpr": worst.rest_value,
                    "n_group": worst.n_group,
                    "n_rest": worst.n_rest,
                }
            )
        )
    return {"groups": groups, "gap": gap, "too_small": report.too_small_groups}


def fairness_section(inputs: DossierInputs) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Per declared attribute: TPR per group with bootstrap CIs, the worst group's TPR gap to
    the rest with its CI, for both models; the criterion is judged on the candidate's upper CI
    bound of the gap."""
    ev, c = inputs.evaluation, inputs.criteria
    section: dict[str, Any] = {
        "metric": "tpr",
        "min_n": inputs.min_group_n,
        "n_bootstrap": inputs.n_bootstrap,
        "attributes": {},
    }
    criteria: list[dict[str, Any]] = []
    for attribute, max_gap in c.max_subgroup_gap.items():
        name = f"subgroup_gap_{attribute}"
        if attribute not in ev.attributes:
            section["attributes"][attribute] = {"max_gap": max_gap, "error": "not recorded"}
            criteria.append(
                _criterion(
                    name,
                    False,
                    None,
                    max_gap,
                    f"Attribute '{attribute}' is not recorded with the events; cannot be judged.",
                )
            )
            continue
        per_model: dict[str, Any] = {}
        for model, scores in (("candidate", ev.candidate_scores), ("champion", ev.champion_scores)):
            report = subgroup_report(
                ev.labels,
                scores,
                c.operating_threshold,
                {attribute: ev.attributes[attribute]},
                intersections=False,
                min_n=inputs.min_group_n,
                n_bootstrap=inputs.n_bootstrap,
                seed=inputs.seed,
                alpha=c.alpha,
            )
            per_model[model] = _fairness_model(report, attribute)
        cand = per_model["candidate"]
        eligible = [g for g in cand["groups"] if not g["too_small"]]
        gap = cand["gap"]
        if gap is not None and gap["upper"] is not None:
            passed = gap["upper"] <= max_gap
            value = gap["upper"]
            detail = (
                f"Worst group {gap['worst_group']} TPR {gap['worst_tpr']:.3f} vs rest "
                f"{gap['rest_tpr']:.3f}: gap {gap['value']:+.3f}, {1 - c.alpha:.0%} CI upper "
                f"bound {gap['upper']:+.3f} must not exceed {max_gap}."
            )
        elif len(cand["groups"]) == 1 and not cand["too_small"]:
            passed, value = True, 0.0
            detail = "Only one group is present; there is no gap."
        else:
            passed, value = False, None
            detail = (
                f"Cannot be judged: {len(eligible)} group(s) reach n >= {inputs.min_group_n} "
                f"with positives; too small: {', '.join(cand['too_small']) or 'none'}."
            )
        if cand["too_small"] and passed:
            detail += f" Too small to judge (n < {inputs.min_group_n}): " + ", ".join(
                cand["too_small"]
            )
        section["attributes"][attribute] = {"max_gap": max_gap, **per_model, "passed": passed}
        criteria.append(_criterion(name, passed, value, max_gap, detail))
    return section, criteria


def sites_section(inputs: DossierInputs) -> dict[str, Any]:
    """Per-site AUROC (DeLong) and sensitivity (Wilson) with CIs, both models."""
    ev, c = inputs.evaluation, inputs.criteria
    sites = ev.attributes.get("site")
    rows: list[dict[str, Any]] = []
    if sites is None:
        return {"sites": rows}
    names = np.array(["missing" if s is None else str(s) for s in sites], dtype=object)
    for site in sorted(set(names.tolist())):
        mask = names == site
        y = ev.labels[mask]
        n_pos = int(np.count_nonzero(y))
        row: dict[str, Any] = {"site": site, "n": int(mask.sum()), "n_pos": n_pos}
        for model, scores in (("candidate", ev.candidate_scores), ("champion", ev.champion_scores)):
            s = scores[mask]
            if 0 < n_pos < len(y):
                auc = _ci(auroc_delong(y, s, c.alpha))
            else:
                auc = MetricCI(None, None, None, len(y), "undefined: one class").to_dict()
            sens = _ci(confusion_metrics(y, s, c.operating_threshold, c.alpha)["sensitivity"])
            row[model] = {"auroc": auc, "sensitivity": sens}
        rows.append(row)
    return {"sites": rows}


def robustness_criteria(robustness: Mapping[str, Any], c: DossierCriteria) -> list[dict[str, Any]]:
    """One criterion per perturbation the protocol names, judged on the candidate's AUROC drop
    (point estimate; the CI is reported next to it)."""
    out: list[dict[str, Any]] = []
    for kind in c.perturbations:
        entry = robustness.get("perturbations", {}).get(kind)
        name = f"robustness_{kind}"
        if entry is None or entry.get("candidate", {}).get("drop") is None:
            why = robustness.get("error", "not computed")
            out.append(_criterion(name, False, None, c.max_auroc_drop, f"Cannot be judged: {why}."))
            continue
        d = entry["candidate"]
        lo, hi = d.get("drop_lower"), d.get("drop_upper")
        ci = f" ({1 - c.alpha:.0%} CI {lo:+.3f} to {hi:+.3f})" if lo is not None else ""
        out.append(
            _criterion(
                name,
                d["drop"] <= c.max_auroc_drop,
                d["drop"],
                c.max_auroc_drop,
                f"AUROC {d['auroc_clean']:.3f} clean, {d['auroc_perturbed']:.3f} under {kind}: "
                f"drop {d['drop']:+.3f}{ci} on {robustness['n']} "
                f"{robustness.get('source', 'synthetic')} studies; at most "
                f"{c.max_auroc_drop} allowed (champion drop {entry['champion']['drop']:+.3f}).",
            )
        )
    return out


def build_document(inputs: DossierInputs, *, now: datetime | None = None) -> dict[str, Any]:
    """The dossier document (without ``plots``; :mod:`pipelines.dossier_report` adds them)."""
    c = inputs.criteria
    performance, calibration, criteria = performance_and_calibration(inputs)
    fairness, fairness_criteria = fairness_section(inputs)
    criteria.extend(fairness_criteria)
    criteria.extend(robustness_criteria(inputs.robustness, c))
    passed = all(cr["passed"] for cr in criteria)
    sections = {
        "data": data_section(inputs),
        "performance": performance,
        "fairness": fairness,
        "calibration": calibration,
        "robustness": dict(json_safe(dict(inputs.robustness))),
        "sites": sites_section(inputs),
        "drift_evidence": dict(json_safe(dict(inputs.drift_evidence))),
    }
    document: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "model": inputs.model_name,
        "candidate_version": inputs.candidate_version,
        "champion_version": inputs.champion_version,
        "protocol_version": inputs.protocol_version,
        "retraining_run_id": inputs.retraining_run_id,
        "finding": c.finding,
        "operating_threshold": c.operating_threshold,
        "generated_at": (now or datetime.now(UTC)).isoformat(),
        "passed": passed,
        "criteria": criteria,
        "sections": sections,
        "plots": {},
    }
    _check_finite(document)
    return document


def _check_finite(value: Any) -> None:
    """Refuse NaN/inf anywhere in the document: it is stored as JSON and rendered as is."""
    if isinstance(value, dict):
        for v in value.values():
            _check_finite(v)
    elif isinstance(value, list):
        for v in value:
            _check_finite(v)
    elif isinstance(value, float) and not math.isfinite(value):
        raise ValueError("dossier document contains a non-finite number")
