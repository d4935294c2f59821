"""to_model_input and image_stats: shapes, the fixed normalisation, and every rejection."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from pipelines.contract import IMAGE_SIZE, IMAGE_STATS
from pipelines.errors import InvalidImageError
from pipelines.preprocess import image_stats, to_model_input


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
