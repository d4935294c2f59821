"""Sequestered evaluation sets stored in MLflow: one finished run per version, in the experiment
``radwatch-evaluation-sets``, tagged with the set's name, version and content hash.

The run's artifacts are the set itself (``studies/`` DICOM files, ``labels.csv``) and its
``manifest.json`` (every file's sha256, the overrides of each study, the counts). A version is
never changed: registering a set again makes the next version. The hash of the manifest is the
set's identity in every dossier that uses it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from services.core.errors import UnknownModelError
from services.core.ports import EvaluationSetInfo

if TYPE_CHECKING:
    from mlflow import MlflowClient

EXPERIMENT: Final = "radwatch-evaluation-sets"
NAME_TAG: Final = "radwatch.evaluation_set"
VERSION_TAG: Final = "radwatch.evaluation_set_version"
SHA_TAG: Final = "radwatch.evaluation_set_sha256"
COUNT_TAG: Final = "radwatch.evaluation_set_studies"


def _info(run: Any) -> EvaluationSetInfo:
    tags = run.data.tags
    return EvaluationSetInfo(
        name=str(tags[NAME_TAG]),
        version=int(tags[VERSION_TAG]),
        sha256=str(tags[SHA_TAG]),
        studies=int(tags[COUNT_TAG]),
        run_id=str(run.info.run_id),
        created_at=datetime.fromtimestamp(int(run.info.start_time) / 1000, tz=UTC),
    )


def versions(client: MlflowClient, experiment_id: str, name: str) -> list[EvaluationSetInfo]:
    escaped = name.replace("'", "\\'")
    runs = client.search_runs(
        [experiment_id],
        filter_string=f"tags.`{NAME_TAG}` = '{escaped}' and attributes.status = 'FINISHED'",
        max_results=1000,
    )
    return sorted((_info(r) for r in runs), key=lambda i: i.version)


def log(
    client: MlflowClient,
    experiment_id: str,
    name: str,
    folder: Path,
    *,
    sha256: str,
    studies: int,
) -> EvaluationSetInfo:
    """Log ``folder`` (studies/, labels.csv, manifest.json) as the next version of ``name``."""
    version = max((i.version for i in versions(client, experiment_id, name)), default=0) + 1
    tags = {
        "radwatch.kind": "evaluation-set",
        NAME_TAG: name,
        VERSION_TAG: str(version),
        SHA_TAG: sha256,
        COUNT_TAG: str(studies),
    }
    run = client.create_run(experiment_id, run_name=f"{name}-v{version}", tags=tags)
    run_id = str(run.info.run_id)
    try:
        client.log_artifacts(run_id, str(folder))
    except BaseException:
        with contextlib.suppress(Exception):
            client.set_terminated(run_id, status="FAILED")
        raise
    client.set_terminated(run_id, status="FINISHED")
    return _info(client.get_run(run_id))


def find(
    client: MlflowClient, experiment_id: str, name: str, version: int | None
) -> EvaluationSetInfo:
    found = versions(client, experiment_id, name)
    if not found:
        raise UnknownModelError(
            f"No evaluation set named '{name}'; register one with "
            "`radwatch evaluation-sets register`."
        )
    if version is None:
        return found[-1]
    for info in found:
        if info.version == version:
            return info
    raise UnknownModelError(
        f"Evaluation set '{name}' has no version {version}; it has "
        f"{', '.join(str(i.version) for i in found)}."
    )


def download(
    client: MlflowClient,
    experiment: Callable[[str], str],
    name: str,
    version: int | None,
    dest: Path,
) -> tuple[EvaluationSetInfo, Path]:
    info = find(client, experiment(EXPERIMENT), name, version)
    dest.mkdir(parents=True, exist_ok=True)
    path = Path(client.download_artifacts(info.run_id, "", str(dest)))
    return info, path
