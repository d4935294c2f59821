"""Input checks shared by the drift tests.

Every check raises :class:`MonitorInputError` with the column name and what to fix. Messages never
quote row values, so no patient or study identifier can leak into logs.
"""

from __future__ import annotations

import hashlib
import math
from collections import Counter

import numpy as np
import numpy.typing as npt

from monitors.errors import MonitorInputError

#: Fewest non-missing values per side any drift test accepts. Below this no test has power and
#: asymptotic p-values are meaningless; callers may demand more (``DriftConfig.min_samples``).
MIN_SAMPLES = 5

#: Category used for missing values (None / NaN) in categorical columns. A change in the share of
#: missing values is itself drift (a site stops sending a DICOM tag), so it is counted, not dropped.
MISSING = "__missing__"

FloatArray = npt.NDArray[np.float64]


def is_numeric_array(values: npt.ArrayLike) -> bool:
    """True for bool/int/float arrays; strings and mixed objects are categorical."""
    return np.asarray(values).dtype.kind in "biuf"


def numeric(
    values: npt.ArrayLike, *, column: str, side: str, min_n: int = MIN_SAMPLES
) -> FloatArray:
    """Return the finite values as float64, with NaN dropped.

    Infinite values are refused rather than dropped: they are almost always an upstream bug
    (division by zero in a feature), and silently ignoring them would hide it.
    """
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise MonitorInputError(
            f"Column {column!r} ({side}) must be one-dimensional; got shape {arr.shape}."
        )
    if arr.dtype.kind not in "biuf":
        raise MonitorInputError(
            f"Column {column!r} ({side}) is not numeric (dtype {arr.dtype}); declare it "
            "categorical or convert it to numbers."
        )
    out = arr.astype(np.float64, copy=False)
    if np.isinf(out).any():
        raise MonitorInputError(
            f"Column {column!r} ({side}) contains infinite values; fix or drop them upstream."
        )
    out = out[~np.isnan(out)]
    if out.size == 0:
        raise MonitorInputError(f"Column {column!r} ({side}) has only missing values.")
    if out.size < min_n:
        raise MonitorInputError(
            f"Column {column!r} ({side}) has {out.size} non-missing values; at least {min_n} "
            "are needed. Use a longer window."
        )
    return out


def check_not_constant(reference: FloatArray, current: FloatArray, *, column: str) -> None:
    """Refuse a column that takes one value in both samples: no test can say anything about it,
    and it is usually a misconfigured column (a default filled in everywhere)."""
    first = reference[0]
    if (reference == first).all() and (current == first).all():
        raise MonitorInputError(
            f"Column {column!r} is constant in both reference and current; drop it from the "
            "monitored columns."
        )


def _label(value: object) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return MISSING
    return str(value)


def category_counts(
    values: npt.ArrayLike, *, column: str, side: str, min_n: int = MIN_SAMPLES
) -> Counter[str]:
    """Count categories as strings; None/NaN become :data:`MISSING`.

    Float arrays are refused: a float column is almost certainly numeric and declaring it
    categorical would make every distinct value its own category.
    """
    arr = np.asarray(values, dtype=object if np.asarray(values).dtype.kind == "O" else None)
    if arr.ndim != 1:
        raise MonitorInputError(
            f"Column {column!r} ({side}) must be one-dimensional; got shape {arr.shape}."
        )
    if arr.dtype.kind == "f":
        raise MonitorInputError(
            f"Column {column!r} ({side}) holds floats but was declared categorical; declare it "
            "numeric or convert its values to strings."
        )
    raw = Counter(arr.tolist())
    counts: Counter[str] = Counter()
    for key, count in raw.items():
        counts[_label(key)] += count
    total = sum(counts.values())
    if total == 0 or set(counts) == {MISSING}:
        raise MonitorInputError(f"Column {column!r} ({side}) has only missing values.")
    if total < min_n:
        raise MonitorInputError(
            f"Column {column!r} ({side}) has {total} values; at least {min_n} are needed. Use a "
            "longer window."
        )
    return counts


def contingency(
    reference: Counter[str], current: Counter[str], *, column: str
) -> tuple[list[str], npt.NDArray[np.int64]]:
    """Build the 2 x K table over the union of categories, sorted for reproducibility.

    Categories present in only one sample keep a zero in the other row: a category that appears
    only in the current window (a new scanner vendor) is the strongest evidence of drift there is.
    """
    categories = sorted(set(reference) | set(current))
    if len(categories) < 2:
        raise MonitorInputError(
            f"Column {column!r} has a single category in both reference and current; drop it "
            "from the monitored columns."
        )
    table = np.array(
        [[reference.get(c, 0) for c in categories], [current.get(c, 0) for c in categories]],
        dtype=np.int64,
    )
    return categories, table


def data_seed(seed: int, *arrays: npt.ArrayLike) -> list[int]:
    """Seed entropy for a permutation test: the user's seed plus a fingerprint of the data.

    A monitor runs the same test on window after window with the same configured seed. With a
    plain seed every window would reuse one set of random permutations, so the long-run
    false-alarm rate would be that of one noisy estimate of the null quantile rather than
    alpha. Mixing in the data keeps each result reproducible while windows get fresh draws.
    Large arrays are fingerprinted on an evenly strided subset of at most ~65k values.
    """
    digest = hashlib.blake2b(digest_size=8)
    for values in arrays:
        flat = np.ascontiguousarray(np.asarray(values)).reshape(-1)
        step = max(1, flat.size // 65_536)
        digest.update(np.ascontiguousarray(flat[::step]).tobytes())
    return [int(seed), int.from_bytes(digest.digest(), "big")]
