"""What the synthetic world is made of: vendors, sites, shifts and the studies they produce.

The defaults are chosen so the monitoring story has something to find: the three sites differ in
vendor mix and population, and one vendor (``delta``) is used by no site, so a demo can switch a
site to it and watch the drift monitors react.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import numpy.typing as npt

from pipelines.contract import FINDINGS

MarkerCorner = Literal["top-left", "top-right", "bottom-left", "bottom-right"]

#: Study attributes a :class:`ShiftSpec` may single out for degraded finding visibility.
SUBGROUP_ATTRIBUTES: tuple[str, ...] = (
    "site",
    "institution_name",
    "manufacturer",
    "manufacturer_model",
    "view_position",
    "sex",
    "race_ethnicity",
)


@dataclass(frozen=True)
class VendorSpec:
    """An imaging device and its post-processing: the acquisition "signature" drift monitors see.

    Intensities are in display units [0, 1] (MONOCHROME2: bright = dense). ``gamma`` is applied
    to the ideal image before windowing to [``black_level``, ``white_level``]; ``blur_px`` is the
    Gaussian sigma of the detector's point spread at native size, in pixels; ``sharpen`` is the
    unsharp-mask gain of the vendor's edge enhancement; ``noise_sigma`` is additive Gaussian
    noise in display units; ``collimation_margin`` is the unexposed (bright) border as a fraction
    of the image side; the burned-in marker is drawn with ``marker_text`` (``{side}`` -> "L"/"R",
    ``{view}`` -> "PA"/"AP") at ``marker_corner``, ``marker_height`` of the side tall.
    """

    name: str
    manufacturer: str
    model_name: str
    native_size: int
    gamma: float
    black_level: float
    white_level: float
    noise_sigma: float
    blur_px: float
    sharpen: float
    collimation_margin: float
    marker_corner: MarkerCorner
    marker_text: str
    marker_value: float
    marker_height: float
    kvp_range: tuple[float, float]

    def __post_init__(self) -> None:
        problems = []
        if not 32 <= self.native_size <= 4096:
            problems.append(f"native_size {self.native_size} must be in [32, 4096] px")
        if self.gamma <= 0:
            problems.append(f"gamma {self.gamma} must be > 0")
        if not 0 <= self.black_level < self.white_level <= 1:
            problems.append("need 0 <= black_level < white_level <= 1")
        if self.noise_sigma < 0 or self.blur_px < 0 or self.sharpen < 0:
            problems.append("noise_sigma, blur_px and sharpen must be >= 0")
        if not 0 <= self.collimation_margin < 0.25:
            problems.append("collimation_margin must be in [0, 0.25)")
        if not 0 < self.kvp_range[0] <= self.kvp_range[1]:
            problems.append(f"kvp_range {self.kvp_range} must be increasing and positive")
        if problems:
            raise ValueError(f"VendorSpec {self.name!r}: " + "; ".join(problems))


@dataclass(frozen=True)
class SiteSpec:
    """A hospital: its devices (``vendor_mix``: vendor name -> weight) and its population.

    ``weight`` is the site's share of a stream generated without a site. ``age_mean`` /
    ``age_sd`` are in years (clipped to 18-95), ``female_fraction`` is P(sex = "F"),
    ``race_mix`` maps category -> weight, ``ap_fraction`` is the share of supine/portable AP
    films at age 60 (AP is more common in older, sicker patients).

    Case mix: ``subtlety`` skews how severe the findings a site sees are (a finding's severity
    is ``U ** subtlety``: 1 is uniform, above 1 more early, subtle disease, as in an emergency
    department; below 1 more florid disease); ``habitus_mean`` is the mean body habitus in
    [0, 1] (larger patients: more soft tissue, more scatter and noise, less conspicuous
    findings; not recorded in any DICOM tag, as in life).
    """

    name: str
    institution_name: str
    vendor_mix: tuple[tuple[str, float], ...]
    age_mean: float
    age_sd: float
    female_fraction: float
    race_mix: tuple[tuple[str, float], ...]
    ap_fraction: float = 0.2
    weight: float = 1.0
    subtlety: float = 1.0
    habitus_mean: float = 0.4

    def __post_init__(self) -> None:
        if not 0.25 <= self.subtlety <= 4 or not 0 <= self.habitus_mean <= 1:
            raise ValueError(
                f"SiteSpec {self.name!r}: subtlety must be in [0.25, 4] and habitus_mean in [0, 1]"
            )
        if not self.vendor_mix or any(w < 0 for _, w in self.vendor_mix):
            raise ValueError(f"SiteSpec {self.name!r}: vendor_mix needs non-negative weights")
        if sum(w for _, w in self.vendor_mix) <= 0 or sum(w for _, w in self.race_mix) <= 0:
            raise ValueError(f"SiteSpec {self.name!r}: mix weights must not all be zero")
        if not 0 <= self.female_fraction <= 1 or not 0 <= self.ap_fraction <= 1:
            raise ValueError(f"SiteSpec {self.name!r}: fractions must be in [0, 1]")
        if self.age_sd < 0 or self.weight < 0:
            raise ValueError(f"SiteSpec {self.name!r}: age_sd and weight must be >= 0")


@dataclass(frozen=True)
class ShiftSpec:
    """A controlled distribution shift for the monitoring benchmarks; defaults mean no shift.

    ``gamma`` multiplies the vendor gamma (> 1 darkens mid-tones, < 1 brightens).
    ``noise_sigma_add`` adds to the vendor's noise (display units). ``age_shift_years`` moves
    the site's age mean. ``prevalence_scale`` multiplies a finding's probability (capped at
    0.95). ``degrade_subgroup`` = (attribute, value), e.g. ("sex", "F"), makes findings fainter /
    smaller by ``degrade_strength`` (0 = unchanged, 1 = invisible) in that subgroup only, while
    labels stay the same: the model's performance decays there and nowhere else.

    Random draws do not depend on the shift, so a shifted stream is the *same patients* as the
    unshifted stream with the same seed: differences are caused by the shift alone.
    """

    vendor_override: str | None = None
    noise_sigma_add: float = 0.0
    gamma: float = 1.0
    age_shift_years: float = 0.0
    prevalence_scale: dict[str, float] = field(default_factory=dict)
    degrade_subgroup: tuple[str, str] | None = None
    degrade_strength: float = 0.0

    def __post_init__(self) -> None:
        unknown = set(self.prevalence_scale) - set(FINDINGS)
        if unknown:
            raise ValueError(
                f"ShiftSpec.prevalence_scale has unknown findings {sorted(unknown)}; "
                f"use {list(FINDINGS)}"
            )
        if any(s < 0 for s in self.prevalence_scale.values()):
            raise ValueError("ShiftSpec.prevalence_scale values must be >= 0")
        if self.gamma <= 0 or self.noise_sigma_add < 0:
            raise ValueError("ShiftSpec needs gamma > 0 and noise_sigma_add >= 0")
        if not 0 <= self.degrade_strength <= 1:
            raise ValueError("ShiftSpec.degrade_strength must be in [0, 1]")
        if self.degrade_subgroup is not None and (
            self.degrade_subgroup[0] not in SUBGROUP_ATTRIBUTES
        ):
            raise ValueError(
                f"ShiftSpec.degrade_subgroup attribute {self.degrade_subgroup[0]!r} is not one "
                f"of {list(SUBGROUP_ATTRIBUTES)}"
            )


@dataclass(eq=False)
class Study:
    """One synthetic chest radiograph with its DICOM-level metadata and ground-truth labels.

    ``study_id`` / ``patient_id`` are deterministic synthetic identifiers (no real person);
    ``age`` is in years, ``kvp`` in kilovolts; ``image`` is float32 in [0, 1] at the vendor's
    native size (MONOCHROME2). ``labels`` has every finding in ``contract.FINDINGS`` (0 or 1)
    as a radiologist reported it: subtle findings are missed and look-alikes called, as readers
    disagree in practice. ``truth`` is what the generator drew (the disease the patient has);
    ``severity`` is each present finding's severity in (0, 1] (0 when absent).
    """

    study_id: str
    patient_id: str
    site: str
    institution_name: str
    manufacturer: str
    manufacturer_model: str
    kvp: float
    view_position: str
    sex: str
    age: int
    race_ethnicity: str
    labels: dict[str, int]
    image: npt.NDArray[np.float32]
    truth: dict[str, int] = field(default_factory=dict)
    severity: dict[str, float] = field(default_factory=dict)


DEFAULT_VENDORS: dict[str, VendorSpec] = {
    v.name: v
    for v in (
        # Modern flat-panel DR: high resolution, low noise, tight collimation.
        VendorSpec(
            name="aurora",
            manufacturer="Aurora Medical Systems",
            model_name="AuroraDR 500",
            native_size=256,
            gamma=1.0,
            black_level=0.02,
            white_level=0.96,
            noise_sigma=0.008,
            blur_px=0.7,
            sharpen=0.3,
            collimation_margin=0.02,
            marker_corner="top-left",
            marker_text="{side}",
            marker_value=1.0,
            marker_height=0.06,
            kvp_range=(110.0, 125.0),
        ),
        # Mid-range DR with bright, flat post-processing.
        VendorSpec(
            name="brightline",
            manufacturer="Brightline Imaging",
            model_name="BL-X3",
            native_size=192,
            gamma=0.8,
            black_level=0.08,
            white_level=0.98,
            noise_sigma=0.015,
            blur_px=1.0,
            sharpen=0.0,
            collimation_margin=0.05,
            marker_corner="top-right",
            marker_text="{view}",
            marker_value=0.95,
            marker_height=0.07,
            kvp_range=(100.0, 120.0),
        ),
        # Older computed radiography: low kVp, contrasty, blurrier and noisier.
        VendorSpec(
            name="cobalt",
            manufacturer="Cobalt Radiology",
            model_name="CR-160",
            native_size=160,
            gamma=1.25,
            black_level=0.0,
            white_level=0.92,
            noise_sigma=0.025,
            blur_px=1.3,
            sharpen=0.0,
            collimation_margin=0.0,
            marker_corner="bottom-left",
            marker_text="{side} {view}",
            marker_value=1.0,
            marker_height=0.08,
            kvp_range=(80.0, 100.0),
        ),
        # Used by no default site: strong edge enhancement, dark gamma, noisy low-dose preset.
        VendorSpec(
            name="delta",
            manufacturer="Delta Diagnostics",
            model_name="DeltaView 9",
            native_size=256,
            gamma=1.45,
            black_level=0.05,
            white_level=0.9,
            noise_sigma=0.03,
            blur_px=0.5,
            sharpen=1.0,
            collimation_margin=0.08,
            marker_corner="bottom-right",
            marker_text="{side}",
            marker_value=0.0,
            marker_height=0.07,
            kvp_range=(120.0, 140.0),
        ),
    )
}

_RACES = ("white", "black", "asian", "hispanic", "other")

DEFAULT_SITES: tuple[SiteSpec, ...] = (
    SiteSpec(
        name="north",
        institution_name="North Valley General Hospital",
        vendor_mix=(("aurora", 0.7), ("brightline", 0.3)),
        age_mean=58.0,
        age_sd=16.0,
        female_fraction=0.5,
        race_mix=tuple(zip(_RACES, (0.70, 0.08, 0.10, 0.08, 0.04), strict=True)),
        ap_fraction=0.2,
        weight=0.4,
        subtlety=1.0,
        habitus_mean=0.4,
    ),
    SiteSpec(
        name="central",
        institution_name="Central City Medical Center",
        vendor_mix=(("brightline", 1.0),),
        age_mean=50.0,
        age_sd=18.0,
        female_fraction=0.52,
        race_mix=tuple(zip(_RACES, (0.35, 0.30, 0.12, 0.18, 0.05), strict=True)),
        ap_fraction=0.3,
        weight=0.35,
        subtlety=1.5,  # an urban emergency department: early, subtle presentations
        habitus_mean=0.5,
    ),
    SiteSpec(
        name="south",
        institution_name="South Coast Community Hospital",
        vendor_mix=(("cobalt", 0.6), ("aurora", 0.4)),
        age_mean=63.0,
        age_sd=14.0,
        female_fraction=0.47,
        race_mix=tuple(zip(_RACES, (0.45, 0.15, 0.05, 0.30, 0.05), strict=True)),
        ap_fraction=0.25,
        weight=0.25,
        subtlety=0.8,  # older, sicker referrals: more florid disease
        habitus_mean=0.35,
    ),
)
