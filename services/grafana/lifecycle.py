"""The Lifecycle dashboard (``radwatch-lifecycle``): what is changing?"""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard as dash_b

from services.grafana.common import LIFECYCLE_UID, MODEL, RI, TRITON, base
from services.grafana.panels import (
    Q,
    datasource_variable,
    query_variable,
    row,
    stat_panel,
    table_panel,
    time_series,
)
from services.grafana.thresholds import (
    PENDING_APPROVAL_MAX_S,
)


def lifecycle() -> dash_b.Dashboard:
    d = base(
        LIFECYCLE_UID,
        "radwatch / Lifecycle",
        "Retraining runs, approvals waiting for a clinical safety officer, promotions and "
        "rollbacks, current routing and canary share.",
    )
    d = (
        d.with_variable(datasource_variable())
        .with_variable(
            query_variable(
                "model",
                "Model",
                "label_values(radwatch_retraining_runs, model)",
                "Deployed models (the lifecycle gauges list every deployed model, with zeros).",
            )
        )
        .with_variable(
            query_variable(
                "version",
                "Version",
                f"label_values(nv_inference_request_success{{{MODEL}}}, version)",
                "Triton versions of the selected models (champion and candidate).",
            )
        )
    )
    d = d.with_row(row("Routing"))
    d = d.with_panel(
        table_panel(
            "Current routing",
            "Each model's routing now: mode (champion, shadow, canary) with the champion and "
            "candidate versions.",
            [
                Q(
                    "max by (model, mode, champion_version, candidate_version) "
                    f"(radwatch_model_routing{{{MODEL}}})",
                    "",
                )
            ],
        )
    )
    d = d.with_panel(
        time_series(
            "Canary share",
            "Share of each model's requests answered by the candidate (0 outside canary).",
            [Q(f"max by (model) (radwatch_canary_share{{{MODEL}}})", "{{model}}")],
            unit="percentunit",
            min_value=0,
            step=True,
        )
    )
    d = d.with_panel(
        time_series(
            "Traffic per served version",
            "Successful Triton requests per second by version: during shadow and canary the "
            "candidate's share shows here.",
            [
                Q(
                    f"sum by (model, version) (rate(nv_inference_request_success{TRITON}[{RI}]))",
                    "{{model}} v{{version}}",
                )
            ],
            unit="reqps",
            stacked=True,
            width=24,
        )
    )
    d = d.with_row(row("Approvals"))
    d = d.with_panel(
        stat_panel(
            "Pending approvals",
            "Approval requests waiting for a clinical safety officer (0 when none).",
            [
                Q(
                    f'sum(max by (model) (radwatch_approval_requests{{{MODEL}, state="pending"}}))'
                    " or vector(0)",
                    "pending",
                )
            ],
            width=6,
            height=8,
            thresholds=[(None, "green"), (1, "orange")],
        )
    )
    d = d.with_panel(
        stat_panel(
            "Oldest pending approval",
            "Age of the oldest pending approval request (0 when none is pending); the alert "
            f"fires after {PENDING_APPROVAL_MAX_S // 86400} days.",
            [
                Q(
                    f"max(radwatch_approval_pending_age_seconds{{{MODEL}}}) or vector(0)",
                    "age",
                )
            ],
            unit="s",
            width=6,
            height=8,
            thresholds=[(None, "green"), (86400, "orange"), (PENDING_APPROVAL_MAX_S, "red")],
        )
    )
    d = d.with_panel(
        time_series(
            "Approval requests by state",
            "Approval requests by state (pending, approved, rejected, withdrawn, expired).",
            [
                Q(
                    f"max by (model, state) (radwatch_approval_requests{{{MODEL}}})",
                    "{{model}} {{state}}",
                )
            ],
            step=True,
        )
    )
    d = d.with_row(row("Retraining and promotion"))
    rollbacks = f'radwatch_promotions{{{MODEL}, kind="rollback"}}'
    d = d.with_panel(
        time_series(
            "Retraining runs by state",
            "Retraining runs by state (queued, running, succeeded, failed).",
            [
                Q(
                    f"max by (model, state) (radwatch_retraining_runs{{{MODEL}}})",
                    "{{model}} {{state}}",
                )
            ],
            step=True,
        )
    )
    d = d.with_panel(
        time_series(
            "Promotions and rollbacks",
            "Promotions and rollbacks by kind and state (in_progress, succeeded, failed).",
            [
                Q(
                    f"max by (model, kind, state) (radwatch_promotions{{{MODEL}}})",
                    "{{model}} {{kind}} {{state}}",
                )
            ],
            step=True,
        )
    )
    d = d.with_panel(
        stat_panel(
            "Rollbacks in range",
            "Rollbacks recorded during the selected time range (0 when none).",
            [
                Q(
                    f"(sum(max by (model) ({rollbacks})) "
                    f"- (sum(max by (model) ({rollbacks} offset $__range)) or vector(0))) "
                    "or vector(0)",
                    "rollbacks",
                )
            ],
            width=24,
            thresholds=[(None, "green"), (1, "red")],
        )
    )
    return d
