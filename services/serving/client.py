"""Inference and model control against Triton over HTTP (``tritonclient.http``).

The adapter turns tritonclient's transport and server errors into radwatch's domain errors, so
the API and CLI can tell "Triton is down" (503, retry) from "that model is not loaded" (503, load
it) from "Triton rejected the request" (502).

Threads: ``tritonclient.http.InferenceServerClient`` is not thread-safe (it runs on gevent), so
:class:`TritonClient` keeps one underlying client per thread. One ``TritonClient`` can be built
in the FastAPI lifespan and shared by every worker thread.
"""

from __future__ import annotations

import contextlib
import threading
import time
from typing import Any, NoReturn

import numpy as np
import numpy.typing as npt
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from pipelines.model import builtin_spec
from pipelines.spec import ModelSpec
from services.core.errors import (
    BadRequestError,
    InferenceError,
    ModelNotLoadedError,
    ServingUnavailableError,
)
from services.core.ports import InferenceOutput

#: Errors that mean the server could not be talked to at all (refused, reset, timed out).
_TRANSPORT_ERRORS: tuple[type[BaseException], ...] = (OSError, TimeoutError)
try:  # gevent.Timeout is a BaseException, not an OSError
    import gevent

    _TRANSPORT_ERRORS = (*_TRANSPORT_ERRORS, gevent.Timeout)
except ImportError:  # pragma: no cover - gevent is a tritonclient[http] dependency
    pass

#: Substrings of Triton's error text for a model that does not exist or is not serving.
_NOT_LOADED_MARKERS = (
    "unknown model",
    "is not found",
    "not loaded",
    "has no available versions",
    "is not at ready state",
    "failed to poll from model repository",
    "no version is available",
)


def _version_label(name: str, version: int | None) -> str:
    return f"model {name!r}" + (f" version {version}" if version is not None else "")


class TritonClient:
    """Typed, thread-safe facade over ``tritonclient.http`` for one Triton server.

    ``url`` is ``host:port`` without a scheme. ``timeout_s`` bounds connecting and each network
    read; a forward pass of a full batch on CPU takes well under a second, so the default leaves
    room for queueing on a busy server.
    """

    def __init__(self, url: str, *, timeout_s: float = 30) -> None:
        if "://" in url:
            raise BadRequestError(
                f"Triton URL {url!r} must be host:port without a scheme, e.g. 127.0.0.1:8000"
            )
        if timeout_s <= 0:
            raise BadRequestError(f"timeout_s must be positive, got {timeout_s}")
        self.url = url
        self.timeout_s = float(timeout_s)
        self._local = threading.local()
        self._lock = threading.Lock()
        self._clients: list[httpclient.InferenceServerClient] = []

    # --- plumbing ------------------------------------------------------------------------------

    def _client(self) -> httpclient.InferenceServerClient:
        client: httpclient.InferenceServerClient | None = getattr(self._local, "client", None)
        if client is None:
            client = httpclient.InferenceServerClient(
                self.url,
                connection_timeout=self.timeout_s,
                network_timeout=self.timeout_s,
            )
            self._local.client = client
            with self._lock:
                self._clients.append(client)
        return client

    def _unreachable(self, exc: BaseException) -> NoReturn:
        # Drop this thread's client: its connection pool may hold a dead socket.
        stale: httpclient.InferenceServerClient | None = getattr(self._local, "client", None)
        self._local.client = None
        if stale is not None:
            with self._lock:
                if stale in self._clients:
                    self._clients.remove(stale)
            with contextlib.suppress(Exception):
                stale.close()
        raise ServingUnavailableError(
            f"Triton at {self.url} is not reachable: {type(exc).__name__}: {exc}. Start it with "
            "`radwatch serve triton` or set RADWATCH_TRITON_URL."
        ) from exc

    def _call(self, fn_name: str, *args: Any, **kwargs: Any) -> Any:
        try:
            return getattr(self._client(), fn_name)(*args, **kwargs)
        except InferenceServerException:
            raise
        except _TRANSPORT_ERRORS as exc:
            self._unreachable(exc)

    def close(self) -> None:
        """Close every per-thread connection pool; the client must not be used afterwards."""
        with self._lock:
            clients, self._clients = self._clients, []
        for client in clients:
            client.close()

    def __enter__(self) -> TritonClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- server --------------------------------------------------------------------------------

    def server_version(self) -> str:
        try:
            metadata: dict[str, Any] = self._call("get_server_metadata")
        except InferenceServerException as exc:
            raise ServingUnavailableError(
                f"Triton at {self.url} answered the metadata request with an error: {exc.message()}"
            ) from exc
        return str(metadata["version"])

    def is_live(self) -> bool:
        """False (never an exception) when the server is down or not live."""
        try:
            return bool(self._call("is_server_live"))
        except (ServingUnavailableError, InferenceServerException):
            return False

    # --- model control -------------------------------------------------------------------------

    def load_model(self, name: str) -> None:
        """Load (or reload) every version of ``name`` from the server's model repository.

        Returns when Triton has finished loading. Raises :class:`ModelNotLoadedError` with the
        server's reason when the model is missing from the repository or fails to initialise.
        """
        try:
            self._call("load_model", name)
        except InferenceServerException as exc:
            raise ModelNotLoadedError(
                f"Triton at {self.url} could not load model {name!r}: {exc.message()}. Check that "
                f"'{name}/config.pbtxt' and a numbered version folder exist in the server's model "
                "repository (pipelines.export_triton.export_model writes them) and read the "
                "server log.",
                details={"model": name},
            ) from exc

    def unload_model(self, name: str, *, wait_s: float = 30.0) -> None:
        """Unload all versions of ``name`` and wait until none of them reports ready.

        Triton answers the unload request before in-flight requests drain; waiting here means
        that, on return, new requests for the model fail with :class:`ModelNotLoadedError`.
        """
        try:
            self._call("unload_model", name)
        except InferenceServerException as exc:
            raise InferenceError(
                f"Triton at {self.url} refused to unload model {name!r}: {exc.message()}"
            ) from exc
        deadline = time.monotonic() + wait_s
        while self.is_model_ready(name):
            if time.monotonic() > deadline:
                raise InferenceError(
                    f"Model {name!r} on Triton at {self.url} still reports ready {wait_s:.0f} s "
                    "after the unload request; check the server log for stuck requests."
                )
            time.sleep(0.05)

    def is_model_ready(self, name: str, version: int | None = None) -> bool:
        """Whether Triton serves ``name`` (a given version, or any). Unknown models are False."""
        try:
            return bool(self._call("is_model_ready", name, "" if version is None else str(version)))
        except InferenceServerException:
            return False

    # --- inference -----------------------------------------------------------------------------

    def infer(
        self,
        name: str,
        version: int | None,
        batch: npt.NDArray[np.float32],
        *,
        spec: ModelSpec | None = None,
    ) -> InferenceOutput:
        """Run the model on ``batch`` (float32 ``[B, *spec.input.shape]``, B >= 1; the built-in
        model's spec by default) and return every output the spec declares.

        Batches over the spec's ``max_batch_size`` are sent as consecutive requests and the
        outputs concatenated in order. ``version=None`` lets Triton pick (the highest loaded
        version under ``version_policy: all``); the chosen version is in the result. Findings
        declared as logits come back as probabilities (sigmoid applied here, the same for every
        export flavour).
        """
        spec = spec or builtin_spec()
        if spec.input is None:
            raise BadRequestError(f"'{name}' is a probe; Triton serves its encoder, not it")
        if not isinstance(batch, np.ndarray) or batch.ndim != 1 + len(spec.input.shape):
            shape = getattr(batch, "shape", type(batch).__name__)
            raise BadRequestError(
                f"Triton input must be a float32 array of shape [B>=1, "
                f"{', '.join(map(str, spec.input.shape))}] (use pipelines.preprocess.prepare); "
                f"got {shape}"
            )
        wrong = [
            i
            for i, (got, want) in enumerate(zip(batch.shape[1:], spec.input.shape, strict=True))
            if isinstance(want, int) and got != want
        ]
        if wrong or batch.shape[0] < 1:
            raise BadRequestError(
                f"Triton input must be a float32 array of shape [B>=1, "
                f"{', '.join(map(str, spec.input.shape))}] (use pipelines.preprocess.prepare); "
                f"got {batch.shape}"
            )
        if batch.dtype != np.float32:
            raise BadRequestError(
                f"Triton input must be float32, got {batch.dtype}; convert with "
                "pipelines.preprocess.prepare"
            )
        chunks: list[dict[str, npt.NDArray[np.float32]]] = []
        ran_version = -1
        step = spec.max_batch_size
        for start in range(0, batch.shape[0], step):
            chunk = np.ascontiguousarray(batch[start : start + step])
            out, ran_version = self._infer_chunk(name, version, chunk, spec)
            chunks.append(out)
        outputs = {k: np.concatenate([c[k] for c in chunks], axis=0) for k in chunks[0]}
        return InferenceOutput.of(spec, outputs, model_name=name, model_version=ran_version)

    def _infer_chunk(
        self, name: str, version: int | None, chunk: npt.NDArray[np.float32], spec: ModelSpec
    ) -> tuple[dict[str, npt.NDArray[np.float32]], int]:
        assert spec.input is not None
        inp = httpclient.InferInput(spec.input.name, list(chunk.shape), "FP32")
        inp.set_data_from_numpy(chunk, binary_data=True)
        wanted = {o.tensor: o for o in spec.outputs if o.kind in ("findings", "embedding")}
        requested = [httpclient.InferRequestedOutput(t, binary_data=True) for t in wanted]
        try:
            result = self._call(
                "infer",
                name,
                [inp],
                model_version="" if version is None else str(version),
                outputs=requested,
            )
        except InferenceServerException as exc:
            self._raise_server_error(name, version, exc)
        rows = chunk.shape[0]
        arrays: dict[str, npt.NDArray[np.float32]] = {}
        for tensor, o in wanted.items():
            got = result.as_numpy(tensor)
            width = len(o.findings) if o.kind == "findings" else o.width  # type: ignore[union-attr]
            if got is None or got.shape != (rows, width):
                raise InferenceError(
                    f"Triton {_version_label(name, version)} returned output {tensor!r} of shape "
                    f"{getattr(got, 'shape', None)} for {rows} images; the spec expects "
                    f"({rows}, {width}). Re-export the model with pipelines.export_triton."
                )
            arrays[tensor] = got.astype(np.float32, copy=False)
        response: dict[str, Any] = result.get_response()
        ran = int(response.get("model_version", version if version is not None else -1))
        return arrays, ran

    def _raise_server_error(
        self, name: str, version: int | None, exc: InferenceServerException
    ) -> NoReturn:
        message = str(exc.message() or "")
        lowered = message.lower()
        if any(marker in lowered for marker in _NOT_LOADED_MARKERS):
            raise ModelNotLoadedError(
                f"Triton at {self.url} does not serve {_version_label(name, version)}: {message}. "
                "Export it into the server's model repository (pipelines.export_triton) and load "
                f"it (TritonClient.load_model, or POST /v2/repository/models/{name}/load).",
                details={"model": name, "version": version},
            ) from exc
        raise InferenceError(
            f"Triton {_version_label(name, version)} failed the request: {message}",
            details={"model": name, "version": version},
        ) from exc
