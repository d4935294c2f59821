"""The change protocol: what any update of a model must meet, written before the update exists.

It is the radwatch form of an FDA PCCP (predetermined change control plan) and of IEC 62304
change control: the acceptance criteria, who signs, how a change rolls out and when it rolls
back. A protocol is versioned per model (``change_protocols``) and every dossier, approval and
promotion names the version it was judged against, so a later edit cannot move the goalposts of
a past decision.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from services.core.models import Role

Perturbation = Literal["noise", "contrast", "blur", "exposure"]
#: Acquisition perturbations the robustness criterion can ask for (see pipelines.dossier).
PERTURBATIONS: tuple[Perturbation, ...] = ("noise", "contrast", "blur", "exposure")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RobustnessCriterion(_Strict):
    perturbations: list[Perturbation] = Field(default_factory=lambda: list(PERTURBATIONS))
    max_auroc_drop: float = Field(
        0.05, ge=0, le=1, description="Largest allowed AUROC loss under any perturbation."
    )


class AcceptanceCriteria(_Strict):
    """Each criterion passes or fails on its own; a candidate passes when all of them pass."""

    finding: str = Field("effusion", description="The finding the criteria are judged on.")
    auroc_noninferiority_margin: float = Field(
        0.02,
        ge=0,
        le=0.5,
        description="The candidate's AUROC may trail the champion's by at most this, with "
        "(1 - alpha) confidence (one-sided paired DeLong test on the same held-out data).",
    )
    min_sensitivity: float = Field(
        0.80, ge=0, le=1, description="Lower CI bound of sensitivity at the operating point."
    )
    operating_threshold: float | None = Field(
        None, ge=0, le=1, description="Operating point; default the deployment's threshold."
    )
    max_subgroup_gap: dict[str, float] = Field(
        default_factory=lambda: {"sex": 0.10, "age_band": 0.15, "site": 0.15},
        description="Per declared attribute: the largest allowed TPR gap (worst group vs the "
        "rest), judged on the upper CI bound of the gap.",
    )
    max_ece: float = Field(0.10, ge=0, le=1, description="Largest expected calibration error.")
    robustness: RobustnessCriterion = Field(default_factory=RobustnessCriterion)
    alpha: float = Field(0.05, gt=0, lt=0.5)


class RolloutPlan(_Strict):
    shadow_studies: int = Field(
        200, ge=0, description="Mirrored studies the candidate must score before canary."
    )
    canary_share: float = Field(0.1, gt=0, le=1, description="Share of traffic in canary.")
    canary_studies: int = Field(
        200, ge=0, description="Studies answered by the candidate before it becomes champion."
    )
    canary_minutes: float = Field(
        0, ge=0, description="Minimum canary duration in minutes (0: studies only)."
    )


class RollbackTrigger(_Strict):
    """After promotion, roll back automatically when one of these holds."""

    kind: Literal["alert"] = "alert"
    monitors: list[str] = Field(
        default_factory=list, description="Monitor names whose alerts count (empty = any)."
    )
    min_severity: Literal["warning", "critical"] = "critical"
    within_minutes: float = Field(
        1440, gt=0, description="How long after promotion the trigger stays armed."
    )


class RetrainingPolicy(_Strict):
    """When an alert may start a retraining run (persistence: one noisy window is not enough)."""

    enabled: bool = True
    monitors: list[str] = Field(
        default_factory=list, description="Monitors whose alerts can trigger (empty = any)."
    )
    min_severity: Literal["warning", "critical"] = "warning"
    min_significant_windows: int = Field(
        3, ge=1, description="Significant windows of the alert's monitor/site needed."
    )
    cooldown_hours: float = Field(24, ge=0, description="At most one triggered run per window.")
    min_labelled_events: int = Field(200, ge=10)
    replay_fraction: float = Field(
        0.5, ge=0, le=0.95, description="Share of each training batch from the original data."
    )
    epochs: int = Field(30, ge=1, le=500)
    seed: int = 0


class ChangeProtocolDocument(_Strict):
    """The whole protocol. Defaults are conservative and documented in docs/lifecycle.md."""

    intended_use: str = Field(
        "Triage support for chest radiographs; not for autonomous diagnosis.", max_length=2000
    )
    acceptance: AcceptanceCriteria = Field(default_factory=AcceptanceCriteria)
    approver_role: Literal["clinical_safety_officer"] = Role.CLINICAL_SAFETY_OFFICER.value
    approvals_required: int = Field(1, ge=1, le=5)
    approval_expires_hours: float = Field(168, gt=0)
    rollout: RolloutPlan = Field(default_factory=RolloutPlan)
    rollback_triggers: list[RollbackTrigger] = Field(
        default_factory=lambda: [RollbackTrigger(kind="alert", min_severity="critical")]
    )
    retraining: RetrainingPolicy = Field(default_factory=RetrainingPolicy)

    def approvals_needed(self, *, override: bool) -> int:
        """Approvals a request needs: an override of failed criteria always needs two people."""
        return max(2, self.approvals_required) if override else self.approvals_required
