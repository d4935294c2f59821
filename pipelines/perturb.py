"""Acquisition perturbations, and the dossier's robustness evaluation under them.

Each perturbation mimics something a real imaging chain does to a radiograph, applied to the raw
image (float32 in [0, 1], any size) *before* :func:`pipelines.preprocess.to_model_input`, so the
model sees it through exactly the path production images take:

* ``noise``: additive Gaussian noise, ``strength`` = its standard deviation in pixel units
  (a lower-dose exposure or an older detector);
* ``contrast``: pixel values pulled towards the image mean, ``strength`` = the kept share of the
  deviation (a flatter look-up table / post-processing);
* ``blur``: Gaussian blur, ``strength`` = sigma in pixels *at the model's 128-px resolution*
  (scaled to the native size, so a 256-px and a 512-px vendor are blurred alike: focal spot,
  patient motion);
* ``exposure``: power-law change of the mid-tones, ``strength`` = gamma (> 1 under-exposed and
  darker, < 1 over-exposed), which keeps black and white points, as a detector's dose response
  does.

Defaults are moderate: a model that is fit for use should lose little discrimination under
them, and the change protocol's ``max_auroc_drop`` says how little. Everything is seeded:
image ``i`` of a batch draws from ``SeedSequence(seed, spawn_key=(kind, i))``, so a candidate and
its champion see the same perturbed pixels.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal, get_args

import numpy as np
import numpy.typing as npt
from scipy.ndimage import gaussian_filter

from monitors._json import json_safe
from monitors.performance import delong_compare
from pipelines.contract import FINDINGS, IMAGE_SIZE
from pipelines.model import RadiographNet, predict
from pipelines.preprocess import to_model_input
from pipelines.synth import Study

Perturbation = Literal["noise", "contrast", "blur", "exposure"]
PERTURBATIONS: tuple[Perturbation, ...] = get_args(Perturbation)

#: Default strength of each perturbation (units in the module docstring).
DEFAULT_STRENGTH: Mapping[Perturbation, float] = {
    "noise": 0.03,
    "contrast": 0.7,
    "blur": 1.5,
    "exposure": 1.3,
}

F32 = npt.NDArray[np.float32]


def _check(kind: str, strength: float) -> None:
    if kind not in PERTURBATIONS:
        raise ValueError(f"unknown perturbation {kind!r}; use one of {list(PERTURBATIONS)}")
    if not np.isfinite(strength) or strength < 0:
        raise ValueError(f"perturbation strength must be finite and >= 0; got {strength}")
    if kind in ("contrast", "exposure") and strength == 0:
        raise ValueError(f"{kind} strength must be > 0 (it is a factor / a gamma)")


def perturb(
    image: npt.ArrayLike,
    kind: Perturbation,
    *,
    strength: float | None = None,
    rng: np.random.Generator | None = None,
) -> F32:
    """One perturbed copy of ``image`` (2-D, values in [0, 1]); the result stays in [0, 1].

    ``rng`` is only used by ``noise``; the other perturbations are deterministic.
    """
    if kind not in PERTURBATIONS:
        raise ValueError(f"unknown perturbation {kind!r}; use one of {list(PERTURBATIONS)}")
    s = float(DEFAULT_STRENGTH[kind] if strength is None else strength)
    _check(kind, s)
    x = np.asarray(image, dtype=np.float32)
    if x.ndim != 2:
        raise ValueError(f"perturb takes one 2-D image; got shape {x.shape}")
    if kind == "noise":
        gen = rng if rng is not None else np.random.default_rng(0)
        out = x + np.float32(s) * gen.standard_normal(x.shape, dtype=np.float32)
    elif kind == "contrast":
        mean = np.float32(x.mean(dtype=np.float64))
        out = mean + np.float32(s) * (x - mean)
    elif kind == "blur":
        sigma = s * min(x.shape) / IMAGE_SIZE
        out = gaussian_filter(x, sigma=sigma, mode="nearest") if sigma > 0 else x.copy()
    else:  # exposure
        out = np.power(np.clip(x, 0.0, 1.0), np.float32(s))
    clipped: F32 = np.clip(out, 0.0, 1.0).astype(np.float32, copy=False)
    return clipped


def perturb_batch(
    images: Sequence[npt.ArrayLike],
    kind: Perturbation,
    *,
    seed: int,
    strength: float | None = None,
) -> list[F32]:
    """Perturb each image with its own seeded stream (see the module docstring)."""
    key = zlib.crc32(kind.encode())
    return [
        perturb(
            img,
            kind,
            strength=strength,
            rng=np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(key, i))),
        )
        for i, img in enumerate(images)
    ]


#: Scores one finding on raw images (the whole path: preprocessing, model, output), float64 [N].
Scorer = Callable[[Sequence[F32]], npt.NDArray[np.float64]]


def evaluate_robustness(
    candidate: RadiographNet,
    champion: RadiographNet,
    studies: Sequence[Study],
    *,
    finding: str,
    perturbations: Sequence[Perturbation],
    alpha: float = 0.05,
    seed: int = 0,
    strengths: Mapping[str, float] | None = None,
) -> dict[str, Any]:
    """AUROC of both built-in models (encoder and heads, from pixels) on synthetic ``studies``,
    clean and under each perturbation (:func:`robustness_of`).

    Synthetic studies are used because production keeps no images; they come from the same
    generator as the training data, so this measures sensitivity to the acquisition change
    alone, on patients neither model has seen.
    """
    j = FINDINGS.index(finding)

    def scorer(model: RadiographNet) -> Scorer:
        return lambda images: predict(model, to_model_input(images))[0][:, j].astype(np.float64)

    return robustness_of(
        scorer(candidate),
        scorer(champion),
        [s.image for s in studies],
        np.array([bool(s.labels[finding]) for s in studies], dtype=bool),
        finding=finding,
        perturbations=perturbations,
        alpha=alpha,
        seed=seed,
        strengths=strengths,
    )


def robustness_of(
    candidate: Scorer,
    champion: Scorer,
    images: Sequence[F32],
    labels: npt.NDArray[np.bool_],
    *,
    finding: str,
    perturbations: Sequence[Perturbation],
    alpha: float = 0.05,
    seed: int = 0,
    strengths: Mapping[str, float] | None = None,
    source: str = "synthetic",
) -> dict[str, Any]:
    """Both models' AUROC for ``finding`` on ``images``, clean and under each perturbation; the
    drop (clean - perturbed) with a paired DeLong CI. Any model radwatch serves can be scored
    (through Triton for an imported one); both see the same perturbed pixels."""
    y = np.asarray(labels, dtype=bool)
    n_pos = int(y.sum())
    out: dict[str, Any] = {
        "n": len(images),
        "n_pos": n_pos,
        "source": source,
        "finding": finding,
        "seed": seed,
        "perturbations": {},
    }
    if n_pos == 0 or n_pos == len(y):
        out["error"] = "the robustness set has one class only"
        return out
    scorers = {"candidate": candidate, "champion": champion}
    clean = {name: score(images) for name, score in scorers.items()}
    for kind in perturbations:
        strength = DEFAULT_STRENGTH[kind] if strengths is None else strengths.get(kind)
        strength = DEFAULT_STRENGTH[kind] if strength is None else float(strength)
        perturbed = perturb_batch(images, kind, seed=seed, strength=strength)
        entry: dict[str, Any] = {"strength": strength}
        for name, score in scorers.items():
            cmp = delong_compare(y, clean[name], score(perturbed), alpha)
            entry[name] = dict(
                json_safe(
                    {
                        "auroc_clean": cmp.auc_a,
                        "auroc_perturbed": cmp.auc_b,
                        "drop": cmp.difference,
                        "drop_lower": cmp.lower,
                        "drop_upper": cmp.upper,
                        "p_value": cmp.p_value,
                    }
                )
            )
        out["perturbations"][kind] = entry
    return out
