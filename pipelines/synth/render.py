"""Pixel rendering of a synthetic PA/AP chest radiograph and of a vendor's acquisition chain.

Geometry is in normalised coordinates: ``u`` runs -1 (image left = patient right in PA) to +1
across the image, ``v`` runs -1 (top) to +1 (bottom). Intensities are display units in [0, 1]
(bright = dense). Anatomy is a sum of soft-edged shapes built from row and column vectors, so
most terms cost one broadcast over the frame, and each lung is drawn on its own half-image. That
keeps a 256 px image at a few milliseconds on one core.

The findings are drawn the way a radiologist describes them: effusion blunts the costophrenic
angle with a basal opacity and a lateral meniscus; a nodule is a small round opacity in a lung;
cardiomegaly is a cardiothoracic ratio above 0.5; pneumothorax is a lucent rim without lung
markings, bounded by a thin visceral pleural line.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy.ndimage import gaussian_filter, uniform_filter

from pipelines.synth.font import draw_text
from pipelines.synth.specs import VendorSpec

F32 = npt.NDArray[np.float32]

#: Coarse grids of the lung-marking texture (cells across the image); two octaves.
_TEXTURE_CELLS = (10, 22)


@dataclass(frozen=True)
class Anatomy:
    """Per-study anatomy and finding geometry, all in normalised units (see module docstring).

    ``*_side`` is -1 (image left) or +1 (image right); 0 means the finding is absent. Finding
    intensities already include their conspicuity (severity, habitus, subgroup visibility).
    ``effusion_edge`` is the width of the fluid's upper border (a meniscus when erect, a veil
    when supine); ``mimic_*`` is a nodule look-alike (a nipple shadow or an end-on vessel);
    ``ptx_line`` is the pleural line's brightness (alone, without the lucent rim, a skin fold).
    """

    thorax_halfwidth: float
    body_halfwidth: float
    lung_cy: float
    lung_ry: float
    dome: tuple[float, float]
    heart_cx: float
    heart_cy: float
    ctr: float
    heart_ry: float
    mediastinum_halfwidth: float
    clavicle_v: float
    rib_freq: float
    rib_phase: float
    rib_contrast: float
    lung_dark: float
    marking_amp: float
    tissue: float
    breast: float
    effusion_sides: tuple[int, ...]
    effusion_height: float
    effusion_opacity: float
    effusion_edge: float
    nodule_uv: tuple[float, float]
    nodule_sigma: float
    nodule_contrast: float
    mimic_uv: tuple[float, float]
    mimic_sigma: float
    mimic_contrast: float
    ptx_side: int
    ptx_thickness: float
    ptx_dark: float
    ptx_line: float
    ptx_visibility: float


@functools.lru_cache(maxsize=32)
def _axes(n: int) -> tuple[F32, F32]:
    """Pixel-centre coordinates: ``u`` as a row vector [1, n], ``v`` as a column [n, 1]."""
    c = ((np.arange(n, dtype=np.float32) + 0.5) / n * 2.0 - 1.0).astype(np.float32)
    c.setflags(write=False)
    return c[None, :], c[:, None]


@functools.lru_cache(maxsize=64)
def _upsample_matrix(n: int, cells: int) -> F32:
    """[n, cells] linear-interpolation matrix: ``A @ G @ A.T`` upsamples a cells² grid to n²."""
    pos = (np.arange(n) + 0.5) / n * (cells - 1)
    lo = np.clip(np.floor(pos).astype(int), 0, cells - 2)
    frac = pos - lo
    a = np.zeros((n, cells), dtype=np.float32)
    a[np.arange(n), lo] = 1.0 - frac
    a[np.arange(n), lo + 1] = frac
    a.setflags(write=False)
    return a


def _ramp(x: F32 | float, width: float) -> F32:
    """Soft step 0 -> 1 across ``x = 0`` over ``width`` (a cheap, clip-based sigmoid)."""
    return np.clip(np.asarray(x, dtype=np.float32) / width + 0.5, 0.0, 1.0)


def _texture(n: int, rng: np.random.Generator) -> F32:
    """Smooth zero-mean noise standing in for vessel markings (two octaves, unit-ish scale)."""
    out = np.zeros((n, n), dtype=np.float32)
    for weight, cells in zip((1.0, 0.35), _TEXTURE_CELLS, strict=True):
        a = _upsample_matrix(n, cells)
        grid = rng.standard_normal((cells, cells), dtype=np.float32)
        out += weight * (a @ grid @ a.T)
    return out


def _box(n: int, cu: float, cv: float, hu: float, hv: float) -> tuple[slice, slice]:
    """Row/column slices covering the rectangle centre (cu, cv) +- (hu, hv), clipped to image."""
    c0 = max(0, int((cu - hu + 1) / 2 * n))
    c1 = min(n, int((cu + hu + 1) / 2 * n) + 2)
    r0 = max(0, int((cv - hv + 1) / 2 * n))
    r1 = min(n, int((cv + hv + 1) / 2 * n) + 2)
    return slice(r0, max(r0, r1)), slice(c0, max(c0, c1))


def render_anatomy(n: int, a: Anatomy, rng: np.random.Generator) -> F32:
    """The ideal (noise-free, unprocessed) n x n radiograph for ``a``; ``rng`` draws texture."""
    u, v = _axes(n)
    edge = 3.0 / n  # 1.5 px in normalised units (the image spans 2 units)
    au = np.abs(u)

    # Soft tissue of the trunk, thicker centrally; the neck narrows above the clavicles.
    body_w = a.body_halfwidth * (1.0 + 0.05 * v) - 0.35 * np.clip(-0.78 - v, 0.0, 1.0)
    x = 0.04 + _ramp(body_w - au, edge) * (a.tissue + 0.08 * (1.0 - u * u))

    # Heart (ellipse, centred left of the patient = image right) and mediastinum occlude lungs.
    heart_rx = a.ctr * a.thorax_halfwidth
    occl = np.zeros((n, n), dtype=np.float32)
    rows, cols = _box(n, a.heart_cx, a.heart_cy, heart_rx + 0.05, a.heart_ry + 0.05)
    hu = (u[:, cols] - a.heart_cx) / heart_rx
    hv = (v[rows] - a.heart_cy) / a.heart_ry
    occl[rows, cols] = _ramp(1.0 - hu * hu - hv * hv, 4 * edge / heart_rx)
    med_w = a.mediastinum_halfwidth + 0.06 * np.clip(v + 0.3, 0.0, 1.0)
    np.maximum(occl, _ramp(med_w - np.abs(u - 0.02), edge), out=occl)
    x += 0.12 * occl

    texture = _texture(n, rng)
    half = n // 2
    for side, cols in ((-1, slice(0, half)), (1, slice(half, n))):
        us = u[:, cols]
        cx = side * a.thorax_halfwidth * 0.5
        rx = a.thorax_halfwidth * 0.5
        du = (us - cx) / rx
        dv = (v - a.lung_cy) / a.lung_ry
        r2 = du * du + dv * dv
        dome = a.dome[0 if side < 0 else 1]
        floor = dome - 0.12 * np.clip(1.0 - du * du, 0.0, 1.0)
        lung = _ramp(1.0 - r2, 4 * edge / rx) * _ramp(floor - v, edge)
        lung *= 1.0 - occl[:, cols]
        hilum = 0.55 + 0.45 * np.clip(1.0 - np.abs(us - side * 0.12) / (2 * rx), 0.0, 1.0)
        markings = a.marking_amp * hilum * texture[:, cols]
        air = np.full_like(lung, -a.lung_dark)
        if a.ptx_side == side:
            inner = (1.0 - a.ptx_thickness) ** 2
            upper = _ramp(a.lung_cy + 0.3 - v, 0.15)
            rim = _ramp(r2 - inner, 4 * edge) * upper
            markings *= 1.0 - a.ptx_visibility * rim
            air -= a.ptx_dark * rim
            air += a.ptx_line * np.clip(1.0 - np.abs(r2 - inner) / (3 * edge), 0, 1) * upper
        x[:, cols] += lung * (air + markings)
        if side in a.effusion_sides:
            lateral = np.clip(side * du, 0.0, 1.0)
            level = dome - a.effusion_height * (1.0 + 0.8 * lateral)
            x[:, cols] += a.effusion_opacity * _ramp(v - level, a.effusion_edge) * lung

    # Spine: a column of vertebral bodies seen through the mediastinum.
    vert = 0.75 + 0.25 * np.cos(v * np.float32(2 * np.pi * 8.5))
    x += 0.09 * _ramp(0.065 - au, edge) * vert

    # Posterior ribs: arcs rising from the spine then falling laterally.
    phase = a.rib_freq * (v + 0.9 * au - 0.8 * u * u) + a.rib_phase
    ribs = np.clip((np.sin(phase) - 0.3) * 2.0, 0.0, 1.0)
    lat_dome = max(a.dome) + 0.05
    rib_mask = _ramp(a.thorax_halfwidth + 0.06 - au, 0.06) * _ramp(au - 0.1, 0.08)
    ribs *= rib_mask * (_ramp(v + 0.85, 0.06) * _ramp(lat_dome - v, 0.06))
    x += a.rib_contrast * ribs

    # Clavicles: oblique bands, rising laterally, only in the top rows.
    top = slice(0, int((a.clavicle_v + 0.35 + 1) / 2 * n))
    line = a.clavicle_v - 0.28 * (au - 0.08)
    band = np.clip(1.0 - np.abs(v[top] - line) / 0.04, 0.0, 1.0)
    x[top] += 0.16 * band * _ramp(au - 0.1, 0.04) * _ramp(0.7 - au, 0.06)

    # Gastric air bubble under the left hemidiaphragm.
    rows, cols = _box(n, 0.35, a.dome[1] + 0.12, 0.12, 0.08)
    bu = (u[:, cols] - 0.35) / 0.1
    bv = (v[rows] - a.dome[1] - 0.12) / 0.06
    x[rows, cols] -= 0.12 * _ramp(1.0 - bu * bu - bv * bv, 0.3)

    if a.breast > 0:
        for side in (-1, 1):
            rows, cols = _box(n, side * 0.5, 0.6, 0.4, 0.35)
            bu = (u[:, cols] - side * 0.5) / 0.38
            bv = (v[rows] - 0.6) / 0.32
            x[rows, cols] += a.breast * _ramp(1.0 - bu * bu - bv * bv, 0.5)

    for (nu, nv), sigma, contrast in (
        (a.nodule_uv, a.nodule_sigma, a.nodule_contrast),
        (a.mimic_uv, a.mimic_sigma, a.mimic_contrast),
    ):
        if contrast > 0:
            reach = 3.5 * sigma
            rows, cols = _box(n, nu, nv, reach, reach)
            d2 = (u[:, cols] - nu) ** 2 + (v[rows] - nv) ** 2
            x[rows, cols] += contrast * np.exp(d2 * np.float32(-0.5 / sigma**2))

    out: F32 = np.clip(x, 0.0, 1.0).astype(np.float32, copy=False)
    return out


def apply_vendor(
    ideal: F32,
    vendor: VendorSpec,
    rng: np.random.Generator,
    *,
    marker: str,
    gamma_scale: float = 1.0,
    noise_add: float = 0.0,
) -> F32:
    """Pass the ideal image through the vendor's chain: gamma, window, PSF, edge enhancement,
    collimation, noise, burned-in marker. Returns float32 in [0, 1].

    ``gamma_scale`` and ``noise_add`` implement :class:`ShiftSpec` acquisition shifts.
    """
    n = ideal.shape[0]
    x = np.power(ideal, np.float32(vendor.gamma * gamma_scale))
    x *= vendor.white_level - vendor.black_level
    x += vendor.black_level
    if vendor.blur_px > 0:
        x = gaussian_filter(x, vendor.blur_px, mode="nearest", truncate=3.0)
    if vendor.sharpen > 0:
        # Unsharp mask with a 7 px box blur: O(1) per pixel, like many vendors' fast filters.
        x += vendor.sharpen * (x - uniform_filter(x, 7, mode="nearest"))
    m = round(vendor.collimation_margin * n)
    if m > 0:
        bright = np.float32(min(1.0, vendor.white_level + 0.02))
        x[:m] = bright
        x[-m:] = bright
        x[:, :m] = bright
        x[:, -m:] = bright
    sigma = vendor.noise_sigma + noise_add
    if sigma > 0:
        x += np.float32(sigma) * rng.standard_normal((n, n), dtype=np.float32)
    if marker.strip():
        draw_text(x, marker, vendor.marker_corner, vendor.marker_height, m, vendor.marker_value)
    out: F32 = np.clip(x, 0.0, 1.0, out=x)
    return out
