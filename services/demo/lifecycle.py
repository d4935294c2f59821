"""The demo's second half: the drift alert leads to retraining, a dossier, a sign-off, and a
staged promotion; the post-promotion monitors then stay quiet.

Everything goes through the running API and the worker, as a hospital would use them: late
labels by ``POST /v1/labels``, the retraining run started by the worker's trigger task when the
alert has persisted, the approval signed through ``POST /v1/approvals/{id}/decision`` (or by a
person on the ``/ui`` pages), and the promotion advanced by the worker's beat task while studies
keep arriving.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
from rich.console import Console
from sqlalchemy.orm import Session, sessionmaker

from services.auth.service import create_key
from services.auth.users import create_user
from services.core.db import session_scope
from services.core.errors import UnavailableError
from services.core.models import Role
from services.core.progress import make_progress

#: The demo's change protocol: a rollout small enough for a demo, and acceptance criteria sized
#: to the evidence a demo hospital has. Its held-out labelled events hold about 100 effusion
#: positives, 45 per sex and 25-40 per site; the 95% interval of a TPR difference between
#: groups that size is about +-0.14 (sex) to +-0.2 (site), so a gap criterion judged on the
#: interval's upper bound cannot be stricter than the true gap plus that, and sensitivity's
#: Wilson lower bound sits about 0.08 under its point estimate. The defaults (0.10 for sex,
#: 0.80 sensitivity) need roughly four times as many labelled studies.
DEMO_PROTOCOL: dict[str, Any] = {
    "acceptance": {
        "finding": "effusion",
        "min_sensitivity": 0.75,
        "max_subgroup_gap": {"sex": 0.25, "site": 0.4},
    },
    "rollout": {"shadow_studies": 60, "canary_share": 0.3, "canary_studies": 30},
    "retraining": {"min_significant_windows": 3, "min_labelled_events": 200, "cooldown_hours": 24},
}


@dataclass
class People:
    officer: str
    officer_key: str
    password: str
    auditor_key: str


def add_people(sessions: sessionmaker[Session], officer: str) -> People:
    """A safety officer account (API key and password) and an auditor key for the demo."""
    password = secrets.token_urlsafe(12)
    with session_scope(sessions) as s:
        create_user(
            s, name=officer, role=Role.CLINICAL_SAFETY_OFFICER, password=password, actor="demo"
        )
        officer_key = create_key(s, name=officer, role=Role.CLINICAL_SAFETY_OFFICER)
        auditor_key = create_key(s, name="demo-auditor", role=Role.AUDITOR)
    return People(officer, officer_key, password, auditor_key)


def post_labels(client: httpx.Client, truth: list[tuple[str, dict[str, int]]]) -> int:
    """The radiologists' reports arrive after the predictions: every finding of every study."""
    reported = datetime.now(UTC).isoformat()
    labels = [
        {
            "study_id": study_id,
            "finding": finding,
            "label": bool(value),
            "source": "radiology-report",
            "reported_at": reported,
        }
        for study_id, findings in truth
        for finding, value in findings.items()
    ]
    stored = 0
    for i in range(0, len(labels), 1000):
        r = client.post("/v1/labels", json={"labels": labels[i : i + 1000]})
        r.raise_for_status()
        stored += int(r.json()["stored"])
    return stored


def wait_for(
    what: str,
    check: Callable[[], Any],
    *,
    timeout_s: float,
    alive: Callable[[], bool],
    every_s: float = 2.0,
) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        if not alive():
            break
        time.sleep(every_s)
    raise UnavailableError(
        f"The demo waited {timeout_s:.0f} s for {what}; see the logs under the data directory."
    )


def wait_for_run(
    client: httpx.Client,
    model: str,
    console: Console,
    *,
    timeout_s: float,
    alive: Callable[[], bool],
) -> dict[str, Any]:
    """The retraining run the worker starts, followed to its end with a progress bar."""
    run = wait_for(
        "the retraining trigger (a persistent alert and enough labels)",
        lambda: (client.get("/v1/retraining", params={"model": model}).json() or [None])[0],
        timeout_s=timeout_s,
        alive=alive,
    )
    with make_progress(console) as bars:
        task = bars.add_task(f"retraining run {run['id']}", total=1.0)
        deadline = time.monotonic() + timeout_s
        while run["state"] in ("queued", "running") and time.monotonic() < deadline:
            time.sleep(2.0)
            run = client.get(f"/v1/retraining/{run['id']}").json()
            bars.update(task, completed=run["progress"], description=run["message"] or run["state"])
    if run["state"] != "succeeded":
        raise UnavailableError(f"Retraining run {run['id']} ended {run['state']}: {run['message']}")
    return dict(run)


def sign_off(
    client: httpx.Client,
    base_url: str,
    people: People,
    model: str,
    candidate: int,
    *,
    auto_approve: bool,
    console: Console,
    timeout_s: float,
    alive: Callable[[], bool],
) -> dict[str, Any]:
    """The pending approval request of the candidate, decided. With ``auto_approve`` the demo
    signs as the named demo safety officer, with a reason that says so; otherwise it waits for a
    person to decide on the /ui pages."""
    request = wait_for(
        "the approval request",
        lambda: next(
            (
                r
                for r in client.get("/v1/approvals", params={"model": model}).json()
                if r["candidate_version"] == candidate
            ),
            None,
        ),
        timeout_s=120,
        alive=alive,
    )
    if auto_approve:
        verb = "approved" if request["criteria_passed"] else "rejected (criteria failed)"
        reason = (
            f"Auto-{verb} by the radwatch demo as '{people.officer}' (--auto-approve-as); "
            "not a clinical review."
        )
        if not request["criteria_passed"]:
            console.print(
                "[yellow]The candidate failed its acceptance criteria; the demo does not "
                "override a failed dossier. Rejecting it.[/yellow]"
            )
        r = client.post(
            f"/v1/approvals/{request['id']}/decision",
            json={
                "decision": "approve" if request["criteria_passed"] else "reject",
                "reason": reason,
                "password": people.password,
            },
            headers={"Authorization": f"Bearer {people.officer_key}"},
        )
        r.raise_for_status()
        console.print(f"     [dim]{reason}[/dim]")
        return dict(r.json())
    console.print(
        f"     Waiting for a clinical safety officer. Sign in at "
        f"[bold]{base_url}/ui/approvals/{request['id']}[/bold] as '{people.officer}' with "
        f"password [bold]{people.password}[/bold] (or run the demo with --auto-approve-as NAME)."
    )
    return dict(
        wait_for(
            "a sign-off decision",
            lambda: (
                d
                if (d := client.get(f"/v1/approvals/{request['id']}").json())["state"] != "pending"
                else None
            ),
            timeout_s=timeout_s,
            alive=alive,
            every_s=3.0,
        )
    )


def promotion_state(client: httpx.Client, model: str) -> dict[str, Any] | None:
    rows = client.get("/v1/promotions", params={"model": model}).json()
    promotions = [p for p in rows if p["kind"] == "promotion"]
    return promotions[0] if promotions else None
