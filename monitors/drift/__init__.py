"""Drift monitors: univariate column tests, multivariate/embedding tests, online detection and
the corrected drift report. Pure numpy/scipy/torch; see each module for the statistics."""

from monitors.drift.mmd import MultivariateResult, bbsd_test, classifier_test, mmd_test
from monitors.drift.online import OnlineCalibration, OnlineMMDDetector, OnlineResult, OnlineState
from monitors.drift.report import DriftConfig, DriftReport, run_drift
from monitors.drift.univariate import (
    UnivariateResult,
    chi2_test,
    jensen_shannon,
    ks_test,
    psi,
    wasserstein,
)

__all__ = [
    "DriftConfig",
    "DriftReport",
    "MultivariateResult",
    "OnlineCalibration",
    "OnlineMMDDetector",
    "OnlineResult",
    "OnlineState",
    "UnivariateResult",
    "bbsd_test",
    "chi2_test",
    "classifier_test",
    "jensen_shannon",
    "ks_test",
    "mmd_test",
    "psi",
    "run_drift",
    "wasserstein",
]
