"""The synthetic generator: determinism, chunking, vendor signatures, visible findings, shifts."""

from __future__ import annotations

from collections import Counter
from dataclasses import fields

import numpy as np
import numpy.typing as npt
import pytest
from scipy.ndimage import laplace

from pipelines.contract import FINDINGS
from pipelines.synth import (
    DEFAULT_SITES,
    DEFAULT_VENDORS,
    RadiographGenerator,
    ShiftSpec,
    Study,
)


def _same(a: Study, b: Study) -> bool:
    for f in fields(Study):
        x, y = getattr(a, f.name), getattr(b, f.name)
        if f.name == "image":
            if x.shape != y.shape or x.dtype != y.dtype or x.tobytes() != y.tobytes():
                return False
        elif x != y:
            return False
    return True


def test_study_fields_are_well_formed() -> None:
    studies = RadiographGenerator(seed=5).generate(40)
    for s in studies:
        vendor = next(v for v in DEFAULT_VENDORS.values() if v.manufacturer == s.manufacturer)
        assert s.image.dtype == np.float32
        assert s.image.shape == (vendor.native_size, vendor.native_size)
        assert float(s.image.min()) >= 0.0
        assert float(s.image.max()) <= 1.0
        assert tuple(s.labels) == tuple(s.truth) == tuple(s.severity) == FINDINGS
        assert set(s.labels.values()) | set(s.truth.values()) <= {0, 1}
        assert all((s.severity[f] > 0) == bool(s.truth[f]) for f in FINDINGS)
        assert all(0 <= v <= 1 for v in s.severity.values())
        assert s.view_position in ("PA", "AP")
        assert s.sex in ("F", "M")
        assert 18 <= s.age <= 95
        assert vendor.kvp_range[0] <= s.kvp <= vendor.kvp_range[1]
        assert len(s.study_id) <= 16  # fits DICOM AccessionNumber (SH)
    assert len({s.study_id for s in studies}) == len(studies)
    assert len({s.patient_id for s in studies}) == len(studies)


def test_same_seed_same_studies_and_other_seed_differs() -> None:
    a = RadiographGenerator(seed=11).generate(12)
    b = RadiographGenerator(seed=11).generate(12)
    c = RadiographGenerator(seed=12).generate(12)
    assert all(_same(x, y) for x, y in zip(a, b, strict=True))
    assert not any(_same(x, y) for x, y in zip(a, c, strict=True))


@pytest.mark.parametrize("site", [None, "south"])
def test_chunked_generation_equals_one_shot(site: str | None) -> None:
    gen = RadiographGenerator(seed=3)
    whole = gen.generate(10, site=site)
    parts = gen.generate(3, site=site) + gen.generate(7, site=site, start_index=3)
    assert all(_same(x, y) for x, y in zip(whole, parts, strict=True))
    assert _same(gen.generate(1, site=site, start_index=9)[0], whole[9])


def test_site_argument_and_vendor_mix() -> None:
    gen = RadiographGenerator(seed=2)
    for site in DEFAULT_SITES:
        allowed = {DEFAULT_VENDORS[v].manufacturer for v, _ in site.vendor_mix}
        studies = gen.generate(25, site=site.name)
        assert {s.site for s in studies} == {site.name}
        assert {s.institution_name for s in studies} == {site.institution_name}
        assert {s.manufacturer for s in studies} <= allowed
    mixed = Counter(s.site for s in gen.generate(200))
    assert set(mixed) == {s.name for s in DEFAULT_SITES}


def test_defaults_leave_one_vendor_unused() -> None:
    used = {v for site in DEFAULT_SITES for v, _ in site.vendor_mix}
    assert len(DEFAULT_SITES) == 3
    assert len(DEFAULT_VENDORS) >= 4
    assert set(DEFAULT_VENDORS) - used


def _signature(image: npt.NDArray[np.float32]) -> npt.NDArray[np.float64]:
    """Size-free statistics: intensity quantiles and a high-frequency noise level."""
    q = np.percentile(image, [1, 25, 50, 75, 99])
    hf = float(np.median(np.abs(laplace(image.astype(np.float64)))))
    return np.array([*q, image.mean(), image.std(), hf])


def test_vendor_signatures_separate_same_patients() -> None:
    """A nearest-centroid rule on size-free image statistics tells every vendor apart."""
    gen = RadiographGenerator(seed=8)
    names = sorted(DEFAULT_VENDORS)
    train, test = {}, {}
    for name in names:
        studies = gen.generate(40, site="north", shift=ShiftSpec(vendor_override=name))
        sig = np.array([_signature(s.image) for s in studies])
        train[name], test[name] = sig[:20], sig[20:]
    pooled = np.concatenate(list(train.values()))
    mu, sd = pooled.mean(0), pooled.std(0) + 1e-9
    centroids = np.array([((train[n] - mu) / sd).mean(0) for n in names])
    correct = 0
    for i, name in enumerate(names):
        z = (test[name] - mu) / sd
        pred = np.argmin(((z[:, None, :] - centroids[None]) ** 2).sum(-1), axis=1)
        correct += int((pred == i).sum())
    assert correct / (20 * len(names)) >= 0.95


@pytest.mark.parametrize("finding", FINDINGS)
def test_findings_are_drawn_only_for_positive_studies(finding: str) -> None:
    """Paired comparison: making findings invisible changes exactly the positive images, and
    typically by a visible amount (same patients and noise, so the difference is the finding
    alone); a subtle finding changes little, by design."""
    gen = RadiographGenerator(seed=21)
    boost = ShiftSpec(prevalence_scale={finding: 4.0})
    hidden = ShiftSpec(
        prevalence_scale={finding: 4.0}, degrade_subgroup=("site", "central"), degrade_strength=1.0
    )
    seen = gen.generate(30, site="central", shift=boost)
    unseen = gen.generate(30, site="central", shift=hidden)
    diffs = []
    for a, b in zip(seen, unseen, strict=True):
        assert (a.labels, a.truth) == (b.labels, b.truth)
        diff = float(np.abs(a.image - b.image).max())
        if sum(a.truth.values()) == 0:
            assert diff == 0.0  # look-alikes are anatomy: a degraded detector leaves them
        if a.truth[finding]:
            diffs.append(diff)
    assert len(diffs) >= 5
    assert min(diffs) > 0.0
    assert float(np.median(diffs)) > 0.05


def test_cardiomegaly_widens_the_heart() -> None:
    """Direct pixel statistic: positives have a brighter lower-central band (wider heart)."""
    gen = RadiographGenerator(seed=4)
    studies = gen.generate(150, site="north", shift=ShiftSpec(vendor_override="aurora"))
    band = np.array([s.image[150:190, 150:200].mean() for s in studies])
    pos = np.array([s.truth["cardiomegaly"] for s in studies], dtype=bool)
    assert pos.sum() >= 10
    assert band[pos].mean() > band[~pos].mean() + 0.03


def test_shifts_change_what_they_say_and_nothing_else() -> None:
    gen = RadiographGenerator(seed=9)
    base = gen.generate(60, site="north")
    darker = gen.generate(60, site="north", shift=ShiftSpec(gamma=1.5))
    noisy = gen.generate(60, site="north", shift=ShiftSpec(noise_sigma_add=0.05))
    older = gen.generate(60, site="north", shift=ShiftSpec(age_shift_years=15))
    for a, b in zip(base, darker, strict=True):
        assert (a.study_id, a.labels, a.age, a.sex) == (b.study_id, b.labels, b.age, b.sex)
    assert (
        np.mean([s.image.mean() for s in darker]) < np.mean([s.image.mean() for s in base]) - 0.03
    )

    def hf(studies: list[Study]) -> float:
        return float(np.mean([np.median(np.abs(laplace(s.image))) for s in studies]))

    assert hf(noisy) > 2 * hf(base)
    assert np.mean([s.age for s in older]) - np.mean([s.age for s in base]) > 10
    prevalent = gen.generate(120, shift=ShiftSpec(prevalence_scale={"nodule": 5.0}))
    plain = gen.generate(120)
    assert sum(s.labels["nodule"] for s in prevalent) > 2 * sum(s.labels["nodule"] for s in plain)
    switched = gen.generate(20, site="central", shift=ShiftSpec(vendor_override="delta"))
    assert {s.manufacturer for s in switched} == {DEFAULT_VENDORS["delta"].manufacturer}


def test_degrade_applies_to_the_subgroup_only() -> None:
    gen = RadiographGenerator(seed=13)
    shift = ShiftSpec(degrade_subgroup=("sex", "F"), degrade_strength=0.8)
    for a, b in zip(gen.generate(60), gen.generate(60, shift=shift), strict=True):
        if a.sex == "M":
            assert _same(a, b)


def test_invalid_arguments_say_what_to_fix() -> None:
    gen = RadiographGenerator(seed=1)
    with pytest.raises(ValueError, match="known sites"):
        gen.generate(1, site="nowhere")
    with pytest.raises(ValueError, match="known vendor"):
        gen.generate(1, shift=ShiftSpec(vendor_override="acme"))
    with pytest.raises(ValueError, match="unknown findings"):
        ShiftSpec(prevalence_scale={"fracture": 2.0})
    with pytest.raises(ValueError, match="degrade_subgroup"):
        ShiftSpec(degrade_subgroup=("shoe_size", "42"))
    with pytest.raises(ValueError, match=">= 0"):
        gen.generate(-1)


def test_readers_miss_subtle_findings_and_call_look_alikes() -> None:
    """Reported labels disagree with the truth the way readers do: misses concentrate on
    subtle findings, and films without a finding are sometimes reported with it."""
    studies = RadiographGenerator(seed=17).generate(3000)
    subtle = florid = missed_subtle = missed_florid = false_calls = negatives = 0
    for s in studies:
        for f in FINDINGS:
            if not s.truth[f]:
                negatives += 1
                false_calls += s.labels[f]
            elif s.severity[f] < 0.3:
                subtle += 1
                missed_subtle += 1 - s.labels[f]
            elif s.severity[f] > 0.7:
                florid += 1
                missed_florid += 1 - s.labels[f]
    assert min(subtle, florid) >= 100
    print(
        f"missed: subtle {missed_subtle / subtle:.3f}, florid {missed_florid / florid:.3f}; "
        f"false calls {false_calls / negatives:.4f}"
    )
    assert missed_subtle / subtle > 0.15 > 0.06 > missed_florid / florid
    assert 0.005 < false_calls / negatives < 0.05


def test_case_mix_differs_by_site() -> None:
    """The emergency department (central) sees subtler disease than the referral centre."""
    gen = RadiographGenerator(seed=23)

    def mean_severity(site: str) -> float:
        values = [v for s in gen.generate(800, site=site) for v in s.severity.values() if v > 0]
        return float(np.mean(values))

    assert mean_severity("central") + 0.1 < mean_severity("south")
