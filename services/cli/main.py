"""The ``radwatch`` command line."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from services.cli import audit as audit_cli
from services.cli import evaluation as evaluation_cli
from services.cli import grafana as grafana_cli
from services.cli import lifecycle as lifecycle_cli
from services.cli import models as models_cli
from services.cli import monitor as monitor_cli
from services.cli import monitors as monitors_cli
from services.cli import probes as probes_cli
from services.cli import retrain as retrain_cli
from services.cli.common import actor, fail, fail_message, runtime, sessions
from services.core.errors import RadwatchError

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

app = typer.Typer(
    name="radwatch",
    help="Keep radiology AI models safe after deployment: serve, record, monitor, alert.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
db_app = typer.Typer(help="Service database.", no_args_is_help=True)
keys_app = typer.Typer(help="API keys.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(keys_app, name="keys")
app.add_typer(monitor_cli.app, name="monitor")
app.add_typer(monitors_cli.app, name="monitors")
app.add_typer(models_cli.app, name="models")
app.add_typer(models_cli.reference_app, name="reference")
app.add_typer(evaluation_cli.evaluation_sets_app, name="evaluation-sets")
app.add_typer(evaluation_cli.candidates_app, name="candidates")
app.add_typer(probes_cli.app, name="probes")
app.add_typer(audit_cli.app, name="audit")
app.add_typer(grafana_cli.app, name="grafana")
app.add_typer(retrain_cli.app, name="retrain")
app.add_typer(lifecycle_cli.users_app, name="users")
app.add_typer(lifecycle_cli.promote_app, name="promote")
app.command("rollback")(lifecycle_cli.rollback)
metrics_app = typer.Typer(help="Prometheus metrics.", no_args_is_help=True)
app.add_typer(metrics_app, name="metrics")


def _require_schema(engine: Engine) -> None:
    """Exit with a clear message when the service database is unreachable or not migrated."""
    from sqlalchemy import inspect

    try:
        tables = set(inspect(engine).get_table_names())
    except Exception as exc:
        fail_message(f"cannot reach the service database ({type(exc).__name__}).", code=1)
    if "audit_log" not in tables:
        fail_message("the service database is not migrated; run `radwatch db upgrade`.")


@app.command()
def demo(
    json_output: Annotated[
        bool, typer.Option("--json", help="Print one JSON summary at the end.")
    ] = False,
    studies: Annotated[int, typer.Option(min=300, help="Studies to stream.")] = 2400,
    data_dir: Annotated[
        Path, typer.Option(help="Where the demo keeps its databases and models.")
    ] = Path("radwatch-data/demo"),
    report: Annotated[Path, typer.Option(help="HTML report path.")] = Path("demo-report.html"),
    seed: Annotated[int, typer.Option(help="Seed of the study stream.")] = 2026,
    auto_approve_as: Annotated[
        str | None,
        typer.Option(
            help="Sign off the candidate as this demo safety officer (logged as such) instead of "
            "waiting for a person to approve it on the /ui pages."
        ),
    ] = None,
    lifecycle: Annotated[
        bool,
        typer.Option(help="Continue past the alert: labels, retraining, sign-off, promotion."),
    ] = True,
) -> None:
    """Run the whole story on embedded defaults: train, register, serve on Triton, stream studies
    from 3 sites (one switches scanner vendor midway), monitor with a Celery worker, alert; then
    late labels, retraining, an evaluation dossier, sign-off, and a shadow -> canary -> champion
    promotion after which the monitors stay quiet."""
    from services.demo.runner import DemoOptions, run_demo

    try:
        run_demo(
            DemoOptions(
                studies=studies,
                data_dir=data_dir,
                report_path=report,
                seed=seed,
                json_output=json_output,
                auto_approve_as=auto_approve_as,
                lifecycle=lifecycle,
            )
        )
    except RadwatchError as exc:
        fail(exc)


@metrics_app.command("catalog")
def metrics_catalog() -> None:
    """Print the metrics catalog as Markdown (docs/metrics.md is this output)."""
    from services.metrics.catalog import render_markdown

    typer.echo(render_markdown(), nl=False)


@app.command()
def api(
    host: Annotated[str, typer.Option()] = "127.0.0.1",
    port: Annotated[int, typer.Option()] = 8080,
    workers: Annotated[int, typer.Option(min=1)] = 1,
) -> None:
    """Serve the REST API (uvicorn). Settings come from RADWATCH_* variables.

    With several workers, the API's counters are merged across the worker processes through
    ``PROMETHEUS_MULTIPROC_DIR`` (a fresh temporary folder unless it is already set), so one
    scrape of ``/metrics`` covers every process."""
    import shutil
    import tempfile

    import uvicorn

    if workers > 1 and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="radwatch-prom-")
    folder = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if folder:
        # Files of processes from an earlier run would be merged in as if they were alive.
        shutil.rmtree(folder, ignore_errors=True)
        os.makedirs(folder, exist_ok=True)
    uvicorn.run("services.api.app:create_app", factory=True, host=host, port=port, workers=workers)


@app.command()
def worker(
    beat: Annotated[bool, typer.Option(help="Also run the beat scheduler in this process.")] = True,
    concurrency: Annotated[int, typer.Option(min=1)] = 1,
    queues: Annotated[
        str,
        typer.Option(help="Comma-separated queues: monitoring and/or training (GPU workers)."),
    ] = "monitoring",
) -> None:
    """Run a Celery worker (monitoring queue by default; training for retraining runs)."""
    from services.core.processes import worker_argv

    bad = {q for q in queues.split(",") if q not in ("monitoring", "training")}
    if bad:
        fail_message(f"unknown queue(s) {sorted(bad)}; use monitoring, training.")
    argv = worker_argv(beat=beat, concurrency=concurrency, queues=queues)
    os.execv(sys.executable, argv)  # noqa: S606 - replaces this process with the worker


@app.command()
def beat() -> None:
    """Run the beat scheduler alone (exactly one per installation; workers then use --no-beat)."""
    from services.core.processes import beat_argv

    os.execv(sys.executable, beat_argv())  # noqa: S606 - replaces this process with beat


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Apply all database migrations."""
    from services.core.db import migrate
    from services.core.settings import get_settings

    url = get_settings().resolved_database_url
    migrate(url)
    typer.echo("database is at the latest revision")


@keys_app.command("create")
def keys_create(
    name: Annotated[str, typer.Option(help="Who or what uses the key.")],
    role: Annotated[str, typer.Option(help="mlops_engineer, clinical_safety_officer or auditor.")],
) -> None:
    """Create an API key and print it once."""
    from services.auth.service import create_key
    from services.core.db import session_scope
    from services.core.models import Role

    try:
        parsed = Role(role)
    except ValueError:
        roles = ", ".join(r.value for r in Role)
        fail_message(f"unknown role '{role}'; use one of: {roles}")
    with sessions() as factory, session_scope(factory) as session:
        key = create_key(session, name=name, role=parsed)
    typer.echo(key)


@app.command()
def train(
    preset: Annotated[str, typer.Option(help="demo or tiny.")] = "demo",
    model_name: Annotated[str | None, typer.Option(help="Registered model name.")] = None,
) -> None:
    """Train the model on synthetic radiographs and register it in MLflow as 'champion'."""
    from pipelines.train import TrainConfig
    from services.core.db import session_scope
    from services.core.progress import stage_progress
    from services.registry.service import train_and_register

    config = TrainConfig.demo() if preset == "demo" else TrainConfig.tiny()
    with runtime() as rt:
        _require_schema(rt.engine)  # fail before minutes of training, not after
        try:
            with stage_progress() as progress, session_scope(rt.sessions) as session:
                registered, _ = train_and_register(
                    rt.registry,
                    model_name=model_name or rt.settings.model_name,
                    config=config,
                    progress=progress,
                    session=session,
                    actor=actor(),
                )
        except RadwatchError as exc:
            fail(exc)
    typer.echo(
        f"registered {registered.name} version {registered.version} (run {registered.run_id})"
    )


@app.command()
def deploy(
    version: Annotated[
        int | None, typer.Option(help="Version; default the 'champion' alias.")
    ] = None,
    model_name: Annotated[str | None, typer.Option()] = None,
    threshold: Annotated[
        float | None,
        typer.Option(
            min=0.0,
            max=1.0,
            help="Operating threshold; default the spec's threshold of the judged finding.",
        ),
    ] = None,
) -> None:
    """Export a registered version to the Triton repository, load it and make it the champion."""
    from services.change_protocols import service as protocols
    from services.core.db import session_scope
    from services.monitoring.flows import deploy as deploy_flow

    with runtime() as rt:
        name = model_name or rt.settings.model_name
        try:
            v = (
                version
                if version is not None
                else rt.registry.get_by_alias(name, "champion").version
            )
            if threshold is None:
                with session_scope(rt.sessions) as session:
                    spec = rt.registry.load_spec(name, v)
                    threshold = protocols.judged_threshold(session, name, spec)
            deploy_flow(
                rt, model_name=name, version=v, operating_threshold=threshold, actor=actor()
            )
        except RadwatchError as exc:
            fail(exc)
        typer.echo(f"{name} version {v} is the champion on Triton at {rt.settings.triton_url}")


@app.command()
def triton(
    http_port: Annotated[int, typer.Option()] = 8000,
    grpc_port: Annotated[int, typer.Option()] = 8001,
    metrics_port: Annotated[int, typer.Option()] = 8002,
) -> None:
    """Run the bundled tritonserver on the configured model repository (explicit model control)."""
    import time

    from services.core.settings import get_settings
    from services.serving.server import TritonServerProcess

    settings = get_settings()
    settings.triton_repository.mkdir(parents=True, exist_ok=True)
    server = TritonServerProcess(
        settings.triton_repository,
        http_port=http_port,
        grpc_port=grpc_port,
        metrics_port=metrics_port,
    )
    try:
        server.start()
        typer.echo(f"tritonserver ready at {server.url}; Ctrl-C stops it")
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    except RadwatchError as exc:
        fail(exc)
    finally:
        server.stop()


if __name__ == "__main__":
    app()
