"""Launch the ``tritonserver`` that ships inside the ``nvidia-pytriton`` wheel as a child process.

Production runs Triton from the NGC image (see the Helm chart); the demo and the tests run the
same server binary from the wheel, on CPU. Three things make the wheel's server usable with the
Python backend outside pytriton's own launcher:

* The Python backend stub (``triton_python_backend_stub``) must sit next to
  ``libtriton_python.so``. The wheel keeps it elsewhere, and site-packages may be read-only, so
  :func:`prepare_backend_directory` assembles a private backend directory in a cache folder.
* The stub links ``libpython3.11.so.1.0``. The first one the loader finds may be the system's
  older build, whose C API does not match the running stdlib, so the running interpreter's own
  ``LIBDIR`` goes first in ``LD_LIBRARY_PATH`` (followed by the wheel's bundled libraries, which
  the copied stub can no longer reach through its ``$ORIGIN`` rpath).
* The stub runs Python in isolated mode, so ``PYTHONPATH`` is ignored. It finds its
  ``sys.prefix`` by looking up ``python3`` on ``PATH``; putting this interpreter's ``bin``
  directory first makes a virtual environment's site-packages (torch, numpy<2) importable.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import shutil
import signal
import subprocess
import sys
import sysconfig
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from types import TracebackType

from services.core.errors import ServingUnavailableError
from services.core.processes import tail as file_tail

logger = logging.getLogger(__name__)

_BACKEND_FILES = ("libtriton_python.so", "triton_python_backend_utils.py")
_STUB_NAME = "triton_python_backend_stub"
#: Seconds Triton waits for in-flight requests after SIGTERM, and we wait beyond that.
_EXIT_TIMEOUT_S = 5
_KILL_GRACE_S = 10.0
_STARTED_MARKER = b"Started Metrics Service at"


def _pytriton_dir() -> Path:
    """Directory of the installed ``pytriton`` package, without importing it (it is heavy)."""
    import importlib.util

    spec = importlib.util.find_spec("pytriton")
    if spec is None or not spec.submodule_search_locations:
        raise ServingUnavailableError(
            "The nvidia-pytriton wheel is not installed, so there is no local tritonserver. "
            "Install it with `pip install nvidia-pytriton==0.7.0`, or point "
            "RADWATCH_TRITON_URL at a running Triton server."
        )
    return Path(next(iter(spec.submodule_search_locations)))


def find_tritonserver() -> Path:
    """Path of the ``tritonserver`` binary bundled in the nvidia-pytriton wheel.

    Raises :class:`ServingUnavailableError` saying how to install it when it is missing.
    """
    binary = _pytriton_dir() / "tritonserver" / "bin" / "tritonserver"
    if not binary.is_file() or not os.access(binary, os.X_OK):
        raise ServingUnavailableError(
            f"No executable tritonserver at {binary}. Reinstall the wheel with "
            "`pip install --force-reinstall nvidia-pytriton==0.7.0` (Linux x86_64 only), or pass "
            "`binary=` / point RADWATCH_TRITON_URL at a running Triton server."
        )
    return binary


def _default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "radwatch" / "triton-backends"


def _backend_sources() -> list[Path]:
    root = _pytriton_dir() / "tritonserver"
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    stub = root / "python_backend_stubs" / version / _STUB_NAME
    sources = [root / "backends" / "python" / name for name in _BACKEND_FILES]
    missing = [p for p in [*sources, stub] if not p.is_file()]
    if missing:
        raise ServingUnavailableError(
            f"The nvidia-pytriton wheel has no Python backend for Python {version} "
            f"(missing: {', '.join(str(p) for p in missing)}). Use Python 3.11 with "
            "nvidia-pytriton==0.7.0."
        )
    return [*sources, stub]


@lru_cache(maxsize=1)
def _backend_digest() -> str:
    digest = hashlib.sha256()
    for src in _backend_sources():
        digest.update(src.name.encode())
        digest.update(src.read_bytes())
    return digest.hexdigest()[:16]


def prepare_backend_directory(cache_dir: Path | None = None) -> Path:
    """Return a Triton ``--backend-directory`` whose ``python/`` holds backend and stub together.

    The directory name is a digest of the source files, so a wheel upgrade gets a fresh copy and
    an existing copy is never modified. It is built in a temporary sibling and renamed into
    place; ``rename`` is atomic, so when several processes race, one wins and the others discard
    their copy and use the winner's. A half-written directory is therefore never visible.
    """
    sources = _backend_sources()
    cache = (cache_dir or _default_cache_dir()).resolve()
    final = cache / f"python-backend-{_backend_digest()}"
    expected = [final / "python" / src.name for src in sources]
    if all(p.is_file() for p in expected):
        return final
    cache.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=cache))
    try:
        (staging / "python").mkdir()
        for src in sources:
            shutil.copy2(src, staging / "python" / src.name)
        # The stub is executed by the backend; it needs the execute bits copy2 may not carry.
        os.chmod(staging / "python" / _STUB_NAME, 0o755)  # noqa: S103
        try:
            staging.rename(final)
        except OSError:
            if not all(p.is_file() for p in expected):
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return final


def server_environment(base: dict[str, str] | None = None) -> dict[str, str]:
    """Environment for ``tritonserver`` and its Python stubs (see the module docstring)."""
    env = dict(os.environ if base is None else base)
    libdir = sysconfig.get_config_var("LIBDIR")
    bundled = _pytriton_dir().parent / "nvidia_pytriton.libs"
    ld_parts = [str(p) for p in (libdir, bundled) if p]
    if env.get("LD_LIBRARY_PATH"):
        ld_parts.append(env["LD_LIBRARY_PATH"])
    env["LD_LIBRARY_PATH"] = ":".join(ld_parts)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    return env


class TritonServerProcess:
    """One ``tritonserver`` child process in explicit model-control mode.

    Models are loaded and unloaded through the repository API (:class:`TritonClient`), never by
    polling the repository, so a half-exported version is never picked up. The process runs in
    its own session; :meth:`stop` signals the whole group so the Python backend stubs go too.
    """

    def __init__(
        self,
        model_repository: Path,
        *,
        http_port: int,
        grpc_port: int,
        metrics_port: int,
        log_path: Path | None = None,
        binary: Path | None = None,
        load_models: Sequence[str] = (),
        backend_cache_dir: Path | None = None,
    ) -> None:
        self.model_repository = Path(model_repository).resolve()
        self.http_port = http_port
        self.grpc_port = grpc_port
        self.metrics_port = metrics_port
        self.binary = binary
        self.load_models = tuple(load_models)
        self.backend_cache_dir = backend_cache_dir
        self._own_log = log_path is None
        self.log_path = Path(log_path) if log_path is not None else None
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """HTTP endpoint as ``host:port``, the form ``tritonclient.http`` expects."""
        return f"127.0.0.1:{self.http_port}"

    @property
    def metrics_url(self) -> str:
        """Prometheus exposition (``nv_inference_*`` counters)."""
        return f"http://127.0.0.1:{self.metrics_port}/metrics"

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def is_running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def command(self, backend_dir: Path, binary: Path) -> list[str]:
        shm_prefix = f"radwatch{os.getpid()}_{self.http_port}_"
        cmd = [
            str(binary),
            f"--model-repository={self.model_repository}",
            f"--backend-directory={backend_dir}",
            "--model-control-mode=explicit",
            "--strict-readiness=true",
            f"--http-port={self.http_port}",
            f"--grpc-port={self.grpc_port}",
            f"--metrics-port={self.metrics_port}",
            "--http-address=127.0.0.1",
            "--grpc-address=127.0.0.1",
            f"--exit-timeout-secs={_EXIT_TIMEOUT_S}",
            "--allow-gpu-metrics=false",
            "--allow-cpu-metrics=true",
            # Distinct shared-memory names so several servers on one host never collide.
            f"--backend-config=python,shm-region-prefix-name={shm_prefix}",
            # 8 MiB fits a full batch of 64 images (4 MiB) without growing the region per call.
            "--backend-config=python,shm-default-byte-size=8388608",
        ]
        cmd += [f"--load-model={name}" for name in self.load_models]
        return cmd

    def start(self, timeout_s: float = 120) -> None:
        """Start the server and return once ``/v2/health/ready`` answers 200.

        Raises :class:`ServingUnavailableError` with the tail of the server log when the process
        exits early or is not ready within ``timeout_s`` seconds (the process is then stopped).
        """
        if self.is_running():
            return
        if not self.model_repository.is_dir():
            raise ServingUnavailableError(
                f"Triton model repository {self.model_repository} does not exist; create it or "
                "export a model into it with pipelines.export_triton.export_model."
            )
        binary = self.binary or find_tritonserver()
        backend_dir = prepare_backend_directory(self.backend_cache_dir)
        if self.log_path is None:
            fd, name = tempfile.mkstemp(prefix="tritonserver-", suffix=".log")
            os.close(fd)
            self.log_path = Path(name)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self.log_path.touch()
        log_offset = self.log_path.stat().st_size
        started = time.monotonic()
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen(
                self.command(backend_dir, binary),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=server_environment(),
                start_new_session=True,
            )
        deadline = started + timeout_s
        while time.monotonic() < deadline:
            code = self._process.poll()
            if code is not None:
                tail = file_tail(self.log_path)
                self._process = None
                raise ServingUnavailableError(
                    f"tritonserver exited with code {code} during start-up (ports http "
                    f"{self.http_port}, grpc {self.grpc_port}, metrics {self.metrics_port}). "
                    f"Server log {self.log_path} ends with:\n{tail}"
                )
            if self._ready(log_offset):
                logger.info(
                    "tritonserver ready at %s after %.1f s", self.url, time.monotonic() - started
                )
                return
            time.sleep(0.2)
        tail = file_tail(self.log_path)
        self.stop()
        raise ServingUnavailableError(
            f"tritonserver at {self.url} was not ready within {timeout_s:.0f} s; it was stopped. "
            f"Server log {self.log_path} ends with:\n{tail}"
        )

    def _ready(self, log_offset: int) -> bool:
        """Ready means *this* process bound all three ports and answers ``/v2/health/ready``.

        The health answer alone is not enough: when the HTTP port is taken by another Triton,
        that server answers the probe while ours is about to exit with a bind error. Triton logs
        the metrics endpoint last, after HTTP and gRPC bound successfully.
        """
        assert self.log_path is not None
        try:
            with self.log_path.open("rb") as fh:
                fh.seek(log_offset)
                if _STARTED_MARKER not in fh.read():
                    return False
        except OSError:
            return False
        if self._process is None or self._process.poll() is not None:
            return False
        url = f"http://{self.url}/v2/health/ready"
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                return bool(resp.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def stop(self) -> None:
        """SIGTERM the server (it drains for up to ``_EXIT_TIMEOUT_S``), then SIGKILL its group."""
        process, self._process = self._process, None
        if process is None:
            return
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=_EXIT_TIMEOUT_S + _KILL_GRACE_S)
            except subprocess.TimeoutExpired:
                logger.warning("tritonserver %s ignored SIGTERM; killing it", process.pid)
        # The Python stubs share the server's process group (its own session); make sure none
        # outlives the server, whether it exited by itself or had to be killed.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=_KILL_GRACE_S)
        if self._own_log and self.log_path is not None and process.returncode == 0:
            self.log_path.unlink(missing_ok=True)

    def __enter__(self) -> TritonServerProcess:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
