"""The tritonserver launcher: start/stop, readiness, the backend directory, clear failures."""

from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from services.core.errors import ServingUnavailableError
from services.core.processes import free_port
from services.serving.client import TritonClient
from services.serving.server import (
    TritonServerProcess,
    find_tritonserver,
    prepare_backend_directory,
)


def test_find_tritonserver_is_the_wheel_binary() -> None:
    binary = find_tritonserver()
    assert binary.name == "tritonserver"
    assert os.access(binary, os.X_OK)


def test_backend_directory_is_prepared_once_under_concurrency(tmp_path: Path) -> None:
    with ThreadPoolExecutor(max_workers=4) as pool:
        dirs = list(pool.map(lambda _: prepare_backend_directory(tmp_path), range(8)))
    assert len(set(dirs)) == 1
    python_dir = dirs[0] / "python"
    assert sorted(p.name for p in python_dir.iterdir()) == [
        "libtriton_python.so",
        "triton_python_backend_stub",
        "triton_python_backend_utils.py",
    ]
    assert os.access(python_dir / "triton_python_backend_stub", os.X_OK)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".staging-")]


def test_session_server_is_live_with_version_and_metrics(
    triton_server: TritonServerProcess,
) -> None:
    import urllib.request

    client = TritonClient(triton_server.url)
    assert client.is_live()
    assert client.server_version().startswith("2.")
    with urllib.request.urlopen(triton_server.metrics_url, timeout=5) as resp:  # noqa: S310
        assert "nv_" in resp.read().decode()


def test_start_and_stop_a_second_server(tmp_path: Path) -> None:
    server = TritonServerProcess(
        tmp_path,
        http_port=free_port(),
        grpc_port=free_port(),
        metrics_port=free_port(),
        log_path=tmp_path / "log" / "triton.log",
    )
    with server:
        assert server.is_running()
        assert TritonClient(server.url).is_live()
        pid = server.pid
    assert pid is not None
    assert not server.is_running()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert not TritonClient(server.url, timeout_s=2).is_live()


def test_start_failure_reports_the_log_tail(
    tmp_path: Path, triton_server: TritonServerProcess
) -> None:
    # The session server already holds this HTTP port, so the bind fails.
    server = TritonServerProcess(
        tmp_path,
        http_port=triton_server.http_port,
        grpc_port=free_port(),
        metrics_port=free_port(),
    )
    t0 = time.monotonic()
    with pytest.raises(ServingUnavailableError, match="exited with code") as info:
        server.start(timeout_s=60)
    assert time.monotonic() - t0 < 30
    assert "already in use" in info.value.message
    assert not server.is_running()


def test_missing_repository_is_a_clear_error(tmp_path: Path) -> None:
    server = TritonServerProcess(
        tmp_path / "nope", http_port=free_port(), grpc_port=free_port(), metrics_port=free_port()
    )
    with pytest.raises(ServingUnavailableError, match="does not exist"):
        server.start()


def _group_members(pgid: int) -> list[int]:
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid:  # field 5 of /proc/<pid>/stat: process group id
            members.append(int(stat.parent.name))
    return members


def test_stop_leaves_no_python_stub_behind(tmp_path: Path) -> None:
    from tests.fixtures.triton import ExportedModelRepo, make_test_model

    repo = ExportedModelRepo(tmp_path / "repo")
    repo.export(make_test_model(seed=9), "stubcheck", 1)
    server = TritonServerProcess(
        repo.path, http_port=free_port(), grpc_port=free_port(), metrics_port=free_port()
    )
    with server:
        TritonClient(server.url).load_model("stubcheck")
        assert server.pid is not None
        pgid = server.pid
        assert len(_group_members(pgid)) >= 2  # the server and at least one stub
    deadline = time.monotonic() + 10
    while _group_members(pgid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _group_members(pgid) == []
