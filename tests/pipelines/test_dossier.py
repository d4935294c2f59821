"""The evaluation dossier: document layout, criteria that pass and fail for the right reasons,
robustness through the full models, and the self-contained HTML page with its four plots."""

from __future__ import annotations

import base64
import json
from typing import Any

import numpy as np
import pytest

from pipelines.dossier import (
    SECTIONS,
    DossierCriteria,
    DossierInputs,
    EvaluationSet,
    build_document,
    roc_points,
)
from pipelines.dossier_report import PLOTS, render_html, render_plots
from pipelines.perturb import evaluate_robustness
from pipelines.synth import RadiographGenerator
from tests.fixtures.triton import make_test_model

CRITERIA = DossierCriteria(
    finding="effusion",
    noninferiority_margin=0.05,
    min_sensitivity=0.6,
    operating_threshold=0.5,
    max_subgroup_gap={"sex": 0.2, "site": 0.25, "age_band": 0.2},
    max_ece=0.15,
    perturbations=("noise", "blur"),
    max_auroc_drop=0.05,
)


def _evaluation(n: int = 1200, seed: int = 0) -> EvaluationSet:
    """A large, well-behaved held-out set: calibrated scores with a strong signal, the candidate
    a little better than the champion, no subgroup effect, one tiny age band."""
    rng = np.random.default_rng(seed)
    y = rng.random(n) < 0.4
    signal = np.where(y, 1.5, -1.5)
    champion = 1 / (1 + np.exp(-(signal + rng.normal(0, 1.4, n))))
    candidate = 1 / (1 + np.exp(-(signal + rng.normal(0, 1.2, n))))
    age = np.where(rng.random(n) < 0.01, "80+", rng.choice(["40-59", "60-79"], n))
    return EvaluationSet(
        labels=y,
        champion_scores=champion,
        candidate_scores=candidate,
        attributes={
            "sex": rng.choice(["F", "M"], n).astype(object),
            "site": rng.choice(["north", "south"], n).astype(object),
            "age_band": age.astype(object),
            "vendor": rng.choice(["Aurora", "Cobalt"], n).astype(object),
        },
    )


def _robustness(drop: float) -> dict[str, Any]:
    entry = {
        "auroc_clean": 0.9,
        "auroc_perturbed": 0.9 - drop,
        "drop": drop,
        "drop_lower": drop - 0.02,
        "drop_upper": drop + 0.02,
        "p_value": 0.5,
    }
    return {
        "n": 300,
        "n_pos": 60,
        "finding": "effusion",
        "seed": 0,
        "perturbations": {k: {"candidate": entry, "champion": entry} for k in ("noise", "blur")},
    }


def _inputs(criteria: DossierCriteria = CRITERIA, drop: float = 0.01) -> DossierInputs:
    ev = _evaluation()
    return DossierInputs(
        model_name="cxr",
        candidate_version=2,
        champion_version=1,
        protocol_version=3,
        criteria=criteria,
        evaluation=ev,
        training_attributes={k: v[:500] for k, v in ev.attributes.items()},
        robustness=_robustness(drop),
        drift_evidence={
            "trigger": "alert",
            "alerts": [{"id": 7, "monitor": "drift", "site": "south", "severity": "warning"}],
            "timeline": [
                {
                    "monitor": "drift",
                    "site": "south",
                    "points": [
                        {"window_index": i, "p_value": p, "drift": p < 0.01, "statistic": 1.0}
                        for i, p in enumerate([0.4, 0.2, 0.001, 0.0005, 1e-6])
                    ],
                }
            ],
        },
        replay={"source": "original_training", "n": 250},
        retraining_run_id=5,
        n_bootstrap=200,
    )


def _by_name(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in document["criteria"]}


def test_document_layout_and_a_candidate_that_meets_every_criterion() -> None:
    doc = build_document(_inputs())
    assert set(doc) >= {
        "model",
        "candidate_version",
        "champion_version",
        "protocol_version",
        "passed",
        "criteria",
        "sections",
        "plots",
    }
    assert tuple(doc["sections"]) == SECTIONS
    assert (doc["model"], doc["candidate_version"], doc["champion_version"]) == ("cxr", 2, 1)
    names = [c["name"] for c in doc["criteria"]]
    assert names == [
        "auroc_noninferiority",
        "min_sensitivity",
        "max_ece",
        "subgroup_gap_sex",
        "subgroup_gap_site",
        "subgroup_gap_age_band",
        "robustness_noise",
        "robustness_blur",
    ]
    for c in doc["criteria"]:
        assert set(c) == {"name", "passed", "value", "threshold", "detail"}
    assert doc["passed"], [c for c in doc["criteria"] if not c["passed"]]
    perf = doc["sections"]["performance"]
    for model in ("candidate", "champion"):
        auc = perf[model]["auroc"]
        assert auc["lower"] < auc["value"] < auc["upper"]
        assert perf[model]["sensitivity"]["n"] == perf["n_pos"]
    assert perf["noninferiority"]["margin"] == 0.05
    assert perf["roc"]["candidate"]["fpr"][0] == 0.0
    assert perf["roc"]["candidate"]["tpr"][-1] == 1.0
    data = doc["sections"]["data"]
    assert data["evaluation"]["n_events"] == 1200
    assert data["training"]["n_events"] == 500
    assert set(data["evaluation"]["by"]) == {"sex", "age_band", "site", "vendor"}
    # The tiny age band is listed as too small, not dropped.
    age = doc["sections"]["fairness"]["attributes"]["age_band"]
    assert "age_band=80+" in age["candidate"]["too_small"]
    assert any(g["value"] == "80+" and g["too_small"] for g in age["candidate"]["groups"])
    assert "Too small" in _by_name(doc)["subgroup_gap_age_band"]["detail"]
    sites = doc["sections"]["sites"]["sites"]
    assert [s["site"] for s in sites] == ["north", "south"]
    assert all(s["candidate"]["auroc"]["lower"] is not None for s in sites)
    json.dumps(doc, allow_nan=False)  # strict JSON: no NaN anywhere


@pytest.mark.parametrize(
    ("change", "failing"),
    [
        ({"min_sensitivity": 1.0}, "min_sensitivity"),
        ({"max_ece": 0.0}, "max_ece"),
        ({"noninferiority_margin": 0.0, "max_subgroup_gap": {"sex": 0.2}}, None),
        ({"max_subgroup_gap": {"sex": 0.0}}, "subgroup_gap_sex"),
        ({"max_subgroup_gap": {"race_ethnicity": 0.1}}, "subgroup_gap_race_ethnicity"),
        ({"max_auroc_drop": 0.0}, "robustness_noise"),
    ],
)
def test_an_impossible_threshold_fails_its_criterion_and_the_dossier(
    change: dict[str, Any], failing: str | None
) -> None:
    from dataclasses import replace

    doc = build_document(_inputs(replace(CRITERIA, **change)))
    crit = _by_name(doc)
    if failing is None:
        # Margin 0 is demanding but this candidate is better than the champion: still passes.
        assert crit["auroc_noninferiority"]["passed"]
        return
    assert not crit[failing]["passed"], crit[failing]
    assert not doc["passed"]
    others = [c for c in doc["criteria"] if c["name"] != failing and not c["passed"]]
    if failing != "robustness_noise":
        assert others == []
    if failing == "subgroup_gap_race_ethnicity":
        assert "not recorded" in crit[failing]["detail"]


def test_a_worse_candidate_fails_non_inferiority() -> None:
    inputs = _inputs()
    ev = inputs.evaluation
    noise = np.random.default_rng(1).normal(0, 0.3, len(ev.labels))
    worse = EvaluationSet(
        labels=ev.labels,
        champion_scores=ev.champion_scores,
        candidate_scores=np.clip(ev.champion_scores + noise, 0, 1),
        attributes=ev.attributes,
    )
    from dataclasses import replace

    doc = build_document(replace(inputs, evaluation=worse))
    ni = _by_name(doc)["auroc_noninferiority"]
    assert not ni["passed"]
    assert ni["value"] < -0.05
    assert ni["threshold"] == -0.05


def test_one_class_held_out_set_is_refused() -> None:
    with pytest.raises(ValueError, match="both classes"):
        EvaluationSet(
            labels=np.zeros(10, dtype=bool),
            champion_scores=np.full(10, 0.2),
            candidate_scores=np.full(10, 0.2),
            attributes={},
        )


def test_roc_points_match_a_direct_computation() -> None:
    y = np.array([1, 0, 1, 1, 0, 0], dtype=bool)
    s = np.array([0.9, 0.8, 0.7, 0.7, 0.3, 0.1])
    pts = roc_points(y, s)
    assert pts["fpr"] == [0.0, 0.0, 0.33333, 0.33333, 0.66667, 1.0]
    assert pts["tpr"] == [0.0, 0.33333, 0.33333, 1.0, 1.0, 1.0]


def test_robustness_runs_both_full_models_on_synthetic_studies() -> None:
    studies = RadiographGenerator(7919).generate(60)
    champion, candidate = make_test_model(1), make_test_model(2)
    out = evaluate_robustness(
        candidate, champion, studies, finding="nodule", perturbations=["noise", "exposure"]
    )
    assert out["n"] == 60
    assert set(out["perturbations"]) == {"noise", "exposure"}
    assert out["perturbations"]["noise"]["strength"] == 0.03
    for entry in out["perturbations"].values():
        for model in ("candidate", "champion"):
            d = entry[model]
            assert d["drop"] == pytest.approx(d["auroc_clean"] - d["auroc_perturbed"])
            assert d["drop_lower"] <= d["drop"] <= d["drop_upper"]
        assert entry["candidate"]["auroc_clean"] != entry["champion"]["auroc_clean"]


def test_html_page_has_four_inline_plots_and_pass_fail_markers(artifacts_dir: Any) -> None:
    from dataclasses import replace

    doc = build_document(_inputs(replace(CRITERIA, max_ece=0.0)))
    doc["plots"] = render_plots(doc)
    assert set(doc["plots"]) == set(PLOTS)
    for uri in doc["plots"].values():
        assert uri.startswith("data:image/png;base64,")
        assert base64.b64decode(uri.split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"
    html = render_html(doc)
    for plot in PLOTS:
        assert f'id="plot-{plot}" src="data:image/png;base64,' in html
    assert '<span class="PASS">PASS</span>' in html
    assert '<span class="FAIL">FAIL</span>' in html
    assert 'id="overall">\nFAIL' in html
    assert "http://" not in html
    assert "https://" not in html
    (artifacts_dir / "dossier-example.html").write_text(html)
    with pytest.raises(ValueError, match="render the plots first"):
        render_html({**doc, "plots": {}})
