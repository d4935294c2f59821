"""Online windowed-MMD detector: exact running statistic, serialisable state, calibration."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest
from numpy.typing import NDArray

from monitors.drift.online import OnlineMMDDetector
from monitors.errors import MonitorInputError


@pytest.fixture(scope="module")
def detector() -> OnlineMMDDetector:
    ref = np.random.default_rng(0).normal(size=(1000, 8))
    return OnlineMMDDetector.calibrate(ref, ert=300, window_size=20, n_streams=200)


def _direct_stat(det: OnlineMMDDetector, window: NDArray[Any]) -> float:
    cal = det.calibration

    def k(a: NDArray[Any], b: NDArray[Any]) -> NDArray[Any]:
        return np.asarray(np.exp(-((a[:, None] - b[None]) ** 2).sum(-1) / (2 * cal.bandwidth**2)))

    w = len(window)
    kww = k(window, window)
    return float(
        cal.reference_term
        + (kww.sum() - np.trace(kww)) / (w * (w - 1))
        - 2 * k(window, cal.reference).mean()
    )


def test_running_statistic_equals_direct_computation(detector: OnlineMMDDetector) -> None:
    detector.reset()
    events = np.random.default_rng(1).normal(size=(57, 8))
    detector.update(events[:30])
    for row in events[30:]:
        result = detector.update(row)
    assert result.t == 57
    assert result.statistic == pytest.approx(_direct_stat(detector, events[-20:]), abs=1e-10)


def test_state_round_trips_through_json(detector: OnlineMMDDetector) -> None:
    detector.reset()
    rng = np.random.default_rng(2)
    detector.update(rng.normal(size=(35, 8)))
    restored = OnlineMMDDetector.from_dict(json.loads(json.dumps(detector.to_dict())))
    assert restored.state.t == 35
    nxt = rng.normal(size=(7, 8))
    assert restored.update(nxt) == detector.update(nxt)
    np.testing.assert_array_equal(restored.calibration.reference, detector.calibration.reference)


def test_calibration_matches_the_requested_ert(detector: OnlineMMDDetector) -> None:
    cal = detector.calibration
    assert cal.simulated_mean_run_length == pytest.approx(300, rel=0.02)
    assert cal.threshold > 0


def test_alarms_quickly_on_a_shift_and_not_before(detector: OnlineMMDDetector) -> None:
    detector.reset()
    rng = np.random.default_rng(3)
    quiet = detector.update(rng.normal(size=(40, 8)))
    assert not quiet.drift
    shifted = rng.normal(size=(60, 8))
    shifted[:, :2] += 1.0
    result = detector.update(shifted)
    assert result.drift
    assert result.alarm_at is not None
    assert 40 < result.alarm_at <= 70


def test_calibration_and_update_errors(detector: OnlineMMDDetector) -> None:
    ref = np.random.default_rng(4).normal(size=(100, 8))
    with pytest.raises(MonitorInputError, match="must exceed window_size"):
        OnlineMMDDetector.calibrate(ref, ert=10, window_size=20)
    with pytest.raises(MonitorInputError, match="reference rows"):
        OnlineMMDDetector.calibrate(ref, ert=500, window_size=20)
    with pytest.raises(MonitorInputError, match="dims"):
        detector.update(np.zeros((2, 5)))
