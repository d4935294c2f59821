"""MLflow adapter for the :class:`~services.core.ports.ModelRegistry` role.

Artifacts of a training run (paths inside the run's artifact root):

* ``model/``: :func:`pipelines.model.save_model` output (weights + config; trainable), for
  the built-in model, or ``serving/``: an imported model's one serving file (``.onnx``/``.pt2``),
* ``radwatch/spec.json``: the version's :class:`~pipelines.spec.ModelSpec`,
* ``reference_profile/``: ``ReferenceProfile.save`` output,
* ``model_card.md``: the human-readable model card.

A registered version's source is ``runs:/<run_id>/model`` (or ``/serving``); aliases
(``champion``, ``candidate``) are MLflow registered-model aliases. Deprecated MLflow stages
are not used.

Two deployments are supported:

* Embedded (the demo): ``sqlite:///<dir>/mlflow.db``. MLflow would otherwise put artifacts under
  ``./mlruns`` of whatever the working directory is, so experiments are created with an explicit
  ``file://`` artifact location (``<dir>/mlartifacts/<experiment>`` unless ``artifact_root`` says
  otherwise).
* A tracking server (``http(s)://``, started with ``--serve-artifacts``): the server chooses the
  artifact location (``mlflow-artifacts:/``) and proxies uploads and downloads.

Calls to a server are bounded in time (:mod:`services.registry.mlflow_http`).
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from services.core.errors import (
    UnknownModelError,
    ValidationFailedError,
)
from services.core.ports import SERVING_SHA256_TAG, EvaluationSetInfo, ModelVersionInfo
from services.registry import mlflow_evaluation as evaluation
from services.registry.mlflow_http import redact, translated

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities.model_registry import ModelVersion

    from pipelines.model import RadiographNet
    from pipelines.profile import ReferenceProfile
    from pipelines.spec import ModelSpec

logger = logging.getLogger(__name__)

MODEL_ARTIFACT: Final = "model"
PROFILE_ARTIFACT: Final = "reference_profile"
MODEL_CARD_ARTIFACT: Final = "model_card.md"
#: The version's :class:`~pipelines.spec.ModelSpec`, canonical JSON.
SPEC_ARTIFACT: Final = "radwatch/spec.json"
#: An imported model's serving artifact (one file: ``model.onnx`` or ``model.pt2``).
SERVING_ARTIFACT: Final = "serving"

#: MLflow caps a parameter value at 6000 characters.
_MAX_PARAM_CHARS: Final = 6000


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

    def _mlflow(self, what: str) -> contextlib.AbstractContextManager[None]:
        """Run MLflow calls for ``what`` with their failures turned into radwatch errors."""
        return translated(what, self.tracking_uri)

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

    def _finished_run(
        self,
        experiment: str,
        run_name: str,
        tags: Mapping[str, str] | None,
        log: Callable[[str], None],
    ) -> str:
        """Create a run, ``log`` its content, and mark it FINISHED; a run whose logging fails
        is marked FAILED (and the error re-raised), so ``register`` never takes a half-logged
        run."""
        with self._mlflow(f"Logging run {run_name!r} in experiment {experiment!r}"):
            experiment_id = self._experiment_id(experiment)
            run = self._client.create_run(experiment_id, run_name=run_name, tags=dict(tags or {}))
            run_id = str(run.info.run_id)
            try:
                log(run_id)
            except BaseException:
                with contextlib.suppress(Exception):
                    self._client.set_terminated(run_id, status="FAILED")
                raise
            self._client.set_terminated(run_id, status="FINISHED")
        return run_id

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
        spec: ModelSpec | None = None,
    ) -> str:
        """Log a finished training run; return its run id. ``spec`` defaults to the built-in
        model's (:func:`pipelines.model.builtin_spec`).

        The run is marked FAILED (and the error re-raised) if any artifact fails to upload, so
        a half-logged run can never be registered by mistake (``register`` checks the status).
        """
        from mlflow.entities import Metric, Param, RunTag

        from pipelines.model import ModelConfig, builtin_spec, save_model

        spec = spec or builtin_spec(ModelConfig(embedding_dim=model.embedding_dim))
        bad = [k for k, v in params.items() if len(str(v)) > _MAX_PARAM_CHARS]
        if bad:
            raise ValidationFailedError(
                f"Parameters {bad} exceed MLflow's {_MAX_PARAM_CHARS}-character limit; log "
                "long values as artifacts instead."
            )

        def log(run_id: str) -> None:
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
            self._client.log_text(run_id, spec.to_json(), SPEC_ARTIFACT)

        run_id = self._finished_run(experiment, run_name, tags, log)
        logger.info("Logged training run %s in experiment %r", run_id, experiment)
        return run_id

    def log_import(
        self,
        *,
        experiment: str,
        run_name: str,
        spec: ModelSpec,
        artifact: Path,
        model_card: str,
        params: Mapping[str, object],
        tags: Mapping[str, str] | None = None,
    ) -> str:
        """Log an imported model (its spec, serving artifact and card) as a finished run."""
        from mlflow.entities import Param, RunTag

        def log(run_id: str) -> None:
            self._client.log_batch(
                run_id,
                params=[Param(k, str(v)[:_MAX_PARAM_CHARS]) for k, v in params.items()],
                tags=[RunTag("radwatch.artifact_format", f"serving-{spec.runtime}")],
            )
            self._client.log_artifact(run_id, str(artifact), SERVING_ARTIFACT)
            self._client.log_text(run_id, model_card, MODEL_CARD_ARTIFACT)
            self._client.log_text(run_id, spec.to_json(), SPEC_ARTIFACT)

        run_id = self._finished_run(experiment, run_name, tags, log)
        logger.info("Logged imported model run %s in experiment %r", run_id, experiment)
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
                    f"Run {run_id!r} does not exist in MLflow at {redact(self.tracking_uri)}; "
                    "register the id that log_training returned."
                ) from exc
            if run.info.status != "FINISHED":
                raise ValidationFailedError(
                    f"Run {run_id!r} has status {run.info.status}; only finished training runs "
                    "can be registered."
                )
            source = next(
                (
                    a
                    for a in (MODEL_ARTIFACT, SERVING_ARTIFACT)
                    if self._client.list_artifacts(run_id, a)
                ),
                None,
            )
            if source is None:
                raise ValidationFailedError(
                    f"Run {run_id!r} has no '{MODEL_ARTIFACT}/' or '{SERVING_ARTIFACT}/' "
                    "artifacts; log it with MlflowRegistry.log_training or log_import."
                )
            try:
                self._client.create_registered_model(name)
            except MlflowException as exc:
                if str(exc.error_code) != "RESOURCE_ALREADY_EXISTS":
                    raise
            mv = self._client.create_model_version(
                name,
                source=f"runs:/{run_id}/{source}",
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

    def delete_model_tag(self, name: str, key: str) -> None:
        with self._mlflow(f"Removing tag {key!r} of model {name!r}"):
            if key in (self._client.get_registered_model(name).tags or {}):
                self._client.delete_registered_model_tag(name, key)

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

    def model_names(self) -> list[str]:
        """Every registered model's name, sorted."""
        with self._mlflow("Listing registered models"):
            names: list[str] = []
            token: str | None = None
            while True:
                page = self._client.search_registered_models(max_results=1000, page_token=token)
                names.extend(str(m.name) for m in page)
                token = page.token
                if not token:
                    return sorted(names)

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

    def load_spec(self, name: str, version: int) -> ModelSpec:
        """The version's spec. Versions registered before specs existed are the built-in
        model, so they get :func:`pipelines.model.builtin_spec` of their stored config."""
        from pipelines.model import ModelConfig, builtin_spec
        from pipelines.spec import SpecError, parse_spec

        info = self.get_version(name, version)
        with self._mlflow(f"Listing artifacts of model {name!r} version {version}"):
            stored = self._client.list_artifacts(info.run_id, SPEC_ARTIFACT.rsplit("/", 1)[0])
        if not any(a.path == SPEC_ARTIFACT for a in stored):
            return builtin_spec(
                ModelConfig(embedding_dim=self.load_model(name, version).embedding_dim)
            )
        try:
            return parse_spec(self.read_text(info.run_id, SPEC_ARTIFACT))
        except SpecError as exc:
            raise ValidationFailedError(
                f"The spec stored with {name!r} version {version} does not validate: {exc}"
            ) from None

    def has_trainable_model(self, name: str, version: int) -> bool:
        """Whether the version carries a trainable built-in model (``model/``)."""
        info = self.get_version(name, version)
        with self._mlflow(f"Listing artifacts of model {name!r} version {version}"):
            return bool(self._client.list_artifacts(info.run_id, MODEL_ARTIFACT))

    def download_serving_artifact(self, name: str, version: int, dest: Path) -> Path:
        """Copy an imported version's serving artifact into ``dest``; its path."""
        info = self.get_version(name, version)
        dest.mkdir(parents=True, exist_ok=True)
        with self._mlflow(f"Downloading the serving artifact of model {name!r} version {version}"):
            folder = Path(self._client.download_artifacts(info.run_id, SERVING_ARTIFACT, str(dest)))
        files = sorted(p for p in folder.iterdir() if p.is_file())
        if len(files) != 1:
            raise ValidationFailedError(
                f"{name!r} version {version} has {len(files)} files under '{SERVING_ARTIFACT}/'; "
                "an imported version has exactly one. Import it again."
            )
        return files[0]

    def serving_sha256(self, name: str, version: int) -> str:
        """The hash recorded at import (run tag :data:`SERVING_SHA256_TAG`); versions imported
        before the tag existed are downloaded and hashed."""
        from pipelines.export_triton import file_digest

        recorded = self.run_tags(self.get_version(name, version).run_id).get(SERVING_SHA256_TAG)
        if recorded:
            return recorded
        with tempfile.TemporaryDirectory(prefix="radwatch-dl-") as tmp:
            return file_digest(self.download_serving_artifact(name, version, Path(tmp)))

    def log_reference_profile(self, name: str, version: int, profile: ReferenceProfile) -> None:
        """Store (or replace) the version's reference profile."""
        info = self.get_version(name, version)
        with (
            tempfile.TemporaryDirectory(prefix="radwatch-log-") as tmp,
            self._mlflow(f"Logging the reference profile of model {name!r} version {version}"),
        ):
            profile_dir = Path(tmp) / PROFILE_ARTIFACT
            profile_dir.mkdir()
            profile.save(profile_dir)
            self._client.log_artifacts(info.run_id, str(profile_dir), PROFILE_ARTIFACT)

    # --- evaluation sets (services.registry.mlflow_evaluation) ----------------------------------

    def log_evaluation_set(
        self, name: str, folder: Path, *, sha256: str, studies: int
    ) -> EvaluationSetInfo:
        """Store ``folder`` as the next version of evaluation set ``name``."""
        with self._mlflow(f"Logging evaluation set {name!r}"):
            experiment_id = self._experiment_id(evaluation.EXPERIMENT)
            return evaluation.log(
                self._client, experiment_id, name, folder, sha256=sha256, studies=studies
            )

    def evaluation_set_versions(self, name: str) -> list[EvaluationSetInfo]:
        with self._mlflow(f"Versions of evaluation set {name!r}"):
            return evaluation.versions(
                self._client, self._experiment_id(evaluation.EXPERIMENT), name
            )

    def download_evaluation_set(
        self, name: str, version: int | None, dest: Path
    ) -> tuple[EvaluationSetInfo, Path]:
        """The set's info and the folder it was downloaded to (newest version by default)."""
        with self._mlflow(f"Downloading evaluation set {name!r}"):
            return evaluation.download(self._client, self._experiment_id, name, version, dest)

    def load_reference_profile(self, name: str, version: int) -> ReferenceProfile:
        from pipelines.profile import ReferenceProfile

        with self._downloaded(name, version, PROFILE_ARTIFACT) as path:
            profile: ReferenceProfile = ReferenceProfile.load(path)
            return profile


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
