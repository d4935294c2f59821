"""Judge a candidate that radwatch did not train (retraining ``none`` or ``external``): run the
champion and the candidate through Triton on a sequestered evaluation set, write the dossier,
and ask for sign-off. From there a candidate goes the way every candidate goes: a safety
officer approves (or not), and the promotion saga moves it through shadow and canary.

Both versions score the same studies from pixels, each decoded and prepared by its own spec, so
the paired comparison, the subgroup gaps and the calibration come from exactly the cases the
dossier names (set, version, sha256). The robustness study perturbs the candidate's decoded
pixels and scores both versions on them (the same perturbed pixels for both).
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from sqlalchemy.orm import Session, sessionmaker

from pipelines.dicom import DicomImage, pixel_options, site_slug
from pipelines.dossier import DossierInputs, EvaluationSet
from pipelines.perturb import robustness_of
from pipelines.preprocess import prepare
from pipelines.spec import ModelSpec
from pipelines.studies import decoded, read_labels
from services.approvals import service as approvals
from services.change_protocols import service as protocols
from services.core.db import session_scope
from services.core.errors import ConflictError, ValidationFailedError
from services.core.runtime import Runtime
from services.monitoring.kinds import age_band
from services.registry.evaluation_sets import LABELS, load_manifest
from services.retraining import dossiers
from services.retraining.service import Progress, get, mark_succeeded
from services.serving import service as serving


@dataclass(frozen=True)
class CandidateDossier:
    dossier_id: int
    passed: bool
    approval_request_id: int
    criteria: dict[str, bool]
    evaluation_set: dict[str, Any]


#: Studies per Triton request while scoring.
BATCH = 16


def _scorer(
    rt: Runtime, name: str, version: int, spec: ModelSpec, finding: str
) -> Callable[[Sequence[npt.NDArray[np.float32]]], npt.NDArray[np.float64]]:
    def score(images: Sequence[npt.NDArray[np.float32]]) -> npt.NDArray[np.float64]:
        out: list[npt.NDArray[np.float64]] = []
        for start in range(0, len(images), BATCH):
            batch = prepare(spec, list(images[start : start + BATCH]))
            result = rt.triton.infer(name, version, batch, spec=spec)
            out.append(result.probs[:, result.findings.index(finding)].astype(np.float64))
        return np.concatenate(out)

    return score


def _attributes(studies: Sequence[DicomImage]) -> dict[str, npt.NDArray[np.object_]]:
    def col(key: str) -> npt.NDArray[np.object_]:
        return np.array([s.metadata.get(key) or None for s in studies], dtype=object)

    ages = [s.metadata.get("age") for s in studies]
    return {
        "sex": col("sex"),
        "age_band": np.array(
            [age_band(float(a)) if isinstance(a, int | float) else None for a in ages],
            dtype=object,
        ),
        "site": np.array(
            [
                str(s.metadata.get("site") or site_slug(str(s.metadata.get("institution_name"))))
                for s in studies
            ],
            dtype=object,
        ),
        "vendor": col("manufacturer"),
        "race_ethnicity": col("race_ethnicity"),
    }


def _protocol(rt: Runtime, model_name: str, spec: ModelSpec, actor: str) -> tuple[int, Any]:
    """The model's change protocol (the defaults fitted to its spec when it has none)."""
    with session_scope(rt.sessions) as session:
        row, document = protocols.current(session, model_name, actor=actor, spec=spec)
        return row.version, document


def evaluate_candidate(
    rt: Runtime,
    *,
    model_name: str,
    candidate_version: int,
    evaluation_set: str,
    evaluation_set_version: int | None = None,
    requested_by: str,
    progress: Progress | None = None,
    retraining_run_id: int | None = None,
    conflicted: Sequence[str] = (),
) -> CandidateDossier:
    """Write the candidate's dossier on the evaluation set and open its approval request."""
    report = progress or (lambda stage, done, total: None)
    with session_scope(rt.sessions) as session:
        champion = serving.champion(session, model_name)
        champion_version, threshold = champion.model_version, champion.operating_threshold
    if candidate_version == champion_version:
        raise ConflictError(
            f"{model_name} version {candidate_version} is the champion; name another version."
        )
    champion_spec = rt.registry.load_spec(model_name, champion_version)
    candidate_spec = rt.registry.load_spec(model_name, candidate_version)
    if candidate_spec.interface() != champion_spec.interface():
        raise ConflictError(
            f"{model_name} version {candidate_version} has another interface than the champion "
            f"(version {champion_version}); it cannot replace it under this name."
        )
    if candidate_spec.findings is None:
        raise ValidationFailedError(
            f"{model_name} has no findings output; a dossier judges a finding."
        )
    specs = {champion_version: champion_spec, candidate_version: candidate_spec}
    protocol_version, protocol = _protocol(rt, model_name, candidate_spec, requested_by)
    criteria = dossiers.criteria_for(protocol, threshold)
    finding = criteria.finding
    if finding not in candidate_spec.findings.names:
        raise ValidationFailedError(
            f"The change protocol judges '{finding}', which {model_name} does not output "
            f"({', '.join(candidate_spec.findings.names)}); set acceptance.finding in the "
            "protocol (PUT /v1/models/{model}/protocol)."
        )

    with tempfile.TemporaryDirectory(prefix="radwatch-dossier-") as tmp:
        info, folder = rt.registry.download_evaluation_set(
            evaluation_set, evaluation_set_version, Path(tmp)
        )
        manifest = load_manifest(folder)
        labels = read_labels(folder / LABELS)
        entries: list[dict[str, Any]] = list(manifest["files"])  # type: ignore[call-overload]
        files = [(folder / e["file"], dict(e["overrides"])) for e in entries]
        options = {v: pixel_options(spec.preprocessing) for v, spec in specs.items()}
        studies: dict[int, list[DicomImage]] = {v: [] for v in specs}
        y: list[bool] = []
        for version, opts in options.items():
            if version != candidate_version and opts == options[candidate_version]:
                continue  # decoded alike: the candidate's images serve both
            for _, dicom in decoded(files, opts):
                if dicom is None:
                    raise ValidationFailedError("An evaluation set file no longer decodes.")
                label = labels.get(str(dicom.metadata.get("study_id") or ""), {}).get(finding)
                if label is not None:
                    studies[version].append(dicom)
                    if version == candidate_version:
                        y.append(bool(label))
        for version in specs:
            if not studies[version]:
                studies[version] = studies[candidate_version]
    n_pos = sum(y)
    if min(n_pos, len(y) - n_pos) < dossiers.MIN_HOLDOUT_CLASS:
        raise ValidationFailedError(
            f"Evaluation set '{evaluation_set}' v{info.version} has {n_pos} positive and "
            f"{len(y) - n_pos} negative '{finding}' labels; a dossier needs at least "
            f"{dossiers.MIN_HOLDOUT_CLASS} of each."
        )

    report("scoring", 0, 2)
    for version in (champion_version, candidate_version):
        serving.make_ready(rt.triton, rt.registry, rt.model_repository, model_name, version)
    images = [s.image for s in studies[candidate_version]]
    score_champion = _scorer(rt, model_name, champion_version, champion_spec, finding)
    score_candidate = _scorer(rt, model_name, candidate_version, candidate_spec, finding)
    labels_y = np.array(y, dtype=bool)
    evaluation = EvaluationSet(
        labels=labels_y,
        champion_scores=score_champion([s.image for s in studies[champion_version]]),
        candidate_scores=score_candidate(images),
        attributes=_attributes(studies[candidate_version]),
    )
    report("scoring", 1, 2)
    robustness = robustness_of(
        score_candidate,
        score_champion,
        images,
        labels_y,
        finding=finding,
        perturbations=criteria.perturbations,
        alpha=criteria.alpha,
        source=f"evaluation-set '{info.name}' v{info.version}",
    )
    report("scoring", 2, 2)
    source = {
        "evaluation_set": info.name,
        "version": info.version,
        "sha256": info.sha256,
        "studies": len(studies),
        "scored_by": "both versions through Triton, from the set's DICOM pixels",
    }
    with session_scope(rt.sessions) as session:
        drift = dossiers.drift_evidence(
            session, model_name=model_name, alert_ids=[], trigger="candidate registered by hand"
        )
    inputs = DossierInputs(
        model_name=model_name,
        candidate_version=candidate_version,
        champion_version=champion_version,
        protocol_version=protocol_version,
        criteria=criteria,
        evaluation=evaluation,
        training_attributes={},
        robustness=robustness,
        drift_evidence=drift,
        split=(
            f"sequestered evaluation set '{info.name}' version {info.version}: registered "
            "labelled studies that neither version was trained on"
        ),
        evaluation_source=source,
        retraining_run_id=retraining_run_id,
    )
    document, html = dossiers.render(inputs)
    with session_scope(rt.sessions) as session:
        dossier = dossiers.store(
            session,
            document=document,
            html=html,
            retraining_run_id=retraining_run_id,
            actor=requested_by,
        )
        request = approvals.open_request(
            session,
            model_name=model_name,
            candidate_version=candidate_version,
            dossier_id=dossier.id,
            criteria_passed=dossier.passed,
            protocol=protocol,
            requested_by=requested_by,
            conflicted=[requested_by, *conflicted],
        )
        return CandidateDossier(
            dossier_id=dossier.id,
            passed=dossier.passed,
            approval_request_id=request.id,
            criteria={c["name"]: bool(c["passed"]) for c in document["criteria"]},
            evaluation_set=source,
        )


def evaluate_run(
    sessions: sessionmaker[Session],
    rt: Runtime | None,
    run_id: int,
    actor: str,
    report: Progress,
) -> int:
    """Execute a queued :data:`~services.retraining.service.EVALUATION_KIND` run on a training
    worker: the candidate it names, judged on the evaluation set version it pinned; the
    candidate's version."""
    if rt is None:
        raise ValidationFailedError(
            "A candidate is judged on a training worker (through Triton); queue it with "
            "POST /v1/models/{model}/candidates."
        )
    with session_scope(sessions) as session:
        run = get(session, run_id)
        assert run.candidate_version is not None
        name, version, params = run.model_name, run.candidate_version, dict(run.params)
        requested_by = run.requested_by
    report("evaluating", 0, 1)
    done = evaluate_candidate(
        rt,
        model_name=name,
        candidate_version=version,
        evaluation_set=str(params["evaluation_set"]),
        evaluation_set_version=int(params["evaluation_set_version"]),
        requested_by=requested_by,
        retraining_run_id=run_id,
        conflicted=[actor],
    )
    report("evaluating", 1, 1)
    with session_scope(sessions) as session:
        run = get(session, run_id, for_update=True)
        mark_succeeded(session, run, actor=actor, dossier_id=done.dossier_id, passed=done.passed)
    return version
