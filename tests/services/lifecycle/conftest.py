"""Fixtures of the lifecycle tests: a real MLflow registry (embedded SQLite store), models
registered in it, the session's real tritonserver, people with passwords, and approvals."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.orm import Session, sessionmaker

from pipelines.export_triton import export_model
from services.auth.users import create_user
from services.core.db import session_scope
from services.core.models import Dossier, Role
from services.core.settings import Settings
from services.lifecycle import approvals, protocols
from services.lifecycle.protocol import ChangeProtocolDocument, RolloutPlan
from services.registry.mlflow_registry import MlflowRegistry
from services.serving.client import TritonClient
from services.serving.service import deploy_champion
from tests.fixtures.profiles import random_profile
from tests.fixtures.triton import make_test_model

PASSWORD = "correct horse battery"
OFFICER, OFFICER_2, ENGINEER = "Dr Ada", "Dr Grace", "eng-lin"


@pytest.fixture(scope="session")
def lifecycle_registry(tmp_path_factory: pytest.TempPathFactory) -> MlflowRegistry:
    root = tmp_path_factory.mktemp("mlflow-lifecycle")
    return MlflowRegistry(f"sqlite:///{root / 'mlflow.db'}")


@dataclass
class TwoVersions:
    name: str
    registry: MlflowRegistry
    runs: dict[int, str]
    repository: Path
    triton_url: str


@pytest.fixture
def two_versions(
    lifecycle_registry: MlflowRegistry, triton_server: Any, sessions: sessionmaker[Session]
) -> TwoVersions:
    """Model ``cxr-<random>``: v1 champion (exported, loaded on Triton, deployed in the DB,
    MLflow alias champion) and v2 registered with alias candidate, not yet on Triton."""
    name = f"cxr-{uuid.uuid4().hex[:8]}"
    runs: dict[int, str] = {}
    for seed in (1, 2):
        run_id = lifecycle_registry.log_training(
            experiment=f"exp-{name}",
            run_name=f"v{seed}",
            params={"seed": seed},
            metrics={"val_auroc_effusion": 0.9},
            model=make_test_model(seed),
            profile=random_profile(seed=seed),
            model_card="# card",
        )
        version = lifecycle_registry.register(name, run_id)
        runs[version] = run_id
    lifecycle_registry.set_alias(name, "champion", 1)
    lifecycle_registry.set_alias(name, "candidate", 2)
    export_model(make_test_model(1), triton_server.model_repository, name, 1)
    TritonClient(triton_server.url).load_model(name)
    with session_scope(sessions) as s:
        deploy_champion(
            s, model_name=name, model_version=1, mlflow_run_id=runs[1], triton_model=name
        )
    return TwoVersions(
        name, lifecycle_registry, runs, triton_server.model_repository, triton_server.url
    )


@pytest.fixture
def people(sessions: sessionmaker[Session]) -> dict[str, str]:
    with session_scope(sessions) as s:
        create_user(
            s, name=OFFICER, role=Role.CLINICAL_SAFETY_OFFICER, password=PASSWORD, actor="t"
        )
        create_user(
            s, name=OFFICER_2, role=Role.CLINICAL_SAFETY_OFFICER, password=PASSWORD, actor="t"
        )
        create_user(s, name=ENGINEER, role=Role.MLOPS_ENGINEER, password=PASSWORD, actor="t")
    return {"officer": OFFICER, "officer2": OFFICER_2, "engineer": ENGINEER}


def small_rollout(session: Session, model: str) -> None:
    protocols.create_version(
        session,
        model,
        ChangeProtocolDocument(
            rollout=RolloutPlan(shadow_studies=3, canary_share=0.5, canary_studies=2)
        ),
        actor="test",
    )


def request_for(
    session: Session,
    model: str,
    version: int,
    *,
    passed: bool = True,
    conflicted: tuple[str, ...] = (ENGINEER,),
) -> int:
    """An approval request for ``model`` ``version`` with a minimal stored dossier."""
    _, doc = protocols.current(session, model, actor="test")
    dossier = Dossier(
        model_name=model,
        candidate_version=version,
        champion_version=1,
        protocol_version=1,
        passed=passed,
        document={"passed": passed, "criteria": [], "sections": {}, "plots": {}},
        html="<html></html>",
    )
    session.add(dossier)
    session.flush()
    req = approvals.open_request(
        session,
        model_name=model,
        candidate_version=version,
        dossier_id=dossier.id,
        criteria_passed=passed,
        protocol=doc,
        requested_by=ENGINEER,
        conflicted=list(conflicted),
    )
    return req.id


def approve(
    sessions: sessionmaker[Session], settings: Settings, request_id: int, who: str = OFFICER
) -> None:
    with session_scope(sessions) as s:
        approvals.decide(
            s,
            settings,
            request_id=request_id,
            signer=approvals.Signer(who, Role.CLINICAL_SAFETY_OFFICER),
            decision="approve",
            reason="Dossier reviewed; all criteria met.",
            password=PASSWORD,
        )


@pytest.fixture
def lifecycle_settings(settings: Settings, two_versions: TwoVersions) -> Settings:
    return settings.model_copy(
        update={
            "triton_url": two_versions.triton_url,
            "model_name": two_versions.name,
            "mlflow_tracking_uri": two_versions.registry.tracking_uri,
            "triton_model_repository": two_versions.repository,
        }
    )
