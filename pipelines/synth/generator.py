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
from dataclasses import dataclass

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

# Uniform draws of a study's demographics-and-labels stream, by position (a fixed layout, so a
# label or a shift never changes which draw feeds which choice).
_U_SITE, _U_VENDOR, _U_SEX, _U_RACE, _U_VIEW, _U_KVP = range(6)
_U_LABEL = 6  # 4: one per finding, in _LABEL_ORDER
_U_SEVERITY = 10  # 4
_U_MIMIC = 14  # 3: one per finding in _MIMICKED
_U_MIMIC_STRENGTH = 17  # 3
_U_READER = 20  # 4: one per finding, in FINDINGS order
_U_HABITUS = 24
_N_UNIFORMS = 25
_LABEL_ORDER = ("cardiomegaly", "nodule", "pneumothorax", "effusion")
#: Findings with look-alikes in normal films: nipple shadow or vessel seen end-on (nodule),
#: pleural thickening or a fat pad blunting the angle (effusion), a skin fold (pneumothorax).
_MIMICKED = ("nodule", "effusion", "pneumothorax")
_P_MIMIC = 0.15

# Reader disagreement (literature: a single reader misses roughly a fifth to a third of subtle
# nodules and small effusions; inter-reader kappa for cardiomegaly on AP films is poor).
_MISS_FLOOR = 0.03  # P(a florid finding is not reported)
_MISS_SUBTLE = 0.45  # added at severity 0, falling as (1 - severity) ** 3
_FALSE_CALL = 0.005  # P(a finding is reported on a film without it)
_MIMIC_CALLED = 0.2  # added at look-alike strength 1
_AP_HEART_CALLED = 0.3  # a magnified heart on an AP film (CTR > 0.47) called enlarged

# Body habitus: more soft tissue means more scatter (noise) and less conspicuous findings.
_HABITUS_NOISE = 0.015
_HABITUS_HIDES = 0.2


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
        u = demo.random(_N_UNIFORMS)
        z = float(demo.standard_normal())

        site = self.sites[site_name or _pick(self._site_weights, u[_U_SITE])]
        vendor = self.vendors[shift.vendor_override or _pick(site.vendor_mix, u[_U_VENDOR])]
        sex = "F" if u[_U_SEX] < site.female_fraction else "M"
        age = int(np.clip(round(site.age_mean + shift.age_shift_years + site.age_sd * z), 18, 95))
        race = _pick(site.race_mix, u[_U_RACE])
        p_ap = site.ap_fraction * float(np.clip(1.0 + (age - 60) / 60.0, 0.3, 1.7))
        view = "AP" if u[_U_VIEW] < min(p_ap, 0.9) else "PA"
        lo, hi = vendor.kvp_range
        kvp = float(round(lo + (hi - lo) * u[_U_KVP]))
        habitus = float(np.clip(site.habitus_mean + 0.6 * (u[_U_HABITUS] - 0.5), 0.0, 1.0))

        probs = finding_probabilities(age, sex)
        truth: dict[str, int] = {}
        severity: dict[str, float] = {}
        for j, finding in enumerate(_LABEL_ORDER):
            p = probs[finding]
            if finding == "effusion" and truth["cardiomegaly"]:
                p = _sigmoid(np.log(p / (1 - p)) + 1.2)
            p = min(_MAX_PREVALENCE, p * shift.prevalence_scale.get(finding, 1.0))
            truth[finding] = int(u[_U_LABEL + j] < p)
            severity[finding] = (
                float(u[_U_SEVERITY + j] ** site.subtlety) if truth[finding] else 0.0
            )
        truth = {f: truth[f] for f in FINDINGS}
        severity = {f: severity[f] for f in FINDINGS}
        mimics = {
            f: float(u[_U_MIMIC_STRENGTH + k]) if u[_U_MIMIC + k] < _P_MIMIC else 0.0
            for k, f in enumerate(_MIMICKED)
        }

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

        case = _Case(truth, severity, mimics, visibility, habitus)
        anatomy = _sample_anatomy(np.random.default_rng(anat_ss).random(40), case, view, sex, kvp)
        labels = _reported(case, anatomy, view, u[_U_READER : _U_READER + 4])
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
            noise_add=shift.noise_sigma_add + _HABITUS_NOISE * habitus,
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
            truth=truth,
            severity=severity,
        )


@dataclass(frozen=True)
class _Case:
    """What the patient has and how visible it is: ground truth, severity per present finding,
    look-alike strength per mimicked finding (0 = none), subgroup visibility, body habitus."""

    truth: dict[str, int]
    severity: dict[str, float]
    mimics: dict[str, float]
    visibility: float
    habitus: float

    def conspicuity(self, finding: str) -> float:
        """How visible a present finding is: severity, then what hides it (body habitus,
        a degraded subgroup). 0 for an absent finding."""
        if not self.truth[finding]:
            return 0.0
        s = 0.5 + 0.5 * self.severity[finding]
        return self.visibility * s * (1.0 - _HABITUS_HIDES * self.habitus)


def _reported(
    case: _Case, anatomy: Anatomy, view: str, u: npt.NDArray[np.float64]
) -> dict[str, int]:
    """The radiologist's report: subtle findings are missed, look-alikes are called, and a
    magnified heart on an AP film is often called enlarged (reader disagreement, not chance
    alone). One uniform per finding, so labels never shift which draw feeds what."""
    out: dict[str, int] = {}
    for k, finding in enumerate(FINDINGS):
        if case.truth[finding]:
            p_miss = _MISS_FLOOR + _MISS_SUBTLE * (1.0 - case.severity[finding]) ** 3
            out[finding] = int(u[k] >= p_miss)
            continue
        p_call = _FALSE_CALL + _MIMIC_CALLED * case.mimics.get(finding, 0.0)
        if finding == "cardiomegaly" and view == "AP" and anatomy.ctr > 0.47:
            p_call += _AP_HEART_CALLED
        out[finding] = int(u[k] < p_call)
    return out


def _sample_anatomy(
    q: npt.NDArray[np.float64], case: _Case, view: str, sex: str, kvp: float
) -> Anatomy:
    """Map 40 uniforms to anatomy; every finding's geometry is drawn whether present or not,
    so labels never shift which uniform feeds which parameter.

    What makes a finding hard to see, as in practice: its severity and the patient's habitus
    (:meth:`_Case.conspicuity`); breast tissue over the lower zones in women (effusion, basal
    nodules); a supine AP film, where an effusion layers behind the lung as a diffuse veil
    instead of a meniscus; look-alikes on films without the finding; a normal heart that a
    borderline cardiothoracic ratio shares with a mildly enlarged one.
    """
    truth, c = case.truth, case.conspicuity
    thorax = 0.72 + 0.1 * q[0]
    dome_base = 0.5 + 0.08 * q[4]
    dome = (dome_base - 0.04 - 0.03 * q[5], dome_base)
    lung_cy = -0.08 + 0.06 * q[2]
    breast = (0.05 + 0.08 * q[18]) if sex == "F" else 0.0
    lower_zone = 1.0 - _BREAST_HIDES * breast  # conspicuity left under breast tissue
    ctr = 0.38 + 0.13 * q[9]  # normal hearts reach a borderline 0.51
    if truth["cardiomegaly"]:
        enlarged = 0.5 + 0.14 * case.severity["cardiomegaly"] + 0.02 * q[10]
        ctr += case.visibility * (enlarged - ctr)
    if view == "AP":
        ctr += 0.03  # magnification of the heart on an AP film
    eff_side = q[19]
    effusion_sides: tuple[int, ...] = (
        (-1,) if eff_side < 0.4 else (1,) if eff_side < 0.8 else (-1, 1)
    )
    nod_side = -1 if q[21] < 0.5 else 1
    nod_v = min(lung_cy - 0.45 + 0.75 * q[23], dome[0 if nod_side < 0 else 1] - 0.22)
    kvp_factor = float(np.clip(1.9 - kvp / 110.0, 0.6, 1.3))
    supine = view == "AP"

    effusion = c("effusion") * lower_zone * (_SUPINE_EFFUSION if supine else 1.0)
    eff_mimic = case.mimics.get("effusion", 0.0)
    if truth["effusion"]:
        eff_opacity, eff_height = 0.3 * effusion, (0.08 + 0.25 * q[20]) * (0.5 + 0.5 * effusion)
    else:  # blunting by pleural thickening or a fat pad: small, faint, one side
        eff_opacity, eff_height = 0.08 * eff_mimic, 0.04 + 0.05 * q[20]
        effusion_sides = effusion_sides[:1] if eff_mimic > 0 else ()
    nodule = c("nodule") * (lower_zone if nod_v > 0.1 else 1.0)
    nod_mimic = case.mimics.get("nodule", 0.0)
    ptx = c("pneumothorax")
    ptx_mimic = case.mimics.get("pneumothorax", 0.0)
    ptx_side = -1 if q[26] < 0.5 else 1
    return Anatomy(
        thorax_halfwidth=thorax,
        body_halfwidth=thorax + 0.1 + 0.06 * q[1] + 0.08 * case.habitus,
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
        tissue=0.45 + 0.08 * q[17] + 0.1 * case.habitus,
        breast=breast,
        effusion_sides=effusion_sides if (truth["effusion"] or eff_mimic > 0) else (),
        effusion_height=eff_height,
        effusion_opacity=eff_opacity,
        effusion_edge=0.4 if supine and truth["effusion"] else 0.06,
        nodule_uv=(nod_side * thorax * (0.25 + 0.45 * q[22]), nod_v),
        nodule_sigma=(0.065 + 0.03 * q[24]) * (0.75 + 0.25 * nodule),
        nodule_contrast=(0.34 + 0.16 * q[25]) * (0.4 + 0.6 * nodule) * (nodule > 0),
        mimic_uv=(-nod_side * thorax * (0.3 + 0.3 * q[30]), 0.15 + 0.2 * q[31]),
        mimic_sigma=0.025 + 0.01 * q[32],
        mimic_contrast=0.12 * nod_mimic,
        ptx_side=ptx_side if (truth["pneumothorax"] or ptx_mimic > 0) else 0,
        ptx_thickness=(0.15 + 0.15 * q[27]) * (0.6 + 0.4 * max(ptx, ptx_mimic)),
        ptx_dark=(0.11 + 0.05 * q[28]) * ptx,
        ptx_line=(0.054 + 0.03 * q[28]) * ptx + 0.05 * ptx_mimic,
        ptx_visibility=ptx,
    )


#: Share of a lower-zone finding's conspicuity lost per unit of breast density.
_BREAST_HIDES = 1.5
#: A supine effusion, layering behind the lung, is this much fainter than an erect one.
_SUPINE_EFFUSION = 0.75
