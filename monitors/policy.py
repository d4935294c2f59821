"""Alert policy: turn a monitor's per-window results into one decision (fire, severity, why).

A single significant window is weak evidence: at alpha = 0.05 one in twenty unshifted windows is
significant by chance, and a monitor that runs hourly would page every day. Requiring k of the
last m windows cuts the false-alarm rate to roughly sum_{j>=k} C(m, j) alpha^j (1-alpha)^(m-j)
for independent windows (2 of 3 at 0.05: 0.7%) at the cost of k windows of delay. A minimum
effect size keeps large windows, where tiny harmless shifts are significant, from alerting.

The policy is pure and deterministic: the same history gives the same decision, so a decision
can be re-derived in an audit from the stored window results.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypeAlias

from monitors.errors import MonitorInputError

Severity: TypeAlias = Literal["none", "info", "warning", "critical"]


@dataclass(frozen=True, slots=True)
class WindowOutcome:
    """What one monitoring window showed.

    ``p_value`` is the window's (already multiplicity-corrected) p-value, ``None`` when the
    window could not be tested (too few cases). ``effect_size`` is in the monitor's own units
    with larger meaning worse and >= 0 (an AUROC drop, a PSI, an MMD^2, a TPR gap); ``None``
    when the monitor has none. ``label`` names the window in reasons ("2026-W47"); it must not
    hold patient or study identifiers.
    """

    p_value: float | None
    effect_size: float | None = None
    label: str = ""


@dataclass(frozen=True, slots=True)
class AlertDecision:
    """The policy's verdict on a history of windows.

    ``severity`` is ``"none"`` (no significant window among the last m), ``"info"``
    (some evidence, not enough to fire), ``"warning"`` or ``"critical"`` (fired).
    ``sustained_effect`` is the k-th largest effect among the significant windows considered:
    the effect at least k windows agree on, so one spike cannot make an alert critical.
    """

    fire: bool
    severity: Severity
    reason: str
    significant: int
    considered: int
    sustained_effect: float | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "fire": self.fire,
            "severity": self.severity,
            "reason": self.reason,
            "significant": self.significant,
            "considered": self.considered,
            "sustained_effect": self.sustained_effect,
        }


@dataclass(frozen=True, slots=True)
class AlertPolicy:
    """When a monitor's windows add up to an alert, and how severe it is.

    A window is significant when ``p_value < alpha`` and, if ``min_effect_size > 0``, its
    effect size is known and at least ``min_effect_size``. The policy fires when at least
    ``persistence_k`` of the last ``persistence_m`` windows are significant and (with
    ``require_latest``) the latest one is too, so an alert never opens on stale evidence.
    A fired alert is ``critical`` when the sustained effect reaches ``critical_effect_size``
    or, with ``critical_when_persistent``, when all of the last m windows are significant;
    otherwise it is a ``warning``.
    """

    alpha: float = 0.05
    persistence_k: int = 2
    persistence_m: int = 3
    min_effect_size: float = 0.0
    critical_effect_size: float | None = None
    critical_when_persistent: bool = True
    require_latest: bool = True

    def __post_init__(self) -> None:
        if not 0.0 < self.alpha < 1.0:
            raise MonitorInputError(f"alpha must lie strictly between 0 and 1; got {self.alpha}.")
        if not 1 <= self.persistence_k <= self.persistence_m:
            raise MonitorInputError(
                "persistence needs 1 <= k <= m (k significant windows out of the last m); got "
                f"k={self.persistence_k}, m={self.persistence_m}."
            )
        if not (math.isfinite(self.min_effect_size) and self.min_effect_size >= 0.0):
            raise MonitorInputError(
                f"min_effect_size must be a finite number >= 0; got {self.min_effect_size}."
            )
        crit = self.critical_effect_size
        if crit is not None and not (math.isfinite(crit) and crit >= self.min_effect_size):
            raise MonitorInputError(
                f"critical_effect_size must be >= min_effect_size ({self.min_effect_size}); "
                f"got {crit}."
            )

    def is_significant(self, window: WindowOutcome) -> bool:
        p = window.p_value
        if p is None or math.isnan(p) or p >= self.alpha:
            return False
        if self.min_effect_size <= 0.0:
            return True
        e = _effect(window)
        return e is not None and e >= self.min_effect_size

    def evaluate(self, history: Sequence[WindowOutcome]) -> AlertDecision:
        """Decide on ``history`` (oldest first); only the last ``persistence_m`` windows count."""
        k, m = self.persistence_k, self.persistence_m
        recent = list(history)[-m:]
        if not recent:
            return AlertDecision(False, "none", "No windows evaluated yet.", 0, 0, None)
        flags = [self.is_significant(w) for w in recent]
        count = sum(flags)
        effects = sorted(
            (e for w, f in zip(recent, flags, strict=True) if f and (e := _effect(w)) is not None),
            reverse=True,
        )
        sustained = effects[k - 1] if len(effects) >= k else None
        where = f"{count} of the last {len(recent)} windows significant at alpha={self.alpha}"
        if count < k:
            need = f"{k} of {m} needed"
            sev: Severity = "info" if count else "none"
            return AlertDecision(
                False, sev, f"No alert: {where}; {need}.", count, len(recent), sustained
            )
        if self.require_latest and not flags[-1]:
            latest = recent[-1].label or "the latest window"
            return AlertDecision(
                False,
                "info",
                f"No alert: {where}, but {latest} is not; the shift may have ended.",
                count,
                len(recent),
                sustained,
            )
        crit = self.critical_effect_size
        by_effect = crit is not None and sustained is not None and sustained >= crit
        by_persistence = self.critical_when_persistent and count == m == len(recent)
        severity: Severity = "critical" if by_effect or by_persistence else "warning"
        why = [where]
        if self.min_effect_size > 0.0:
            why.append(f"each with effect >= {self.min_effect_size}")
        if sustained is not None:
            why.append(f"sustained effect {sustained:.4g}")
        if by_effect:
            why.append(f"at or above the critical effect {crit}")
        elif by_persistence:
            why.append("every recent window significant")
        return AlertDecision(
            True, severity, "Alert: " + "; ".join(why) + ".", count, len(recent), sustained
        )


def _effect(window: WindowOutcome) -> float | None:
    e = window.effect_size
    if e is None or math.isnan(e):
        return None
    return float(e)
