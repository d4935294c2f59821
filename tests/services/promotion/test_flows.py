"""Promotion shadow -> canary -> champion and rollback through the real gateway, Triton, MLflow
and PostgreSQL; and atomicity: a step that fails midway leaves MLflow aliases, routing and the
audit log exactly as before."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from services.alerts import service as alerts
from services.alerts.flows import deliver_due
from services.alerts.service import create_subscription
from services.alerts.webhooks import verify_signature
from services.api.app import create_app
from services.audit.service import verify
from services.core.db import session_scope
from services.core.errors import ConflictError, ModelNotLoadedError
from services.core.models import AuditRecord, ModelRouting, Promotion, ShadowPrediction
from services.core.runtime import Runtime
from services.core.settings import Settings
from services.promotion import flows as promotion
from services.registry.mlflow_registry import MlflowRegistry
from services.serving.client import TritonClient
from tests.conftest import enqueuer_for
from tests.fixtures.lifecycle import TwoVersions, approve, request_for, small_rollout
from tests.fixtures.webhooks import Receiver
from tests.services.alerts.conftest import seed_result


def _image(seed: int) -> list[list[float]]:
    rng = np.random.default_rng(seed)
    return np.clip(0.4 + 0.1 * rng.standard_normal((96, 96)), 0, 1).round(4).tolist()


def _predict(client: Any, model: str, i: int) -> dict[str, Any]:
    r = client.post(
        f"/v1/predictions?model={model}",
        json={
            "image": _image(i),
            "metadata": {"study_id": f"S-{i}", "site": "north", "sex": "F", "age": 60},
        },
    )
    assert r.status_code == 200, r.text
    return dict(r.json())


def _ctx(
    two: TwoVersions,
    sessions: sessionmaker[Session],
    settings: Settings,
    registry: MlflowRegistry | None = None,
) -> Runtime:
    """The runtime a promotion step gets, with the real adapters (the registry may be a
    wrapper that fails on purpose)."""
    cfg = settings.model_copy(
        update={"triton_url": two.triton_url, "triton_model_repository": two.repository}
    )
    return Runtime(
        settings=cfg,
        engine=sessions.kw["bind"],
        sessions=sessions,
        triton=TritonClient(two.triton_url),
        enqueuer=enqueuer_for(cfg),
        registry_factory=lambda: registry or two.registry,
    )


@pytest.fixture
def engineer_client(lifecycle_settings: Settings, keys: dict[str, str]) -> Iterator[Any]:
    with TestClient(create_app(lifecycle_settings), raise_server_exceptions=False) as c:
        c.headers["Authorization"] = f"Bearer {keys['mlops_engineer']}"
        yield c


def _snapshot(two: TwoVersions, sessions: sessionmaker[Session]) -> dict[str, Any]:
    with session_scope(sessions) as s:
        routing = s.get(ModelRouting, two.name)
        return {
            "aliases": {
                a: two.registry.alias_version(two.name, a) for a in ("champion", "candidate")
            },
            "routing": None
            if routing is None
            else (routing.mode, routing.champion_version, routing.candidate_version),
            "audit_count": s.scalar(select(func.count()).select_from(AuditRecord)),
            "audit_head": s.scalar(
                select(AuditRecord.hash).order_by(AuditRecord.id.desc()).limit(1)
            ),
            "promotions": s.scalar(select(func.count()).select_from(Promotion)),
        }


def test_full_promotion_then_rollback(
    two_versions: TwoVersions,
    sessions: sessionmaker[Session],
    settings: Settings,
    people: dict[str, str],
    engineer_client: Any,
) -> None:
    name = two_versions.name
    with session_scope(sessions) as s:
        small_rollout(s, name)
        request_id = request_for(s, name, 2)
    approve(sessions, settings, request_id)

    r = engineer_client.post(
        f"/v1/models/{name}/promotion", json={"version": 2, "reason": "approved retrain"}
    )
    assert r.status_code == 200, r.text
    assert r.json()["stage"] == "shadow"
    # Shadow: every answer is the champion's; the candidate's scores are logged beside them.
    answers = [_predict(engineer_client, name, i) for i in range(4)]
    assert {a["model"]["version"] for a in answers} == {1}
    with session_scope(sessions) as s:
        shadows = s.scalars(
            select(ShadowPrediction).where(ShadowPrediction.model_name == name)
        ).all()
        assert len(shadows) == 4
        assert {sp.candidate_version for sp in shadows} == {2}
        assert all(sp.scores != sp.champion_scores for sp in shadows)
    summary = engineer_client.get(f"/v1/models/{name}/shadow").json()
    assert summary["n"] == 4

    r = engineer_client.post(f"/v1/models/{name}/promotion/advance", json={})
    assert r.status_code == 200, r.text
    assert r.json()["stage"] == "canary"
    versions = {_predict(engineer_client, name, 100 + i)["model"]["version"] for i in range(24)}
    assert versions == {1, 2}, "a 50% canary should answer with both versions"
    # Sticky: the same study gets the same arm again.
    again = {_predict(engineer_client, name, 100)["model"]["version"] for _ in range(3)}
    assert len(again) == 1

    r = engineer_client.post(f"/v1/models/{name}/promotion/advance", json={})
    assert r.status_code == 200, r.text
    assert (r.json()["stage"], r.json()["state"]) == ("champion", "succeeded")
    assert two_versions.registry.alias_version(name, "champion") == 2
    assert two_versions.registry.alias_version(name, "candidate") is None
    assert {_predict(engineer_client, name, 200 + i)["model"]["version"] for i in range(3)} == {2}
    routing = engineer_client.get(f"/v1/models/{name}/routing").json()
    assert (routing["mode"], routing["champion_version"], routing["previous_champion_version"]) == (
        "champion",
        2,
        1,
    )

    r = engineer_client.post(f"/v1/models/{name}/rollback", json={"reason": "post-promotion check"})
    assert r.status_code == 200, r.text
    assert r.json()["kind"] == "rollback"
    assert two_versions.registry.alias_version(name, "champion") == 1
    assert {_predict(engineer_client, name, 300 + i)["model"]["version"] for i in range(3)} == {1}
    with session_scope(sessions) as s:
        assert verify(s).ok
        acts = [a for (a,) in s.execute(select(AuditRecord.action).order_by(AuditRecord.id))]
    for action in (
        "approval.approved",
        "promotion.started",
        "promotion.stage_changed",
        "promotion.succeeded",
        "rollback.succeeded",
    ):
        assert action in acts


def test_unapproved_or_rejected_candidates_cannot_be_promoted(
    two_versions: TwoVersions,
    sessions: sessionmaker[Session],
    settings: Settings,
    people: dict[str, str],
) -> None:
    ctx = _ctx(two_versions, sessions, settings)
    with session_scope(sessions) as s:
        request_id = request_for(s, two_versions.name, 2)
    with pytest.raises(ConflictError, match="no approved sign-off"):
        promotion.start(ctx, model_name=two_versions.name, version=2, actor="eng", reason="try")
    from services.approvals import service as approvals
    from services.core.models import Role

    with session_scope(sessions) as s:
        approvals.decide(
            s,
            settings,
            request_id=request_id,
            signer=approvals.Signer("Dr Ada", Role.CLINICAL_SAFETY_OFFICER),
            decision="reject",
            reason="Subgroup gap too wide for women over 80.",
            password="correct horse battery",
        )
    with pytest.raises(ConflictError, match="rejected"):
        promotion.start(ctx, model_name=two_versions.name, version=2, actor="eng", reason="try")
    with session_scope(sessions) as s, pytest.raises(ConflictError, match="rejected"):
        request_for(s, two_versions.name, 2)


def test_triton_refusing_to_load_leaves_everything_as_before(
    two_versions: TwoVersions,
    sessions: sessionmaker[Session],
    settings: Settings,
    people: dict[str, str],
) -> None:
    """Kill the promotion midway: Triton refuses the candidate (its version folder is broken)."""
    name = two_versions.name
    with session_scope(sessions) as s:
        request_id = request_for(s, name, 2)
    approve(sessions, settings, request_id)
    broken = two_versions.repository / name / "2"
    broken.mkdir(parents=True)
    (broken / "model.py").write_text("raise RuntimeError('corrupt candidate')\n")
    before = _snapshot(two_versions, sessions)
    with pytest.raises(ModelNotLoadedError):
        promotion.start(
            _ctx(two_versions, sessions, settings),
            model_name=name,
            version=2,
            actor="eng",
            reason="go",
        )
    assert _snapshot(two_versions, sessions) == before
    # The champion still answers: version 1 stayed loaded.
    assert TritonClient(two_versions.triton_url).is_model_ready(name, 1)


class _FailingRegistry(MlflowRegistry):
    """The real MLflow adapter, with a fault injected after the first alias move of a step
    (the process dies between the candidate alias and the commit, as far as the step can tell)."""

    def __init__(self, inner: MlflowRegistry, fail_on: str) -> None:
        super().__init__(inner.tracking_uri)
        self.fail_on = fail_on

    def set_alias(self, name: str, alias: str, version: int) -> None:
        super().set_alias(name, alias, version)
        if alias == self.fail_on:
            raise RuntimeError("killed midway")


def test_failure_after_an_alias_moved_is_undone(
    two_versions: TwoVersions,
    sessions: sessionmaker[Session],
    settings: Settings,
    people: dict[str, str],
) -> None:
    name = two_versions.name
    two_versions.registry.delete_alias(name, "candidate")
    with session_scope(sessions) as s:
        small_rollout(s, name)
        request_id = request_for(s, name, 2)
    approve(sessions, settings, request_id)
    before = _snapshot(two_versions, sessions)
    failing = _FailingRegistry(two_versions.registry, fail_on="candidate")
    with pytest.raises(RuntimeError, match="killed midway"):
        promotion.start(
            _ctx(two_versions, sessions, settings, failing),
            model_name=name,
            version=2,
            actor="eng",
            reason="go",
        )
    assert _snapshot(two_versions, sessions) == before
    # And at the final switch: champion alias moved, then the process "dies".
    ctx = _ctx(two_versions, sessions, settings)
    promotion.start(ctx, model_name=name, version=2, actor="eng", reason="go")
    promotion.advance(ctx, model_name=name, actor="eng", force=True)
    before = _snapshot(two_versions, sessions)
    with pytest.raises(RuntimeError, match="killed midway"):
        promotion.advance(
            _ctx(
                two_versions,
                sessions,
                settings,
                _FailingRegistry(two_versions.registry, "champion"),
            ),
            model_name=name,
            actor="eng",
            force=True,
        )
    assert _snapshot(two_versions, sessions) == before
    assert before["aliases"] == {"champion": 1, "candidate": 2}
    assert before["routing"] == ("canary", 1, 2)


def test_a_rollback_trigger_rolls_back_automatically_and_alerts(
    two_versions: TwoVersions,
    sessions: sessionmaker[Session],
    settings: Settings,
    people: dict[str, str],
) -> None:
    """A critical alert opened after the promotion is a rollback trigger of the default change
    protocol: the watch restores the previous champion and opens an alert saying so."""
    from services.core.models import Alert, MonitorResult

    name = two_versions.name
    with session_scope(sessions) as s:
        small_rollout(s, name)
        request_id = request_for(s, name, 2)
    approve(sessions, settings, request_id)
    ctx = _ctx(two_versions, sessions, settings)
    promotion.start(ctx, model_name=name, version=2, actor="eng", reason="go")
    promotion.advance(ctx, model_name=name, actor="eng", force=True)
    promotion.advance(ctx, model_name=name, actor="eng", force=True)
    assert promotion.watch(ctx) == []  # nothing has fired yet
    with session_scope(sessions) as s:
        result = MonitorResult(
            monitor="acquisition_drift",
            model_name=name,
            model_version=2,
            site="north",
            window_index=0,
            first_event_id=1,
            last_event_id=2,
            n_current=100,
            n_reference=100,
            statistic=1.0,
            p_value=0.0001,
            drift=True,
            details={},
        )
        s.add(result)
        s.flush()
        s.add(
            Alert(
                monitor="acquisition_drift",
                model_name=name,
                site="north",
                severity="critical",
                detail="drift after promotion",
                result_id=result.id,
                opened_after_predictions=100,
            )
        )
    rolled = promotion.watch(ctx)
    assert len(rolled) == 1
    assert two_versions.registry.alias_version(name, "champion") == 1
    with session_scope(sessions) as s:
        routing = s.get(ModelRouting, name)
        assert routing is not None
        assert (routing.mode, routing.champion_version) == ("champion", 1)
        opened = s.scalars(
            select(Alert).where(
                Alert.model_name == name, Alert.monitor == promotion.ROLLBACK_MONITOR
            )
        ).all()
        assert len(opened) == 1
        assert opened[0].severity == "critical"
        back = s.get(Promotion, rolled[0])
        assert back is not None
        assert (back.kind, back.started_by, back.to_version) == ("rollback", "system", 1)
    assert promotion.watch(ctx) == []  # the rollback is the latest change: nothing more to do


def test_an_automatic_rollback_is_announced_by_a_signed_webhook(
    two_versions: TwoVersions,
    sessions: sessionmaker[Session],
    settings: Settings,
    people: dict[str, str],
    receiver: Receiver,
) -> None:
    """The alert an automatic rollback opens goes through alerts.service.open like a monitor's:
    it has outbox rows, and the delivery sweep POSTs it, signed, to a real HTTP receiver."""
    name = two_versions.name
    secret = "s3cret-" + "x" * 40
    with session_scope(sessions) as s:
        create_subscription(s, url=receiver.url, secret=secret, min_severity="critical")
        small_rollout(s, name)
        request_id = request_for(s, name, 2)
    approve(sessions, settings, request_id)
    ctx = _ctx(two_versions, sessions, settings)
    promotion.start(ctx, model_name=name, version=2, actor="eng", reason="go")
    promotion.advance(ctx, model_name=name, actor="eng", force=True)
    promotion.advance(ctx, model_name=name, actor="eng", force=True)
    with session_scope(sessions) as s:
        opened = alerts.open(
            s,
            enqueuer=ctx.enqueuer,
            monitor="acquisition_drift",
            model_name=name,
            site="north",
            severity="critical",
            detail="drift after promotion",
            result_id=seed_result(s, site="north", model_name=name),
            opened_after_predictions=100,
            actor="test",
        )
        assert opened is not None
    assert len(promotion.watch(ctx)) == 1

    assert deliver_due(sessions, settings=settings).delivered == 2
    bodies = [r.json() for r in receiver.requests]
    assert [(b["event"], b["alert"]["monitor"]) for b in bodies] == [
        ("alert.opened", "acquisition_drift"),
        ("alert.opened", promotion.ROLLBACK_MONITOR),
    ]
    rollback_alert = bodies[1]["alert"]
    assert (rollback_alert["severity"], rollback_alert["site"]) == ("critical", "*")
    assert "restored the previous champion" in rollback_alert["detail"]
    request = receiver.requests[1]
    assert verify_signature(
        secret,
        request.body,
        request.headers["X-Radwatch-Timestamp"],
        request.headers["X-Radwatch-Signature"],
    )
    with session_scope(sessions) as s:
        trail = [r.action for r in s.scalars(select(AuditRecord).order_by(AuditRecord.id))]
    assert trail.count("alert.opened") == 2


def test_a_protocol_version_is_stored_with_the_model_in_mlflow(
    two_versions: TwoVersions, engineer_client: Any
) -> None:
    r = engineer_client.put(
        f"/v1/models/{two_versions.name}/protocol",
        json={"approvals_required": 2, "rollout": {"canary_share": 0.2}},
    )
    assert r.status_code == 200, r.text
    version = r.json()["version"]
    tags = two_versions.registry.model_tags(two_versions.name)
    stored = json.loads(tags[f"radwatch.change_protocol.v{version}"])
    assert stored == r.json()["document"]
    assert stored["approvals_required"] == 2
    bad = engineer_client.put(
        f"/v1/models/{two_versions.name}/protocol", json={"approvals_requird": 2}
    )
    assert bad.status_code == 422
    assert "approvals_requird" in bad.json()["error"]["message"]
