"""Acceptance check: every dashboard query and every alert rule, run by a real Prometheus that
scrapes a running radwatch stack.

The stack is the end-to-end one (PostgreSQL, Redis as the Celery broker, an ``mlflow server``,
``tritonserver``, the API as a uvicorn process and a Celery worker with beat), plus Debian's
``prometheus`` binary on a free port with temporary storage, ``scrape_interval: 1s``, scraping
the API's ``/metrics`` and Triton's metrics port, with the generated rule file loaded.

The scenario:

1. a tiny model is trained, registered in MLflow, deployed on Triton (champion, version 1);
2. besides the default drift monitor, three monitors are declared through the API: a label-free
   ``estimate`` and a measured ``performance`` monitor of effusion AUROC per site, and a
   ``fairness`` monitor of the FPR gap between sexes per site;
3. 900 studies from three sites are streamed; the last site switches scanner vendor halfway.
   Ground-truth labels for each batch are posted before its predictions (labels join by study
   id whichever arrives first), so the performance and fairness windows have labels;
4. a few bad requests (401, invalid image, an all-rejected event batch), a duplicate prediction
   and a duplicate label give the error and ingestion panels something to show;
5. the persistence policy is 2 of the last 2 windows, so the vendor switch opens a *critical*
   alert on the shifted site (all recent windows significant).

Then each panel target is run through ``/api/v1/query`` with the template variables set to real
values (``$model`` = the model, ``$site`` = the shifted site, ``$version`` = the deployed
version, ``$monitor`` = "All", ``$__rate_interval`` = 5m, ``$__range`` = 1h) and must return at
least one series. Alert rules:

- ``RadwatchDriftPersisting`` and ``RadwatchCriticalAlertOpen`` must *hold* in this scenario
  (their expression returns the shifted site) and Prometheus must show them pending or firing;
- every other rule guards a condition a healthy stack does not have (broker down, 5xx, slow
  p99, long queues, old approvals, rollbacks, Triton failures, confirmed bias or decay), so its
  expression must be accepted by Prometheus and evaluate without error, and every metric it
  reads must have series. Whether its signal (the left-hand side) had data is recorded.

The list of checks and their outcome is written as JSON to ``$RADWATCH_PROMQL_REPORT`` (and to
the test-artifacts folder) and printed.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from pipelines.synth import Study
from pipelines.train import TrainConfig
from services.auth.service import create_key
from services.core.db import migrate, session_scope
from services.core.models import Role
from services.core.processes import ManagedProcess, api_process, free_port, worker_process
from services.core.settings import Settings
from services.demo.runner import child_env
from services.demo.stream import ordered_studies, plan_stream, send_study
from services.grafana.dashboards import build_all, iter_panels
from services.grafana.generate import DEFAULT_RULES_PATH
from services.grafana.promql import check_expr, parse_label_values, substitute
from services.grafana.rules import RULES
from services.monitoring.flows import deploy
from services.registry.service import train_and_register
from services.serving.server import TritonServerProcess
from services.wiring import build_runtime

ROOT = Path(__file__).resolve().parents[3]
PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"
STUDIES = 900
SEED = 7
FINDING = "effusion"
#: Rules whose condition the scenario makes true (the others must only evaluate cleanly).
MUST_HOLD = ("RadwatchDriftPersisting", "RadwatchCriticalAlertOpen")


# --- the stack ----------------------------------------------------------------------------------


class Prometheus:
    """A real ``prometheus`` process and a tiny client for its HTTP API."""

    def __init__(self, workdir: Path, targets: dict[str, str]) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(ROOT / DEFAULT_RULES_PATH)],
            "scrape_configs": [
                {"job_name": job, "static_configs": [{"targets": [target]}]}
                for job, target in targets.items()
            ],
        }
        workdir.mkdir(parents=True, exist_ok=True)
        (workdir / "prometheus.yml").write_text(yaml.safe_dump(config))
        self.process = ManagedProcess(
            "prometheus",
            [
                PROMETHEUS,
                f"--config.file={workdir / 'prometheus.yml'}",
                f"--storage.tsdb.path={workdir / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--log.level=warn",
            ],
            log_path=workdir / "prometheus.log",
        )
        self.http = httpx.Client(base_url=self.url, timeout=30)

    def start(self) -> Prometheus:
        self.process.start()
        self.process.wait_http(f"{self.url}/-/ready", timeout_s=60)
        return self

    def stop(self) -> None:
        self.http.close()
        self.process.stop()

    def query(self, expr: str) -> dict[str, Any]:
        """``/api/v1/query`` at now: ``{"status", "result" | "error"}`` (errors kept, not
        raised, so the report lists every bad expression)."""
        r = self.http.get("/api/v1/query", params={"query": expr})
        body = r.json()
        if body.get("status") != "success":
            return {"status": "error", "error": body.get("error", r.text[:300])}
        return {"status": "success", "result": body["data"]["result"]}

    def get(self, path: str) -> Any:
        return self.http.get(path).raise_for_status().json()["data"]


@dataclasses.dataclass
class Stack:
    prometheus: Prometheus
    values: dict[str, str]
    shifted_site: str
    windows: dict[str, int]


def _wait(check: Any, *, timeout_s: float, what: str, every_s: float = 1.0) -> Any:
    deadline = time.monotonic() + timeout_s
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(every_s)
    raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what} (last: {last})")


def _label(study: Study) -> dict[str, object]:
    return {
        "study_id": study.study_id[:16],  # the AccessionNumber the DICOM carries
        "finding": FINDING,
        "label": bool(study.labels[FINDING]),
        "source": "report_nlp",
        "reported_at": datetime.now(UTC).isoformat(),
    }


def _stream_with_labels(client: httpx.Client, seed: int) -> tuple[int, str]:
    """Stream the planned studies (labels first, then predictions, per batch of 16); returns
    (predictions sent, shifted site)."""
    plan = plan_stream(STUDIES)
    counters = dict.fromkeys(plan.sites, 0)
    sent = 0
    batch: list[tuple[Study, str]] = []

    def flush(pool: ThreadPoolExecutor) -> None:
        nonlocal sent
        labels = client.post("/v1/labels", json={"labels": [_label(s) for s, _ in batch]})
        assert labels.status_code == 200, labels.text
        for f in [pool.submit(send_study, client, s, event_id=e) for s, e in batch]:
            f.result()
            sent += 1
        batch.clear()

    with ThreadPoolExecutor(max_workers=4) as pool:
        for study in ordered_studies(plan, seed):
            batch.append((study, f"live-{seed}-{study.site}-{counters[study.site]:05d}"))
            counters[study.site] += 1
            if len(batch) >= 16:
                flush(pool)
        if batch:
            flush(pool)
    return sent, plan.shifted_site


def _bad_requests(client: httpx.Client, model: str, first: tuple[Study, str]) -> None:
    """4xx responses, rejected events and duplicates, as real clients produce them."""
    assert httpx.get(f"{client.base_url}/v1/alerts").status_code == 401
    bad_image = {"image": [[2.0] * 64] * 64, "metadata": {"study_id": "BAD1", "site": "north"}}
    assert client.post("/v1/predictions", json=bad_image).status_code == 400
    rejected = client.post("/v1/events", json={"events": [{"event_id": "broken", "model": model}]})
    assert rejected.status_code == 422, rejected.text
    study, event_id = first
    assert send_study(client, study, event_id=event_id).get("duplicate") is True
    old_label = _label(study) | {"reported_at": "2026-01-01T00:00:00+00:00"}
    for _ in range(2):  # the second post of the same label is a duplicate
        again = client.post("/v1/labels", json={"labels": [old_label]})
        assert again.status_code == 200, again.text
    assert again.json()["duplicates"] == [0]


#: Declared monitors and their count windows (events per site per window).
DECLARED = {"effusion-estimate": 50, "effusion-auroc": 100, "sex-fpr-gap": 150}


def _wait_for_windows(
    client: httpx.Client, per_site: dict[str, int], drift_window: int
) -> dict[str, int]:
    """Wait until the default drift monitor has computed every window (required), then give the
    declared monitors up to two more minutes (their panels report it if they could not)."""

    def counts() -> dict[str, int]:
        out: dict[str, int] = {}
        rows = client.get("/v1/monitor-results", params={"include_details": False}).json()
        for r in rows:
            out[r["monitor"]] = out.get(r["monitor"], 0) + 1
        return out

    drift = sum(n // drift_window for n in per_site.values())
    expected = {m: sum(n // w for n in per_site.values()) for m, w in DECLARED.items()}
    _wait(
        lambda: sum(n for m, n in counts().items() if m not in DECLARED) >= drift,
        timeout_s=420,
        what=f"{drift} drift windows",
        every_s=2.0,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        got = counts()
        if all(got.get(m, 0) >= n for m, n in expected.items()):
            break
        time.sleep(2.0)
    return counts()


def _declare_monitors(client: httpx.Client, model: str) -> None:
    metric = {"finding": FINDING, "metric": "auroc", "scope": "per_site"}
    specs = {
        "effusion-estimate": {
            "kind": "estimate",
            **metric,
            "window": {"size": DECLARED["effusion-estimate"]},
        },
        "effusion-auroc": {
            "kind": "performance",
            **metric,
            "window": {"size": DECLARED["effusion-auroc"]},
            "label_wait_s": 0,
            "min_labelled": 20,
        },
        "sex-fpr-gap": {
            "kind": "fairness",
            "finding": FINDING,
            "metric": "fpr",
            "groups": ["sex"],
            "scope": "per_site",
            "window": {"size": DECLARED["sex-fpr-gap"]},
            "label_wait_s": 0,
            "min_labelled": 100,
            "min_n": 30,
            "n_bootstrap": 200,
        },
    }
    for name, spec in specs.items():
        r = client.post("/v1/monitors", json={"model": model, "name": name, "spec": spec})
        assert r.status_code == 201, r.text


@pytest.fixture
def live_stack(  # type: ignore[no-untyped-def]
    database_url: str, redis_db_url: str, mlflow_server_uri: str, tmp_path: Path
) -> Iterator[Stack]:
    if not Path(PROMETHEUS).exists():
        pytest.fail("Debian's prometheus binary is missing: scripts/install.sh --dev installs it")
    broker = redis_db_url
    settings = Settings(
        environment="test",
        data_dir=tmp_path / "data",
        database_url=database_url,
        broker_url=broker,
        mlflow_tracking_uri=mlflow_server_uri,
        model_name="cxr-live",
        monitor_window=50,
        monitor_interval_s=1.0,
        monitor_permutations=200,
        monitor_persistence_k=2,
        monitor_persistence_m=2,
    )
    logs = settings.data_dir / "logs"
    migrate(settings.resolved_database_url)
    ports = {"http_port": free_port(), "grpc_port": free_port(), "metrics_port": free_port()}
    settings = settings.model_copy(update={"triton_url": f"127.0.0.1:{ports['http_port']}"})
    rt = build_runtime(settings)
    sessions = rt.sessions
    with session_scope(sessions) as session:
        api_key = create_key(session, name="live-mlops", role=Role.MLOPS_ENGINEER)
    registry = rt.registry
    tiny = TrainConfig.tiny()
    registered, _ = train_and_register(
        registry,
        model_name=settings.model_name,
        config=dataclasses.replace(tiny, n_val=max(tiny.n_val, 240)),
    )
    with ExitStack() as stack:
        stack.callback(rt.close)
        settings.triton_repository.mkdir(parents=True, exist_ok=True)
        triton = TritonServerProcess(
            settings.triton_repository,
            http_port=ports["http_port"],
            grpc_port=ports["grpc_port"],
            metrics_port=ports["metrics_port"],
            log_path=logs / "triton.log",
        )
        triton.start()
        stack.callback(triton.stop)
        deploy(rt, model_name=registered.name, version=registered.version)
        env = child_env(settings)
        api_port = free_port()
        api = api_process(env, port=api_port, log_path=logs / "api.log").start()
        stack.callback(api.stop)
        worker = worker_process(env, log_path=logs / "worker.log").start()
        stack.callback(worker.stop)
        base = f"http://127.0.0.1:{api_port}"
        api.wait_http(f"{base}/healthz", timeout_s=90)
        worker.wait_log("ready", timeout_s=90)

        prometheus = Prometheus(
            tmp_path / "prometheus",
            {"radwatch-api": f"127.0.0.1:{api_port}", "triton": f"127.0.0.1:{triton.metrics_port}"},
        ).start()
        stack.callback(prometheus.stop)

        headers = {"Authorization": f"Bearer {api_key}"}
        with httpx.Client(base_url=base, headers=headers, timeout=60) as client:
            _declare_monitors(client, settings.model_name)
            sent, shifted = _stream_with_labels(client, SEED)
            assert sent == STUDIES
            plan = plan_stream(STUDIES)
            first_site = plan.sites[0]
            first = next(iter(ordered_studies(plan, SEED)))
            _bad_requests(client, settings.model_name, (first, f"live-{SEED}-{first_site}-00000"))
            windows = _wait_for_windows(client, plan.per_site, settings.monitor_window)
            _wait(
                lambda: any(
                    a["severity"] == "critical" and a["site"] == shifted
                    for a in client.get("/v1/alerts").json()
                ),
                timeout_s=120,
                what=f"a critical alert on {shifted}",
            )
        # the scrape after the last window, and the rule evaluation after that scrape
        _wait(
            lambda: prometheus.query(
                f'radwatch_alerts_open{{severity="critical", site="{shifted}"}}'
            ).get("result"),
            timeout_s=30,
            what="the critical alert in Prometheus",
        )
        time.sleep(3)
        values = {
            "model": settings.model_name,
            "site": shifted,
            "version": str(registered.version),
            "monitor": ".*",
            "__rate_interval": "5m",
            "__range": "1h",
        }
        yield Stack(prometheus, values, shifted, windows)


# --- the check ----------------------------------------------------------------------------------


def _summary(result: dict[str, Any]) -> dict[str, Any]:
    if result["status"] != "success":
        return {"status": "error", "error": result["error"], "series": 0}
    values = [float(s["value"][1]) for s in result["result"]]
    return {
        "status": "success",
        "series": len(values),
        "all_nan": bool(values) and all(math.isnan(v) for v in values),
        "sample": [{"labels": s["metric"], "value": s["value"][1]} for s in result["result"][:3]],
    }


@pytest.mark.e2e
def test_every_panel_and_rule_query_returns_data(live_stack: Stack, artifacts_dir: Path) -> None:
    prom, values = live_stack.prometheus, live_stack.values
    targets = prom.get("/api/v1/targets")["activeTargets"]
    assert {t["labels"]["job"]: t["health"] for t in targets} == {
        "radwatch-api": "up",
        "triton": "up",
    }, targets

    panels: list[dict[str, Any]] = []
    metrics: set[str] = set()
    for rendered in build_all():
        for panel in iter_panels(rendered.model):
            for target in panel["targets"]:
                query = substitute(target["expr"], values)
                metrics.update(check_expr(target["expr"]).metrics)
                panels.append(
                    {
                        "dashboard": rendered.uid,
                        "panel": panel["title"],
                        "ref": target["refId"],
                        "expr": target["expr"],
                        "query": query,
                        **_summary(prom.query(query)),
                    }
                )

    variables: list[dict[str, Any]] = []
    for rendered in build_all():
        for var in rendered.model["templating"]["list"]:
            parsed = (
                parse_label_values(str(var.get("query", ""))) if var["type"] == "query" else None
            )
            if parsed is None:
                continue
            selector, label = parsed
            query = f"group by ({label}) ({substitute(selector, values)})"
            result = prom.query(query)
            found = sorted(s["metric"].get(label, "") for s in result.get("result", []))
            variables.append(
                {
                    "dashboard": rendered.uid,
                    "variable": var["name"],
                    "query": var["query"],
                    "values": found,
                    "expected": values.get(var["name"]),
                }
            )

    states = {
        r["name"]: r
        for g in prom.get("/api/v1/rules")["groups"]
        for r in g["rules"]
        if r["type"] == "alerting"
    }
    rules: list[dict[str, Any]] = []
    for rule in RULES:
        metrics.update(check_expr(rule.expr).metrics)
        loaded = states.get(rule.alert, {})
        rules.append(
            {
                "alert": rule.alert,
                "expr": rule.expr,
                "must_hold": rule.alert in MUST_HOLD,
                "expr_result": _summary(prom.query(rule.expr)),
                "signal": rule.signal,
                "signal_result": _summary(prom.query(rule.signal)),
                "health": loaded.get("health"),
                "last_error": loaded.get("lastError") or None,
                "state": loaded.get("state"),
            }
        )

    present = {m: bool(prom.query(f'count({{__name__="{m}"}})').get("result")) for m in metrics}
    without_series = sorted(m for m, ok in present.items() if not ok)
    report: dict[str, Any] = {
        "values": values,
        "monitor_windows": live_stack.windows,
        "variables": variables,
        "panels": panels,
        "rules": rules,
        "metrics_present": dict(sorted(present.items())),
        "panels_without_data": [p for p in panels if not p["series"]],
        "metrics_without_series": without_series,
    }
    text = json.dumps(report, indent=2, sort_keys=False)
    (artifacts_dir / "promql-live-report.json").write_text(text)
    if os.environ.get("RADWATCH_PROMQL_REPORT"):
        Path(os.environ["RADWATCH_PROMQL_REPORT"]).write_text(text)
    print(f"checked {len(panels)} panel targets and {len(rules)} rules against {prom.url}")
    for v in variables:
        print(f"  [var] {v['dashboard']} ${v['variable']}: {v['values']}")
    for p in panels:
        mark = "ok " if p["series"] else "NO DATA"
        print(f"  [{mark}] {p['dashboard']} / {p['panel']} ({p['ref']}): {p['query']}")
    for r in rules:
        print(
            f"  [{r['state'] or 'not loaded'}] {r['alert']} expr={r['expr_result']['series']} "
            f"signal={r['signal_result']['series']} health={r['health']}"
        )

    failures = [
        f"panel {p['dashboard']} / {p['panel']} ({p['ref']}): "
        + (p.get("error") or "no data")
        + f" -- {p['query']}"
        for p in panels
        if not p["series"]
    ]
    failures += [f"metric {m} has no series" for m in without_series]
    for v in variables:
        if v["expected"] not in (None, ".*") and v["expected"] not in v["values"]:
            failures.append(
                f"variable {v['dashboard']} ${v['variable']} offers {v['values']}, "
                f"not {v['expected']!r} ({v['query']})"
            )
    for r in rules:
        if r["expr_result"]["status"] != "success":
            failures.append(f"rule {r['alert']}: not accepted: {r['expr_result']['error']}")
        if r["health"] != "ok":
            failures.append(f"rule {r['alert']}: health {r['health']} {r['last_error']}")
        if r["must_hold"]:
            if not r["expr_result"]["series"]:
                failures.append(f"rule {r['alert']} should hold in the scenario but has no data")
            if r["state"] not in ("pending", "firing"):
                failures.append(f"rule {r['alert']} should be pending or firing: {r['state']}")
    held = next(r for r in rules if r["alert"] == "RadwatchDriftPersisting")["expr_result"]
    sites = {s["labels"].get("site") for s in held.get("sample", [])}
    if live_stack.shifted_site not in sites:
        failures.append(f"drift rule did not name the shifted site: {sites}")
    assert not failures, "\n".join(failures)
