"""``radwatch grafana push`` against a recorded-contract fake of Grafana's HTTP API.

This is a CONTRACT FAKE, not Grafana: Grafana has no server package on this machine, so
``grafana_fake.FakeGrafana`` implements the handful of endpoints the push uses (health, folder
search/create, data source by uid/name, dashboard get/save) with the request and response shapes
of Grafana's documented HTTP API, on a real HTTP server. The real ``grafana-client`` talks to it
over the network, and the tests assert on the recorded requests: the bearer token, the payload's
``folderUid`` and ``overwrite``, stable uids, and that a second push creates no duplicates.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from services.cli.grafana import app
from services.core.processes import free_port
from services.grafana.dashboards import LIFECYCLE_UID, MODEL_SAFETY_UID, OPERATIONS_UID
from tests.services.grafana.grafana_fake import (
    EDITOR_TOKEN,
    VIEWER_TOKEN,
    FakeGrafana,
    FakeGrafanaServer,
)

UIDS = {OPERATIONS_UID, MODEL_SAFETY_UID, LIFECYCLE_UID}
PROM = {
    "id": 3,
    "uid": "prom-main",
    "orgId": 1,
    "name": "Prometheus",
    "type": "prometheus",
    "access": "proxy",
    "url": "http://prometheus:9090",
    "isDefault": True,
}
LOKI = {**PROM, "id": 4, "uid": "loki-1", "name": "Loki", "type": "loki", "isDefault": False}

runner = CliRunner()


@pytest.fixture
def grafana() -> Iterator[FakeGrafanaServer]:
    server = FakeGrafanaServer(FakeGrafana(datasources=[PROM, LOKI])).start()
    try:
        yield server
    finally:
        server.stop()


def _push(url: str, *args: str, token: str = EDITOR_TOKEN) -> Result:
    return runner.invoke(app, ["push", "--url", url, "--token", token, *args])


def _assert_clean_failure(result: Result, *needles: str) -> None:
    """Non-zero exit, a message on stderr, and no traceback."""
    assert result.exit_code != 0, result.output
    assert isinstance(result.exception, SystemExit), result.exception
    assert "Traceback" not in result.output
    for needle in needles:
        assert needle in result.output, result.output


def test_push_creates_folder_and_dashboards_then_updates_them_in_place(
    grafana: FakeGrafanaServer,
) -> None:
    fake = grafana.fake
    first = _push(grafana.url, "--folder", "radwatch", "--datasource", "Prometheus")
    assert first.exit_code == 0, first.output
    assert "folder 'radwatch' (uid radwatch): created" in first.output
    assert first.output.count(": created (version 1)") == 3

    second = _push(grafana.url, "--folder", "radwatch", "--datasource", "prom-main")
    assert second.exit_code == 0, second.output
    assert "folder 'radwatch' (uid radwatch): found" in second.output
    assert second.output.count(": updated (version 2)") == 3

    # one folder, created once; three dashboards, keyed by their fixed uids
    assert [f["uid"] for f in fake.folders] == ["radwatch"]
    assert len(fake.calls("POST", "/api/folders")) == 1
    assert set(fake.dashboards) == UIDS
    assert all(d["version"] == 2 for d in fake.dashboards.values())

    saves = fake.calls("POST", "/api/dashboards/db")
    assert len(saves) == 6
    for call in saves:
        assert call.body["folderUid"] == "radwatch"
        assert call.body["overwrite"] is True
        assert call.body["dashboard"]["uid"] in UIDS
        assert "id" not in call.body["dashboard"]
        (ds_var,) = [
            v for v in call.body["dashboard"]["templating"]["list"] if v["name"] == "datasource"
        ]
        assert ds_var["current"]["value"] == "prom-main"
        assert ds_var["current"]["text"] == "Prometheus"
    assert [c.body["dashboard"]["uid"] for c in saves[:3]] == [
        c.body["dashboard"]["uid"] for c in saves[3:]
    ]
    # every call carried the token
    assert {c.authorization for c in fake.requests} == {f"Bearer {EDITOR_TOKEN}"}


def test_datasource_is_looked_up_by_uid_then_by_name(grafana: FakeGrafanaServer) -> None:
    result = _push(grafana.url, "--datasource", "Prometheus")
    assert result.exit_code == 0, result.output
    lookups = [c.path for c in grafana.fake.calls("GET", "/api/datasources/")]
    assert lookups == ["/api/datasources/uid/Prometheus", "/api/datasources/name/Prometheus"]
    assert "data source 'Prometheus' (uid prom-main)" in result.output


def test_without_datasource_the_variable_keeps_grafanas_default(
    grafana: FakeGrafanaServer,
) -> None:
    result = _push(grafana.url)
    assert result.exit_code == 0, result.output
    assert not grafana.fake.calls("GET", "/api/datasources")
    for stored in grafana.fake.dashboards.values():
        (ds_var,) = [
            v for v in stored["dashboard"]["templating"]["list"] if v["name"] == "datasource"
        ]
        assert "current" not in ds_var or not ds_var["current"]


def test_existing_folder_is_found_by_title_and_reused(grafana: FakeGrafanaServer) -> None:
    grafana.fake.folders.append({"id": 99, "uid": "ops-legacy", "title": "Radwatch Ops"})
    result = _push(grafana.url, "--folder", "Radwatch Ops")
    assert result.exit_code == 0, result.output
    assert not grafana.fake.calls("POST", "/api/folders")
    assert {d["folderUid"] for d in grafana.fake.dashboards.values()} == {"ops-legacy"}


def test_unknown_datasource_is_refused_before_anything_is_written(
    grafana: FakeGrafanaServer,
) -> None:
    result = _push(grafana.url, "--datasource", "nope")
    _assert_clean_failure(result, "No data source with uid or name 'nope'", "Prometheus (uid")
    assert not grafana.fake.calls("POST")


def test_non_prometheus_datasource_is_refused(grafana: FakeGrafanaServer) -> None:
    result = _push(grafana.url, "--datasource", "Loki")
    _assert_clean_failure(result, "type 'loki'", "Prometheus data source")
    assert not grafana.fake.calls("POST")


def test_bad_token_is_a_clear_error(grafana: FakeGrafanaServer) -> None:
    result = _push(grafana.url, token="wrong")
    _assert_clean_failure(result, "refused the token (401)")
    assert not grafana.fake.dashboards


def test_viewer_token_cannot_write(grafana: FakeGrafanaServer) -> None:
    result = _push(grafana.url, token=VIEWER_TOKEN)
    _assert_clean_failure(result, "(403)", "Editor")
    assert not grafana.fake.folders


def test_unreachable_server_is_a_clear_error() -> None:
    result = _push(f"http://127.0.0.1:{free_port()}", "--timeout", "2")
    _assert_clean_failure(result, "Cannot reach Grafana at http://127.0.0.1:")


@pytest.mark.parametrize("url", ["grafana.example.org", "ftp://grafana", "http://:3000"])
def test_malformed_url_is_a_clear_error(url: str) -> None:
    _assert_clean_failure(_push(url), "is not a Grafana address")


def test_a_server_that_is_not_grafana_is_named_as_such(tmp_path: Path) -> None:
    """An HTTP server that answers HTML (e.g. the URL points at the wrong service)."""
    import http.server
    import threading

    (tmp_path / "api" / "frontend").mkdir(parents=True)
    (tmp_path / "api" / "frontend" / "settings").write_text("<html>not grafana</html>")

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *a: object, **k: object) -> None:
            super().__init__(*a, directory=str(tmp_path), **k)  # type: ignore[arg-type]

        def log_message(self, format: str, *args: object) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        result = _push(f"http://127.0.0.1:{httpd.server_address[1]}")
    finally:
        httpd.shutdown()
        httpd.server_close()
    _assert_clean_failure(result, "did not answer like Grafana")


def test_saved_payload_is_the_generated_dashboard(grafana: FakeGrafanaServer) -> None:
    """What Grafana receives is the committed JSON (plus the selected data source)."""
    assert _push(grafana.url).exit_code == 0
    root = Path(__file__).resolve().parents[3]
    for uid, stored in grafana.fake.dashboards.items():
        committed = json.loads((root / "helm/radwatch/dashboards" / f"{uid}.json").read_text())
        sent = next(
            c.body["dashboard"]
            for c in grafana.fake.calls("POST", "/api/dashboards/db")
            if c.body["dashboard"]["uid"] == uid
        )
        assert sent == committed
        assert stored["dashboard"]["title"] == committed["title"]


# --- generate ------------------------------------------------------------------------------------


def test_generate_writes_then_reports_unchanged_and_check_detects_drift(tmp_path: Path) -> None:
    args = ["--out", str(tmp_path / "dash"), "--rules", str(tmp_path / "rules.yaml")]
    first = runner.invoke(app, ["generate", *args])
    assert first.exit_code == 0, first.output
    assert first.output.count("wrote ") == 4
    assert runner.invoke(app, ["generate", *args]).output.count("unchanged ") == 4
    assert runner.invoke(app, ["generate", "--check", *args]).exit_code == 0
    (tmp_path / "dash" / f"{OPERATIONS_UID}.json").write_text("{}")
    stale = runner.invoke(app, ["generate", "--check", *args])
    assert stale.exit_code == 1
    assert "out of date" in stale.output
