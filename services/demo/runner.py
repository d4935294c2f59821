"""The end-to-end story, on real components: train → register (MLflow) → serve (Triton) →
predict through the API → record → monitor (Celery worker) → alert.

:func:`run_story` takes a :class:`Settings`, so the same code runs on the embedded defaults
(``radwatch demo``) and against PostgreSQL, Redis and an MLflow server (the end-to-end test).
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console

from pipelines.train import TrainConfig
from services.auth.service import create_key
from services.change_protocols import service as protocols
from services.core.db import migrate, session_scope
from services.core.errors import UnavailableError
from services.core.models import Role, as_utc
from services.core.processes import api_process, free_port, settings_env, worker_process
from services.core.progress import make_progress
from services.core.settings import Settings
from services.demo.lifecycle import (
    DEMO_PROTOCOL,
    add_people,
    post_labels,
    promotion_state,
    sign_off,
    wait_for_run,
)
from services.demo.report import write_report
from services.demo.stream import StreamPlan, plan_stream, stream
from services.monitoring.flows import deploy
from services.registry.service import train_and_register
from services.serving.server import TritonServerProcess
from services.wiring import build_runtime


@dataclass(frozen=True)
class DemoOptions:
    studies: int = 2400
    data_dir: Path = Path("radwatch-data/demo")
    report_path: Path | None = Path("demo-report.html")
    seed: int = 2026
    json_output: bool = False
    train_config: TrainConfig = field(default_factory=TrainConfig.demo)
    concurrency: int = 4
    #: How long to wait for the worker to finish the last windows after the stream ends.
    drain_timeout_s: float = 180.0
    #: Approve the candidate as this demo safety officer instead of waiting for a person.
    auto_approve_as: str | None = None
    #: Continue past the alert: labels, retraining, dossier, sign-off, promotion.
    lifecycle: bool = True
    #: Studies streamed after the promotion completed, for the post-promotion monitors.
    after_promotion_studies: int = 600
    #: How long to wait for a person's sign-off when not auto-approving.
    sign_off_timeout_s: float = 3600.0


def child_env(settings: Settings) -> dict[str, str]:
    return settings_env(
        {
            "environment": settings.environment,
            "data_dir": settings.data_dir.resolve(),
            "database_url": settings.resolved_database_url,
            "broker_url": settings.resolved_broker_url,
            "mlflow_tracking_uri": settings.resolved_mlflow_uri,
            "triton_url": settings.triton_url,
            "model_name": settings.model_name,
            "pseudonym_key": settings.pseudonym_key,
            "monitor_window": settings.monitor_window,
            "monitor_alpha": settings.monitor_alpha,
            "monitor_persistence_k": settings.monitor_persistence_k,
            "monitor_persistence_m": settings.monitor_persistence_m,
            "monitor_permutations": settings.monitor_permutations,
            "monitor_interval_s": settings.monitor_interval_s,
        }
    )


def run_story(settings: Settings, opts: DemoOptions, console: Console) -> dict[str, Any]:
    """Run the story and return the summary (the ``--json`` object)."""
    t0 = time.monotonic()
    logs = settings.data_dir / "logs"
    plan = plan_stream(opts.studies)
    say = console.print

    say("[bold]1/10[/bold] database: migrating", settings.resolved_database_url.split("@")[-1])
    migrate(settings.resolved_database_url)
    # Triton's ports are chosen now, so the runtime (built once, in services.wiring) names the
    # server that step 3 starts.
    ports = {"http_port": free_port(), "grpc_port": free_port(), "metrics_port": free_port()}
    settings = settings.model_copy(update={"triton_url": f"127.0.0.1:{ports['http_port']}"})
    rt = build_runtime(settings)
    sessions = rt.sessions
    with session_scope(sessions) as session:
        api_key = create_key(session, name="demo-mlops-engineer", role=Role.MLOPS_ENGINEER)

    say("[bold]2/10[/bold] training the encoder on synthetic radiographs (CPU)")
    registry = rt.registry
    with make_progress(console) as bars:
        tasks: dict[str, Any] = {}

        def progress(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                tasks[stage] = bars.add_task(stage, total=total)
            bars.update(tasks[stage], completed=done, total=total)

        registered, trained = train_and_register(
            registry, model_name=settings.model_name, config=opts.train_config, progress=progress
        )
    auroc = trained.metrics.get("val_auroc_mean", float("nan"))
    say(
        f"     registered [bold]{registered.name}[/bold] v{registered.version} in MLflow "
        f"(alias champion); mean val AUROC {auroc:.3f}"
    )

    with ExitStack() as stack:
        say("[bold]3/10[/bold] starting tritonserver (explicit model control) and deploying")
        settings.triton_repository.mkdir(parents=True, exist_ok=True)
        triton_server = TritonServerProcess(
            settings.triton_repository,
            http_port=ports["http_port"],
            grpc_port=ports["grpc_port"],
            metrics_port=ports["metrics_port"],
            log_path=logs / "triton.log",
        )
        triton_server.start()
        stack.callback(triton_server.stop)
        with session_scope(rt.sessions) as session:
            threshold = protocols.judged_threshold(
                session, registered.name, rt.registry.load_spec(registered.name, registered.version)
            )
        deploy(
            rt,
            model_name=registered.name,
            version=registered.version,
            operating_threshold=threshold,
        )
        triton_version = rt.triton.server_version()

        say("[bold]4/10[/bold] starting the API and a Celery worker (with beat)")
        env = child_env(settings)
        api_port = free_port()
        api = api_process(env, port=api_port, log_path=logs / "api.log").start()
        stack.callback(api.stop)
        worker = worker_process(
            env, log_path=logs / "worker.log", queues="monitoring,training"
        ).start()
        stack.callback(worker.stop)
        base_url = f"http://127.0.0.1:{api_port}"
        api.wait_http(f"{base_url}/healthz", timeout_s=90)
        worker.wait_log("ready", timeout_s=90)

        say(
            f"[bold]5/10[/bold] streaming {plan.studies} studies from {len(plan.sites)} sites; "
            f"'{plan.shifted_site}' switches to vendor '{plan.new_vendor}' after "
            f"{plan.shift_after_predictions} predictions"
        )
        truth: list[tuple[str, dict[str, int]]] = []
        with make_progress(console) as bars:
            task = bars.add_task("predictions", total=plan.studies)
            sent = stream(
                plan,
                base_url=base_url,
                api_key=api_key,
                seed=opts.seed,
                concurrency=opts.concurrency,
                on_progress=lambda n: bars.update(task, completed=n),
                truth=truth,
            )

        say("[bold]6/10[/bold] waiting for the worker to compute the last windows")
        expected = sum(n // settings.monitor_window for n in plan.per_site.values())
        headers = {"Authorization": f"Bearer {api_key}"}
        with httpx.Client(base_url=base_url, headers=headers, timeout=30) as client:
            results = _wait_for_windows(
                client, expected, opts.drain_timeout_s, worker_alive=worker.alive
            )
            alerts = client.get("/v1/alerts").raise_for_status().json()
            lifecycle: dict[str, Any] = {}
            if opts.lifecycle:
                lifecycle = _lifecycle_story(
                    client,
                    base_url=base_url,
                    api_key=api_key,
                    sessions=sessions,
                    settings=settings,
                    plan=plan,
                    truth=truth,
                    opts=opts,
                    console=console,
                    alive=lambda: api.alive() and worker.alive(),
                )
                results = client.get(
                    "/v1/monitor-results", params={"include_details": False}
                ).json()

    summary: dict[str, Any] = {
        "triton_server_version": triton_version,
        "model": {
            "name": registered.name,
            "version": registered.version,
            "mlflow_run_id": registered.run_id,
            "val_auroc_mean": trained.metrics.get("val_auroc_mean"),
        },
        "predictions": sent,
        "sites": list(plan.sites),
        "shifted_site": plan.shifted_site,
        "shift_vendor": plan.new_vendor,
        "shift_started_after_predictions": plan.shift_after_predictions,
        "window": settings.monitor_window,
        "windows_computed": len(results),
        "alerts": [
            {
                "monitor": a["monitor"],
                "site": a["site"],
                "severity": a["severity"],
                "detail": a["detail"],
                "opened_after_predictions": a["opened_after_predictions"],
            }
            for a in alerts
        ],
        "alerts_before_shift": sum(
            1 for a in alerts if a["opened_after_predictions"] <= plan.shift_after_predictions
        ),
        **lifecycle,
        "train_seconds": round(trained.seconds, 1),
        "seconds": round(time.monotonic() - t0, 1),
    }
    if opts.report_path is not None:
        write_report(opts.report_path, summary, results)
        summary["report"] = str(opts.report_path)
    rt.close()
    return summary


def _lifecycle_story(
    client: httpx.Client,
    *,
    base_url: str,
    api_key: str,
    sessions: Any,
    settings: Settings,
    plan: StreamPlan,
    truth: list[tuple[str, dict[str, int]]],
    opts: DemoOptions,
    console: Console,
    alive: Any,
) -> dict[str, Any]:
    """Alert -> labels -> retraining -> dossier -> sign-off -> shadow/canary/champion -> quiet
    monitors; returns the summary's lifecycle keys."""
    say = console.print
    model = settings.model_name
    client.put(f"/v1/models/{model}/protocol", json=DEMO_PROTOCOL).raise_for_status()
    officer = opts.auto_approve_as or "safety-officer"
    people = add_people(sessions, officer)

    say(f"[bold]7/10[/bold] late labels: radiology reports for {len(truth)} studies")
    n_labels = post_labels(client, truth)
    say(f"     {n_labels} labels stored")

    say("[bold]8/10[/bold] retraining, started by the worker once the alert has persisted")
    t_run = time.monotonic()
    run = wait_for_run(client, model, console, timeout_s=900, alive=alive)
    candidate = int(run["candidate_version"])
    dossier = client.get(f"/v1/dossiers/{run['dossier_id']}").json()
    say(
        f"     run {run['id']} ({run['trigger']}): candidate v{candidate} in "
        f"{time.monotonic() - t_run:.0f} s; dossier {dossier['id']} "
        + ("[green]PASSES[/green]" if dossier["passed"] else "[red]FAILS[/red]")
        + " its criteria: "
        + ", ".join(
            f"{c['name']}={'PASS' if c['passed'] else 'FAIL'}"
            for c in dossier["document"]["criteria"]
        )
    )

    say("[bold]9/10[/bold] sign-off by a clinical safety officer")
    decided = sign_off(
        client,
        base_url,
        people,
        model,
        candidate,
        auto_approve=opts.auto_approve_as is not None,
        console=console,
        timeout_s=opts.sign_off_timeout_s,
        alive=alive,
    )
    approvers = [d["approver"] for d in decided.get("decisions", []) if d["decision"] == "approve"]
    out: dict[str, Any] = {
        "candidate_version": candidate,
        "dossier": {"id": dossier["id"], "passed": dossier["passed"]},
        "approval": {"state": decided["state"], "approver": approvers[0] if approvers else None},
        "promoted_version": None,
        "labels": n_labels,
    }
    say(f"     approval request {decided['id']}: {decided['state']}")
    if decided["state"] == "approved":
        out.update(
            _promote(client, plan, settings, opts, console, candidate, api_key, base_url, alive)
        )
    auditor = {"Authorization": f"Bearer {people.auditor_key}"}
    verified = client.get("/v1/audit/verify", headers=auditor).json()
    out["audit_verified"] = bool(verified.get("ok"))
    out["audit_records"] = verified.get("checked")
    say(f"     audit trail: {verified.get('checked')} records, verified={out['audit_verified']}")
    return out


def _after_shift(plan: StreamPlan, per_site: int) -> StreamPlan:
    """``per_site`` more studies from every site, the shifted site on its new vendor throughout."""
    return dataclasses.replace(
        plan,
        studies=per_site * len(plan.sites),
        per_site=dict.fromkeys(plan.sites, per_site),
        shift_from_index=0,
        shift_after_predictions=0,
    )


def _promote(
    client: httpx.Client,
    plan: StreamPlan,
    settings: Settings,
    opts: DemoOptions,
    console: Console,
    candidate: int,
    api_key: str,
    base_url: str,
    alive: Any,
) -> dict[str, Any]:
    """Shadow -> canary -> champion while studies keep arriving (the worker's beat task
    advances each stage when the rollout plan allows), then a quiet stretch under the new
    champion."""
    say = console.print
    model = settings.model_name
    say("[bold]10/10[/bold] promotion: shadow -> canary -> champion under live traffic")
    open_alerts = client.get("/v1/alerts", params={"state": "open"}).json()
    started = client.post(
        f"/v1/models/{model}/promotion",
        json={"version": candidate, "reason": "approved retraining after the drift alert"},
    )
    started.raise_for_status()
    after = _after_shift(plan, 100)
    rounds, sent = 0, 0
    while (state := promotion_state(client, model)) and state["state"] == "in_progress":
        rounds += 1
        if rounds > 12:
            raise UnavailableError(
                f"The promotion stayed in {state['stage']} after {sent} more studies."
            )
        sent += stream(
            after,
            base_url=base_url,
            api_key=api_key,
            seed=opts.seed + rounds,
            concurrency=opts.concurrency,
            event_prefix="promo",
        )
        now = promotion_state(client, model) or {}
        say(f"     {sent} studies during the promotion; stage {now.get('stage')}")
    state = promotion_state(client, model)
    assert state is not None
    if state["state"] != "succeeded":
        raise UnavailableError(f"The promotion ended {state['state']}: {state.get('error')}")
    finished_at = state["finished_at"]
    # The drift the candidate was retrained for is now the accepted acquisition: close its alert.
    for a in open_alerts:
        client.post(
            f"/v1/alerts/{a['id']}/resolve",
            json={"note": f"addressed by the promotion of v{candidate}"},
        )
    quiet = _after_shift(plan, opts.after_promotion_studies // len(plan.sites))
    before = len(client.get("/v1/monitor-results", params={"include_details": False}).json())
    n_quiet = stream(
        quiet,
        base_url=base_url,
        api_key=api_key,
        seed=opts.seed + 100,
        concurrency=opts.concurrency,
        event_prefix="after",
    )
    expected = before + sum(n // settings.monitor_window for n in quiet.per_site.values())
    _wait_for_windows(client, expected, opts.drain_timeout_s, worker_alive=alive)
    alerts = client.get("/v1/alerts").json()
    done = _when(finished_at)
    new = [a for a in alerts if _when(a["opened_at"]) > done]
    routing = client.get(f"/v1/models/{model}/routing").json()
    say(
        f"     v{routing['champion_version']} is champion; {n_quiet} studies after the "
        f"promotion, {len(new)} new alerts"
    )
    return {
        "promoted_version": routing["champion_version"],
        "promotion": {
            "id": state["id"],
            "studies_during": sent,
            "studies_after": n_quiet,
            "alerts_after": len(new),
        },
    }


def _when(text: str) -> datetime:
    at = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return as_utc(at)


def _wait_for_windows(
    client: httpx.Client, expected: int, timeout_s: float, *, worker_alive: Any
) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout_s
    results: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        results = client.get("/v1/monitor-results", params={"include_details": False}).json()
        if len(results) >= expected:
            return results
        if not worker_alive():
            break
        time.sleep(1.0)
    raise UnavailableError(
        f"The worker computed {len(results)} of {expected} windows in {timeout_s:.0f} s; "
        "see the worker log under the data directory's logs/ folder."
    )


def run_demo(opts: DemoOptions) -> dict[str, Any]:
    """``radwatch demo``: a fresh data directory, embedded defaults, a summary at the end."""
    console = Console(stderr=True)
    if opts.data_dir.exists():
        shutil.rmtree(opts.data_dir)
    opts.data_dir.mkdir(parents=True)
    settings = Settings(environment="development", data_dir=opts.data_dir.resolve())
    summary = run_story(settings, opts, console)
    if opts.json_output:
        print(json.dumps(summary, indent=2))
    else:
        _print_summary(Console(), summary)
    return summary


def _print_summary(console: Console, s: dict[str, Any]) -> None:
    console.rule("radwatch demo")
    m = s["model"]
    console.print(
        f"Model {m['name']} v{m['version']} (run {m['mlflow_run_id'][:12]}), "
        f"Triton {s['triton_server_version']}"
    )
    console.print(
        f"{s['predictions']} predictions, {s['windows_computed']} monitor windows, "
        f"{s['seconds']:.0f} s"
    )
    console.print(
        f"Site '{s['shifted_site']}' switched to '{s['shift_vendor']}' after "
        f"{s['shift_started_after_predictions']} predictions."
    )
    if not s["alerts"]:
        console.print("[yellow]No alerts were raised.[/yellow]")
    for a in s["alerts"]:
        console.print(
            f"[red]ALERT[/red] {a['severity']} {a['monitor']} site={a['site']} "
            f"after {a['opened_after_predictions']} predictions: {a['detail']}"
        )
    console.print(f"Alerts before the shift: {s['alerts_before_shift']}")
    if "report" in s:
        console.print(f"Report: {s['report']}")
