"""prepare, to_model_input and image_stats: shapes, normalisation, resizing, every rejection."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from pipelines.acquisition import IMAGE_STATS
from pipelines.contract import IMAGE_SIZE
from pipelines.errors import InvalidImageError
from pipelines.model import builtin_spec
from pipelines.preprocess import image_stats, prepare, to_model_input
from pipelines.spec import ModelSpec, parse_spec


def test_output_shape_mixed_sizes_and_dtype() -> None:
    rng = np.random.default_rng(0)
    images: list[npt.NDArray[Any]] = [
        rng.random((160, 160)),
        rng.random((256, 200)).astype(np.float32),
        rng.random((64, 96)),
    ]
    out = to_model_input(images)
    assert out.shape == (3, 1, IMAGE_SIZE, IMAGE_SIZE)
    assert out.dtype == np.float32


def test_normalisation_is_fixed_not_per_image() -> None:
    """A uniformly brighter image must stay brighter after preprocessing (drift stays visible)."""
    dark = np.full((200, 200), 0.3)
    bright = np.full((200, 200), 0.7)
    out = to_model_input([dark, bright])
    np.testing.assert_allclose(out[0], (0.3 - 0.5) / 0.25, atol=1e-5)
    np.testing.assert_allclose(out[1], (0.7 - 0.5) / 0.25, atol=1e-5)


def test_same_size_is_not_resampled() -> None:
    img = np.random.default_rng(1).random((IMAGE_SIZE, IMAGE_SIZE))
    np.testing.assert_allclose(to_model_input([img])[0, 0], (img - 0.5) / 0.25, atol=1e-5)


def test_tolerance_is_clipped() -> None:
    img = np.full((40, 40), 1.0 + 5e-7)
    assert float(to_model_input([img]).max()) == pytest.approx(2.0)


@pytest.mark.parametrize(
    ("image", "match"),
    [
        (np.zeros((2, 32, 32)), "2-D"),
        (np.zeros(32), "2-D"),
        (np.zeros((0, 32)), "empty"),
        (np.array([[0.1, np.nan], [0.2, 0.3]]), "NaN"),
        (np.array([[0.1, np.inf], [0.2, 0.3]]), "infinite"),
        (np.full((8, 8), 1.01), r"scale pixels to \[0, 1\]"),
        (np.full((8, 8), -0.01), r"scale pixels to \[0, 1\]"),
        (np.full((8, 8), 255, dtype=np.uint8), r"scale pixels to \[0, 1\]"),
        (np.full((8, 8), "a"), "dtype"),
    ],
)
def test_rejections(image: npt.NDArray[Any], match: str) -> None:
    with pytest.raises(InvalidImageError, match=match):
        to_model_input([np.zeros((16, 16)), image])
    with pytest.raises(InvalidImageError, match=match):
        image_stats(image)


def test_error_names_batch_position() -> None:
    with pytest.raises(InvalidImageError, match="image #1"):
        to_model_input([np.zeros((16, 16)), np.zeros((2, 2, 2))])


def test_empty_batch_rejected() -> None:
    with pytest.raises(InvalidImageError, match="at least one"):
        to_model_input([])


def test_image_stats_keys_and_values() -> None:
    img = np.linspace(0.0, 1.0, 100 * 50, dtype=np.float32).reshape(100, 50)
    stats = image_stats(img)
    assert tuple(stats) == IMAGE_STATS
    assert stats["height"] == 100.0
    assert stats["width"] == 50.0
    assert stats["mean"] == pytest.approx(0.5, abs=1e-6)
    assert stats["std"] == pytest.approx(float(img.std()), rel=1e-6)
    assert stats["p01"] == pytest.approx(0.01, abs=1e-3)
    assert stats["p99"] == pytest.approx(0.99, abs=1e-3)
    assert all(isinstance(v, float) for v in stats.values())


# --- prepare(spec, images): the spec-driven path every model goes through ---


def _old_to_model_input(images: list[npt.NDArray[Any]]) -> npt.NDArray[np.float32]:
    """A copy of to_model_input as it was before the spec existed (commit dd3a453)."""
    import torch
    import torch.nn.functional as F

    out = np.empty((len(images), 1, IMAGE_SIZE, IMAGE_SIZE), dtype=np.float32)
    by_shape: dict[tuple[int, int], list[int]] = {}
    checked = [np.clip(np.asarray(im).astype(np.float32), 0.0, 1.0) for im in images]
    for i, arr in enumerate(checked):
        by_shape.setdefault(arr.shape, []).append(i)  # type: ignore[arg-type]
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
    out -= 0.5
    out /= 0.25
    return out


def test_builtin_is_bit_identical_to_the_old_formula() -> None:
    rng = np.random.default_rng(7)
    images: list[npt.NDArray[Any]] = [
        rng.random((160, 160)),
        rng.random((256, 200)).astype(np.float32),
        rng.random((IMAGE_SIZE, IMAGE_SIZE)),
        rng.random((64, 96)),
        rng.random((160, 160)),
        np.full((1, 1), 1.0 + 5e-7),
    ]
    new = to_model_input(images)
    assert np.array_equal(new, _old_to_model_input(images))
    assert np.array_equal(new, prepare(builtin_spec(), images))
    assert new.flags["C_CONTIGUOUS"]


def _spec(
    shape: list[int | str],
    *,
    dynamic: dict[str, dict[str, int]] | None = None,
    **preprocessing: Any,
) -> ModelSpec:
    return parse_spec(
        {
            "runtime": "onnx",
            "dimensionality": len(shape) - 1,
            "input": {"name": "x", "shape": shape, "dynamic": dynamic or {}},
            "preprocessing": preprocessing,
            "outputs": [{"kind": "findings", "tensor": "y", "findings": [{"name": "a"}]}],
        }
    )


def _torch_resize(arr: npt.NDArray[Any], size: tuple[int, ...], **kw: Any) -> npt.NDArray[Any]:
    import torch
    import torch.nn.functional as F

    t = torch.from_numpy(np.asarray(arr, dtype=np.float32)[None, None])
    out: npt.NDArray[Any] = F.interpolate(t, size=size, **kw).numpy()[0, 0]
    return out


def test_volume_is_resized_trilinear_normalised_and_replicated() -> None:
    spec = _spec([2, 8, 32, 32], normalize={"kind": "fixed", "mean": 0.4, "std": 0.2})
    vol = np.random.default_rng(2).random((12, 40, 24))
    out = prepare(spec, [vol, vol])
    assert out.shape == (2, 2, 8, 32, 32)
    assert out.dtype == np.float32
    expected = (_torch_resize(vol, (8, 32, 32), mode="trilinear", align_corners=False) - 0.4) / 0.2
    for b in range(2):
        for c in range(2):
            np.testing.assert_allclose(out[b, c], expected, atol=1e-5)


@pytest.mark.parametrize("mode", ["nearest", "area"])
def test_resize_modes_follow_torch(mode: str) -> None:
    spec = _spec([1, 16, 16], resize_mode=mode, normalize={"kind": "none"})
    img = np.random.default_rng(3).random((48, 40))
    expected = _torch_resize(img, (16, 16), mode=mode)
    np.testing.assert_array_equal(prepare(spec, [img])[0, 0], expected)


def test_bilinear_without_antialias() -> None:
    spec = _spec([1, 16, 16], antialias=False, normalize={"kind": "none"})
    img = np.random.default_rng(4).random((64, 64))
    expected = _torch_resize(img, (16, 16), mode="bilinear", align_corners=False, antialias=False)
    np.testing.assert_array_equal(prepare(spec, [img])[0, 0], expected)


def test_zscore_is_per_image_and_constant_images_become_zero() -> None:
    spec = _spec([1, 8, 8], normalize={"kind": "zscore"})
    img = np.random.default_rng(5).random((8, 8))
    out = prepare(spec, [img, np.full((8, 8), 0.7)])
    np.testing.assert_allclose(out[0, 0], (img - img.mean()) / img.std(), atol=1e-5)
    np.testing.assert_array_equal(out[1], 0.0)


def test_dynamic_dims_keep_the_image_size_within_range() -> None:
    spec = _spec([1, "h", 32], dynamic={"h": {"min": 16, "max": 64}}, normalize={"kind": "none"})
    img = np.random.default_rng(6).random((40, 50))
    out = prepare(spec, [img])
    assert out.shape == (1, 1, 40, 32)
    with pytest.raises(InvalidImageError, match=r"image #1 is 80 pixels along axis 0.*16 to 64"):
        prepare(spec, [img, np.zeros((80, 32))])
    with pytest.raises(InvalidImageError, match=r"image #1 would be .* separate requests"):
        prepare(spec, [img, np.zeros((20, 32))])


def test_channels_without_replication_are_refused() -> None:
    spec = _spec([3, 16, 16], replicate_channels=False)
    with pytest.raises(InvalidImageError, match="3 input channels"):
        prepare(spec, [np.zeros((16, 16))])


def test_wrong_rank_names_the_position() -> None:
    with pytest.raises(InvalidImageError, match=r"image #1 .* 3-D grey-level volume"):
        prepare(_spec([1, 4, 8, 8]), [np.zeros((4, 8, 8)), np.zeros((8, 8))])
    with pytest.raises(InvalidImageError, match="at least one 3-D"):
        prepare(_spec([1, 4, 8, 8]), [])


def test_a_probes_pixels_are_prepared_for_its_encoder() -> None:
    probe = parse_spec(
        {
            "runtime": "probe",
            "encoder_runtime": "onnx",
            "input": {"name": "pixels", "shape": [3, 16, 16]},
            "preprocessing": {"normalize": {"kind": "zscore"}},
            "encoder": {"name": "enc", "version": 1, "sha256": "0" * 64},
            "outputs": [
                {"kind": "findings", "tensor": "y", "findings": [{"name": "a"}]},
                {"kind": "embedding", "tensor": "features", "width": 8},
            ],
        }
    )
    image = np.random.default_rng(0).random((40, 40))
    batch = prepare(probe, [image])
    assert batch.shape == (1, 3, 16, 16)
    np.testing.assert_array_equal(batch, prepare(probe.encoder_view(), [image]))
