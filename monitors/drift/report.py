"""A drift report: every monitored column and the embeddings, one corrected decision.

Config -> :func:`run_drift` (pure) -> :class:`DriftReport`. All p-values of one report (columns,
embedding test, output-score test) form ONE family for the multiple-testing correction, so on
unshifted data the overall ``drift`` flag fires with probability at most ``alpha`` however many
columns are monitored. Per-column ``p_value`` in the report is the corrected value; the raw
value is kept in ``details["p_value_raw"]``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Literal, TypeAlias

import numpy as np
import numpy.typing as npt

from monitors._json import json_safe
from monitors.drift import univariate as uni
from monitors.drift._inputs import is_numeric_array
from monitors.drift.mmd import MultivariateResult, bbsd_test, classifier_test, mmd_test
from monitors.errors import MonitorInputError
from monitors.stats import Correction, adjust_pvalues

NumericTest: TypeAlias = Literal["ks", "psi", "wasserstein", "jensen_shannon"]
CategoricalTest: TypeAlias = Literal["chi2", "psi", "jensen_shannon"]
EmbeddingTest: TypeAlias = Literal["mmd", "classifier", "none"]


@dataclass(frozen=True, slots=True)
class DriftConfig:
    """What a drift monitor tests and how strictly.

    Columns: if both ``numeric_columns`` and ``categorical_columns`` are None, every column of
    the reference is tested and its kind inferred (int/float -> numeric; str, object and bool ->
    categorical). If either is given, exactly the listed columns are tested.

    Defaults are chosen for speed and calibration: KS and chi-squared have exact or asymptotic
    p-values in O(n log n), so a 40-column, 100k-row report takes well under a second. PSI, JS
    and Wasserstein use permutation p-values (``n_permutations``), Wasserstein at O(n x P) cost.
    ``min_samples`` is the fewest non-missing values per side and column the report accepts.
    ``workers`` threads run the column tests (numpy releases the GIL while sorting, which is
    most of a KS test); 1 runs them in the calling thread.
    """

    alpha: float = 0.05
    correction: Correction = "bh"
    numeric_columns: tuple[str, ...] | None = None
    categorical_columns: tuple[str, ...] | None = None
    numeric_test: NumericTest = "ks"
    categorical_test: CategoricalTest = "chi2"
    embedding_test: EmbeddingTest = "mmd"
    n_permutations: int = 500
    seed: int = 0
    min_samples: int = 20
    min_expected: float = 5.0
    max_n_embedding: int | None = 10_000
    workers: int = 2

    def __post_init__(self) -> None:
        if not 0.0 < self.alpha < 1.0:
            raise MonitorInputError(f"alpha must lie in (0, 1); got {self.alpha}.")
        if self.correction not in ("bonferroni", "bh"):
            raise MonitorInputError(
                f"correction must be 'bonferroni' or 'bh'; got {self.correction!r}."
            )
        allowed: dict[str, tuple[str, ...]] = {
            "numeric_test": ("ks", "psi", "wasserstein", "jensen_shannon"),
            "categorical_test": ("chi2", "psi", "jensen_shannon"),
            "embedding_test": ("mmd", "classifier", "none"),
        }
        for name, options in allowed.items():
            if getattr(self, name) not in options:
                raise MonitorInputError(
                    f"{name} must be one of {', '.join(options)}; got {getattr(self, name)!r}."
                )
        if self.n_permutations < 1:
            raise MonitorInputError(f"n_permutations must be >= 1; got {self.n_permutations}.")
        if self.workers < 1:
            raise MonitorInputError(f"workers must be >= 1; got {self.workers}.")
        if self.min_samples < 5:
            raise MonitorInputError(f"min_samples must be >= 5; got {self.min_samples}.")
        overlap = set(self.numeric_columns or ()) & set(self.categorical_columns or ())
        if overlap:
            raise MonitorInputError(
                f"Columns declared both numeric and categorical: {sorted(overlap)}."
            )

    def to_dict(self) -> dict[str, Any]:
        return json_safe(dataclasses.asdict(self))  # type: ignore[no-any-return]

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DriftConfig:
        """Inverse of :meth:`to_dict`; unknown keys are an error so typos do not pass silently."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - names
        if unknown:
            raise MonitorInputError(f"Unknown drift config keys: {sorted(unknown)}.")
        values = dict(data)
        for key in ("numeric_columns", "categorical_columns"):
            if values.get(key) is not None:
                values[key] = tuple(values[key])
        return cls(**values)


@dataclass(frozen=True, slots=True)
class DriftReport:
    """Corrected per-column and multivariate results and the overall decision."""

    columns: tuple[uni.UnivariateResult, ...]
    multivariate: tuple[MultivariateResult, ...]
    drift: bool
    alpha: float
    correction: Correction
    n_reference: int
    n_current: int
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def drifted_columns(self) -> list[str]:
        return [r.column for r in self.columns if r.drift]

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe layout (documented in the README):
        ``{"drift", "alpha", "correction", "n_reference", "n_current", "n_columns",
        "n_drifted_columns", "drifted_columns", "columns": {name: result}, "multivariate":
        {test: result}}``; each result holds ``test``, ``statistic``, ``p_value`` (corrected),
        ``drift`` and ``details`` (``p_value_raw`` among them)."""
        return {
            "drift": self.drift,
            "alpha": self.alpha,
            "correction": self.correction,
            "n_reference": self.n_reference,
            "n_current": self.n_current,
            "n_columns": len(self.columns),
            "n_drifted_columns": len(self.drifted_columns),
            "drifted_columns": self.drifted_columns,
            "columns": {r.column: r.to_dict() for r in self.columns},
            "multivariate": {r.test: r.to_dict() for r in self.multivariate},
            "details": json_safe(self.details),
        }


Columns = Mapping[str, npt.ArrayLike]


def _plan(reference: Columns, current: Columns, config: DriftConfig) -> list[tuple[str, bool]]:
    """(column, is_numeric) for every tested column, after the presence and type checks."""
    if config.numeric_columns is None and config.categorical_columns is None:
        names = list(reference)
        kinds = {c: _infer_numeric(reference[c]) for c in names}
    else:
        names = [*(config.numeric_columns or ()), *(config.categorical_columns or ())]
        kinds = {c: c in (config.numeric_columns or ()) for c in names}
    if not names:
        raise MonitorInputError("No columns to test; declare numeric or categorical columns.")
    for side, data in (("reference", reference), ("current", current)):
        missing = [c for c in names if c not in data]
        if missing:
            raise MonitorInputError(f"Columns missing from the {side} data: {sorted(missing)}.")
    for c in names:
        ref_numeric = is_numeric_array(reference[c])
        if ref_numeric != is_numeric_array(current[c]):
            raise MonitorInputError(
                f"Column {c!r} is {'numeric' if ref_numeric else 'non-numeric'} in the reference "
                "but not in the current data; make the types match."
            )
        if kinds[c] and not ref_numeric:
            raise MonitorInputError(
                f"Column {c!r} is declared numeric but holds non-numeric values; declare it "
                "categorical or fix its values."
            )
    return [(c, kinds[c]) for c in names]


def _infer_numeric(values: npt.ArrayLike) -> bool:
    return np.asarray(values).dtype.kind in "iuf"


def _count_present(values: npt.ArrayLike, is_numeric: bool) -> int:
    arr = np.asarray(values)
    if is_numeric:
        return int(np.count_nonzero(~np.isnan(arr.astype(np.float64, copy=False))))
    return int(arr.size)


def _column_test(
    name: str, ref: npt.ArrayLike, cur: npt.ArrayLike, is_numeric: bool, config: DriftConfig
) -> uni.UnivariateResult:
    for side, values in (("reference", ref), ("current", cur)):
        count = _count_present(values, is_numeric)
        if count == 0:
            raise MonitorInputError(f"Column {name!r} ({side}) has only missing values.")
        if count < config.min_samples:
            raise MonitorInputError(
                f"Column {name!r} ({side}) has {count} non-missing values; the monitor needs at "
                f"least {config.min_samples}. Use a longer window or lower min_samples."
            )
    perm = {"n_permutations": config.n_permutations, "seed": config.seed}
    test = config.numeric_test if is_numeric else config.categorical_test
    if test == "ks":
        return uni.ks_test(ref, cur, column=name, alpha=config.alpha)
    if test == "chi2":
        return uni.chi2_test(
            ref, cur, column=name, alpha=config.alpha, min_expected=config.min_expected
        )
    if test == "psi":
        return uni.psi(ref, cur, column=name, alpha=config.alpha, **perm)
    if test == "jensen_shannon":
        return uni.jensen_shannon(ref, cur, column=name, alpha=config.alpha, **perm)
    return uni.wasserstein(ref, cur, column=name, alpha=config.alpha, **perm)


def _rows(data: Columns, names: Sequence[str]) -> int:
    return max((int(np.asarray(data[c]).shape[0]) for c in names), default=0)


def run_drift(
    reference: Columns,
    current: Columns,
    config: DriftConfig,
    *,
    reference_embeddings: npt.ArrayLike | None = None,
    current_embeddings: npt.ArrayLike | None = None,
    reference_scores: npt.ArrayLike | None = None,
    current_scores: npt.ArrayLike | None = None,
) -> DriftReport:
    """Test every configured column, the embeddings (``config.embedding_test``) and, when given,
    the model's output scores (BBSD), then correct all p-values together.

    ``reference``/``current`` map column names to 1-D arrays (NaN or None = missing). Raises
    :class:`MonitorInputError` for missing columns, all-missing or constant columns, mismatched
    types, too few samples, or embeddings/scores given for one side only.
    """
    for what, ref_x, cur_x in (
        ("embeddings", reference_embeddings, current_embeddings),
        ("scores", reference_scores, current_scores),
    ):
        if (ref_x is None) != (cur_x is None):
            raise MonitorInputError(f"Pass {what} for both reference and current, or neither.")
    for what, arrays in (
        ("embeddings", (reference_embeddings, current_embeddings)),
        ("scores", (reference_scores, current_scores)),
    ):
        for side, values in zip(("reference", "current"), arrays, strict=True):
            rows = 0 if values is None else int(np.asarray(values).shape[0])
            if values is not None and rows < config.min_samples:
                raise MonitorInputError(
                    f"{what} ({side}) has {rows} rows; the monitor needs at least "
                    f"{config.min_samples}. Use a longer window or lower min_samples."
                )
    has_columns = bool(reference) or config.numeric_columns or config.categorical_columns
    plan = _plan(reference, current, config) if has_columns else []

    def test(item: tuple[str, bool]) -> uni.UnivariateResult:
        return _column_test(item[0], reference[item[0]], current[item[0]], item[1], config)

    if config.workers > 1 and len(plan) > 1:
        with ThreadPoolExecutor(max_workers=min(config.workers, len(plan))) as pool:
            columns = list(pool.map(test, plan))
    else:
        columns = [test(item) for item in plan]
    multi: list[MultivariateResult] = []
    if reference_embeddings is not None and current_embeddings is not None:
        if config.embedding_test == "mmd":
            multi.append(
                mmd_test(
                    reference_embeddings,
                    current_embeddings,
                    n_permutations=config.n_permutations,
                    seed=config.seed,
                    max_n=config.max_n_embedding,
                    alpha=config.alpha,
                )
            )
        elif config.embedding_test == "classifier":
            multi.append(
                classifier_test(
                    reference_embeddings, current_embeddings, alpha=config.alpha, seed=config.seed
                )
            )
    if reference_scores is not None and current_scores is not None:
        multi.append(bbsd_test(reference_scores, current_scores, alpha=config.alpha))
    if not columns and not multi:
        raise MonitorInputError("Nothing to test: no columns, embeddings or scores were given.")
    raw = [r.p_value if r.p_value is not None else 1.0 for r in columns] + [
        r.p_value for r in multi
    ]
    adjusted = adjust_pvalues(raw, config.correction)
    corrected_cols = tuple(
        _corrected(r, float(p), config.alpha)
        for r, p in zip(columns, adjusted[: len(columns)], strict=True)
    )
    corrected_multi = tuple(
        dataclasses.replace(
            r,
            p_value=float(p),
            drift=float(p) < config.alpha,
            details={**r.details, "p_value_raw": r.p_value},
        )
        for r, p in zip(multi, adjusted[len(columns) :], strict=True)
    )
    drift = any(r.drift for r in corrected_cols) or any(r.drift for r in corrected_multi)
    names = [c for c, _ in plan]
    return DriftReport(
        columns=corrected_cols,
        multivariate=corrected_multi,
        drift=drift,
        alpha=config.alpha,
        correction=config.correction,
        n_reference=_rows(reference, names),
        n_current=_rows(current, names),
        details={"n_tests": len(raw)},
    )


def _corrected(result: uni.UnivariateResult, p: float, alpha: float) -> uni.UnivariateResult:
    return dataclasses.replace(
        result,
        p_value=p,
        drift=p < alpha,
        details={**result.details, "p_value_raw": result.p_value},
    )
