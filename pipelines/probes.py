"""Linear probes: per-finding logistic regressions on a frozen encoder's embeddings.

A foundation encoder that outputs only an embedding becomes a classifier with one linear head
per finding, fitted on labelled studies the hospital already has. The encoder stays on Triton,
bit for bit; the heads are a few kilobytes of weights that the gateway applies to the embedding
Triton returns. Because the heads see only embeddings, they can be refitted later from the
embeddings radwatch stores with every prediction (images are never stored).

Fitting is a penalised logistic regression per finding, solved by Newton's method with a
backtracking line search on the D+1 parameters (float64). The embedding columns are
standardised on the finding's labelled rows before fitting and the weights folded back after,
so the L2 penalty means the same thing whatever the encoder's scale; the bias is not
penalised. Newton from zero has no randomness, so the same inputs give bitwise-identical
weights on the same machine (no seed is needed; ``seed`` is accepted so callers can pin and
record it alongside other fits).

A probe is saved as a ``.npz`` without pickles: float32 arrays, and the finding names and
encoder reference as JSON text, so any numpy can read it and loading it runs no code.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from pipelines.errors import PipelineError
from pipelines.spec import EncoderRef, ModelSpec, SpecError, parse_spec

#: Missing-label marker in a labels matrix (the same value as ``pipelines.retrain.NO_LABEL``).
NO_LABEL: Final = -1
#: Fewest labelled positives, and fewest labelled negatives, a finding needs to get a head. Below
#: this a logistic regression in 64+ dimensions separates the few cases perfectly and its
#: threshold means nothing.
MIN_PER_CLASS: Final = 10
#: Output tensor name of a probe's findings (the heads are applied by the gateway, not Triton).
PROBE_TENSOR: Final = "probe"
FORMAT_VERSION: Final = 1

_MAX_NEWTON_STEPS = 100
_GRADIENT_TOLERANCE = 1e-10


class ProbeError(PipelineError):
    """Embeddings, labels or a probe file that cannot be used; the message says what to fix."""


class ProbeFitError(ProbeError):
    """A finding without enough labelled positives or negatives to fit a head."""


@dataclass(frozen=True, eq=False)
class Probe:
    """Linear heads on an encoder's embedding: ``p = sigmoid(E @ weights.T + bias)``.

    ``weights`` float32 ``[F, D]``, ``bias`` float32 ``[F]``, ``findings`` the F names in column
    order, ``encoder`` the encoder version (and the hash of its serving file) whose embeddings
    the heads read: another encoder's embeddings, even of the same width, mean something else.
    """

    weights: npt.NDArray[np.float32]
    bias: npt.NDArray[np.float32]
    findings: tuple[str, ...]
    encoder: EncoderRef

    def __post_init__(self) -> None:
        w, b = self.weights, self.bias
        problems = []
        if w.dtype != np.float32 or b.dtype != np.float32:
            problems.append(f"weights and bias must be float32, got {w.dtype} and {b.dtype}")
        if w.ndim != 2 or b.shape != (w.shape[0],) or w.shape[0] != len(self.findings):
            problems.append(
                f"weights {w.shape}, bias {b.shape} and {len(self.findings)} findings disagree; "
                "expected [F, D], [F] and F names"
            )
        if len(set(self.findings)) != len(self.findings):
            problems.append(f"finding names repeat: {list(self.findings)}")
        if not (np.all(np.isfinite(w)) and np.all(np.isfinite(b))):
            problems.append("weights or bias are not finite")
        if problems:
            raise ProbeError("invalid probe: " + "; ".join(problems))

    @property
    def width(self) -> int:
        """The embedding width D the heads read."""
        return int(self.weights.shape[1])


def _check_embeddings(embeddings: npt.ArrayLike, width: int | None = None) -> npt.NDArray[Any]:
    arr = np.asarray(embeddings)
    if arr.ndim != 2 or arr.shape[0] == 0 or (width is not None and arr.shape[1] != width):
        want = f"[N, {width}]" if width is not None else "[N, D] with N >= 1"
        raise ProbeError(f"embeddings must be a 2-D array {want}; got shape {arr.shape}")
    if arr.dtype.kind not in "fiu" or not np.all(np.isfinite(arr)):
        raise ProbeError("embeddings must be finite numbers; drop the rows with NaN or inf first")
    return arr


def _sigmoid(z: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    # tanh form: no overflow warning for large |z|, unlike 1 / (1 + exp(-z)).
    out: npt.NDArray[np.float64] = 0.5 * (1.0 + np.tanh(0.5 * z))
    return out


def _objective(
    x: npt.NDArray[np.float64],
    y: npt.NDArray[np.float64],
    theta: npt.NDArray[np.float64],
    l2: float,
) -> float:
    z = x @ theta
    # Mean log-loss, computed stably: log(1 + e^z) - y z.
    loss = float(np.mean(np.logaddexp(0.0, z) - y * z))
    return loss + 0.5 * l2 * float(theta[:-1] @ theta[:-1])


def _newton(
    x: npt.NDArray[np.float64], y: npt.NDArray[np.float64], l2: float
) -> npt.NDArray[np.float64]:
    """Minimise mean log-loss + l2/2 |w|^2 over ``theta = [w, b]`` (``x`` has a ones column last).

    The Hessian is positive definite whenever ``l2 > 0`` (the bias direction has curvature from
    every row), so each Newton step is a descent direction; halving it until the objective drops
    keeps the iteration monotone even on separable data.
    """
    n, k = x.shape
    penalty = np.full(k, l2)
    penalty[-1] = 0.0
    theta = np.zeros(k)
    value = _objective(x, y, theta, l2)
    for _ in range(_MAX_NEWTON_STEPS):
        p = _sigmoid(x @ theta)
        grad = x.T @ (p - y) / n + penalty * theta
        if float(np.max(np.abs(grad))) < _GRADIENT_TOLERANCE:
            break
        hessian = (x.T * (p * (1.0 - p))) @ x / n + np.diag(penalty)
        hessian[np.diag_indices(k)] += 1e-12
        step = np.linalg.solve(hessian, grad)
        t = 1.0
        candidate = theta - step
        new_value = _objective(x, y, candidate, l2)
        while new_value > value and t > 1e-8:
            t *= 0.5
            candidate = theta - t * step
            new_value = _objective(x, y, candidate, l2)
        if new_value > value:
            break  # no decrease along the Newton direction: at the optimum up to rounding
        theta, value = candidate, new_value
    return theta


def fit_probes(
    embeddings: npt.ArrayLike,
    labels: npt.ArrayLike,
    findings: Sequence[str],
    *,
    encoder: EncoderRef,
    l2: float = 1e-3,
    seed: int = 0,
) -> Probe:
    """One logistic regression per finding, each on the rows where that finding is labelled.

    ``embeddings`` ``[N, D]``; ``labels`` ``[N, F]`` of 0, 1 or :data:`NO_LABEL`; ``findings``
    the F names; ``encoder`` the encoder that produced the embeddings. ``l2`` penalises the
    weights of the standardised embedding (per labelled row: the objective is the mean
    log-loss). Raises :class:`ProbeFitError` naming the first finding with fewer than
    :data:`MIN_PER_CLASS` labelled positives or negatives. ``seed`` does not change the result
    (the solver is deterministic); it is part of the signature so a caller's fit configuration
    is one record.
    """
    del seed  # deterministic solver; see the module docstring
    x = _check_embeddings(embeddings).astype(np.float64)
    y_all = np.asarray(labels)
    names = tuple(findings)
    if y_all.shape != (x.shape[0], len(names)):
        raise ProbeError(
            f"labels have shape {y_all.shape}; expected ({x.shape[0]}, {len(names)}): one row "
            "per embedding and one column per finding"
        )
    if not np.isin(y_all, (NO_LABEL, 0, 1)).all():
        raise ProbeError(f"labels must be 0, 1 or {NO_LABEL} (no label)")
    if len(set(names)) != len(names) or not names:
        raise ProbeError(f"give at least one finding, each once; got {list(names)}")
    if not l2 > 0:
        raise ProbeError(f"l2 must be > 0 (it keeps separable findings finite); got {l2}")
    for j, name in enumerate(names):
        pos, neg = int((y_all[:, j] == 1).sum()), int((y_all[:, j] == 0).sum())
        if min(pos, neg) < MIN_PER_CLASS:
            raise ProbeFitError(
                f"finding '{name}' has {pos} labelled positive and {neg} labelled negative "
                f"studies; a probe needs at least {MIN_PER_CLASS} of each. Label more studies, "
                "or leave the finding out of the labels file."
            )
    weights = np.empty((len(names), x.shape[1]), np.float64)
    bias = np.empty(len(names), np.float64)
    for j in range(len(names)):
        rows = y_all[:, j] != NO_LABEL
        xj, yj = x[rows], y_all[rows, j].astype(np.float64)
        mean = xj.mean(axis=0)
        scale = xj.std(axis=0)
        scale[scale == 0] = 1.0  # a constant column carries no signal; its weight stays 0
        design = np.hstack([(xj - mean) / scale, np.ones((len(xj), 1))])
        theta = _newton(design, yj, l2)
        w = theta[:-1] / scale
        weights[j], bias[j] = w, theta[-1] - float(mean @ w)
    return Probe(weights.astype(np.float32), bias.astype(np.float32), names, encoder)


def apply(probe: Probe, embeddings: npt.ArrayLike) -> npt.NDArray[np.float32]:
    """Probabilities float32 ``[N, F]`` of the probe's findings for embeddings ``[N, D]``.

    Computed in float64 and rounded once, so the gateway, the reference profile and any offline
    check give the same numbers for the same embeddings.
    """
    x = _check_embeddings(embeddings, probe.width).astype(np.float64)
    z = x @ probe.weights.astype(np.float64).T + probe.bias.astype(np.float64)
    return _sigmoid(z).astype(np.float32)


def save(probe: Probe, path: Path) -> Path:
    """Write ``probe`` to ``path`` (a ``.npz``, no pickles); returns ``path``."""
    with Path(path).open("wb") as fh:
        np.savez(
            fh,
            format_version=np.array([FORMAT_VERSION], np.int64),
            weights=probe.weights,
            bias=probe.bias,
            findings=np.array([json.dumps(list(probe.findings))]),
            encoder=np.array([probe.encoder.model_dump_json()]),
        )
    return Path(path)


def load(path: Path) -> Probe:
    """Read a probe written by :func:`save`. Raises :class:`ProbeError` naming what is wrong."""
    try:
        with np.load(Path(path), allow_pickle=False) as data:
            parts = {k: data[k] for k in data.files}
    except (OSError, ValueError) as exc:
        raise ProbeError(
            f"{Path(path).name} is not a probe file (.npz without pickles): {exc}"
        ) from None
    missing = {"format_version", "weights", "bias", "findings", "encoder"} - set(parts)
    if missing:
        raise ProbeError(f"{Path(path).name} lacks {sorted(missing)}; write it with probes.save")
    version = int(parts["format_version"][0])
    if version != FORMAT_VERSION:
        raise ProbeError(
            f"{Path(path).name} has probe format {version}; this radwatch reads {FORMAT_VERSION}"
        )
    try:
        findings = tuple(str(f) for f in json.loads(str(parts["findings"][0])))
        encoder = EncoderRef.model_validate_json(str(parts["encoder"][0]))
    except ValueError as exc:
        raise ProbeError(f"{Path(path).name} has unreadable names or encoder: {exc}") from None
    return Probe(parts["weights"], parts["bias"], findings, encoder)


def probe_spec(
    encoder_spec: ModelSpec,
    encoder_ref: EncoderRef,
    findings: Sequence[str],
    thresholds: Mapping[str, float] | None = None,
) -> ModelSpec:
    """The spec of a probe on ``encoder_spec``'s embedding: runtime ``probe``, the encoder's
    input, preprocessing and embedding output (the gateway prepares pixels for the encoder and
    stores its embedding), and a ``findings`` output of probabilities under :data:`PROBE_TENSOR`.
    Retraining is ``probe``: the heads can be refitted from stored embeddings. The reference
    also holds labels, because the probe was fitted on labelled studies."""
    embedding = encoder_spec.embedding
    if encoder_spec.runtime == "probe" or embedding is None or encoder_spec.input is None:
        raise SpecError(
            f"a probe needs an encoder served by Triton with an 'embedding' output; this spec "
            f"is runtime {encoder_spec.runtime!r} with outputs "
            f"{[o.kind for o in encoder_spec.outputs]}"
        )
    if embedding.tensor == PROBE_TENSOR:
        raise SpecError(
            f"the encoder's embedding tensor is named {PROBE_TENSOR!r}, the name of a probe's "
            "findings output; import the encoder with another tensor name"
        )
    given = dict(thresholds or {})
    if unknown := sorted(set(given) - set(findings)):
        raise SpecError(f"thresholds name findings the probe does not have: {unknown}")
    heads = [{"name": f} | ({"threshold": given[f]} if f in given else {}) for f in findings]
    return parse_spec(
        {
            "runtime": "probe",
            "modality": encoder_spec.modality,
            "dimensionality": encoder_spec.dimensionality,
            "input": encoder_spec.input.model_dump(mode="json"),
            "preprocessing": encoder_spec.preprocessing.model_dump(mode="json"),
            "outputs": [
                {
                    "kind": "findings",
                    "tensor": PROBE_TENSOR,
                    "findings": heads,
                    "activation": "probability",
                },
                embedding.model_dump(mode="json"),
            ],
            "reference": {
                "holds": ["embeddings", "scores", "metadata", "image_stats", "labels"],
                "min_studies": encoder_spec.reference.min_studies,
            },
            "retraining": {"kind": "probe"},
            "encoder": encoder_ref.model_dump(mode="json"),
            "encoder_runtime": encoder_spec.runtime,
            "max_batch_size": encoder_spec.max_batch_size,
            "description": (
                f"{len(heads)} linear probe(s) ({', '.join(findings)[:1500]}) on the embedding "
                f"of {encoder_ref.name} version {encoder_ref.version}."
            ),
        }
    )
