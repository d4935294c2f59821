"""RadiographGenerator: a deterministic, chunkable stream of synthetic chest radiograph studies.

Study ``i`` of a call is seeded by ``SeedSequence(seed, spawn_key=(site_key, start_index + i))``
and nothing else, so a stream can be generated in chunks (or in parallel) and still be
bit-identical to one call. Each study spawns three independent child streams: demographics and
labels, anatomy geometry, and pixel texture + noise. Their draws never depend on a
:class:`ShiftSpec`, so a shifted stream shows the same patients as the unshifted one and any
difference between the two is caused by the shift alone.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence

import numpy as np
import numpy.typing as npt

from pipelines.contract import FINDINGS
from pipelines.synth.render import Anatomy, apply_vendor, render_anatomy
from pipelines.synth.specs import (
    DEFAULT_SITES,
    DEFAULT_VENDORS,
    ShiftSpec,
    SiteSpec,
    Study,
    VendorSpec,
)

_NO_SHIFT = ShiftSpec()
_ANY_SITE = "*"
#: Maximum probability any finding can reach after a prevalence shift.
_MAX_PREVALENCE = 0.95


def _key(text: str) -> int:
    """A stable 63-bit integer for a string (Python's ``hash`` is salted per process)."""
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big") >> 1


def _pick(options: Sequence[tuple[str, float]], u: float) -> str:
    """Inverse-CDF choice of a name from (name, weight) pairs with one uniform draw."""
    weights = np.array([w for _, w in options], dtype=np.float64)
    cdf = np.cumsum(weights / weights.sum())
    return options[min(int(np.searchsorted(cdf, u, side="right")), len(options) - 1)][0]


def _sigmoid(z: float) -> float:
    return float(1.0 / (1.0 + np.exp(-z)))


def finding_probabilities(age: int, sex: str) -> dict[str, float]:
    """Baseline P(finding) for a patient, before any prevalence shift.

    Logistic in age (per decade from 55) and sex, roughly matching how these findings behave
    in emergency chest films: cardiomegaly and effusion rise with age, pneumothorax is a young
    (and male) finding. Effusion's extra risk from cardiomegaly is added by the caller.
    """
    decades = (age - 55) / 10.0
    male = 1.0 if sex == "M" else 0.0
    return {
        "effusion": _sigmoid(-2.4 + 0.3 * decades),
        "nodule": _sigmoid(-1.9 + 0.25 * decades),
        "cardiomegaly": _sigmoid(-1.9 + 0.45 * decades),
        "pneumothorax": _sigmoid(-2.7 - 0.3 * decades + 0.5 * male),
    }


class RadiographGenerator:
    """Generates :class:`Study` objects for the given sites and vendors (see module docstring)."""

    def __init__(
        self,
        seed: int,
        sites: Sequence[SiteSpec] = DEFAULT_SITES,
        vendors: Mapping[str, VendorSpec] = DEFAULT_VENDORS,
    ) -> None:
        if seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {seed}")
        if not sites:
            raise ValueError("RadiographGenerator needs at least one SiteSpec")
        names = [s.name for s in sites]
        if len(set(names)) != len(names) or _ANY_SITE in names:
            raise ValueError(f"site names must be unique and not {_ANY_SITE!r}: {names}")
        for site in sites:
            missing = [v for v, _ in site.vendor_mix if v not in vendors]
            if missing:
                raise ValueError(
                    f"site {site.name!r} uses vendors {missing} that are not defined; "
                    f"known vendors: {sorted(vendors)}"
                )
        self.seed = int(seed)
        self.sites: dict[str, SiteSpec] = {s.name: s for s in sites}
        self.vendors: dict[str, VendorSpec] = dict(vendors)
        self._site_weights = tuple((s.name, s.weight) for s in sites)
        if sum(w for _, w in self._site_weights) <= 0:
            raise ValueError("at least one site needs weight > 0 to sample sites")

    def generate(
        self,
        n: int,
        *,
        site: str | None = None,
        shift: ShiftSpec | None = None,
        start_index: int = 0,
    ) -> list[Study]:
        """Studies ``start_index .. start_index + n - 1`` of the stream for ``site``.

        ``site=None`` samples each study's site by ``SiteSpec.weight``; that is a different
        stream from any single site's.
        """
        if n < 0 or start_index < 0:
            raise ValueError(f"n ({n}) and start_index ({start_index}) must be >= 0")
        if site is not None and site not in self.sites:
            raise ValueError(f"unknown site {site!r}; known sites: {sorted(self.sites)}")
        shift = shift or _NO_SHIFT
        if shift.vendor_override is not None and shift.vendor_override not in self.vendors:
            raise ValueError(
                f"ShiftSpec.vendor_override {shift.vendor_override!r} is not a known vendor; "
                f"use one of {sorted(self.vendors)}"
            )
        site_key = _key(site or _ANY_SITE)
        return [self._study(site, site_key, start_index + i, shift) for i in range(n)]

    def _study(self, site_name: str | None, site_key: int, index: int, shift: ShiftSpec) -> Study:
        ss = np.random.SeedSequence(self.seed, spawn_key=(site_key, index))
        demo_ss, anat_ss, pix_ss = ss.spawn(3)
        demo = np.random.default_rng(demo_ss)
        u = demo.random(12)
        z = float(demo.standard_normal())

        site = self.sites[site_name or _pick(self._site_weights, u[0])]
        vendor = self.vendors[shift.vendor_override or _pick(site.vendor_mix, u[1])]
        sex = "F" if u[2] < site.female_fraction else "M"
        age = int(np.clip(round(site.age_mean + shift.age_shift_years + site.age_sd * z), 18, 95))
        race = _pick(site.race_mix, u[3])
        p_ap = site.ap_fraction * float(np.clip(1.0 + (age - 60) / 60.0, 0.3, 1.7))
        view = "AP" if u[4] < min(p_ap, 0.9) else "PA"
        lo, hi = vendor.kvp_range
        kvp = float(round(lo + (hi - lo) * u[5]))

        probs = finding_probabilities(age, sex)
        labels: dict[str, int] = {}
        for j, finding in enumerate(("cardiomegaly", "nodule", "pneumothorax", "effusion")):
            p = probs[finding]
            if finding == "effusion" and labels["cardiomegaly"]:
                p = _sigmoid(np.log(p / (1 - p)) + 1.2)
            p = min(_MAX_PREVALENCE, p * shift.prevalence_scale.get(finding, 1.0))
            labels[finding] = int(u[6 + j] < p)
        labels = {f: labels[f] for f in FINDINGS}

        attrs = {
            "site": site.name,
            "institution_name": site.institution_name,
            "manufacturer": vendor.manufacturer,
            "manufacturer_model": vendor.model_name,
            "view_position": view,
            "sex": sex,
            "race_ethnicity": race,
        }
        visibility = 1.0
        if shift.degrade_subgroup is not None:
            attr, value = shift.degrade_subgroup
            if attrs[attr] == value:
                visibility = 1.0 - shift.degrade_strength

        anatomy = _sample_anatomy(
            np.random.default_rng(anat_ss).random(32), labels, visibility, view, sex, kvp
        )
        pix = np.random.default_rng(pix_ss)
        ideal = render_anatomy(vendor.native_size, anatomy, pix)
        # Laterality marker on the patient's left, which is image right in PA and AP alike.
        marker = vendor.marker_text.format(side="L", view=view)
        image = apply_vendor(
            ideal,
            vendor,
            pix,
            marker=marker,
            gamma_scale=shift.gamma,
            noise_add=shift.noise_sigma_add,
        )
        digest = hashlib.blake2b(f"{self.seed}/{site_key}/{index}".encode(), digest_size=10)
        hexid = digest.hexdigest().upper()
        return Study(
            study_id=f"SYN{hexid[:13]}",
            patient_id=f"PSYN{hexid[4:]}",
            site=site.name,
            institution_name=site.institution_name,
            manufacturer=vendor.manufacturer,
            manufacturer_model=vendor.model_name,
            kvp=kvp,
            view_position=view,
            sex=sex,
            age=age,
            race_ethnicity=race,
            labels=labels,
            image=image,
        )


def _sample_anatomy(
    q: npt.NDArray[np.float64], labels: dict[str, int], vis: float, view: str, sex: str, kvp: float
) -> Anatomy:
    """Map 32 uniforms to anatomy; every finding's geometry is drawn whether present or not,
    so labels never shift which uniform feeds which parameter."""
    thorax = 0.72 + 0.1 * q[0]
    dome_base = 0.5 + 0.08 * q[4]
    dome = (dome_base - 0.04 - 0.03 * q[5], dome_base)
    lung_cy = -0.08 + 0.06 * q[2]
    ctr = 0.38 + 0.11 * q[9]
    if labels["cardiomegaly"]:
        ctr += vis * (0.52 + 0.12 * q[10] - ctr)
    if view == "AP":
        ctr += 0.03
    eff_side = q[19]
    effusion_sides = (-1,) if eff_side < 0.4 else (1,) if eff_side < 0.8 else (-1, 1)
    nod_side = -1 if q[21] < 0.5 else 1
    nod_v = min(lung_cy - 0.45 + 0.75 * q[23], dome[0 if nod_side < 0 else 1] - 0.22)
    kvp_factor = float(np.clip(1.9 - kvp / 110.0, 0.6, 1.3))
    return Anatomy(
        thorax_halfwidth=thorax,
        body_halfwidth=thorax + 0.1 + 0.06 * q[1],
        lung_cy=lung_cy,
        lung_ry=0.72 + 0.06 * q[3],
        dome=dome,
        heart_cx=0.1 + 0.06 * q[6],
        heart_cy=dome_base - 0.3 + 0.05 * q[7],
        ctr=ctr,
        heart_ry=0.3 + 0.05 * q[8],
        mediastinum_halfwidth=0.08 + 0.03 * q[11],
        clavicle_v=-0.62 + 0.06 * q[12] - (0.08 if view == "AP" else 0.0),
        rib_freq=2 * np.pi * (5.5 + 1.0 * q[13]),
        rib_phase=2 * np.pi * q[14],
        rib_contrast=0.09 * kvp_factor,
        lung_dark=0.34 * (1.1 - 0.1 * kvp / 110.0) + 0.04 * q[15],
        marking_amp=0.035 + 0.02 * q[16],
        tissue=0.45 + 0.08 * q[17],
        breast=(0.05 + 0.04 * q[18]) if sex == "F" else 0.0,
        effusion_sides=effusion_sides if labels["effusion"] else (),
        effusion_height=(0.1 + 0.25 * q[20]) * (0.5 + 0.5 * vis),
        effusion_opacity=0.3 * vis,
        nodule_uv=(nod_side * thorax * (0.25 + 0.45 * q[22]), nod_v),
        nodule_sigma=(0.04 + 0.02 * q[24]) * (0.6 + 0.4 * vis),
        nodule_contrast=(0.26 + 0.14 * q[25]) * vis if labels["nodule"] else 0.0,
        ptx_side=(-1 if q[26] < 0.5 else 1) if labels["pneumothorax"] else 0,
        ptx_thickness=(0.15 + 0.15 * q[27]) * (0.5 + 0.5 * vis),
        ptx_dark=(0.09 + 0.05 * q[28]) * vis,
        ptx_visibility=vis,
    )
