"""Small builders shared by the three dashboards, on top of ``grafana-foundation-sdk``.

Every panel queries the data source chosen in the dashboard's ``datasource`` variable, so one
JSON file works against any Prometheus that scrapes radwatch; ``radwatch grafana push
--datasource`` only sets that variable's current value. Queries are range queries unless a panel
shows one number (stat, table), which asks for an instant value.
"""

from __future__ import annotations

from dataclasses import dataclass

from grafana_foundation_sdk.builders import common as common_b
from grafana_foundation_sdk.builders import dashboard as dash_b
from grafana_foundation_sdk.builders import prometheus, stat, statetimeline, table, timeseries
from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.models import common, dashboard
from grafana_foundation_sdk.models import prometheus as prometheus_models

#: Every panel and query variable reads the data source picked in the ``datasource`` variable.
DATASOURCE = dashboard.DataSourceRef(type_val="prometheus", uid="${datasource}")

PanelBuilder = cogbuilder.Builder[dashboard.Panel]


@dataclass(frozen=True, slots=True)
class Q:
    """One PromQL target: ``legend`` is Grafana's legend format (``{{site}}``)."""

    expr: str
    legend: str = ""


def _targets(queries: list[Q], *, instant: bool) -> list[prometheus.Dataquery]:
    out = []
    for i, q in enumerate(queries):
        t = prometheus.Dataquery().expr(q.expr).ref_id(chr(ord("A") + i)).datasource(DATASOURCE)
        if q.legend:
            t = t.legend_format(q.legend)
        # Stat and table panels show the latest value only: an instant query, as a table.
        t = t.instant().format(prometheus_models.PromQueryFormat.TABLE) if instant else t.range()
        out.append(t)
    return out


def _thresholds(steps: list[tuple[float | None, str]]) -> dash_b.ThresholdsConfig:
    return (
        dash_b.ThresholdsConfig()
        .mode(dashboard.ThresholdsMode.ABSOLUTE)
        .steps([dashboard.Threshold(value=v, color=c) for v, c in steps])
    )


def time_series(
    title: str,
    description: str,
    queries: list[Q],
    *,
    unit: str = "short",
    width: int = 12,
    height: int = 8,
    thresholds: list[tuple[float | None, str]] | None = None,
    stacked: bool = False,
    dashed_refs: tuple[str, ...] = (),
    min_value: float | None = None,
    log_scale: bool = False,
    step: bool = False,
) -> timeseries.Panel:
    """A time series; ``thresholds`` are drawn as dashed lines (e.g. a performance floor) and
    targets named in ``dashed_refs`` as dashed, unfilled lines (confidence bounds)."""
    panel = (
        timeseries.Panel()
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .targets(list(_targets(queries, instant=False)))
        .unit(unit)
        .span(width)
        .height(height)
        .line_width(1)
        .fill_opacity(10)
        .show_points(common.VisibilityMode.NEVER)
        .legend(
            common_b.VizLegendOptions()
            .display_mode(common.LegendDisplayMode.TABLE)
            .placement(common.LegendPlacement.BOTTOM)
            .show_legend(True)
            .calcs(["lastNotNull", "max"])
        )
        .tooltip(
            common_b.VizTooltipOptions()
            .mode(common.TooltipDisplayMode.MULTI)
            .sort(common.SortOrder.DESCENDING)
        )
    )
    if step:
        panel = panel.line_interpolation(common.LineInterpolation.STEP_AFTER)
    if min_value is not None:
        panel = panel.min(min_value)
    if log_scale:
        panel = panel.scale_distribution(
            common_b.ScaleDistributionConfig().type(common.ScaleDistribution.LOG).log(10)
        )
    if stacked:
        panel = panel.stacking(common_b.StackingConfig().mode(common.StackingMode.NORMAL))
    if thresholds:
        panel = panel.thresholds(_thresholds(thresholds)).thresholds_style(
            common_b.GraphThresholdsStyleConfig().mode(common.GraphTresholdsStyleMode.DASHED)
        )
    for ref in dashed_refs:
        panel = panel.override_by_query(
            ref,
            [
                dashboard.DynamicConfigValue(
                    id_val="custom.lineStyle", value={"fill": "dash", "dash": [10, 10]}
                ),
                dashboard.DynamicConfigValue(id_val="custom.fillOpacity", value=0),
            ],
        )
    return panel


def stat_panel(
    title: str,
    description: str,
    queries: list[Q],
    *,
    unit: str = "short",
    width: int = 6,
    height: int = 4,
    thresholds: list[tuple[float | None, str]] | None = None,
) -> stat.Panel:
    """One number per series (the latest value), coloured by ``thresholds``."""
    return (
        stat.Panel()
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .targets(list(_targets(queries, instant=True)))
        .unit(unit)
        .span(width)
        .height(height)
        .thresholds(_thresholds(thresholds or [(None, "green")]))
        .color_mode(common.BigValueColorMode.BACKGROUND)
        .graph_mode(common.BigValueGraphMode.NONE)
        .reduce_options(common_b.ReduceDataOptions().calcs(["lastNotNull"]).values(False))
    )


def table_panel(
    title: str,
    description: str,
    queries: list[Q],
    *,
    width: int = 12,
    height: int = 8,
    unit: str = "short",
) -> table.Panel:
    """The latest value of each series with its labels as columns (``Time`` hidden)."""
    return (
        table.Panel()
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .targets(list(_targets(queries, instant=True)))
        .unit(unit)
        .span(width)
        .height(height)
        .show_header(True)
        .with_transformation(
            dashboard.DataTransformerConfig(
                id_val="organize", options={"excludeByName": {"Time": True}}
            )
        )
    )


def state_timeline(
    title: str,
    description: str,
    queries: list[Q],
    *,
    width: int = 12,
    height: int = 8,
    ok: str = "no drift",
    bad: str = "drift",
) -> statetimeline.Panel:
    """A 0/1 decision per series over time: green for 0 (``ok``), red for 1 (``bad``)."""
    return (
        statetimeline.Panel()
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .targets(list(_targets(queries, instant=False)))
        .span(width)
        .height(height)
        .thresholds(_thresholds([(None, "green"), (1, "red")]))
        .color_scheme(dash_b.FieldColor().mode(dashboard.FieldColorModeId.THRESHOLDS))
        .mappings(
            [
                dashboard.ValueMap(
                    options={
                        "0": dashboard.ValueMappingResult(text=ok, color="green"),
                        "1": dashboard.ValueMappingResult(text=bad, color="red"),
                    }
                )
            ]
        )
        .show_value(common.VisibilityMode.NEVER)
        .merge_values(True)
    )


def row(title: str) -> dash_b.Row:
    return dash_b.Row(title)


def datasource_variable() -> dash_b.DatasourceVariable:
    return (
        dash_b.DatasourceVariable("datasource")
        .label("Data source")
        .type("prometheus")
        .description("The Prometheus that scrapes the radwatch API and tritonserver.")
    )


def query_variable(name: str, label: str, query: str, description: str) -> dash_b.QueryVariable:
    """A multi-value variable filled by ``label_values(...)``; "All" matches everything."""
    return (
        dash_b.QueryVariable(name)
        .label(label)
        .description(description)
        .datasource(DATASOURCE)
        .query(query)
        .refresh(dashboard.VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(dashboard.VariableSort.ALPHABETICAL_ASC)
        .multi(True)
        .include_all(True)
        .all_value(".*")
        .current(dashboard.VariableOption(selected=True, text="All", value="$__all"))
    )
