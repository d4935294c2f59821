"""The Model safety dashboard (``radwatch-model-safety``): is the model still safe?"""

from __future__ import annotations

from typing import get_args

from grafana_foundation_sdk.builders import dashboard as dash_b
from grafana_foundation_sdk.models import dashboard

from services.grafana.common import MODEL, MODEL_SAFETY_UID, MONITOR, SAFETY, SITE, base
from services.grafana.panels import (
    Q,
    datasource_variable,
    query_variable,
    row,
    stat_panel,
    state_timeline,
    table_panel,
    time_series,
)
from services.grafana.thresholds import (
    SUBGROUP_MAX_GAP,
)
from services.monitoring.specs import Metric as PerformanceMetric


def model_safety() -> dash_b.Dashboard:
    d = base(
        MODEL_SAFETY_UID,
        "radwatch / Model safety",
        "Drift per site and feature, subgroup gaps with confidence intervals, measured and "
        "estimated performance against the floor, open alerts.",
    )
    d = (
        d.with_variable(datasource_variable())
        .with_variable(
            query_variable(
                "model",
                "Model",
                "label_values(radwatch_monitor_windows, model)",
                "Models with at least one computed monitor window.",
            )
        )
        .with_variable(
            query_variable(
                "site",
                "Site",
                f"label_values(radwatch_monitor_windows{{{MODEL}}}, site)",
                "Sites of the selected models ('*' is a global monitor's result).",
            )
        )
        .with_variable(
            query_variable(
                "monitor",
                "Monitor",
                f"label_values(radwatch_monitor_windows{{{MODEL}}}, monitor)",
                "Declared monitors of the selected models.",
            )
        )
    )
    d = d.with_row(row("Alerts"))
    d = d.with_panel(
        stat_panel(
            "Open alerts",
            "Alerts not yet acknowledged, for the selected models and sites (0 when none).",
            [
                Q(
                    f'sum(radwatch_alerts_open{{{MODEL}, {SITE}, severity="critical"}}) '
                    "or vector(0)",
                    "critical",
                ),
                Q(
                    f'sum(radwatch_alerts_open{{{MODEL}, {SITE}, severity!="critical"}}) '
                    "or vector(0)",
                    "other",
                ),
            ],
            width=6,
            height=8,
            thresholds=[(None, "green"), (1, "red")],
        )
    )
    d = d.with_panel(
        table_panel(
            "Alerts by site, severity and state",
            "Every alert of the selected models and sites, counted by state (open, "
            "acknowledged, resolved).",
            [
                Q(
                    f"max by (model, site, severity, state) (radwatch_alerts{{{MODEL}, {SITE}}})",
                    "",
                )
            ],
            width=18,
        )
    )
    d = d.with_row(row("Drift"))
    d = d.with_panel(
        state_timeline(
            "Drift decision per site",
            "Decision of each monitor's latest window: red when significant (drift, decay or "
            "bias) after the multiple-test correction.",
            [Q(f"max by (monitor, site) (radwatch_monitor_drift{SAFETY})", "{{site}} {{monitor}}")],
        )
    )
    d = d.with_panel(
        time_series(
            "Monitor statistic",
            "Headline statistic of each monitor's latest window (MMD² for drift, the metric for "
            "performance, the worst gap for fairness).",
            [
                Q(
                    f"max by (monitor, site) (radwatch_monitor_statistic{SAFETY})",
                    "{{site}} {{monitor}}",
                )
            ],
            step=True,
        )
    )
    d = d.with_panel(
        time_series(
            "Monitor p-value",
            "p-value of each monitor's latest window (log scale); below alpha is significant.",
            [
                Q(
                    f"min by (monitor, site) (radwatch_monitor_p_value{SAFETY})",
                    "{{site}} {{monitor}}",
                )
            ],
            log_scale=True,
            step=True,
        )
    )
    d = d.with_panel(
        time_series(
            "Windows computed",
            "Monitor windows computed so far: a flat line while events arrive means the worker "
            "is behind or stopped.",
            [
                Q(
                    f"max by (monitor, site) (radwatch_monitor_windows{SAFETY})",
                    "{{site}} {{monitor}}",
                )
            ],
            step=True,
        )
    )
    d = d.with_panel(
        state_timeline(
            "Drifted features per site",
            "Which tested features (acquisition metadata, image statistics, 'embedding:mmd') "
            "drifted in the latest window, after the multiple-test correction.",
            [
                Q(
                    f"max by (site, feature) (radwatch_monitor_feature_drift{SAFETY})",
                    "{{site}} {{feature}}",
                )
            ],
            width=24,
            height=10,
        )
    )
    d = d.with_panel(
        time_series(
            "Feature drift statistic",
            "Test statistic of each feature in the latest window, per site.",
            [
                Q(
                    f"max by (site, feature) (radwatch_monitor_feature_statistic{SAFETY})",
                    "{{site}} {{feature}}",
                )
            ],
            step=True,
        )
    )
    d = d.with_panel(
        time_series(
            "Feature p-value (corrected)",
            "Multiplicity-corrected p-value of each feature in the latest window (log scale).",
            [
                Q(
                    f"min by (site, feature) (radwatch_monitor_feature_p_value{SAFETY})",
                    "{{site}} {{feature}}",
                )
            ],
            log_scale=True,
            step=True,
        )
    )
    d = d.with_row(row("Subgroups"))
    gap = "max by (site, family, metric) ({m}{sel})"
    d = d.with_panel(
        time_series(
            "Subgroup gap with confidence interval",
            "Worst subgroup minus the rest, per attribute family and metric, with the bootstrap "
            "interval (dashed): negative is worse for TPR and AUROC, positive for FPR and ECE. "
            f"The red lines are the default tolerance (±{SUBGROUP_MAX_GAP}); an interval wholly "
            "beyond one is a confirmed gap.",
            [
                Q(gap.format(m="radwatch_subgroup_gap", sel=SAFETY), "{{family}} {{metric}}"),
                Q(
                    gap.format(m="radwatch_subgroup_gap_lower", sel=SAFETY),
                    "{{family}} {{metric}} lower",
                ),
                Q(
                    gap.format(m="radwatch_subgroup_gap_upper", sel=SAFETY),
                    "{{family}} {{metric}} upper",
                ),
            ],
            thresholds=[
                (None, "red"),
                (-SUBGROUP_MAX_GAP, "transparent"),
                (SUBGROUP_MAX_GAP, "red"),
            ],
            dashed_refs=("B", "C"),
            width=24,
            step=True,
        )
    )
    d = d.with_row(row("Performance"))
    perf = "max by (site, finding, metric) ({m}{{{sel}, kind={kind}}})"
    # Only the metrics a performance monitor can be declared on (each has a floor); the
    # monitors also report brier, prevalence and friends, which do not share this axis.
    sel = f'{MODEL}, {SITE}, {MONITOR}, metric=~"{"|".join(get_args(PerformanceMetric))}"'
    d = d.with_panel(
        time_series(
            "Measured vs estimated performance",
            "Latest window's metric measured on late labels and estimated without labels "
            "(CBPE), with their confidence bounds (dashed) and the floor (baseline minus the "
            "allowed margin). An upper bound below the floor is a confirmed decay.",
            [
                *(
                    Q(
                        perf.format(m=f"radwatch_performance{suffix}", sel=sel, kind=f'"{kind}"'),
                        f"{kind}{bound} {{{{site}}}} {{{{finding}}}} {{{{metric}}}}",
                    )
                    for kind in ("measured", "estimated")
                    for suffix, bound in (("", ""), ("_lower", " lower"), ("_upper", " upper"))
                ),
                Q(
                    perf.format(m="radwatch_performance", sel=sel, kind='"floor"'),
                    "floor {{site}} {{finding}} {{metric}}",
                ),
            ],
            unit="none",
            min_value=0,
            dashed_refs=("B", "C", "E", "F"),
            width=24,
            height=10,
            step=True,
        ).override_by_query(
            "G",
            [
                dashboard.DynamicConfigValue(
                    id_val="color", value={"mode": "fixed", "fixedColor": "red"}
                ),
                dashboard.DynamicConfigValue(id_val="custom.lineWidth", value=2),
            ],
        )
    )
    return d
