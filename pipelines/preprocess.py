"""Turn raw radiograph pixel arrays into the encoder's input tensor, and describe them.

The gateway, training and the reference profile all call :func:`to_model_input`, so the model
sees exactly the same transformation in training and in production.

The normalisation is deliberately *fixed* (``(x - 0.5) / 0.25``) rather than per-image
standardisation: a vendor that images 20 % brighter must reach the encoder 20 % brighter, or the
drift monitors could never see the change the model itself is exposed to.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
import torch.nn.functional as F

from pipelines.contract import IMAGE_SIZE, IMAGE_STATS
from pipelines.errors import InvalidImageError

#: Fixed normalisation constants applied after resizing (pixel values are in [0, 1]).
NORM_MEAN: float = 0.5
NORM_STD: float = 0.25

#: Pixel values may stray this far outside [0, 1] (float rounding in a caller's scaling) before
#: the image is rejected; within the tolerance they are clipped.
RANGE_TOLERANCE: float = 1e-6


def validate_image(image: npt.ArrayLike, *, index: int | None = None) -> npt.NDArray[np.float32]:
    """Check one image and return it as float32 clipped to [0, 1].

    Raises :class:`InvalidImageError` with a message naming the image's position in the batch
    (never any identifier) and what the caller must change.
    """
    where = "image" if index is None else f"image #{index}"
    arr = np.asarray(image)
    if arr.ndim != 2:
        raise InvalidImageError(
            f"{where} has shape {arr.shape}; send one 2-D grey-level array (height, width) per "
            "image, without a channel or frame axis"
        )
    if arr.size == 0:
        raise InvalidImageError(f"{where} is empty (shape {arr.shape}); send a non-empty image")
    if not np.issubdtype(arr.dtype, np.number) or np.issubdtype(arr.dtype, np.complexfloating):
        raise InvalidImageError(f"{where} has dtype {arr.dtype}; send real-valued pixels")
    arr = arr.astype(np.float32, copy=False)
    if not np.isfinite(arr).all():
        raise InvalidImageError(f"{where} contains NaN or infinite pixels; send finite values")
    lo, hi = float(arr.min()), float(arr.max())
    if lo < -RANGE_TOLERANCE or hi > 1.0 + RANGE_TOLERANCE:
        raise InvalidImageError(
            f"{where} has pixel values in [{lo:.4g}, {hi:.4g}]; scale pixels to [0, 1] first "
            "(e.g. divide by 2**BitsStored - 1)"
        )
    clipped: npt.NDArray[np.float32] = np.clip(arr, 0.0, 1.0)
    return clipped


def to_model_input(images: Sequence[npt.NDArray[Any]]) -> npt.NDArray[np.float32]:
    """Resize each image to IMAGE_SIZE² and apply the fixed normalisation.

    Images may have different sizes. Resizing uses anti-aliased bilinear interpolation, which
    behaves like area averaging when shrinking (no aliasing of rib edges or noise) and like
    bilinear when enlarging. Returns float32 ``[B, 1, IMAGE_SIZE, IMAGE_SIZE]``.
    """
    if len(images) == 0:
        raise InvalidImageError("no images given; send at least one 2-D image")
    out = np.empty((len(images), 1, IMAGE_SIZE, IMAGE_SIZE), dtype=np.float32)
    # Images of the same shape are resized together: one interpolate call per distinct shape.
    by_shape: dict[tuple[int, int], list[int]] = {}
    checked: list[npt.NDArray[np.float32]] = []
    for i, image in enumerate(images):
        arr = validate_image(image, index=i)
        checked.append(arr)
        h, w = arr.shape
        by_shape.setdefault((h, w), []).append(i)
    with torch.no_grad():
        for (h, w), idx in by_shape.items():
            batch = torch.from_numpy(np.stack([checked[i] for i in idx])[:, None])
            if (h, w) != (IMAGE_SIZE, IMAGE_SIZE):
                batch = F.interpolate(
                    batch,
                    size=(IMAGE_SIZE, IMAGE_SIZE),
                    mode="bilinear",
                    align_corners=False,
                    antialias=True,
                )
            out[idx] = batch.numpy()
    out -= NORM_MEAN
    out /= NORM_STD
    return out


def image_stats(image: npt.NDArray[Any]) -> dict[str, float]:
    """Summary statistics of the raw (pre-resize) image, keyed by ``contract.IMAGE_STATS``.

    ``mean``, ``std``, ``p01`` and ``p99`` are over pixel values in [0, 1] (percentiles are the
    1st and 99th, linear interpolation); ``height`` and ``width`` are in pixels. These are the
    cheapest signals of a changed detector, exposure or post-processing.
    """
    arr = validate_image(image)
    p01, p99 = np.percentile(arr, [1.0, 99.0])
    stats = {
        "mean": float(arr.mean(dtype=np.float64)),
        "std": float(arr.std(dtype=np.float64)),
        "p01": float(p01),
        "p99": float(p99),
        "height": float(arr.shape[0]),
        "width": float(arr.shape[1]),
    }
    assert tuple(stats) == IMAGE_STATS
    return stats
