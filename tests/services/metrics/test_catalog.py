"""The metrics catalog against the real exposition of a running app (real PostgreSQL, Triton).

Monitor results are stored with details computed by the real monitors, so the per-feature,
subgroup and performance gauges are checked against what the monitors reported.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy.orm import Session, sessionmaker

from monitors.drift.report import DriftConfig, run_drift
from monitors.fairness import subgroup_report
from monitors.performance import evaluate_performance
from services.core.db import session_scope
from services.core.models import Alert, Monitor, MonitorResult
from services.metrics.catalog import BY_NAME, CATALOG, render_markdown
from tests.conftest import TEST_MODEL

ROOT = Path(__file__).resolve().parents[3]

Samples = dict[str, list[tuple[dict[str, str], float]]]


def test_docs_are_the_rendered_catalog() -> None:
    assert (ROOT / "docs" / "metrics.md").read_text() == render_markdown(), (
        "docs/metrics.md is stale: run `radwatch metrics catalog > docs/metrics.md`"
    )


def test_catalog_names_are_unique_and_prometheus_style() -> None:
    assert len(BY_NAME) == len(CATALOG)
    for m in CATALOG:
        assert m.name.islower()
        assert " " not in m.name
        assert (m.kind == "counter") == m.name.endswith("_total") or m.source == "triton"


def _scrape(client: Any) -> tuple[dict[str, str], Samples]:
    resp = client.get("/metrics")
    assert resp.status_code == 200
    types: dict[str, str] = {}
    samples: Samples = {}
    for family in text_string_to_metric_families(resp.text):
        name = family.name + ("_total" if family.type == "counter" else "")
        types[name] = family.type
        for s in family.samples:
            samples.setdefault(s.name, []).append((dict(s.labels), s.value))
    return types, samples


def _monitor(s: Session, name: str, kind: str) -> int:
    m = Monitor(model_name=TEST_MODEL, name=name, kind=kind, spec={}, updated_by="test")
    s.add(m)
    s.flush()
    return m.id


def _result(s: Session, monitor_id: int, name: str, details: dict[str, Any], **kw: Any) -> int:
    r = MonitorResult(
        monitor=name,
        monitor_id=monitor_id,
        model_name=TEST_MODEL,
        model_version=1,
        site=kw.get("site", "north"),
        window_index=0,
        first_event_id=1,
        last_event_id=100,
        n_current=100,
        n_reference=200,
        statistic=kw.get("statistic", 0.5),
        p_value=kw.get("p_value", 0.01),
        drift=kw.get("drift", True),
        details=details,
    )
    s.add(r)
    s.flush()
    return r.id


def _store_results(sessions: sessionmaker[Session]) -> dict[str, dict[str, Any]]:
    rng = np.random.default_rng(3)
    drift = run_drift(
        {"kvp": rng.normal(100, 5, 200), "age": rng.normal(60, 10, 200)},
        {"kvp": rng.normal(115, 5, 100), "age": rng.normal(60, 10, 100)},
        DriftConfig(numeric_columns=("kvp", "age"), n_permutations=200),
        reference_embeddings=rng.normal(size=(200, 4)),
        current_embeddings=rng.normal(size=(100, 4)) + 0.5,
    ).to_dict()
    y = rng.random(400) < 0.3
    score = np.clip(y * 0.3 + rng.random(400) * 0.7, 0, 1)
    sex = np.where(rng.random(400) < 0.5, "F", "M").astype(object)
    fairness = {
        "finding": "effusion",
        "metric": "tpr",
        "report": subgroup_report(
            y, score, 0.5, {"sex": sex}, min_n=20, n_bootstrap=200, seed=1, alpha=0.1
        ).to_dict(),
    }
    performance = {
        "finding": "effusion",
        "metric": "auroc",
        "floor": 0.8,
        "report": evaluate_performance(y, score, 0.5, alpha=0.1).to_dict(),
    }
    with session_scope(sessions) as s:
        for name, kind, details in (
            ("acq", "drift", drift),
            ("fair", "fairness", fairness),
            ("perf", "performance", performance),
        ):
            result_id = _result(s, _monitor(s, name, kind), name, details)
        s.add(
            Alert(
                monitor="acq",
                model_name=TEST_MODEL,
                site="north",
                severity="warning",
                detail="test",
                result_id=result_id,
                opened_after_predictions=100,
            )
        )
    return {"drift": drift, "fairness": fairness, "performance": performance}


def _value(samples: Samples, name: str, **labels: str) -> float:
    found = [
        v for lab, v in samples.get(name, []) if all(lab.get(k) == x for k, x in labels.items())
    ]
    assert len(found) == 1, f"{name}{labels}: {found}"
    return found[0]


def test_exposition_matches_the_catalog(client, sessions) -> None:  # type: ignore[no-untyped-def]
    stored = _store_results(sessions)
    client.get("/healthz")
    client.post("/v1/events", json={"events": [{"nonsense": 1}]})  # a rejected batch
    types, samples = _scrape(client)

    ours = {n for n in types if n.startswith("radwatch_")}
    expected = {m.name for m in CATALOG if m.source != "triton"}
    assert ours - expected == set(), "exposed but not in the catalog"
    assert expected - ours == set(), "in the catalog but not exposed"
    for name in ours:
        spec = BY_NAME[name]
        assert types[name] == spec.kind, name
    for sample_name, rows in samples.items():
        base = sample_name
        for suffix in ("_bucket", "_count", "_sum", "_created"):
            if sample_name.endswith(suffix) and sample_name[: -len(suffix)] in BY_NAME:
                base = sample_name[: -len(suffix)]
        if sample_name.endswith("_total") and sample_name in BY_NAME:
            base = sample_name
        if base not in BY_NAME:
            continue
        for labels, _ in rows:
            assert set(labels) - {"le"} == set(BY_NAME[base].labels), (sample_name, labels)

    # Per-feature drift: the monitors' own numbers.
    kvp = stored["drift"]["columns"]["kvp"]
    assert (
        _value(samples, "radwatch_monitor_feature_p_value", monitor="acq", feature="kvp")
        == (kvp["p_value"])
    )
    assert _value(samples, "radwatch_monitor_feature_drift", monitor="acq", feature="kvp") == 1.0
    mmd = stored["drift"]["multivariate"]["mmd"]
    assert _value(
        samples, "radwatch_monitor_feature_statistic", monitor="acq", feature="embedding:mmd"
    ) == float(mmd["statistic"])
    # Subgroup gap with its CI bounds.
    worst = next(w for w in stored["fairness"]["report"]["worst_vs_rest"] if w["metric"] == "tpr")
    key = {"monitor": "fair", "family": "sex", "metric": "tpr"}
    assert _value(samples, "radwatch_subgroup_gap", **key) == worst["difference"]
    assert _value(samples, "radwatch_subgroup_gap_lower", **key) == worst["lower"]
    assert _value(samples, "radwatch_subgroup_gap_upper", **key) == worst["upper"]
    # Measured performance with bounds, and the floor.
    auroc = stored["performance"]["report"]["metrics"]["auroc"]
    perf = {"monitor": "perf", "metric": "auroc", "finding": "effusion"}
    assert _value(samples, "radwatch_performance", kind="measured", **perf) == auroc["value"]
    assert _value(samples, "radwatch_performance_lower", kind="measured", **perf) == auroc["lower"]
    assert _value(samples, "radwatch_performance", kind="floor", **perf) == 0.8
    # Alerts by state; lifecycle zeros for the deployed model rather than no data.
    assert _value(samples, "radwatch_alerts", state="open", severity="warning") == 1.0
    assert _value(samples, "radwatch_approval_requests", model=TEST_MODEL, state="pending") == 0
    assert _value(samples, "radwatch_retraining_runs", model=TEST_MODEL, state="running") == 0
    assert _value(samples, "radwatch_database_up") == 1.0
    rejected = _value(
        samples, "radwatch_events_rejected_total", source="batch", reason="invalid_event"
    )
    assert rejected >= 1.0
