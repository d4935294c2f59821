"""Alert policy: k-of-m persistence, latest-window rule, effect-size floor, severity."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from monitors.errors import MonitorInputError
from monitors.policy import AlertPolicy, WindowOutcome

SIG = WindowOutcome(p_value=0.001, effect_size=0.05)
NOT = WindowOutcome(p_value=0.4, effect_size=0.01)


def test_fires_on_k_of_m_and_not_below() -> None:
    policy = AlertPolicy(persistence_k=2, persistence_m=3)
    assert not policy.evaluate([SIG]).fire
    assert policy.evaluate([SIG]).severity == "info"
    assert policy.evaluate([SIG, NOT, SIG]).fire
    assert policy.evaluate([SIG, NOT, SIG]).severity == "warning"
    assert not policy.evaluate([SIG, NOT, NOT, SIG]).fire  # the first SIG is outside m=3
    assert policy.evaluate([NOT, NOT, NOT]).severity == "none"
    assert policy.evaluate([]).severity == "none"


def test_matches_brute_force_over_all_histories() -> None:
    policy = AlertPolicy(persistence_k=2, persistence_m=4, require_latest=False)
    for bits in itertools.product([0, 1], repeat=6):
        history = [SIG if b else NOT for b in bits]
        assert policy.evaluate(history).fire == (sum(bits[-4:]) >= 2), bits


def test_latest_window_must_be_significant_by_default() -> None:
    decision = AlertPolicy().evaluate([SIG, SIG, WindowOutcome(p_value=0.5, label="2026-W47")])
    assert not decision.fire
    assert "2026-W47" in decision.reason
    assert AlertPolicy(require_latest=False).evaluate([SIG, SIG, NOT]).fire


def test_min_effect_size_drops_significant_but_tiny_windows() -> None:
    tiny = WindowOutcome(p_value=1e-9, effect_size=0.001)
    unknown = WindowOutcome(p_value=1e-9, effect_size=None)
    policy = AlertPolicy(min_effect_size=0.02)
    assert not policy.evaluate([tiny, tiny, tiny]).fire
    assert not policy.evaluate([unknown, unknown]).fire
    assert policy.evaluate([tiny, SIG, SIG]).fire


def test_untestable_windows_count_towards_m_but_are_not_significant() -> None:
    gap = WindowOutcome(p_value=None)
    nan = WindowOutcome(p_value=float("nan"))
    assert not AlertPolicy().evaluate([SIG, gap, nan]).fire


def test_severity_from_sustained_effect_not_one_spike() -> None:
    policy = AlertPolicy(
        persistence_k=2, persistence_m=3, critical_effect_size=0.1, critical_when_persistent=False
    )
    spike = WindowOutcome(p_value=1e-6, effect_size=0.5)
    decision = policy.evaluate([NOT, spike, SIG])
    assert decision.fire
    assert decision.sustained_effect == pytest.approx(0.05)
    assert decision.severity == "warning"
    big = WindowOutcome(p_value=1e-6, effect_size=0.2)
    assert policy.evaluate([NOT, big, spike]).severity == "critical"


def test_all_windows_significant_is_critical_when_configured() -> None:
    assert AlertPolicy().evaluate([SIG, SIG, SIG]).severity == "critical"
    assert AlertPolicy(critical_when_persistent=False).evaluate([SIG] * 3).severity == "warning"


def test_false_alarm_rate_of_two_of_three_on_uniform_p_values() -> None:
    rng = np.random.default_rng(0)
    policy = AlertPolicy(persistence_k=2, persistence_m=3, require_latest=False)
    p = rng.random((20_000, 3))
    rate = np.mean([policy.evaluate([WindowOutcome(x) for x in row]).fire for row in p])
    # P(Binomial(3, 0.05) >= 2) = 0.00725
    assert rate == pytest.approx(0.00725, abs=0.003)


def test_pure_and_deterministic() -> None:
    policy = AlertPolicy()
    history = (NOT, SIG, SIG)
    assert policy.evaluate(history) == policy.evaluate(list(history))
    assert policy.evaluate(history).to_dict()["fire"] is True


@pytest.mark.parametrize(
    "kwargs",
    [
        {"alpha": 0.0},
        {"persistence_k": 4, "persistence_m": 3},
        {"persistence_k": 0},
        {"min_effect_size": -1.0},
        {"min_effect_size": 0.2, "critical_effect_size": 0.1},
    ],
)
def test_bad_configuration_is_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(MonitorInputError):
        AlertPolicy(**kwargs)  # type: ignore[arg-type]
