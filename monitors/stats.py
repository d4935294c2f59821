"""Statistical helpers shared by the monitors.

Only multiple-testing correction lives here for now. A drift report tests many columns (and
embeddings) at once; without a correction the chance of at least one false alarm on unshifted
data grows with the number of columns (40 independent tests at 0.05 alarm 87% of the time).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, TypeAlias

import numpy as np
import numpy.typing as npt

from monitors.errors import MonitorInputError

Correction: TypeAlias = Literal["bonferroni", "bh"]


def adjust_pvalues(
    p: Sequence[float] | npt.ArrayLike, method: Correction
) -> npt.NDArray[np.float64]:
    """Adjust p-values for multiple testing; compare the result with the unadjusted alpha.

    ``bonferroni`` multiplies by the number of tests and controls the family-wise error rate under
    any dependence. ``bh`` (Benjamini-Hochberg step-up) controls the false discovery rate for
    independent or positively dependent tests; under the global null (no column drifted) the FDR
    equals the family-wise rate, so the overall "any drift" flag is still calibrated at alpha.
    Returned values are clipped to 1 and keep the input order.
    """
    values = np.asarray(p, dtype=np.float64).reshape(-1)
    if values.size == 0:
        return values.copy()
    if np.isnan(values).any() or (values < 0).any() or (values > 1).any():
        raise MonitorInputError("p-values must lie in [0, 1] and not be NaN; got an invalid value.")
    k = values.size
    if method == "bonferroni":
        return np.minimum(values * k, 1.0)
    if method == "bh":
        order = np.argsort(values, kind="stable")
        ranked = values[order] * k / np.arange(1, k + 1)
        # Step-up: each adjusted value is the smallest scaled value at its rank or above.
        ranked = np.minimum.accumulate(ranked[::-1])[::-1]
        adjusted = np.empty_like(values)
        adjusted[order] = np.minimum(ranked, 1.0)
        return adjusted
    raise MonitorInputError(f"Unknown correction {method!r}; use 'bonferroni' or 'bh'.")


#: Below this a p-value is not a number a float64 test statistic can resolve: a tail
#: probability that underflowed, or a DeLong z beyond ~8, prints as this bound, never as 0.
P_FLOOR = 1e-16


def format_p(p: float | None) -> str:
    """``p = 0.0123``, ``p = 3.1e-09`` or ``p < 1e-16`` (never ``p = 0``); ``p = n/a`` for None."""
    if p is None or p != p:
        return "p = n/a"
    if p < P_FLOOR:
        return f"p < {P_FLOOR:.0e}"
    return f"p = {p:.2g}" if p < 1e-3 else f"p = {p:.3f}"
