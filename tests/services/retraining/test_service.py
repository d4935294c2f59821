"""Retraining runs on PostgreSQL and a real MLflow server: the request rules, the persistence rule
of alert triggers, a run end to end through the Celery task (called directly), lineage in MLflow,
the candidate alias, the dossier, the approval request with its conflicted names, and failures.

The scenario: a small trained champion (tests/pipelines/test_retrain.py) is registered and
deployed; 3 sites send studies, and site ``south`` has switched to a scanner vendor the champion
never saw. Every study gets its labels. Helpers here are shared by the API and CLI tests.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from pipelines.contract import FINDINGS
from pipelines.model import predict
from pipelines.preprocess import to_model_input
from pipelines.synth import RadiographGenerator, ShiftSpec
from services.audit.service import verify
from services.change_protocols import service as protocols
from services.change_protocols.document import (
    AcceptanceCriteria,
    ChangeProtocolDocument,
    RetrainingPolicy,
    RobustnessCriterion,
)
from services.core.db import session_scope
from services.core.errors import ConflictError, UnknownModelError, ValidationFailedError
from services.core.models import (
    Alert,
    AlertState,
    ApprovalRequest,
    AuditRecord,
    Dossier,
    GroundTruthLabel,
    MonitorResult,
    PredictionEvent,
    RetrainingRun,
)
from services.core.runtime import Runtime
from services.core.settings import Settings
from services.registry.mlflow_registry import MlflowRegistry
from services.retraining import flows as retraining_runner
from services.retraining import service as retraining
from services.serving.service import deploy_champion
from tests.conftest import enqueuer_for
from tests.fixtures.broker import queued
from tests.pipelines.test_retrain import CHAMPION_CONFIG, trained_champion

SITES = ("north", "central", "south")
FINDING = "cardiomegaly"
N_EVENTS = 300
ENGINEER = "eng-lin"


@functools.cache
def production_studies() -> tuple[list[dict[str, Any]], np.ndarray, np.ndarray, np.ndarray]:
    """Per event (round-robin over the sites): metadata, labels [N, F], the champion's scores
    [N, F] and embeddings [N, D], as the gateway would have recorded them."""
    gen = RadiographGenerator(11)
    per_site = N_EVENTS // len(SITES)
    by_site = {
        site: gen.generate(
            per_site,
            site=site,
            shift=ShiftSpec(vendor_override="delta") if site == "south" else None,
        )
        for site in SITES
    }
    studies = [by_site[site][i] for i in range(per_site) for site in SITES]
    scores, emb = predict(trained_champion().model, to_model_input([s.image for s in studies]))
    labels = np.array([[s.labels[f] for f in FINDINGS] for s in studies], dtype=np.int8)
    meta = [
        {
            "site": s.site,
            "manufacturer": s.manufacturer,
            "manufacturer_model": s.manufacturer_model,
            "view_position": s.view_position,
            "kvp": s.kvp,
            "sex": s.sex,
            "age": float(s.age),
            "race_ethnicity": s.race_ethnicity,
        }
        for s in studies
    ]
    return meta, labels, scores, emb


def make_protocol(**policy: Any) -> ChangeProtocolDocument:
    """Small numbers so a run takes seconds; lenient fairness limits (tiny subgroups)."""
    return ChangeProtocolDocument(
        acceptance=AcceptanceCriteria(
            finding=FINDING,
            min_sensitivity=0.3,
            max_subgroup_gap={"sex": 0.5, "site": 0.6},
            max_ece=0.2,
            robustness=RobustnessCriterion(perturbations=["noise", "blur"], max_auroc_drop=0.1),
        ),
        retraining=RetrainingPolicy(
            **{"min_labelled_events": 100, "epochs": 8, "cooldown_hours": 24, **policy}
        ),
    )


@dataclass
class Scenario:
    model: str
    registry: MlflowRegistry
    champion_version: int
    champion_run_id: str
    sessions: sessionmaker[Session]


def add_events(
    sessions: sessionmaker[Session], model: str, version: int, n: int = N_EVENTS
) -> None:
    meta, labels, scores, emb = production_studies()
    start = datetime(2026, 11, 1, tzinfo=UTC)
    with session_scope(sessions) as s:
        for i in range(n):
            pid = f"{model[:12]}-{i:05d}"
            s.add(
                PredictionEvent(
                    event_id=f"{model}-{i}",
                    model_name=model,
                    model_version=version,
                    study_pid=pid,
                    scores={f: float(scores[i, j]) for j, f in enumerate(FINDINGS)},
                    image_stats={},
                    embedding=emb[i].astype("<f4").tobytes(),
                    occurred_at=start + timedelta(minutes=i),
                    **meta[i],
                )
            )
            for j, f in enumerate(FINDINGS):
                s.add(
                    GroundTruthLabel(
                        study_pid=pid,
                        finding=f,
                        label=bool(labels[i, j]),
                        source="report",
                        reported_at=start + timedelta(days=3, minutes=i),
                    )
                )


@pytest.fixture(scope="session")
def server_registry(mlflow_server_uri: str) -> MlflowRegistry:
    return MlflowRegistry(mlflow_server_uri)


def register_champion(registry: MlflowRegistry, model: str) -> tuple[int, str]:
    """Log the shared champion as the training pipeline does (its TrainConfig as params)."""
    champ = trained_champion()
    run_id = registry.log_training(
        experiment=model,
        run_name=f"train-{model}",
        params=dataclasses.asdict(CHAMPION_CONFIG),
        metrics=champ.metrics,
        model=champ.model,
        profile=champ.profile,
        model_card="# champion",
        tags={"radwatch.kind": "training"},
    )
    version = registry.register(model, run_id)
    registry.set_alias(model, "champion", version)
    return version, run_id


@pytest.fixture
def scenario(server_registry: MlflowRegistry, sessions: sessionmaker[Session]) -> Scenario:
    model = f"cxr-rt-{uuid.uuid4().hex[:6]}"
    version, run_id = register_champion(server_registry, model)
    with session_scope(sessions) as s:
        deploy_champion(
            s, model_name=model, model_version=version, mlflow_run_id=run_id, triton_model=model
        )
        protocols.create_version(s, model, make_protocol(), actor="test")
    add_events(sessions, model, version)
    return Scenario(model, server_registry, version, run_id, sessions)


@pytest.fixture
def worker_settings(
    settings: Settings,
    server_registry: MlflowRegistry,
    tmp_path: Path,
    install_runtime: Callable[[Settings], Runtime],
) -> Settings:
    """The worker's process runtime on this test's database and the MLflow server."""
    configured = settings.model_copy(
        update={"mlflow_tracking_uri": server_registry.tracking_uri, "data_dir": tmp_path / "w"}
    )
    install_runtime(configured)
    return configured


def audit_actions(sessions: sessionmaker[Session]) -> list[tuple[str, str, str]]:
    with session_scope(sessions) as s:
        rows = s.scalars(select(AuditRecord).order_by(AuditRecord.id))
        return [(r.actor, r.action, r.entity_type) for r in rows]


def request(sc: Scenario, **kw: Any) -> int:
    with session_scope(sc.sessions) as s:
        run = retraining.request_run(
            s,
            model_name=sc.model,
            trigger=kw.pop("trigger", "manual"),
            requested_by=kw.pop("requested_by", ENGINEER),
            reason=kw.pop("reason", "Site south switched scanners."),
            options=retraining.RunOptions(robustness_studies=120, **kw),
        )
        return run.id


# --- requests ----------------------------------------------------------------------------------


def test_request_rules_404_409_422_and_audit(scenario: Scenario) -> None:
    sc = scenario
    with session_scope(sc.sessions) as s, pytest.raises(UnknownModelError):
        retraining.request_run(
            s, model_name="nope", trigger="manual", requested_by=ENGINEER, reason="why not"
        )
    run_id = request(sc, epochs=5, seed=9)
    with session_scope(sc.sessions) as s:
        run = retraining.get(s, run_id)
        assert (run.state, run.trigger, run.parent_version) == ("queued", "manual", 1)
        assert run.seed == 9
        assert run.params["epochs"] == 5
        assert run.params["replay_fraction"] == 0.5  # from the protocol's policy
        assert run.params["finding"] == FINDING
        assert run.lineage["protocol_version"] == 1
        assert run.lineage["labelled_events_at_request"] == N_EVENTS
    with pytest.raises(ConflictError, match=f"run {run_id}"):
        request(sc)
    with session_scope(sc.sessions) as s:
        protocols.create_version(s, sc.model, make_protocol(min_labelled_events=10_000), actor="t")
        retraining.get(s, run_id).state = "failed"
    with pytest.raises(ValidationFailedError, match="needs at least 10000") as exc:
        request(sc)
    assert exc.value.details == {"labelled": N_EVENTS, "required": 10_000}
    with pytest.raises(ValidationFailedError, match="epochs"):
        retraining.RunOptions(epochs=0)
    assert (ENGINEER, "retraining.requested", "retraining_run") in audit_actions(sc.sessions)


# --- a run end to end --------------------------------------------------------------------------


def test_retrain_task_end_to_end(
    scenario: Scenario, worker_settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    from services.retraining.tasks import retrain

    sc = scenario
    run_id = request(sc)
    assert retrain(run_id) == "succeeded"
    assert retrain(run_id) == "skipped"  # a duplicate message does nothing

    with session_scope(sc.sessions) as s:
        run = retraining.get(s, run_id)
        dossier = s.scalars(select(Dossier).where(Dossier.retraining_run_id == run_id)).one()
        approval = s.scalars(select(ApprovalRequest)).one()
        document = dossier.document
        lineage, candidate, mlflow_run_id = run.lineage, run.candidate_version, run.mlflow_run_id
        assert run.state == "succeeded"
        assert run.progress == 1.0
        assert run.started_at is not None
        assert run.finished_at is not None
        assert (dossier.candidate_version, dossier.champion_version) == (2, 1)
        assert approval.candidate_version == 2
        assert approval.dossier_id == dossier.id
        assert approval.criteria_passed == dossier.passed
        assert approval.conflicted == {"names": sorted([ENGINEER, "worker"])}
        assert approval.requested_by == ENGINEER
    assert candidate == 2
    assert sc.registry.get_by_alias(sc.model, "candidate").version == 2
    assert sc.registry.get_by_alias(sc.model, "champion").version == 1

    tags = sc.registry.run_tags(mlflow_run_id)
    assert tags["radwatch.kind"] == "retraining"
    assert tags["radwatch.parent_version"] == "1"
    assert tags["radwatch.parent_run_id"] == sc.champion_run_id
    assert tags["radwatch.data_snapshot_sha256"] == lineage["data_snapshot_sha256"]
    assert len(lineage["data_snapshot_sha256"]) == 64
    assert tags["radwatch.code_version"].startswith(("git:", "radwatch=="))
    assert tags["radwatch.trigger"] == "manual"
    assert json.loads(tags["radwatch.trigger_alert_ids"]) == []
    assert tags["radwatch.seed"] == "0"
    assert tags["radwatch.protocol_version"] == "1"
    assert tags["radwatch.replay_source"] == "original_training"
    params = sc.registry.run_params(mlflow_run_id)
    assert params["n_train"] == str(CHAMPION_CONFIG.n_train)  # successors can replay too
    assert params["retrain_replay_fraction"] == "0.5"
    assert int(params["n_train_events"]) + int(params["n_holdout_events"]) == N_EVENTS
    snapshot = json.loads(sc.registry.read_text(mlflow_run_id, "lineage/snapshot.json"))
    assert len(snapshot["train_event_ids"]) == lineage["n_train_events"] == 210
    assert len(snapshot["holdout_event_ids"]) == 90
    assert max(snapshot["train_event_ids"]) < min(snapshot["holdout_event_ids"])  # time split
    stored = json.loads(sc.registry.read_text(mlflow_run_id, "dossier/dossier.json"))
    assert stored["criteria"] == document["criteria"]
    html = sc.registry.read_text(mlflow_run_id, "dossier/dossier.html")
    assert html.startswith("<!doctype html>")
    assert html == dossier.html

    assert set(document["sections"]) == {
        "data",
        "performance",
        "fairness",
        "calibration",
        "robustness",
        "sites",
        "drift_evidence",
    }
    assert set(document["plots"]) == {"roc", "calibration", "forest", "drift_timeline"}
    assert document["sections"]["data"]["evaluation"]["n_events"] == 90
    assert document["sections"]["data"]["replay"] == {"source": "original_training", "n": 210}
    perf = document["sections"]["performance"]
    with capsys.disabled():
        print(
            f"\n[retraining scenario] {FINDING} AUROC on {perf['n']} held-out events "
            f"({perf['n_pos']} positive): champion {perf['champion']['auroc']['value']:.3f} "
            f"[{perf['champion']['auroc']['lower']:.3f}, {perf['champion']['auroc']['upper']:.3f}]"
            f", candidate {perf['candidate']['auroc']['value']:.3f} "
            f"[{perf['candidate']['auroc']['lower']:.3f}, "
            f"{perf['candidate']['auroc']['upper']:.3f}]; non-inferiority lower bound "
            f"{perf['noninferiority']['lower']:+.3f}; passed={document['passed']}: "
            + ", ".join(
                f"{c['name']}={'PASS' if c['passed'] else 'FAIL'}" for c in document["criteria"]
            )
        )

    actions = audit_actions(sc.sessions)
    lifecycle = [
        a
        for _, a, _ in actions
        if a.split(".")[0] in {"retraining", "candidate", "dossier", "approval", "model"}
    ]
    assert lifecycle[-7:] == [
        "retraining.requested",
        "retraining.started",
        "candidate.registered",
        "model.registered",
        "dossier.created",
        "approval.requested",
        "retraining.succeeded",
    ]
    with session_scope(sc.sessions) as s:
        assert verify(s).ok


def test_failure_marks_the_run_failed_with_a_short_message(
    scenario: Scenario, worker_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    sc = scenario
    run_id = request(sc)

    def broken(*_: object) -> None:
        raise RuntimeError("weights corrupt\nTraceback (most recent call last): ...")

    registry = MlflowRegistry(sc.registry.tracking_uri)
    monkeypatch.setattr(registry, "load_model", broken)
    run = retraining_runner.execute_run(sc.sessions, registry, run_id)
    assert run is not None
    assert run.state == "failed"
    assert run.message == "RuntimeError: weights corrupt"
    assert run.finished_at is not None
    assert ("worker", "retraining.failed", "retraining_run") in audit_actions(sc.sessions)
    with session_scope(sc.sessions) as s:
        assert s.scalars(select(Dossier)).first() is None
    # A failed run no longer blocks a new request.
    assert request(sc) != run_id


def test_a_held_out_set_without_positives_fails_the_run_clearly(
    scenario: Scenario, worker_settings: Settings
) -> None:
    sc = scenario
    run_id = request(sc)
    with session_scope(sc.sessions) as s:  # the newest labels all say "no cardiomegaly"
        newest = s.scalars(
            select(PredictionEvent.study_pid).order_by(PredictionEvent.id.desc()).limit(120)
        ).all()
        for label in s.scalars(
            select(GroundTruthLabel).where(
                GroundTruthLabel.study_pid.in_(newest), GroundTruthLabel.finding == FINDING
            )
        ):
            label.label = False
    run = retraining_runner.execute_run(sc.sessions, sc.registry, run_id)
    assert run is not None
    assert run.state == "failed"
    assert run.message == (
        f"The held-out events have 0 positive and 90 negative '{FINDING}' labels; the dossier "
        "needs at least 5 of each. Wait for more labels or raise holdout_fraction."
    )


# --- alert triggers and the persistence rule ---------------------------------------------------


def _windows(
    sessions: sessionmaker[Session], model: str, flags: list[bool], monitor: str = "drift"
) -> int:
    """Windows of ``monitor`` at site south, oldest first; opens an alert on the last one."""
    with session_scope(sessions) as s:
        results = []
        for i, drift in enumerate(flags):
            r = MonitorResult(
                monitor=monitor,
                model_name=model,
                model_version=1,
                site="south",
                window_index=i,
                first_event_id=i * 10,
                last_event_id=i * 10 + 9,
                n_current=100,
                n_reference=200,
                statistic=5.0 if drift else 0.5,
                p_value=1e-4 if drift else 0.4,
                drift=drift,
                details={},
            )
            s.add(r)
            results.append(r)
        s.flush()
        alert = Alert(
            monitor=monitor,
            model_name=model,
            site="south",
            state=AlertState.OPEN,
            severity="warning",
            detail="Acquisition drift at site 'south'",
            result_id=results[-1].id,
            opened_after_predictions=100,
        )
        s.add(alert)
        s.flush()
        return alert.id


def _trigger(sessions: sessionmaker[Session], **kw: Any) -> list[int]:
    with session_scope(sessions) as s:
        return [r.id for r in retraining.trigger_due_runs(s, **kw)]


def test_one_significant_window_never_triggers_three_do(scenario: Scenario) -> None:
    sc = scenario
    alert_id = _windows(sc.sessions, sc.model, [False, False, False, False, False, True])
    assert _trigger(sc.sessions) == []
    # 3 of the last 6 windows of another monitor: persistent evidence.
    alert_id = _windows(
        sc.sessions, sc.model, [False, True, False, True, False, True], monitor="drift-2"
    )
    created = _trigger(sc.sessions)
    assert len(created) == 1
    with session_scope(sc.sessions) as s:
        run = retraining.get(s, created[0])
        assert (run.trigger, run.requested_by) == ("alert", "monitoring")
        assert run.lineage["trigger_alert_ids"] == [alert_id]
        assert "3 significant windows" in run.params["reason"]
        run.state = "failed"
    # Cooldown: the same evidence does not start another run within 24 h...
    assert _trigger(sc.sessions) == []
    # ...but does after it.
    later = datetime.now(UTC) + timedelta(hours=25)
    assert len(_trigger(sc.sessions, now=later)) == 1


def test_trigger_respects_severity_monitors_and_labels(scenario: Scenario) -> None:
    sc = scenario
    _windows(sc.sessions, sc.model, [True, True, True])
    with session_scope(sc.sessions) as s:
        protocols.create_version(s, sc.model, make_protocol(min_severity="critical"), actor="t")
    assert _trigger(sc.sessions) == []
    with session_scope(sc.sessions) as s:
        protocols.create_version(s, sc.model, make_protocol(monitors=["other"]), actor="t")
    assert _trigger(sc.sessions) == []
    with session_scope(sc.sessions) as s:
        protocols.create_version(s, sc.model, make_protocol(min_labelled_events=5000), actor="t")
    assert _trigger(sc.sessions) == []
    with session_scope(sc.sessions) as s:
        protocols.create_version(s, sc.model, make_protocol(enabled=False), actor="t")
    assert _trigger(sc.sessions) == []
    with session_scope(sc.sessions) as s:
        protocols.create_version(s, sc.model, make_protocol(), actor="t")
    assert len(_trigger(sc.sessions)) == 1


def test_trigger_task_enqueues_after_commit_and_resends_stale_runs(
    scenario: Scenario, worker_settings: Settings
) -> None:
    """The real producer publishes to the embedded broker; the test reads the queue."""
    from services.retraining.tasks import retraining_triggers
    from services.worker.app import celery_app, create_celery

    def sent() -> list[tuple[str, tuple[object, ...]]]:
        return queued(worker_settings, "training")

    sc = scenario
    _windows(sc.sessions, sc.model, [True, True, True])
    assert retraining_triggers() == 1
    with session_scope(sc.sessions) as s:
        run = s.scalars(select(RetrainingRun)).one()
    assert sent() == [(retraining.TASK_NAME, (run.id,))]
    # Nothing is sent for work that rolled back.
    s = sc.sessions()
    retraining.enqueue_after_commit(
        s, enqueuer=enqueuer_for(worker_settings), queue="training", run_ids=[99]
    )
    s.rollback()
    s.close()
    assert sent() == [(retraining.TASK_NAME, (run.id,))]
    # A queued run whose message was lost is sent again, once per RESEND_AFTER.
    with session_scope(sc.sessions) as s:
        retraining.get(s, run.id).created_at = datetime.now(UTC) - timedelta(hours=1)
    assert retraining_triggers() == 0
    assert sent() == [(retraining.TASK_NAME, (run.id,))] * 2
    assert retraining_triggers() == 0
    assert len(sent()) == 2

    assert {retraining.TASK_NAME, "lifecycle.retraining_triggers"} <= set(celery_app.tasks)
    app = create_celery(worker_settings)
    beat = app.conf.beat_schedule["lifecycle-retraining-triggers"]
    assert beat["task"] == "lifecycle.retraining_triggers"
    assert beat["options"]["queue"] == "monitoring"
    assert app.amqp.router.route({}, retraining.TASK_NAME)["queue"].name == "training"


def test_progress_is_committed_while_the_run_works(
    scenario: Scenario, worker_settings: Settings
) -> None:
    """Another session (the API, the CLI's --wait) sees the run advance while it is running."""
    sc = scenario
    run_id = request(sc, epochs=3)
    seen: list[tuple[str, str, float]] = []

    def watch(stage: str, done: int, total: int) -> None:
        with session_scope(sc.sessions) as s:
            run = retraining.get(s, run_id)
            seen.append((stage, run.state, run.progress))

    run = retraining_runner.execute_run(sc.sessions, sc.registry, run_id, progress=watch)
    assert run is not None
    assert run.state == "succeeded"
    assert {state for _, state, _ in seen} == {"running"}
    values = [p for _, _, p in seen]
    assert values == sorted(values)
    assert values[0] == 0.0
    assert max(values) >= 0.85  # committed before the dossier stage began
    assert [s for s, _, _ in seen][-1] == "evaluating"


def test_a_run_abandoned_by_a_lost_worker_is_failed_by_the_sweep(scenario: Scenario) -> None:
    sc = scenario
    run_id = request(sc)
    with session_scope(sc.sessions) as s:
        run = retraining.get(s, run_id)
        run.state, run.started_at = "running", datetime.now(UTC) - timedelta(hours=2)
        assert retraining.fail_abandoned(s) == []
        later = datetime.now(UTC) + timedelta(hours=11)
        assert [r.id for r in retraining.fail_abandoned(s, now=later)] == [run_id]
    with session_scope(sc.sessions) as s:
        run = retraining.get(s, run_id)
        assert run.state == "failed"
        assert "worker was probably lost" in (run.message or "")
    assert ("system", "retraining.failed", "retraining_run") in audit_actions(sc.sessions)
