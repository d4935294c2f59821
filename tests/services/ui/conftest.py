"""Fixtures for the sign-off pages: people, approval requests with realistic dossiers (real PNG
plots drawn with matplotlib), the real app served by uvicorn, and Debian's Chromium driven by
Playwright."""

from __future__ import annotations

import base64
import io
import os
import re
import shutil
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from services.auth import users
from services.core.db import session_scope
from services.core.models import (
    ApprovalDecision,
    ApprovalRequest,
    Dossier,
    Promotion,
    Role,
)
from services.core.processes import free_port
from services.core.settings import Settings

REPO = Path(__file__).resolve().parents[3]
SCREENSHOTS = REPO / "tests" / "artifacts" / "ui"
DOCS_IMG = REPO / "docs" / "img"

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]

ADA, BEN, CARL, EVE, AUDREY = "Dr Ada", "Dr Ben", "Dr Carl", "eve.engineer", "audrey.auditor"
PASSWORDS = {
    ADA: "ada-correct-horse-1",
    BEN: "ben-battery-staple-2",
    CARL: "carl-triggered-it-3",
    EVE: "eve-trained-it-4",
    AUDREY: "audrey-reads-all-5",
}
MODEL = "cxr-classifier"


# --- plots and dossier documents -----------------------------------------------------------------


def _png(fig: Any) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80, bbox_inches="tight")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


@pytest.fixture(scope="session")
def plots() -> dict[str, str]:
    """The four dossier plots as data-URI PNGs, drawn once per test session."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    out: dict[str, str] = {}
    fpr = np.linspace(0, 1, 50)

    fig, ax = plt.subplots(figsize=(5, 3.6))
    ax.plot(fpr, fpr**0.28, label="candidate v8 (AUROC 0.912)")
    ax.plot(fpr, fpr**0.3, label="champion v7 (AUROC 0.906)", linestyle="--")
    ax.plot([0, 1], [0, 1], color="grey", linewidth=0.8)
    ax.set(xlabel="False positive rate", ylabel="True positive rate", title="ROC, effusion")
    ax.legend(loc="lower right", fontsize=8)
    out["roc"] = _png(fig)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(5, 3.6))
    bins = np.linspace(0.05, 0.95, 10)
    ax.plot(bins, bins + 0.02 * np.sin(bins * 6), marker="o", label="candidate")
    ax.plot(bins, bins - 0.04 * np.sin(bins * 5), marker="s", linestyle="--", label="champion")
    ax.plot([0, 1], [0, 1], color="grey", linewidth=0.8)
    ax.set(xlabel="Predicted probability", ylabel="Observed frequency", title="Calibration")
    ax.legend(fontsize=8)
    out["calibration"] = _png(fig)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(5, 3.6))
    groups = ["sex=F", "sex=M", "age 18-40", "age 41-65", "age >65", "site north", "site east"]
    diff = np.array([0.01, -0.004, 0.006, -0.012, -0.021, 0.003, -0.015])
    ax.errorbar(diff, range(len(groups)), xerr=0.025, fmt="o", capsize=3)
    ax.axvline(-0.05, color="firebrick", linestyle=":", label="margin -0.05")
    ax.axvline(0, color="grey", linewidth=0.8)
    ax.set_xticks([-0.05, -0.025, 0, 0.025])
    ax.set_yticks(range(len(groups)), groups)
    ax.set(xlabel="TPR difference (candidate - champion)", title="Subgroups")
    ax.legend(fontsize=8)
    out["forest"] = _png(fig)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(5, 3.6))
    windows = np.arange(1, 41)
    stat = np.where(windows < 28, 0.01, 0.07) + 0.004 * np.sin(windows)
    ax.plot(windows, stat, marker=".", label="site east")
    ax.axhline(0.04, color="firebrick", linestyle=":", label="alert threshold")
    ax.set(xlabel="Window (100 studies)", ylabel="MMD²", title="Drift before retraining")
    ax.legend(fontsize=8)
    out["drift_timeline"] = _png(fig)
    plt.close(fig)
    return out


def _criterion(name: str, value: float, threshold: float, passed: bool, detail: str) -> Any:
    return {
        "name": name,
        "passed": passed,
        "value": value,
        "threshold": threshold,
        "detail": detail,
    }


def _group(name: str, n: int, tpr: float | None, ci: list[float] | None) -> Any:
    """A subgroup row; groups under 30 studies are reported as too small, never dropped."""
    return {"group": name, "n": n, "tpr": tpr, "ci": ci, "too_small": n < 30}


def dossier_document(
    plots: dict[str, str], *, candidate: int, champion: int, protocol: int, failing: bool
) -> dict[str, Any]:
    """A dossier laid out as the evaluation step writes it (see the dossier generator)."""
    gap = 0.132 if failing else 0.041
    criteria = [
        _criterion(
            "auroc_non_inferiority",
            -0.004,
            -0.02,
            True,
            "AUROC difference candidate - champion, lower 95% bound -0.013 >= margin -0.02.",
        ),
        _criterion("sensitivity_at_threshold", 0.874, 0.85, True, "At the operating point 0.42."),
        _criterion("specificity_at_threshold", 0.861, 0.80, True, "At the operating point 0.42."),
        _criterion(
            "subgroup_tpr_gap",
            gap,
            0.10,
            not failing,
            "Worst subgroup (age >65) trails the rest by "
            f"{gap:.3f}; one-sided 95% bound {'0.151' if failing else '0.066'}.",
        ),
        _criterion("calibration_ece", 0.031, 0.05, True, "Expected calibration error, 10 bins."),
        _criterion(
            "robustness_auroc_drop",
            0.012,
            0.03,
            True,
            "Largest AUROC drop under acquisition perturbations (noise, contrast, rotation).",
        ),
    ]
    return {
        "model": MODEL,
        "candidate_version": candidate,
        "champion_version": champion,
        "protocol_version": protocol,
        "passed": not failing,
        "criteria": criteria,
        "sections": {
            "data": {
                "evaluation_studies": 2400,
                "sites": ["north", "south", "east"],
                "period": "2026-10-01 to 2026-11-15",
                "label_prevalence": {"effusion": 0.18, "nodule": 0.07, "cardiomegaly": 0.11},
                "snapshot_sha256": "9f2c4e7a1b0d",
            },
            "performance": {
                "candidate": {"auroc": 0.912, "auroc_ci": [0.897, 0.926], "sensitivity": 0.874},
                "champion": {"auroc": 0.916, "auroc_ci": [0.901, 0.93], "sensitivity": 0.869},
                "difference": {"auroc": -0.004, "auroc_ci": [-0.013, 0.005], "sensitivity": 0.005},
            },
            "fairness": {
                "metric": "tpr",
                "max_gap": gap,
                "groups": [
                    _group("sex=F", 1190, 0.88, [0.85, 0.91]),
                    _group("sex=M", 1210, 0.87, [0.84, 0.9]),
                    _group("age >65", 402, round(0.87 - gap, 3), [0.7, 0.8]),
                    _group("race=unknown", 21, None, None),
                ],
            },
            "calibration": {"ece_candidate": 0.031, "ece_champion": 0.036, "bins": 10},
            "robustness": {
                "perturbations": [
                    {"name": "gaussian_noise", "auroc_drop": 0.008, "passed": True},
                    {"name": "contrast_0.8", "auroc_drop": 0.012, "passed": True},
                    {"name": "rotation_5deg", "auroc_drop": 0.004, "passed": True},
                ]
            },
            "sites": {
                "north": {"n": 800, "auroc": 0.918, "champion_auroc": 0.921, "passed": True},
                "south": {"n": 800, "auroc": 0.909, "champion_auroc": 0.912, "passed": True},
                "east": {"n": 800, "auroc": 0.905, "champion_auroc": 0.889, "passed": True},
            },
            "drift_evidence": {
                "monitor": "drift-default",
                "site": "east",
                "alert_ids": [12, 14],
                "first_significant_window": 28,
                "statistic": 0.0712,
                "p_value": 0.0002,
            },
        },
        "plots": plots,
    }


# --- people and requests -------------------------------------------------------------------------


@dataclass(frozen=True)
class Seed:
    #: Passing criteria; to be approved.
    approve_id: int
    #: Passing criteria; to be rejected.
    reject_id: int
    #: Failed a criterion; approving it is an override needing two officers.
    failed_id: int


def _request(
    session: Session,
    plots: dict[str, str],
    *,
    candidate: int,
    failing: bool,
    conflicted: list[str],
    age: timedelta,
) -> int:
    now = datetime.now(UTC)
    doc = dossier_document(plots, candidate=candidate, champion=7, protocol=2, failing=failing)
    dossier = Dossier(
        model_name=MODEL,
        candidate_version=candidate,
        champion_version=7,
        protocol_version=2,
        passed=not failing,
        document=doc,
        html="<html><body><h1>Dossier</h1></body></html>",
        created_at=now - age,
    )
    session.add(dossier)
    session.flush()
    request = ApprovalRequest(
        model_name=MODEL,
        candidate_version=candidate,
        dossier_id=dossier.id,
        state="pending",
        approver_role=Role.CLINICAL_SAFETY_OFFICER.value,
        required_approvals=1,
        criteria_passed=not failing,
        conflicted={"names": sorted(conflicted)},
        requested_by=EVE,
        created_at=now - age,
        expires_at=now - age + timedelta(days=7),
    )
    session.add(request)
    session.flush()
    return request.id


@pytest.fixture
def seed(sessions: sessionmaker[Session], plots: dict[str, str]) -> Seed:
    roles = {
        ADA: Role.CLINICAL_SAFETY_OFFICER,
        BEN: Role.CLINICAL_SAFETY_OFFICER,
        CARL: Role.CLINICAL_SAFETY_OFFICER,
        EVE: Role.MLOPS_ENGINEER,
        AUDREY: Role.AUDITOR,
    }
    with session_scope(sessions) as s:
        for name, role in roles.items():
            users.create_user(s, name=name, role=role, password=PASSWORDS[name], actor="test")
        # Eve trained every candidate; Dr Carl triggered the retraining of version 8.
        approve_id = _request(
            s, plots, candidate=8, failing=False, conflicted=[EVE, CARL], age=timedelta(hours=5)
        )
        reject_id = _request(
            s, plots, candidate=9, failing=False, conflicted=[EVE], age=timedelta(hours=2)
        )
        failed_id = _request(
            s, plots, candidate=10, failing=True, conflicted=[EVE], age=timedelta(minutes=40)
        )
        now = datetime.now(UTC)
        s.add_all(
            [
                Promotion(
                    model_name=MODEL,
                    kind="promotion",
                    from_version=6,
                    to_version=7,
                    stage="champion",
                    state="succeeded",
                    started_by=EVE,
                    reason="Approved retraining after the north site's scanner upgrade.",
                    started_at=now - timedelta(days=20),
                    finished_at=now - timedelta(days=19),
                ),
                Promotion(
                    model_name=MODEL,
                    kind="rollback",
                    from_version=7,
                    to_version=6,
                    stage="champion",
                    state="succeeded",
                    started_by="monitoring",
                    reason="Post-promotion alert: sensitivity below baseline at site south.",
                    started_at=now - timedelta(days=12),
                    finished_at=now - timedelta(days=12),
                ),
            ]
        )
    return Seed(approve_id=approve_id, reject_id=reject_id, failed_id=failed_id)


def request_state(sessions: sessionmaker[Session], request_id: int) -> str:
    with session_scope(sessions) as s:
        return s.scalars(
            select(ApprovalRequest.state).where(ApprovalRequest.id == request_id)
        ).one()


def decisions(sessions: sessionmaker[Session], request_id: int) -> list[ApprovalDecision]:
    with session_scope(sessions) as s:
        rows = s.scalars(
            select(ApprovalDecision)
            .where(ApprovalDecision.request_id == request_id)
            .order_by(ApprovalDecision.id)
        ).all()
        s.expunge_all()
        return list(rows)


# --- the app -------------------------------------------------------------------------------------


def build_app(settings: Settings) -> FastAPI:
    """The real app, with the UI router whether or not app.py includes it yet."""
    from services.api.app import create_app
    from services.ui.endpoints import router

    app = create_app(settings)
    if not any(getattr(route, "path", None) == "/ui/login" for route in app.routes):
        app.include_router(router)
    return app


@pytest.fixture
def ui_client(settings: Settings, seed: Seed) -> Iterator[TestClient]:
    with TestClient(build_app(settings), raise_server_exceptions=False) as c:
        yield c


CSRF = re.compile(r'name="csrf" value="([^"]+)"')


def csrf_of(html: str) -> str:
    match = CSRF.search(html)
    assert match, "no CSRF field on the page"
    return match.group(1)


def sign_in(client: TestClient, name: str) -> None:
    page = client.get("/ui/login")
    response = client.post(
        "/ui/login",
        data={"name": name, "password": PASSWORDS[name], "csrf": csrf_of(page.text)},
        follow_redirects=False,
    )
    assert response.status_code == 303, response.text


@pytest.fixture
def live_url(settings: Settings, seed: Seed) -> Iterator[str]:
    """The app under uvicorn in a thread, on a free port."""
    port = free_port()
    config = uvicorn.Config(
        build_app(settings), host="127.0.0.1", port=port, log_level="warning", lifespan="on"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


# --- the browser ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: apt-get install chromium (scripts/install.sh --dev)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def page(browser: Any, live_url: str) -> Iterator[Any]:
    """A fresh browser context (no cookies) at laptop size, pointed at the live app."""
    context = browser.new_context(
        base_url=live_url, viewport={"width": 1366, "height": 900}, locale="en-GB"
    )
    context.set_default_timeout(10_000)
    try:
        yield context.new_page()
    finally:
        context.close()


def screenshot(page: Any, name: str, *, docs: bool = False) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    target = DOCS_IMG / f"{name}.png"
    # The committed copy changes only on request, so a test run leaves the working tree clean.
    if docs and (not target.exists() or os.environ.get("RADWATCH_UPDATE_DOCS_IMG") == "1"):
        DOCS_IMG.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)
    return path
