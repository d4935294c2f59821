"""The three radwatch dashboards, built as code with ``grafana-foundation-sdk``.

- **Operations** (``radwatch-operations``): is the service healthy? Traffic, latency
  percentiles, errors, Celery queues and tasks, Triton throughput and latency.
- **Model safety** (``radwatch-model-safety``): is the model still safe? Drift per site and
  feature, subgroup gaps with their confidence intervals, measured and estimated performance
  against the floor, open alerts.
- **Lifecycle** (``radwatch-lifecycle``): what is changing? Retraining runs, approvals and
  their age, promotions and rollbacks, current routing and canary share.

Every query names only metrics and labels of :mod:`services.metrics.catalog` (checked by
:func:`services.grafana.promql.check_expr`, which :func:`build_all` runs, so a dashboard that
drifts from the catalog cannot even be generated). Gauges read from the database are the same on
every API replica, so they are aggregated with ``max``/``min`` by their own labels: that
collapses the copies Prometheus scrapes from each replica instead of adding them up.

UIDs are fixed so that links and ``radwatch grafana push`` keep pointing at the same dashboard,
and the JSON is rendered deterministically (sorted keys, stable panel ids) so the committed
files in ``helm/radwatch/dashboards`` change only when the code does.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import dashboard

from services.grafana.common import LIFECYCLE_UID, MODEL_SAFETY_UID, OPERATIONS_UID
from services.grafana.lifecycle import lifecycle
from services.grafana.model_safety import model_safety
from services.grafana.operations import operations
from services.grafana.promql import check_expr, check_label_values

# --- Rendering --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Rendered:
    uid: str
    filename: str
    model: dict[str, Any]

    def text(self) -> str:
        return render_json(self.model)


BUILDERS: tuple[tuple[str, Any], ...] = (
    (OPERATIONS_UID, operations),
    (MODEL_SAFETY_UID, model_safety),
    (LIFECYCLE_UID, lifecycle),
)


class CatalogMismatchError(ValueError):
    """A dashboard query names a metric or label the catalog does not have."""


def to_dict(builder: cogbuilder.Builder[dashboard.Dashboard]) -> dict[str, Any]:
    """The dashboard as plain JSON data, with panel ids numbered 1.. in layout order (the SDK
    leaves them unset, and Grafana needs them unique for links and "view panel")."""
    data: dict[str, Any] = json.loads(json.dumps(builder.build(), cls=JSONEncoder))
    next_id = 1
    for panel in data.get("panels", []):
        panel["id"] = next_id
        next_id += 1
        for inner in panel.get("panels", []):
            inner["id"] = next_id
            next_id += 1
    return data


def render_json(data: dict[str, Any]) -> str:
    """Deterministic text: sorted keys, two-space indent, trailing newline."""
    return json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def iter_panels(data: dict[str, Any]) -> list[dict[str, Any]]:
    """Every non-row panel, including panels nested in collapsed rows."""
    out: list[dict[str, Any]] = []
    for panel in data.get("panels", []):
        if panel.get("type") == "row":
            out.extend(panel.get("panels", []))
        else:
            out.append(panel)
    return out


def catalog_problems(data: dict[str, Any]) -> list[str]:
    """Every way ``data``'s queries and variable queries disagree with the metrics catalog."""
    problems: list[str] = []
    for panel in iter_panels(data):
        for target in panel.get("targets", []):
            for p in check_expr(target["expr"]).problems:
                problems.append(f"{data['uid']} / {panel['title']}: {p}")
    for var in data.get("templating", {}).get("list", []):
        if var.get("type") == "query":
            for p in check_label_values(str(var["query"])).problems:
                problems.append(f"{data['uid']} / variable {var['name']}: {p}")
    return problems


def build_all() -> list[Rendered]:
    """All dashboards, checked against the catalog."""
    out = []
    for uid, build in BUILDERS:
        data = to_dict(build())
        problems = catalog_problems(data)
        if problems:
            raise CatalogMismatchError("; ".join(problems))
        out.append(Rendered(uid, f"{uid}.json", data))
    return out
