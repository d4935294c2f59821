"""A 5x7 bitmap font for the burned-in laterality / view markers vendors print on films.

Burned-in text is a classic shortcut a model can learn (the marker style identifies the device),
so each vendor draws it differently, and the drift monitors can see a change of marker.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

_GLYPHS: dict[str, tuple[str, ...]] = {
    "A": ("01110", "10001", "10001", "11111", "10001", "10001", "10001"),
    "L": ("10000", "10000", "10000", "10000", "10000", "10000", "11111"),
    "P": ("11110", "10001", "10001", "11110", "10000", "10000", "10000"),
    "R": ("11110", "10001", "10001", "11110", "10100", "10010", "10001"),
    " ": ("00000",) * 7,
}


def _bitmap(text: str) -> npt.NDArray[np.bool_]:
    """Glyph rows side by side with one blank column between letters."""
    unknown = set(text) - set(_GLYPHS)
    if unknown:
        raise ValueError(f"marker text has characters {sorted(unknown)}; use {sorted(_GLYPHS)}")
    cols: list[npt.NDArray[np.bool_]] = []
    for ch in text:
        glyph = np.array([[c == "1" for c in row] for row in _GLYPHS[ch]], dtype=bool)
        cols.extend([glyph, np.zeros((7, 1), dtype=bool)])
    return np.concatenate(cols[:-1], axis=1)


def draw_text(
    image: npt.NDArray[np.float32],
    text: str,
    corner: str,
    height_frac: float,
    margin_px: int,
    value: float,
) -> None:
    """Paint ``text`` in place at ``corner``, ``height_frac`` of the image height tall.

    The text sits just inside the collimation margin (``margin_px``) and is clipped to the image.
    """
    bitmap = _bitmap(text)
    n_rows, n_cols = image.shape
    scale = max(1, round(height_frac * n_rows / 7))
    big = np.kron(bitmap, np.ones((scale, scale), dtype=bool))
    pad = margin_px + max(2, n_rows // 40)
    h, w = min(big.shape[0], n_rows - pad), min(big.shape[1], n_cols - pad)
    if h <= 0 or w <= 0:
        return
    big = big[:h, :w]
    r0 = pad if corner.startswith("top") else n_rows - pad - h
    c0 = pad if corner.endswith("left") else n_cols - pad - w
    region = image[r0 : r0 + h, c0 : c0 + w]
    region[big] = value
