"""Write the dashboards and the alert rules into the Helm chart (``radwatch grafana generate``).

The chart ships the generated files (Grafana's dashboard provisioning and Prometheus'
``rule_files`` read them as they are), and a test fails when the committed files differ from what
the code generates, so the files are never edited by hand.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from services.grafana.dashboards import build_all
from services.grafana.rules import render_yaml

DEFAULT_DASHBOARDS_DIR = Path("helm/radwatch/dashboards")
DEFAULT_RULES_PATH = Path("helm/radwatch/rules/radwatch-rules.yaml")


@dataclass(frozen=True, slots=True)
class Output:
    path: Path
    text: str

    def is_current(self) -> bool:
        return self.path.is_file() and self.path.read_text(encoding="utf-8") == self.text


def outputs(dashboards_dir: Path, rules_path: Path) -> list[Output]:
    """Every generated file with its expected content (nothing is written)."""
    files = [Output(dashboards_dir / r.filename, r.text()) for r in build_all()]
    files.append(Output(rules_path, render_yaml()))
    return files


def write(files: list[Output]) -> list[Path]:
    """Write the files that changed; returns their paths."""
    changed = []
    for f in files:
        if f.is_current():
            continue
        f.path.parent.mkdir(parents=True, exist_ok=True)
        f.path.write_text(f.text, encoding="utf-8")
        changed.append(f.path)
    return changed
