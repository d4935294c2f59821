"""``radwatch monitors``: declare and manage the monitors the worker runs (same rules as the
``/v1/monitors`` API; changes are recorded as made by ``cli:<user>``)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from sqlalchemy.orm import Session

from services.cli.common import actor as _actor
from services.cli.common import err, fail, fail_message, sessions
from services.core.errors import RadwatchError

app = typer.Typer(help="Declare, change, disable and inspect monitors.", no_args_is_help=True)


@contextmanager
def _session() -> Iterator[Session]:
    from services.core.db import session_scope

    try:
        with sessions() as factory, session_scope(factory) as session:
            yield session
    except RadwatchError as exc:
        fail(exc)


def _spec(text: str) -> dict[str, Any]:
    """Inline JSON, or @path to a JSON file."""
    try:
        raw = Path(text[1:]).read_text() if text.startswith("@") else text
        value = json.loads(raw)
    except (OSError, json.JSONDecodeError) as exc:
        fail_message(f"--spec is not readable JSON ({exc}).")
    if not isinstance(value, dict):
        fail_message("--spec must be a JSON object with a 'kind'.")
    return value


def _print(rows: Any) -> None:
    typer.echo(json.dumps(rows, indent=2, default=str))


def _out(monitor: Any) -> dict[str, Any]:
    from services.monitoring.schemas import MonitorOut

    return MonitorOut.model_validate(monitor).model_dump(mode="json")


SpecOpt = Annotated[str, typer.Option(help='JSON spec, e.g. \'{"kind": "drift"}\', or @file.json.')]


@app.command("list")
def list_(model: Annotated[str | None, typer.Option(help="Only this model.")] = None) -> None:
    """Print the declared monitors as JSON."""
    from services.monitoring import service as monitors

    with _session() as s:
        _print([_out(m) for m in monitors.list_monitors(s, model_name=model)])


@app.command()
def create(
    model: Annotated[str, typer.Option(help="Deployed model name.")],
    name: Annotated[str, typer.Option(help="Monitor name, unique per model.")],
    spec: SpecOpt,
) -> None:
    """Declare a monitor for a deployed model."""
    from services.monitoring import service as monitors
    from services.serving import service as serving

    with _session() as s:
        serving.champion(s, model)
        monitor = monitors.create(
            s, model_name=model, name=name, spec=monitors.parse_spec(_spec(spec)), actor=_actor()
        )
        _print(_out(monitor))


@app.command()
def update(
    monitor_id: Annotated[int, typer.Argument(help="Monitor id (see `radwatch monitors list`).")],
    spec: Annotated[str | None, typer.Option(help="New JSON spec or @file.json.")] = None,
    enable: Annotated[bool, typer.Option("--enable", help="Re-enable the monitor.")] = False,
    disable: Annotated[bool, typer.Option("--disable", help="Stop scheduling it.")] = False,
) -> None:
    """Change a monitor's spec, or enable/disable it (every change is kept)."""
    from services.monitoring import service as monitors

    if enable and disable:
        err.print("[red]error:[/red] pass --enable or --disable, not both.")
        raise typer.Exit(2)
    active = True if enable else False if disable else None
    with _session() as s:
        parsed = monitors.parse_spec(_spec(spec)) if spec is not None else None
        _print(_out(monitors.update(s, monitor_id, actor=_actor(), spec=parsed, active=active)))


@app.command()
def history(monitor_id: int) -> None:
    """Every version of a monitor's declaration."""
    from services.monitoring import service as monitors
    from services.monitoring.schemas import MonitorChangeOut

    with _session() as s:
        _print(
            [
                MonitorChangeOut.model_validate(c).model_dump(mode="json")
                for c in monitors.history(s, monitor_id)
            ]
        )


@app.command()
def results(
    monitor_id: int,
    site: Annotated[str | None, typer.Option(help="Only this site ('*' for global).")] = None,
    limit: Annotated[int, typer.Option(min=1)] = 100,
) -> None:
    """The monitor's computed windows, oldest first (without details)."""
    from services.monitoring import repository
    from services.monitoring import service as monitors
    from services.monitoring.schemas import results_out

    with _session() as s:
        monitor = monitors.get(s, monitor_id)
        rows = repository.results_of(s, monitor=monitor, site=site, after_window=-1, limit=limit)
        _print([r.model_dump(mode="json") for r in results_out(rows, include_details=False)])
