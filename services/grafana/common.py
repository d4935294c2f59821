"""What the three dashboards share: tags, UIDs, template-variable matchers, value mappings,
the dashboard skeleton and the histogram-quantile helper."""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard as dash_b
from grafana_foundation_sdk.models import dashboard

TAGS = ["radwatch"]
RI = "$__rate_interval"

OPERATIONS_UID = "radwatch-operations"
MODEL_SAFETY_UID = "radwatch-model-safety"
LIFECYCLE_UID = "radwatch-lifecycle"

#: Label matchers filled by the template variables (multi-value, "All" = ``.*``).
MODEL = 'model=~"$model"'
SITE = 'site=~"$site"'
VERSION = 'version=~"$version"'
MONITOR = 'monitor=~"$monitor"'
SAFETY = f"{{{MODEL}, {SITE}, {MONITOR}}}"
TRITON = f"{{{MODEL}, {VERSION}}}"

UP_DOWN: list[dashboard.ValueMapping] = [
    dashboard.ValueMap(
        options={
            "0": dashboard.ValueMappingResult(text="down", color="red"),
            "1": dashboard.ValueMappingResult(text="up", color="green"),
        }
    )
]


def base(uid: str, title: str, description: str) -> dash_b.Dashboard:
    return (
        dash_b.Dashboard(title)
        .uid(uid)
        .description(description)
        .tags(TAGS)
        .editable()
        .refresh("30s")
        .time("now-6h", "now")
        .timezone("browser")
        .tooltip(dashboard.DashboardCursorSync.CROSSHAIR)
    )


def hq(q: float, bucket: str, by: str, selector: str = "") -> str:
    return (
        f"histogram_quantile({q}, sum by (le{', ' + by if by else ''}) "
        f"(rate({bucket}_bucket{selector}[{RI}])))"
    )
