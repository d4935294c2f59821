"""Acquisition perturbations for the dossier's robustness section.

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
from collections.abc import Mapping, Sequence
from typing import Literal, get_args

import numpy as np
import numpy.typing as npt
from scipy.ndimage import gaussian_filter

from pipelines.contract import IMAGE_SIZE

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
