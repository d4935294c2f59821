"""Turn grey pixel arrays into a model's input tensor, as its spec declares, and describe them.

The gateway, training and the reference profile all go through :func:`prepare` (the built-in
model through :func:`to_model_input`), so a model sees exactly the same transformation in
training, in the reference profile and in production.

What happens here is the part of ``spec.preprocessing`` that follows the window: the DICOM
reader has already rescaled, inverted MONOCHROME1 and windowed to [0, 1], so images arrive as
[0, 1] grey arrays, ``(H, W)`` for a 2-D spec and ``(D, H, W)`` for a 3-D one. In order:

1. resize to the input's spatial shape (``resize_mode``, ``antialias``);
2. normalise (``fixed``, ``zscore`` or ``none``);
3. replicate the grey channel to ``input.shape[0]`` channels (``replicate_channels``).

The built-in model's normalisation is deliberately *fixed* (``(x - 0.5) / 0.25``) rather than
per-image standardisation: a vendor that images 20 % brighter must reach the encoder 20 %
brighter, or the drift monitors could never see the change the model itself is exposed to.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
import torch.nn.functional as F

from pipelines.acquisition import IMAGE_STATS
from pipelines.errors import InvalidImageError
from pipelines.spec import InputSpec, ModelSpec, Preprocessing, SpecError

#: Fixed normalisation constants of the built-in model, applied after resizing (pixels in [0, 1]).
NORM_MEAN: float = 0.5
NORM_STD: float = 0.25

#: Pixel values may stray this far outside [0, 1] (float rounding in a caller's scaling) before
#: the image is rejected; within the tolerance they are clipped.
RANGE_TOLERANCE: float = 1e-6

_AXES = {2: "(height, width)", 3: "(depth, height, width)"}


def validate_image(
    image: npt.ArrayLike, *, index: int | None = None, ndim: int = 2
) -> npt.NDArray[np.float32]:
    """Check one image (``ndim`` 2) or volume (``ndim`` 3); return it as float32 in [0, 1].

    Raises :class:`InvalidImageError` with a message naming the image's position in the batch
    (never any identifier) and what the caller must change.
    """
    where = "image" if index is None else f"image #{index}"
    arr = np.asarray(image)
    if arr.ndim != ndim:
        kind = "grey-level array" if ndim == 2 else "grey-level volume"
        raise InvalidImageError(
            f"{where} has shape {arr.shape}; send one {ndim}-D {kind} {_AXES[ndim]} per "
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


def _target_shape(spec: InputSpec, shape: tuple[int, ...], index: int) -> tuple[int, ...]:
    """The spatial size image ``index`` is resized to: fixed dims as declared, dynamic dims
    keep the image's own size (a model that takes any size is not resampled) within range."""
    target: list[int] = []
    for axis, (dim, size) in enumerate(zip(spec.spatial, shape, strict=True)):
        if isinstance(dim, int):
            target.append(dim)
            continue
        bounds = spec.dynamic[dim]
        if not bounds.min <= size <= bounds.max:
            raise InvalidImageError(
                f"image #{index} is {size} pixels along axis {axis} (dynamic dimension {dim!r}); "
                f"the model takes {bounds.min} to {bounds.max}: crop or resample it into range"
            )
        target.append(size)
    return tuple(target)


def _resize(batch: torch.Tensor, size: tuple[int, ...], pre: Preprocessing) -> torch.Tensor:
    """Resize ``batch`` [N, 1, *spatial] to ``size``.

    ``bilinear`` becomes ``trilinear`` for volumes. Anti-aliasing (which behaves like area
    averaging when shrinking, so rib edges and noise do not alias) exists in torch only for
    2-D bilinear; volumes are resized without it. ``nearest`` is torch's ``nearest`` (as MONAI's
    ``Resize`` uses it), so a model trained with MONAI sees the same pixels.
    """
    if pre.resize_mode == "bilinear":
        volume = len(size) == 3
        return F.interpolate(
            batch,
            size=size,
            mode="trilinear" if volume else "bilinear",
            align_corners=False,
            antialias=pre.antialias and not volume,
        )
    return F.interpolate(batch, size=size, mode=pre.resize_mode)


def _normalize(out: npt.NDArray[np.float32], pre: Preprocessing) -> None:
    """Normalise ``out`` [B, *spatial] in place.

    ``zscore`` uses each image's own mean and standard deviation (float64, over all pixels after
    resizing); a constant image has no spread and is only centred, to zeros, not divided by 0.
    """
    norm = pre.normalize
    if norm.kind == "fixed":
        out -= norm.mean
        out /= norm.std
    elif norm.kind == "zscore":
        for i in range(len(out)):
            mean = float(out[i].mean(dtype=np.float64))
            std = float(out[i].std(dtype=np.float64))
            out[i] = (out[i] - mean) / std if std > 0 else out[i] - mean


def prepare(spec: ModelSpec, images: Sequence[npt.ArrayLike]) -> npt.NDArray[np.float32]:
    """Prepare [0, 1] grey images for ``spec``'s model: float32 ``[B, *spec.input.shape]``.

    Images may have different sizes; each is resized to the spec's spatial shape, except along
    dynamic dimensions, where it keeps its own size (so all images of one call must agree there:
    a batch is one rectangular tensor). Raises :class:`InvalidImageError` naming the image's
    position for an image the model cannot take. A probe's pixels are prepared for its encoder
    (a probe's spec repeats the encoder's input and preprocessing).
    """
    if spec.input is None:
        raise SpecError("the spec has no input; give the model's input tensor")
    if len(images) == 0:
        raise InvalidImageError(f"no images given; send at least one {spec.dimensionality}-D image")
    channels = spec.input.channels
    pre = spec.preprocessing
    if channels > 1 and not pre.replicate_channels:
        raise InvalidImageError(
            f"the model takes {channels} input channels, but images are one grey channel and "
            "the spec's preprocessing.replicate_channels is false; set it to true, or serve a "
            "1-channel model"
        )
    checked: list[npt.NDArray[np.float32]] = []
    size: tuple[int, ...] | None = None
    for i, image in enumerate(images):
        arr = validate_image(image, index=i, ndim=spec.dimensionality)
        target = _target_shape(spec.input, arr.shape, i)
        if size is not None and target != size:
            raise InvalidImageError(
                f"image #{i} would be {list(target)} but image #0 is {list(size)} along the "
                "model's dynamic dimensions; send images of different sizes in separate requests"
            )
        size = target
        checked.append(arr)
    assert size is not None
    out = np.empty((len(checked), *size), dtype=np.float32)
    # Images of the same shape are resized together: one interpolate call per distinct shape.
    by_shape: dict[tuple[int, ...], list[int]] = {}
    for i, arr in enumerate(checked):
        by_shape.setdefault(arr.shape, []).append(i)
    with torch.no_grad():
        for shape, idx in by_shape.items():
            batch = torch.from_numpy(np.stack([checked[i] for i in idx])[:, None])
            if shape != size:
                batch = _resize(batch, size, pre)
            out[idx] = batch.numpy()[:, 0]
    _normalize(out, pre)
    if channels == 1:
        return out[:, None]
    return np.ascontiguousarray(np.repeat(out[:, None], channels, axis=1))


@lru_cache(maxsize=1)
def _builtin_spec() -> ModelSpec:
    # Imported here: pipelines.model imports this module (for NORM_MEAN/NORM_STD).
    from pipelines.model import builtin_spec

    return builtin_spec()


def to_model_input(images: Sequence[npt.NDArray[Any]]) -> npt.NDArray[np.float32]:
    """The built-in model's input: :func:`prepare` with :func:`pipelines.model.builtin_spec`.

    Resizes each image to IMAGE_SIZE² with anti-aliased bilinear interpolation and applies the
    fixed normalisation. Returns float32 ``[B, 1, IMAGE_SIZE, IMAGE_SIZE]``.
    """
    return prepare(_builtin_spec(), images)


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
