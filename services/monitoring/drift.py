"""Columns and references of the acquisition-drift monitor kind (see
:func:`services.monitoring.kinds.evaluate_drift`).

A window is compared with the validation-set reference of the same site (or of all sites when the
site was not in the reference): MMD on the encoder embeddings, and per-column tests on the
acquisition metadata and image statistics, Bonferroni-corrected so the window's family-wise
false-alarm rate is the monitor's alpha.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from monitors.drift.report import DriftReport
from pipelines.profile import ReferenceProfile
from services.core.models import PredictionEvent
from services.monitoring.specs import DRIFT_CATEGORICAL as CATEGORICAL
from services.monitoring.specs import DRIFT_NUMERIC as NUMERIC

#: Keys of ``image_stats`` the drift monitor reads (the gateway computes them; producers may).
IMAGE_STATS = ("mean", "std", "p01", "p99")


def event_columns(rows: Sequence[PredictionEvent]) -> dict[str, npt.NDArray[Any]]:
    cols: dict[str, npt.NDArray[Any]] = {
        "manufacturer": np.array([r.manufacturer or "unknown" for r in rows], dtype=object),
        "manufacturer_model": np.array(
            [r.manufacturer_model or "unknown" for r in rows], dtype=object
        ),
        "view_position": np.array([r.view_position or "unknown" for r in rows], dtype=object),
        "kvp": np.array([np.nan if r.kvp is None else r.kvp for r in rows], dtype=np.float64),
    }
    # Producers that infer elsewhere may send no (or other) image statistics: a missing one is
    # NaN, and a column with too few recorded values is skipped (see usable_columns).
    for stat in IMAGE_STATS:
        cols[f"img_{stat}"] = np.array(
            [float(r.image_stats.get(stat, np.nan)) for r in rows], dtype=np.float64
        )
    return cols


def event_embeddings(rows: Sequence[PredictionEvent]) -> npt.NDArray[np.float32]:
    out = np.empty((len(rows), len(rows[0].embedding) // 4), dtype=np.float32)
    for i, r in enumerate(rows):
        out[i] = np.frombuffer(r.embedding, dtype="<f4")
    return out


def profile_columns(profile: ReferenceProfile) -> dict[str, npt.NDArray[Any]]:
    meta = profile.metadata
    cols: dict[str, npt.NDArray[Any]] = {}
    for c in CATEGORICAL:
        cols[c] = meta[c].fillna("unknown").astype(str).to_numpy(dtype=object)
    for c in NUMERIC:
        cols[c] = meta[c].to_numpy(dtype=np.float64)
    return cols


#: Fewest reference studies of a site for a site-specific comparison. Below it the site is
#: compared with the whole reference, which flags a site whose vendor mix was never validated.
MIN_SITE_REFERENCE = 50


def reference_for_site(profile: ReferenceProfile, site: str) -> tuple[ReferenceProfile, bool]:
    """The site's own reference when the profile has enough of it, else the whole profile."""
    own = profile.for_site(site)
    if len(own) >= MIN_SITE_REFERENCE:
        return own, True
    return profile, False


def usable_columns(
    reference: dict[str, npt.NDArray[Any]], current: dict[str, npt.NDArray[Any]], min_samples: int
) -> tuple[list[str], dict[str, str]]:
    """Columns a window can be tested on, and why the others were skipped.

    A column with one value across both samples carries no evidence either way (a single-vendor
    site has a constant ``manufacturer`` until the vendor changes, and then it is not constant).
    A numeric column with too few recorded values (a producer that sends no kVp) is skipped
    rather than failing the whole window.
    """
    keep: list[str] = []
    skipped: dict[str, str] = {}
    for name in (*CATEGORICAL, *NUMERIC):
        ref, cur = reference[name], current[name]
        if name in NUMERIC:
            ref, cur = ref[~np.isnan(ref)], cur[~np.isnan(cur)]
            if min(len(ref), len(cur)) < min_samples:
                skipped[name] = f"fewer than {min_samples} recorded values"
                continue
        if len(set(ref.tolist()) | set(cur.tolist())) < 2:
            skipped[name] = "one value in both reference and window"
            continue
        keep.append(name)
    return keep, skipped


def permutations_needed(n_tests: int, alpha: float) -> int:
    """Permutations B such that the smallest attainable p-value, 1/(B+1), is at most half of the
    Bonferroni per-test level alpha/n_tests. With fewer, a permutation test could never reach
    significance after correction (500 permutations cannot beat 0.01/8 = 0.00125)."""
    return math.ceil(2 * n_tests / alpha) - 1


def headline(report: DriftReport) -> tuple[float, float]:
    """The embedding MMD statistic and the smallest corrected p-value of the window."""
    mmd = [m for m in report.multivariate if m.test == "mmd"]
    statistic = float(mmd[0].statistic) if mmd else float("nan")
    pvals = [float(c.p_value) for c in report.columns if c.p_value is not None]
    pvals += [float(m.p_value) for m in report.multivariate if m.p_value is not None]
    return statistic, (min(pvals) if pvals else 1.0)
