"""``radwatch grafana``: generate the dashboards and alert rules, and push the dashboards to a
Grafana server."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from services.cli.common import fail, fail_message
from services.core.errors import RadwatchError

app = typer.Typer(
    help="Grafana dashboards and Prometheus alert rules, as code.", no_args_is_help=True
)
out = Console()
err = Console(stderr=True)


@app.command()
def generate(
    out_dir: Annotated[
        Path,
        typer.Option("--out", help="Folder for the dashboard JSON files."),
    ] = Path("helm/radwatch/dashboards"),
    rules: Annotated[Path, typer.Option(help="Prometheus rule file to write.")] = Path(
        "helm/radwatch/rules/radwatch-rules.yaml"
    ),
    check: Annotated[
        bool,
        typer.Option(
            "--check", help="Write nothing; exit 1 if a file differs from what would be written."
        ),
    ] = False,
) -> None:
    """Write the three dashboards (JSON) and the alerting rules (YAML). Every query is checked
    against the metrics catalog first; the output is deterministic."""
    from services.grafana.generate import outputs, write

    try:
        files = outputs(out_dir, rules)
    except ValueError as exc:  # a query names a metric or label the catalog lacks
        fail_message(str(exc), code=1)
    if check:
        stale = [f.path for f in files if not f.is_current()]
        for path in stale:
            err.print(f"out of date: {path}")
        if stale:
            err.print("Run `radwatch grafana generate` and commit the result.")
            raise typer.Exit(1)
        out.print(f"{len(files)} files up to date")
        return
    changed = write(files)
    for f in files:
        out.print(f"{'wrote' if f.path in changed else 'unchanged'} {f.path}")


@app.command()
def push(
    url: Annotated[
        str, typer.Option(envvar="GRAFANA_URL", help="Grafana root URL, e.g. https://grafana:3000")
    ],
    token: Annotated[
        str,
        typer.Option(
            envvar="GRAFANA_TOKEN",
            help="Service-account token (Editor role). Prefer the GRAFANA_TOKEN variable.",
        ),
    ],
    folder: Annotated[str, typer.Option(help="Folder title (created once).")] = "radwatch",
    datasource: Annotated[
        str | None,
        typer.Option(help="Prometheus data source name or uid to select in the dashboards."),
    ] = None,
    timeout: Annotated[float, typer.Option(min=0.5, help="Seconds per HTTP request.")] = 10.0,
) -> None:
    """Create or update the dashboards in Grafana (same uids every time, overwrite)."""
    from services.grafana.dashboards import build_all
    from services.grafana.provision import GrafanaHttp
    from services.grafana.provision import push as push_dashboards

    try:
        report = push_dashboards(
            GrafanaHttp(url, token, timeout_s=timeout),
            build_all(),
            folder=folder,
            datasource=datasource,
        )
    except RadwatchError as exc:
        fail(exc)
    for line in report.lines():
        out.print(line, highlight=False, soft_wrap=True)
