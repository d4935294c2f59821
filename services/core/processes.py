"""Child processes that the demo and the tests start: the API server and the Celery worker.

Each child writes to its own log file; on a failed start the error carries the log's tail, so a
user sees why (port taken, bad URL) instead of a time-out.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType

import httpx

from services.core.errors import UnavailableError


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago.

    Another process can take it before the server binds it; the server's start then fails with
    the bind error in its log tail, and the caller may retry with new ports.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def tail(path: Path, chars: int = 4000) -> str:
    """The last ``chars`` characters of a log file, read without loading the whole file."""
    try:
        with path.open("rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - chars))
            return fh.read().decode("utf-8", errors="replace")
    except OSError:
        return "(no log)"


class ManagedProcess:
    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        log_path: Path,
        cwd: Path | None = None,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.env = {**os.environ, **(env or {})}
        self.log_path = log_path
        self.cwd = cwd
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> ManagedProcess:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            self.argv,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=self.cwd,
            start_new_session=True,
        )
        log.close()
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def wait_until(self, check: Callable[[], bool], *, timeout_s: float, what: str) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not self.alive():
                raise UnavailableError(
                    f"{self.name} exited while starting ({what}). Log tail:\n{tail(self.log_path)}"
                )
            with contextlib.suppress(Exception):
                if check():
                    return
            time.sleep(0.2)
        raise UnavailableError(
            f"{self.name} did not become ready in {timeout_s:.0f} s ({what}). "
            f"Log tail:\n{tail(self.log_path)}"
        )

    def wait_http(self, url: str, *, timeout_s: float = 60) -> None:
        def ok() -> bool:
            return httpx.get(url, timeout=2).status_code < 500

        self.wait_until(ok, timeout_s=timeout_s, what=f"GET {url}")

    def wait_log(self, needle: str, *, timeout_s: float = 60) -> None:
        self.wait_until(
            lambda: needle in self.log_path.read_text(errors="replace"),
            timeout_s=timeout_s,
            what=f"'{needle}' in its log",
        )

    def stop(self, *, timeout_s: float = 15, sig: int = signal.SIGTERM) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        try:
            os.killpg(self.proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=5)

    def kill(self) -> None:
        self.stop(timeout_s=0.1, sig=signal.SIGKILL)

    def __enter__(self) -> ManagedProcess:
        return self.start()

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def settings_env(values: Mapping[str, object]) -> dict[str, str]:
    """``RADWATCH_*`` environment variables for a child process."""
    return {f"RADWATCH_{k.upper()}": str(v) for k, v in values.items() if v is not None}


def api_process(
    env: Mapping[str, str], *, port: int, log_path: Path, workers: int = 1
) -> ManagedProcess:
    argv = [
        sys.executable,
        "-m",
        "uvicorn",
        "--factory",
        "services.api.app:create_app",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        str(workers),
        "--log-level",
        "warning",
    ]
    if workers > 1 and "PROMETHEUS_MULTIPROC_DIR" not in env:
        # As ``radwatch api`` does: merge the workers' counters (see services.metrics.registry).
        folder = log_path.parent / f"prometheus-{port}"
        folder.mkdir(parents=True, exist_ok=True)
        env = {**env, "PROMETHEUS_MULTIPROC_DIR": str(folder)}
    return ManagedProcess("radwatch API", argv, env=env, log_path=log_path)


def worker_argv(
    *, beat: bool, concurrency: int, pool: str | None = None, queues: str = "monitoring"
) -> list[str]:
    """Command line of a Celery worker (CLI, demo and tests share it). ``queues`` is a comma-
    separated list: ``monitoring`` (monitors, alerts, lifecycle housekeeping) and/or
    ``training`` (retraining runs, for GPU workers)."""
    argv = [sys.executable, "-m", "celery", "-A", "services.worker.app", "worker"]
    argv += ["-Q", queues, "--loglevel", "INFO", "--concurrency", str(concurrency)]
    if pool is not None:
        argv += ["--pool", pool, "--without-gossip", "--without-mingle"]
    if beat:
        argv.append("--beat")
    return argv


def beat_argv() -> list[str]:
    """Command line of the standalone beat scheduler (run exactly one)."""
    return [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "services.worker.app",
        "beat",
        "--loglevel",
        "INFO",
    ]


def worker_process(
    env: Mapping[str, str],
    *,
    log_path: Path,
    beat: bool = True,
    concurrency: int = 1,
    pool: str = "solo",
    queues: str = "monitoring",
) -> ManagedProcess:
    argv = worker_argv(beat=beat, concurrency=concurrency, pool=pool, queues=queues)
    return ManagedProcess("Celery worker", argv, env=env, log_path=log_path)
