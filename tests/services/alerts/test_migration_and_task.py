"""Migration 0003 up, down and up again on PostgreSQL and SQLite, matching the models; and the
Celery task and beat entry that run the delivery sweep (the task function called directly)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, inspect, text
from sqlalchemy.exc import IntegrityError

import services.core.db
from services.core.models import Base
from services.core.runtime import Runtime
from services.core.settings import Settings
from tests.fixtures.webhooks import Receiver
from tests.services.alerts.test_delivery import SECRET, _acknowledge, _delivery, _subscribe

OURS = {"alerts", "webhook_subscriptions", "webhook_deliveries"}


def _config(url: str) -> Config:
    cfg = Config()
    migrations = Path(services.core.db.__file__).parent / "migrations"
    cfg.set_main_option("script_location", str(migrations))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def _diffs(url: str) -> list[object]:
    """Differences between the migrated schema and the models, for this change's tables."""
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            diffs = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    finally:
        engine.dispose()

    def table_of(diff: object) -> str | None:
        # ("add_column", schema, "alerts", Column), ("add_index", Index), or for modify_* a
        # list of ("modify_nullable", schema, "alerts", "col", ...) tuples.
        item = diff[0] if isinstance(diff, list) else diff
        for part in item if isinstance(item, tuple) else (item,):
            if isinstance(part, str) and part in OURS:
                return part
            table = getattr(part, "table", part)
            name = getattr(table, "name", None)
            if isinstance(name, str) and name in OURS:
                return name
        return None

    return [d for d in diffs if table_of(d) in OURS]


def _indexes(url: str) -> set[str]:
    engine = create_engine(url)
    try:
        return {ix["name"] for ix in inspect(engine).get_indexes("alerts") if ix["name"]}
    finally:
        engine.dispose()


@pytest.fixture(params=["postgresql", "sqlite"])
def any_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path}/m.db"
        services.core.db.migrate(url)
        return url
    url: str = request.getfixturevalue("database_url")
    return url


def test_upgrade_downgrade_upgrade_matches_the_models(any_url: str) -> None:
    assert _diffs(any_url) == []
    assert "uq_alerts_one_unresolved" in _indexes(any_url)
    command.downgrade(_config(any_url), "0002")
    assert _indexes(any_url) >= {"uq_alerts_one_open"}
    assert "uq_alerts_one_unresolved" not in _indexes(any_url)
    engine = create_engine(any_url)
    try:
        assert not {"webhook_subscriptions", "webhook_deliveries"} & set(
            inspect(engine).get_table_names()
        )
    finally:
        engine.dispose()
    command.upgrade(_config(any_url), "head")
    assert _diffs(any_url) == []


def test_acknowledged_holds_the_key_in_the_index(any_url: str) -> None:
    engine = create_engine(any_url)
    insert = text(
        "INSERT INTO alerts (monitor, model_name, site, state, severity, detail, result_id, "
        "opened_after_predictions, opened_at) VALUES ('m', 'x', 'a', :state, 'warning', 'd', "
        "1, 1, CURRENT_TIMESTAMP)"
    )
    try:
        with engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO monitor_results (id, monitor, model_name, model_version, site, "
                    "window_index, first_event_id, last_event_id, n_current, n_reference, "
                    "statistic, p_value, drift, details, created_at) VALUES (1, 'm', 'x', 1, "
                    "'a', 0, 1, 2, 2, 2, 0, 1, true, '{}', CURRENT_TIMESTAMP)"
                )
            )
            conn.execute(insert, {"state": "acknowledged"})
        with pytest.raises(IntegrityError), engine.begin() as conn:
            conn.execute(insert, {"state": "open"})
        with engine.begin() as conn:
            conn.execute(text("UPDATE alerts SET state = 'resolved'"))
            conn.execute(insert, {"state": "open"})
            conn.execute(insert, {"state": "resolved"})  # resolved rows never collide
    finally:
        engine.dispose()


@pytest.fixture
def worker_context(settings: Settings, install_runtime: Callable[[Settings], Runtime]) -> Settings:
    """The worker's process runtime pointed at this test's database."""
    install_runtime(settings)
    return settings


def test_task_sends_due_deliveries(
    worker_context: Settings,
    sessions,
    receiver: Receiver,  # type: ignore[no-untyped-def]
) -> None:
    from services.alerts.tasks import deliver_webhooks
    from services.worker.app import celery_app, create_celery

    _subscribe(sessions, receiver.url)
    _acknowledge(sessions, worker_context)
    assert deliver_webhooks() == 1
    assert deliver_webhooks() == 0
    assert _delivery(sessions).status == "delivered"
    assert receiver.requests[0].headers["X-Radwatch-Signature"].startswith("sha256=")
    assert SECRET not in receiver.requests[0].body.decode()

    assert "alerts.deliver_webhooks" in celery_app.tasks
    beat = create_celery(worker_context).conf.beat_schedule["alerts-deliver-webhooks"]
    assert beat["task"] == "alerts.deliver_webhooks"
    assert beat["schedule"] == worker_context.webhook_interval_s
    assert beat["options"]["queue"] == "monitoring"
