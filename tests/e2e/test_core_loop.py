"""The core loop end to end on real components: PostgreSQL, Redis (Celery broker), an
``mlflow server`` process, ``tritonserver``, the API as a uvicorn process and a Celery worker
process with beat. A small model is trained, registered, deployed and fed a stream in which one
site switches scanner vendor halfway; the drift monitor must alert on that site only."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from rich.console import Console

from pipelines.train import TrainConfig
from services.core.settings import Settings
from services.demo.runner import DemoOptions, run_story

#: A Redis database index of its own, flushed first, so the machine's other users are untouched.


@pytest.mark.e2e
def test_vendor_switch_alerts_on_that_site_only(  # type: ignore[no-untyped-def]
    database_url: str,
    redis_db_url: str,
    mlflow_server_uri: str,
    tmp_path: Path,
    artifacts_dir: Path,
):
    broker = redis_db_url
    settings = Settings(
        environment="test",
        data_dir=tmp_path / "data",
        database_url=database_url,
        broker_url=broker,
        mlflow_tracking_uri=mlflow_server_uri,
        model_name="cxr-e2e",
        monitor_window=50,
        monitor_interval_s=1.0,
        monitor_permutations=200,
    )
    # Enough validation studies that every site has its own reference (>= 50 each).
    tiny = TrainConfig.tiny()
    train = dataclasses.replace(tiny, n_val=max(tiny.n_val, 240))
    opts = DemoOptions(
        studies=900,
        data_dir=settings.data_dir,
        report_path=artifacts_dir / "e2e-demo-report.html",
        seed=99,
        train_config=train,
        lifecycle=False,  # the core loop only; the lifecycle has its own end-to-end test
    )
    summary = run_story(settings, opts, Console(stderr=True))
    print(json.dumps(summary, indent=2))

    assert summary["predictions"] == 900
    assert summary["model"]["mlflow_run_id"]
    assert summary["triton_server_version"]
    assert summary["windows_computed"] == 18  # 3 sites x 300 studies / 50
    sites = {a["site"] for a in summary["alerts"]}
    assert sites == {summary["shifted_site"]}, summary["alerts"]
    assert summary["alerts_before_shift"] == 0
    alert = summary["alerts"][0]
    assert alert["opened_after_predictions"] > summary["shift_started_after_predictions"]
    assert summary["shifted_site"] in alert["detail"]
