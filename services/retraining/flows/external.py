"""External retraining: the model's own training code, declared in its spec as an MLflow
Project (``retraining.entry_point``), runs on the training queue with a snapshot of the labelled
production events; what it writes is imported as the candidate, judged on the spec's
sequestered evaluation set through Triton, and sent for sign-off.

The project is run with ``mlflow.projects.run(..., env_manager="local")`` (the worker's own
environment; a hospital that needs another one builds it into the worker image) and receives
two parameters: ``data``, a ``file://`` URI of the snapshot (parquet: one row per labelled event
with ``event_id``, ``embedding`` (list of float), ``label_<finding>`` (1, 0 or -1 for none),
``score_<finding>`` (the champion's production score) and the attributes ``sex``, ``age_band``,
``site``, ``vendor``, ``race_ethnicity``), and ``output``, a folder where it must write exactly
one ``model.onnx`` or ``model.pt2`` with the champion's interface. Nothing identifies a patient
in the snapshot: events carry pseudonymous ids only.
"""

from __future__ import annotations

import os
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from sqlalchemy.orm import Session, sessionmaker

from pipelines.spec import ModelSpec
from services.core.db import session_scope
from services.core.errors import ValidationFailedError
from services.core.runtime import Runtime
from services.registry.imports import import_version
from services.retraining import dossiers
from services.retraining.flows.candidates import evaluate_candidate
from services.retraining.service import Progress, get, mark_succeeded, record_candidate

_SERVABLE = ("model.onnx", "model.pt2")


@dataclass(frozen=True)
class ExternalRun:
    run_id: int
    actor: str
    model_name: str
    parent: int
    spec: ModelSpec
    snapshot: dossiers.EventSnapshot
    requested_by: str


def write_snapshot(snapshot: dossiers.EventSnapshot, path: Path) -> Path:
    """The labelled events as the parquet table the module docstring describes."""
    table: dict[str, object] = {
        "event_id": snapshot.event_ids,
        "embedding": [row.tolist() for row in snapshot.embeddings],
    }
    for j, finding in enumerate(snapshot.findings):
        table[f"label_{finding}"] = snapshot.labels[:, j].astype(np.int8)
        table[f"score_{finding}"] = snapshot.scores[:, j]
    for name, values in snapshot.attributes.items():
        table[name] = [None if v is None else str(v) for v in values]
    pd.DataFrame(table).to_parquet(path, index=False)
    return path


def _run_project(rt: Runtime, entry_point: str, data: Path, output: Path, name: str) -> str:
    import mlflow
    import mlflow.projects

    mlflow.set_tracking_uri(rt.settings.resolved_mlflow_uri)
    # "python" in the project's command is the worker's own interpreter.
    saved = os.environ.get("PATH", "")
    os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{saved}"
    try:
        submitted = mlflow.projects.run(  # type: ignore[no-untyped-call]
            entry_point,
            parameters={"data": data.as_uri(), "output": str(output)},
            env_manager="local",
            synchronous=True,
            experiment_name=f"{name}-external-training",
        )
    except Exception as exc:
        raise ValidationFailedError(
            f"The entry point {entry_point} failed ({type(exc).__name__}: {exc}); see its run "
            "in MLflow and the worker log."
        ) from exc
    finally:
        os.environ["PATH"] = saved
    return str(submitted.run_id)


def run_external(
    sessions: sessionmaker[Session], rt: Runtime | None, job: ExternalRun, report: Progress
) -> int:
    """Train with the model's own entry point, import, judge and ask for sign-off; the
    candidate's version."""
    retraining = job.spec.retraining
    assert retraining.entry_point is not None
    assert retraining.evaluation_set is not None
    if rt is None:
        raise ValidationFailedError(
            "External retraining runs on a training worker (its candidate is judged through "
            "Triton); queue the run (POST /v1/models/{model}/retraining) instead."
        )
    report("training", 0, 1)
    with tempfile.TemporaryDirectory(prefix="radwatch-external-") as tmp:
        data = write_snapshot(job.snapshot, Path(tmp) / "snapshot.parquet")
        output = Path(tmp) / "output"
        output.mkdir()
        project_run = _run_project(rt, retraining.entry_point, data, output, job.model_name)
        written = [output / f for f in _SERVABLE if (output / f).is_file()]
        if len(written) != 1:
            raise ValidationFailedError(
                f"The entry point {retraining.entry_point} wrote {len(written)} of "
                f"{', '.join(_SERVABLE)} into its output folder; it must write exactly one."
            )
        report("training", 1, 1)
        report("registering", 0, 1)
        with session_scope(sessions) as session:
            imported = import_version(
                rt.registry,
                name=job.model_name,
                source=written[0],
                spec=job.spec,
                session=session,
                actor=job.actor,
            )
    lineage = {
        "kind": "external",
        "entry_point": retraining.entry_point,
        "mlflow_project_run_id": project_run,
        "n_snapshot_events": len(job.snapshot),
        "candidate_version": imported.version,
        "source_sha256": imported.source_sha256,
    }
    with session_scope(sessions) as session:
        run = get(session, job.run_id, for_update=True)
        record_candidate(
            session,
            run,
            actor=job.actor,
            version=imported.version,
            mlflow_run_id=imported.run_id,
            lineage=lineage,
        )
    report("registering", 1, 1)
    report("evaluating", 0, 1)
    done = evaluate_candidate(
        rt,
        model_name=job.model_name,
        candidate_version=imported.version,
        evaluation_set=retraining.evaluation_set,
        requested_by=job.requested_by,
        retraining_run_id=job.run_id,
        conflicted=[job.actor],
    )
    report("evaluating", 1, 1)
    with session_scope(sessions) as session:
        run = get(session, job.run_id, for_update=True)
        mark_succeeded(
            session, run, actor=job.actor, dossier_id=done.dossier_id, passed=done.passed
        )
    return imported.version
