"""``radwatch retrain``: ask for a retraining run, watch it, or run the whole pipeline in-process.

``start`` queues a run (as ``POST /v1/models/{name}/retraining`` does) and a ``training`` worker
picks it up; ``--wait`` polls the run and shows its progress. ``run-local`` needs no worker or
broker: it queues the run and executes it in this process (the demo and tests use it). Runs are
recorded as requested by ``cli:<OS user>``.
"""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Annotated, Any

import typer

from services.cli.common import actor as _actor
from services.cli.common import err, fail_message, runtime
from services.cli.common import fail as _fail
from services.cli.common import sessions as _db
from services.core.errors import RadwatchError
from services.core.models import RetrainingState

if TYPE_CHECKING:
    from sqlalchemy.orm import Session, sessionmaker

    from services.core.models import RetrainingRun
    from services.core.runtime import Runtime

app = typer.Typer(
    help="Retrain a model on recent labelled data and watch runs.", no_args_is_help=True
)

ModelOpt = Annotated[str | None, typer.Option("--model", help="Model name (default: settings).")]
ReasonOpt = Annotated[str, typer.Option(help="Why (audited).")]
EpochsOpt = Annotated[int | None, typer.Option(min=1, max=500, help="Default: the protocol's.")]
SeedOpt = Annotated[int | None, typer.Option(min=0, help="Default: the protocol's.")]


def _out(session: Session, run: RetrainingRun) -> dict[str, Any]:
    """The run as the API shows it (with its dossier id)."""
    from services.retraining import service as retraining
    from services.retraining.schemas import RetrainingRunOut

    out = RetrainingRunOut.model_validate(run)
    dossier = retraining.dossier_of(session, run.id)
    out.dossier_id = dossier.id if dossier is not None else None
    return out.model_dump(mode="json")


def _request(
    rt: Runtime,
    *,
    model: str | None,
    reason: str,
    epochs: int | None,
    seed: int | None,
    enqueue: bool,
) -> int:
    from services.core.db import session_scope
    from services.retraining import service as retraining

    with session_scope(rt.sessions) as session:
        run = retraining.request_run(
            session,
            model_name=model or rt.settings.model_name,
            trigger="manual",
            requested_by=_actor(),
            reason=reason,
            options=retraining.RunOptions(epochs=epochs, seed=seed),
        )
        if enqueue:
            retraining.enqueue_after_commit(
                session,
                enqueuer=rt.enqueuer,
                queue=rt.settings.training_queue,
                run_ids=[run.id],
            )
        return run.id


def _watch(sessions: sessionmaker[Session], run_id: int, *, poll_s: float = 1.0) -> str:
    """Poll the run until it finishes, with a progress bar; its final state."""
    from services.core.db import session_scope
    from services.core.progress import make_progress
    from services.retraining import service as retraining

    with make_progress() as bars:
        task = bars.add_task(f"run {run_id}", total=100)
        while True:
            with session_scope(sessions) as session:
                run = retraining.get(session, run_id)
                state, progress, message = run.state, run.progress, run.message
            bars.update(
                task, completed=round(100 * progress), description=f"run {run_id} {state}"[:22]
            )
            if state in (RetrainingState.SUCCEEDED, RetrainingState.FAILED):
                bars.update(task, completed=100 if state == RetrainingState.SUCCEEDED else None)
                break
            time.sleep(poll_s)
    err.print(f"run {run_id} {state}: {message or ''}")
    return state


@app.command("start")
def start(
    model: ModelOpt = None,
    reason: ReasonOpt = "Requested from the command line.",
    epochs: EpochsOpt = None,
    seed: SeedOpt = None,
    wait: Annotated[bool, typer.Option("--wait", help="Poll until the run finishes.")] = False,
) -> None:
    """Queue a retraining run for a training worker; print its id (and wait with --wait)."""
    with runtime() as rt:
        sessions = rt.sessions
        try:
            run_id = _request(
                rt,
                model=model,
                reason=reason,
                epochs=epochs,
                seed=seed,
                enqueue=True,
            )
            typer.echo(f"queued retraining run {run_id}")
            if wait and _watch(sessions, run_id) != "succeeded":
                raise typer.Exit(1)
        except RadwatchError as exc:
            _fail(exc)


@app.command("status")
def status(
    run_id: Annotated[int | None, typer.Argument(help="One run; default: the latest 20.")] = None,
    model: ModelOpt = None,
) -> None:
    """Print one run, or the latest runs, as JSON."""
    from services.core.db import session_scope
    from services.retraining import service as retraining

    with _db() as sessions:
        try:
            with session_scope(sessions) as session:
                if run_id is not None:
                    rows: Any = _out(session, retraining.get(session, run_id))
                else:
                    runs = retraining.list_runs(session, model_name=model, limit=20)
                    rows = [_out(session, r) for r in runs]
        except RadwatchError as exc:
            _fail(exc)
    typer.echo(json.dumps(rows, indent=2, default=str))


@app.command("run-local")
def run_local(
    model: ModelOpt = None,
    reason: ReasonOpt = "Local retraining run from the command line.",
    epochs: EpochsOpt = None,
    seed: SeedOpt = None,
) -> None:
    """Queue a run and execute it in this process (no worker or broker needed)."""
    from services.core.db import session_scope
    from services.core.progress import stage_progress
    from services.retraining import flows as retraining_runner
    from services.retraining import service as retraining

    with runtime() as rt:
        sessions = rt.sessions
        try:
            run_id = _request(
                rt,
                model=model,
                reason=reason,
                epochs=epochs,
                seed=seed,
                enqueue=False,
            )
            with stage_progress() as progress:
                run = retraining_runner.execute_run(
                    sessions, rt.registry, run_id, actor=_actor(), progress=progress
                )
        except RadwatchError as exc:
            _fail(exc)
        if run is None:
            fail_message(f"run {run_id} was taken by another process.", code=1)
        with session_scope(sessions) as session:
            out = _out(session, retraining.get(session, run_id))
    typer.echo(json.dumps(out, indent=2, default=str))
    if out["state"] != RetrainingState.SUCCEEDED:
        raise typer.Exit(1)
