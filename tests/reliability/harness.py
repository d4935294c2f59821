"""The processes of the fault tests, and how to wait on them.

Every server is a real process on its own free port: a private ``redis-server`` (nothing kept on
disk), the API under uvicorn and a Celery worker with beat, pointed at the test's own PostgreSQL
database, so killing or restarting them never disturbs the machine's shared services.
"""

from __future__ import annotations

import json
import shutil
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
import redis

from services.core.processes import ManagedProcess, api_process, free_port, tail, worker_process

MODEL = "cxr-reliability"
#: Per-site drift windows of this many events, and a global series of larger ones.
SITE_WINDOW = 100
GLOBAL_WINDOW = 300
MONITORS: dict[str, dict[str, Any]] = {
    "site_drift": {"kind": "drift", "scope": "per_site", "window": {"size": SITE_WINDOW}},
    "global_drift": {"kind": "drift", "scope": "global", "window": {"size": GLOBAL_WINDOW}},
}

T = TypeVar("T")


def wait_for(
    check: Callable[[], T],
    *,
    timeout_s: float,
    what: str | Callable[[], str],
    every_s: float = 0.2,
    why: Callable[[], str] | None = None,
) -> T:
    """Poll ``check`` until it returns something truthy. After ``timeout_s`` the test fails
    naming ``what`` and adding ``why()`` (log tails, say), both evaluated at that moment."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            name = what() if callable(what) else what
            pytest.fail(
                f"timed out after {timeout_s:.0f} s waiting for {name}\n{why() if why else ''}"
            )
        time.sleep(every_s)


@dataclass(frozen=True)
class RegisteredModel:
    tracking_uri: str
    name: str
    version: int
    run_id: str


class RedisServer:
    """``redis-server`` on its own port, keeping nothing on disk, restartable on the same port."""

    def __init__(self, port: int, workdir: Path) -> None:
        self.port = port
        self.workdir = workdir
        self.url = f"redis://127.0.0.1:{port}/0"
        self.proc: ManagedProcess | None = None
        self.starts = 0

    def start(self) -> None:
        self.starts += 1
        binary = shutil.which("redis-server") or "/usr/bin/redis-server"
        argv = [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", ""]
        argv += ["--appendonly", "no", "--dir", str(self.workdir), "--daemonize", "no"]
        log = self.workdir / f"redis-{self.starts}.log"
        self.proc = ManagedProcess("redis-server", argv, log_path=log).start()
        self.proc.wait_until(self.ping, timeout_s=20, what="PING")

    def ping(self) -> bool:
        client = redis.Redis(port=self.port, socket_timeout=1, socket_connect_timeout=1)
        try:
            return bool(client.ping())
        finally:
            client.close()

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is not None:
            self.proc.stop(sig=sig, timeout_s=10)


@dataclass
class WebhookSink:
    """A real HTTP server in a thread that records (delivery id, event, alert id) per POST."""

    url: str = ""
    received: list[tuple[str, str, int]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def opened(self) -> dict[int, set[str]]:
        """Alert id -> the distinct delivery ids of its ``alert.opened`` POSTs."""
        out: dict[int, set[str]] = {}
        with self.lock:
            for delivery, event, alert_id in self.received:
                if event == "alert.opened":
                    out.setdefault(alert_id, set()).add(delivery)
        return out

    @contextmanager
    def serving(self) -> Iterator[WebhookSink]:
        sink = self
        port = free_port()
        self.url = f"http://127.0.0.1:{port}/hooks"

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                record = (
                    self.headers["X-Radwatch-Delivery"],
                    self.headers["X-Radwatch-Event"],
                    int(json.loads(body)["alert"]["id"]),
                )
                with sink.lock:
                    sink.received.append(record)
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            server.shutdown()
            server.server_close()


@dataclass
class Stack:
    """The API and worker processes of one test. Each (re)start gets a log file of its own."""

    env: dict[str, str]
    logs: Path
    api_port: int
    api_key: str
    database_url: str
    redis: RedisServer
    monitor_ids: dict[str, int] = field(default_factory=dict)
    api: ManagedProcess | None = None
    worker: ManagedProcess | None = None
    api_starts: int = 0
    worker_starts: int = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    @property
    def pg_dsn(self) -> str:
        """The test database as a plain libpq DSN."""
        return self.database_url.replace("postgresql+psycopg://", "postgresql://", 1)

    def start_api(self) -> ManagedProcess:
        self.api_starts += 1
        log = self.logs / f"api-{self.api_starts}.log"
        self.api = api_process(self.env, port=self.api_port, log_path=log).start()
        return self.api

    def wait_api(self) -> None:
        assert self.api is not None
        self.api.wait_http(f"{self.base_url}/healthz", timeout_s=90)

    def start_worker(self) -> ManagedProcess:
        self.worker_starts += 1
        log = self.logs / f"worker-{self.worker_starts}.log"
        self.worker = worker_process(self.env, log_path=log).start()
        return self.worker

    def wait_worker(self) -> None:
        assert self.worker is not None
        self.worker.wait_log("ready", timeout_s=90)

    def worker_ticks(self) -> int:
        """Monitor ticks the current worker has finished (from its log)."""
        assert self.worker is not None
        text = self.worker.log_path.read_text(errors="replace")
        return sum(
            1 for line in text.splitlines() if "monitoring.tick[" in line and "succeeded" in line
        )

    def client(self) -> httpx.Client:
        headers = {"Authorization": f"Bearer {self.api_key}"}
        return httpx.Client(base_url=self.base_url, headers=headers, timeout=30)

    def log_tails(self) -> str:
        paths = sorted([*self.logs.glob("*.log"), *self.redis.workdir.glob("*.log")])
        return "\n".join(f"--- {p.name} ---\n{tail(p, 2500)}" for p in paths)

    def stop(self) -> None:
        """SIGKILL the worker (its warm shutdown takes 2 to 10 s here, nothing is checked after
        it, and the database is dropped anyway), SIGTERM the API."""
        if self.worker is not None:
            self.worker.kill()
        if self.api is not None:
            self.api.stop()
