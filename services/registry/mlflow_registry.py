"""MLflow adapter for the :class:`~services.core.ports.ModelRegistry` role.

Artifacts of a training run (paths inside the run's artifact root):

* ``model/``: :func:`pipelines.model.save_model` output (weights + config; trainable),
* ``reference_profile/``: ``ReferenceProfile.save`` output,
* ``model_card.md``: the human-readable model card.

A registered version's source is ``runs:/<run_id>/model``; aliases (``champion``, ``candidate``)
are MLflow registered-model aliases. Deprecated MLflow stages are not used.

Two deployments are supported:

* Embedded (the demo): ``sqlite:///<dir>/mlflow.db``. MLflow would otherwise put artifacts under
  ``./mlruns`` of whatever the working directory is, so experiments are created with an explicit
  ``file://`` artifact location (``<dir>/mlartifacts/<experiment>`` unless ``artifact_root`` says
  otherwise).
* A tracking server (``http(s)://``, started with ``--serve-artifacts``): the server chooses the
  artifact location (``mlflow-artifacts:/``) and proxies uploads and downloads.

MLflow's HTTP client retries a dead server with exponential back-off for minutes by default. A
request from the API or a Celery task must fail fast instead, so while one of this adapter's
calls runs, the retry and timeout settings are bounded (``MLFLOW_HTTP_REQUEST_*`` environment
variables, which MLflow reads per request). Values the operator set explicitly are kept.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
import threading
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import urlsplit, urlunsplit

from services.core.errors import (
    ConflictError,
    RadwatchError,
    RegistryUnavailableError,
    UnknownModelError,
    ValidationFailedError,
)
from services.core.ports import ModelVersionInfo

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities.model_registry import ModelVersion

    from pipelines.model import RadiographNet
    from pipelines.profile import ReferenceProfile

logger = logging.getLogger(__name__)

MODEL_ARTIFACT: Final = "model"
PROFILE_ARTIFACT: Final = "reference_profile"
MODEL_CARD_ARTIFACT: Final = "model_card.md"

#: Bounded HTTP behaviour while this adapter talks to an MLflow server: 2 retries with 1 s
#: back-off (about 2 s in all for a refused connection), 30 s per request.
_HTTP_LIMITS: Final[dict[str, str]] = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "30",
}
_env_lock = threading.Lock()
_env_users = 0
_env_saved: dict[str, str | None] = {}

#: MLflow caps a parameter value at 6000 characters.
_MAX_PARAM_CHARS: Final = 6000


@contextlib.contextmanager
def _bounded_http() -> Iterator[None]:
    """Apply :data:`_HTTP_LIMITS` while at least one adapter call is running (thread-safe)."""
    global _env_users
    with _env_lock:
        if _env_users == 0:
            _env_saved.clear()
            for key, value in _HTTP_LIMITS.items():
                _env_saved[key] = os.environ.get(key)
                if key not in os.environ:
                    os.environ[key] = value
        _env_users += 1
    try:
        yield
    finally:
        with _env_lock:
            _env_users -= 1
            if _env_users == 0:
                for key, saved in _env_saved.items():
                    if saved is None:
                        os.environ.pop(key, None)
                    else:
                        os.environ[key] = saved


def _redact(uri: str) -> str:
    """The URI without user:password, safe for messages and logs."""
    parts = urlsplit(uri)
    if parts.username is None and parts.password is None:
        return uri
    netloc = parts.hostname or ""
    if parts.port:
        netloc += f":{parts.port}"
    return urlunsplit(parts._replace(netloc=netloc))


def _is_transport_failure(exc: BaseException) -> bool:
    import requests

    if isinstance(exc, requests.exceptions.RequestException | ConnectionError | TimeoutError):
        return True
    text = str(exc)
    return "API request to" in text and ("Max retries exceeded" in text or "timed out" in text)


class MlflowRegistry:
    """The registry role on MLflow (tracking store + model registry).

    ``artifact_root`` only matters for a database tracking URI (``sqlite:``, ``postgresql:``...):
    it is where new experiments keep their artifacts. It defaults to ``mlartifacts`` next to a
    SQLite file, and must be given for other databases.
    """

    def __init__(
        self,
        tracking_uri: str,
        *,
        registry_uri: str | None = None,
        artifact_root: Path | None = None,
    ) -> None:
        from mlflow import MlflowClient

        self.tracking_uri = tracking_uri
        self.registry_uri = registry_uri or tracking_uri
        self._is_http = tracking_uri.startswith(("http://", "https://"))
        self._artifact_root = self._resolve_artifact_root(tracking_uri, artifact_root)
        self._client: MlflowClient = MlflowClient(
            tracking_uri=tracking_uri, registry_uri=self.registry_uri
        )

    @staticmethod
    def _resolve_artifact_root(tracking_uri: str, artifact_root: Path | None) -> Path | None:
        if artifact_root is not None:
            return Path(artifact_root).resolve()
        if tracking_uri.startswith("sqlite:///"):
            db_path = Path(tracking_uri.removeprefix("sqlite:///"))
            if not db_path.is_absolute():
                db_path = Path.cwd() / db_path
            return db_path.resolve().parent / "mlartifacts"
        return None

    # --- error translation ---------------------------------------------------------------------

    @contextlib.contextmanager
    def _mlflow(self, what: str) -> Iterator[None]:
        """Run MLflow calls for ``what`` and turn their failures into radwatch errors."""
        from mlflow.exceptions import MlflowException

        where = _redact(self.tracking_uri)
        # With credentials in the URI, MLflow's own message and traceback repeat them; drop both.
        chain = None if where != self.tracking_uri else True
        try:
            with _bounded_http():
                yield
        except RadwatchError:
            raise
        except MlflowException as exc:
            code = str(exc.error_code)
            message = self._scrub(str(exc.message))
            cause = exc if chain else None
            if _is_transport_failure(exc) or code in {"TEMPORARILY_UNAVAILABLE"}:
                raise self._unavailable(where, message) from cause
            if code in {"RESOURCE_DOES_NOT_EXIST", "NOT_FOUND"} or (
                code == "INVALID_PARAMETER_VALUE" and "not found" in message.lower()
            ):
                raise UnknownModelError(
                    f"{what}: not found in the MLflow registry at {where} ({message}). "
                    "Check the name, version or alias against MlflowRegistry.list_versions or the "
                    "MLflow UI."
                ) from cause
            if code == "RESOURCE_ALREADY_EXISTS":
                raise ConflictError(f"{what}: {message}") from cause
            if code == "INVALID_PARAMETER_VALUE":
                raise ValidationFailedError(
                    f"{what}: MLflow rejected the request: {message}"
                ) from cause
            raise RegistryUnavailableError(
                f"{what}: MLflow at {where} failed ({code}): {message}"
            ) from cause
        except Exception as exc:
            if _is_transport_failure(exc) or _is_database_failure(exc):
                text = self._scrub(str(exc)) or type(exc).__name__
                raise self._unavailable(where, text) from (exc if chain else None)
            raise

    def _scrub(self, text: str) -> str:
        """``text`` with the tracking URI's user:password removed."""
        parts = urlsplit(self.tracking_uri)
        if parts.password is not None:
            text = text.replace(parts.password, "***")
        if parts.username is not None:
            text = text.replace(f"{parts.username}:***@", "").replace(f"{parts.username}@", "")
        return text

    @staticmethod
    def _unavailable(where: str, text: str) -> RegistryUnavailableError:
        reason = text.splitlines()[0][:300] if text else "no reason given"
        return RegistryUnavailableError(
            f"MLflow at {where} is not reachable: {reason}. Start the tracking server (or check "
            "the SQLite path) and set RADWATCH_MLFLOW_TRACKING_URI."
        )

    def ping(self) -> None:
        """Raise :class:`RegistryUnavailableError` unless the registry answers (readiness)."""
        with self._mlflow("MLflow health check"):
            self._client.search_experiments(max_results=1)

    # --- training runs -------------------------------------------------------------------------

    def _experiment_id(self, name: str) -> str:
        from mlflow.exceptions import MlflowException

        existing = self._client.get_experiment_by_name(name)
        if existing is not None:
            return str(existing.experiment_id)
        location = None
        if self._artifact_root is not None:
            slug = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
            location = (self._artifact_root / slug).as_uri()
        try:
            return str(self._client.create_experiment(name, artifact_location=location))
        except MlflowException as exc:
            if str(exc.error_code) != "RESOURCE_ALREADY_EXISTS":
                raise
            # Another process created it between our lookup and create.
            raced = self._client.get_experiment_by_name(name)
            if raced is None:
                raise
            return str(raced.experiment_id)

    def log_training(
        self,
        *,
        experiment: str,
        run_name: str,
        params: Mapping[str, object],
        metrics: Mapping[str, float],
        model: RadiographNet,
        profile: ReferenceProfile,
        model_card: str,
        tags: Mapping[str, str] | None = None,
    ) -> str:
        """Log a finished training run; return its run id.

        The run is marked FAILED (and the error re-raised) if any artifact fails to upload, so
        a half-logged run can never be registered by mistake (``register`` checks the status).
        """
        from mlflow.entities import Metric, Param, RunTag

        from pipelines.model import save_model

        bad = [k for k, v in params.items() if len(str(v)) > _MAX_PARAM_CHARS]
        if bad:
            raise ValidationFailedError(
                f"Parameters {bad} exceed MLflow's {_MAX_PARAM_CHARS}-character limit; log "
                "long values as artifacts instead."
            )
        with self._mlflow(f"Logging training run {run_name!r} in experiment {experiment!r}"):
            experiment_id = self._experiment_id(experiment)
            run = self._client.create_run(experiment_id, run_name=run_name, tags=dict(tags or {}))
            run_id = str(run.info.run_id)
            try:
                now_ms = int(datetime.now(UTC).timestamp() * 1000)
                self._client.log_batch(
                    run_id,
                    metrics=[Metric(k, float(v), now_ms, 0) for k, v in metrics.items()],
                    params=[Param(k, str(v)) for k, v in params.items()],
                    tags=[RunTag("radwatch.artifact_format", "radiographnet-save_model")],
                )
                with tempfile.TemporaryDirectory(prefix="radwatch-log-") as tmp:
                    model_dir = Path(tmp) / MODEL_ARTIFACT
                    save_model(model, model_dir)
                    self._client.log_artifacts(run_id, str(model_dir), MODEL_ARTIFACT)
                    profile_dir = Path(tmp) / PROFILE_ARTIFACT
                    profile_dir.mkdir()
                    profile.save(profile_dir)
                    self._client.log_artifacts(run_id, str(profile_dir), PROFILE_ARTIFACT)
                self._client.log_text(run_id, model_card, MODEL_CARD_ARTIFACT)
            except BaseException:
                with contextlib.suppress(Exception):
                    self._client.set_terminated(run_id, status="FAILED")
                raise
            self._client.set_terminated(run_id, status="FINISHED")
        logger.info("Logged training run %s in experiment %r", run_id, experiment)
        return run_id

    # --- registered versions -------------------------------------------------------------------

    def register(self, name: str, run_id: str, *, description: str = "") -> int:
        """Register ``runs:/<run_id>/model`` as the next version of ``name``; its number."""
        from mlflow.exceptions import MlflowException

        with self._mlflow(f"Registering run {run_id!r} as model {name!r}"):
            try:
                run = self._client.get_run(run_id)
            except MlflowException as exc:
                if str(exc.error_code) != "RESOURCE_DOES_NOT_EXIST":
                    raise
                raise UnknownModelError(
                    f"Run {run_id!r} does not exist in MLflow at {_redact(self.tracking_uri)}; "
                    "register the id that log_training returned."
                ) from exc
            if run.info.status != "FINISHED":
                raise ValidationFailedError(
                    f"Run {run_id!r} has status {run.info.status}; only finished training runs "
                    "can be registered."
                )
            if not self._client.list_artifacts(run_id, MODEL_ARTIFACT):
                raise ValidationFailedError(
                    f"Run {run_id!r} has no '{MODEL_ARTIFACT}/' artifacts; log it with "
                    "MlflowRegistry.log_training."
                )
            try:
                self._client.create_registered_model(name)
            except MlflowException as exc:
                if str(exc.error_code) != "RESOURCE_ALREADY_EXISTS":
                    raise
            mv = self._client.create_model_version(
                name,
                source=f"runs:/{run_id}/{MODEL_ARTIFACT}",
                run_id=run_id,
                description=description or None,
            )
        version = int(mv.version)
        logger.info("Registered %s version %d", name, version)
        return version

    def set_alias(self, name: str, alias: str, version: int) -> None:
        with self._mlflow(f"Setting alias {alias!r} of model {name!r} to version {version}"):
            self._client.get_model_version(name, str(version))
            self._client.set_registered_model_alias(name, alias, str(version))

    def delete_alias(self, name: str, alias: str) -> None:
        with self._mlflow(f"Deleting alias {alias!r} of model {name!r}"):
            aliases = self._client.get_registered_model(name).aliases or {}
            if alias in aliases:
                self._client.delete_registered_model_alias(name, alias)

    def set_model_tag(self, name: str, key: str, value: str) -> None:
        """A tag on the registered model (e.g. a change-protocol version, stored with it)."""
        with self._mlflow(f"Tagging model {name!r} with {key!r}"):
            self._client.set_registered_model_tag(name, key, value)

    def model_tags(self, name: str) -> dict[str, str]:
        with self._mlflow(f"Tags of model {name!r}"):
            return dict(self._client.get_registered_model(name).tags or {})

    def alias_version(self, name: str, alias: str) -> int | None:
        """The version ``alias`` points at, or None when it is not set (no error)."""
        with self._mlflow(f"Alias {alias!r} of model {name!r}"):
            aliases = self._client.get_registered_model(name).aliases or {}
            value = aliases.get(alias)
            return None if value is None else int(value)

    def get_version(self, name: str, version: int) -> ModelVersionInfo:
        with self._mlflow(f"Model {name!r} version {version}"):
            return _info(self._client.get_model_version(name, str(version)))

    def get_by_alias(self, name: str, alias: str) -> ModelVersionInfo:
        with self._mlflow(f"Alias {alias!r} of model {name!r}"):
            return _info(self._client.get_model_version_by_alias(name, alias))

    def list_versions(self, name: str) -> list[ModelVersionInfo]:
        with self._mlflow(f"Versions of model {name!r}"):
            registered = self._client.get_registered_model(name)
            by_version: dict[str, list[str]] = {}
            for alias, version in (registered.aliases or {}).items():
                by_version.setdefault(str(version), []).append(alias)
            escaped = name.replace("'", "\\'")
            versions: list[ModelVersion] = []
            token: str | None = None
            while True:
                page = self._client.search_model_versions(
                    f"name='{escaped}'", max_results=1000, page_token=token
                )
                versions.extend(page)
                token = page.token
                if not token:
                    break
        infos = [_info(mv, aliases=by_version.get(str(mv.version), [])) for mv in versions]
        return sorted(infos, key=lambda i: i.version)

    def run_params(self, run_id: str) -> dict[str, str]:
        """The parameters a run logged (all values are strings, as MLflow stores them).

        Retraining reads the champion's recorded ``TrainConfig`` from here to regenerate its
        original training data for replay.
        """
        with self._mlflow(f"Parameters of run {run_id!r}"):
            return {str(k): str(v) for k, v in self._client.get_run(run_id).data.params.items()}

    def run_tags(self, run_id: str) -> dict[str, str]:
        """The tags of a run (lineage tags are ``radwatch.*``)."""
        with self._mlflow(f"Tags of run {run_id!r}"):
            return {str(k): str(v) for k, v in self._client.get_run(run_id).data.tags.items()}

    def log_text(self, run_id: str, text: str, artifact_file: str) -> None:
        """Store ``text`` as the run's artifact ``artifact_file`` (e.g. ``dossier/dossier.json``).

        Allowed on finished runs: evidence computed after training (the dossier) is attached to
        the run that produced the candidate, so MLflow shows both together.
        """
        with self._mlflow(f"Logging {artifact_file!r} to run {run_id!r}"):
            self._client.log_text(run_id, text, artifact_file)

    def read_text(self, run_id: str, artifact_file: str) -> str:
        """The text of one artifact of a run."""
        with (
            tempfile.TemporaryDirectory(prefix="radwatch-dl-") as tmp,
            self._mlflow(f"Downloading {artifact_file!r} of run {run_id!r}"),
        ):
            path = self._client.download_artifacts(run_id, artifact_file, tmp)
            return Path(path).read_text(encoding="utf-8")

    # --- artifacts -----------------------------------------------------------------------------

    @contextlib.contextmanager
    def _downloaded(self, name: str, version: int, artifact: str) -> Iterator[Path]:
        info = self.get_version(name, version)
        with (
            tempfile.TemporaryDirectory(prefix="radwatch-dl-") as tmp,
            self._mlflow(f"Downloading {artifact!r} of model {name!r} version {version}"),
        ):
            path = self._client.download_artifacts(info.run_id, artifact, tmp)
            yield Path(path)

    def load_model(self, name: str, version: int) -> RadiographNet:
        from pipelines.model import load_model

        with self._downloaded(name, version, MODEL_ARTIFACT) as path:
            return load_model(path)

    def load_reference_profile(self, name: str, version: int) -> ReferenceProfile:
        from pipelines.profile import ReferenceProfile

        with self._downloaded(name, version, PROFILE_ARTIFACT) as path:
            profile: ReferenceProfile = ReferenceProfile.load(path)
            return profile


def _is_database_failure(exc: BaseException) -> bool:
    try:
        from sqlalchemy.exc import OperationalError
    except ImportError:  # pragma: no cover - sqlalchemy is a dependency
        return False
    return isinstance(exc, OperationalError)


def _info(mv: ModelVersion, aliases: list[str] | None = None) -> ModelVersionInfo:
    found: Any = mv.aliases if aliases is None else aliases
    return ModelVersionInfo(
        name=str(mv.name),
        version=int(mv.version),
        run_id=str(mv.run_id),
        aliases=tuple(sorted(found or ())),
        created_at=datetime.fromtimestamp(int(mv.creation_timestamp) / 1000, tz=UTC),
        description=str(mv.description or ""),
    )
