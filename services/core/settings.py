"""One validated settings object, read from ``RADWATCH_*`` environment variables.

Defaults are the embedded single-machine setup the demo uses: SQLite for the service database
and MLflow, a local artifact folder, and Celery on kombu's SQLAlchemy transport, all under
``data_dir``. Production points the URLs at PostgreSQL, Redis, an MLflow server and Triton.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

#: The pseudonymisation key used when none is configured. Fine for synthetic data, refused in
#: production because it would make pseudonyms reversible by anyone who reads this file.
DEV_PSEUDONYM_KEY = "radwatch-development-only-pseudonym-key"
DEV_SESSION_SECRET = "radwatch-dev-session-secret-not-for-production"  # noqa: S105 (refused in production)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="RADWATCH_", extra="ignore")

    environment: Literal["development", "test", "production"] = "development"
    data_dir: Path = Path("radwatch-data")

    database_url: str | None = Field(
        default=None, description="SQLAlchemy URL; default SQLite under data_dir."
    )
    broker_url: str | None = Field(
        default=None,
        description="Celery broker, e.g. redis://host:6379/0; default kombu SQLAlchemy on SQLite.",
    )
    mlflow_tracking_uri: str | None = Field(
        default=None, description="MLflow tracking URI; default SQLite under data_dir."
    )
    triton_url: str = Field(default="127.0.0.1:8000", description="Triton HTTP host:port.")
    triton_metrics_url: str | None = None
    triton_model_repository: Path | None = Field(
        default=None, description="Triton's model repository; default data_dir/triton-models."
    )

    model_name: str = Field(default="cxr-classifier", description="Default model for predictions.")
    pseudonym_key: str = DEV_PSEUDONYM_KEY
    #: Largest prediction request body, in MiB. A 3000x3000 16-bit radiograph is about 18 MiB.
    max_upload_mb: float = Field(default=64, gt=0)

    #: Events per site in one drift window. Windows are counted per site, so a quiet site is
    #: judged on as many studies as a busy one.
    monitor_window: int = Field(default=100, ge=20)
    #: Family-wise significance level of one window's drift decision (Bonferroni over columns).
    monitor_alpha: float = Field(default=0.01, gt=0, lt=1)
    #: An alert opens when ``k`` of the last ``m`` windows of a site drifted. Two of three keeps
    #: the false-alarm rate of a quiet site near alpha**2 per window while still alerting within
    #: two windows of a real change.
    monitor_persistence_k: int = Field(default=2, ge=1)
    monitor_persistence_m: int = Field(default=3, ge=1)
    #: Permutations of the embedding MMD test. The monitor raises it when needed so the test can
    #: reach significance after the Bonferroni correction (see ``permutations_needed``).
    monitor_permutations: int = Field(default=500, ge=50)
    monitor_interval_s: float = Field(
        default=2.0, gt=0, description="Beat period of the monitor tick."
    )

    #: Alert webhooks (``services.alerts.webhooks``). Each attempt's connect, write and read
    #: wait at most ``webhook_timeout_s``. A failed attempt is retried after
    #: ``webhook_backoff_s * 3**(n-1)`` seconds, at most ``webhook_backoff_max_s`` (10 s, 30 s,
    #: 90 s, ... with the defaults), until ``webhook_max_attempts`` attempts have failed.
    webhook_timeout_s: float = Field(default=5.0, gt=0, le=60)
    webhook_max_attempts: int = Field(default=8, ge=1, le=30)
    webhook_backoff_s: float = Field(default=10.0, gt=0)
    webhook_backoff_max_s: float = Field(default=3600.0, gt=0)
    webhook_interval_s: float = Field(
        default=5.0, gt=0, description="Beat period of the webhook delivery sweep."
    )

    #: Signs the safety officers' web session cookies and re-authentication tokens.
    session_secret: str = DEV_SESSION_SECRET
    #: A web session lasts this long; a decision needs the password again (or a re-auth token
    #: younger than ``reauth_max_age_s``), whatever the session's age.
    session_max_age_s: int = Field(default=8 * 3600, ge=60)
    reauth_max_age_s: int = Field(default=300, ge=30, le=3600)
    #: Shadow inferences in flight per API process; beyond it mirrors are skipped (counted as
    #: ``radwatch_shadow_predictions_total{outcome="skipped"}``) so shadow never slows answers.
    shadow_max_inflight: int = Field(default=2, ge=1, le=64)
    #: Celery queue of retraining runs (GPU workers consume it).
    training_queue: str = "training"

    @model_validator(mode="after")
    def _refuse_unsafe_defaults(self) -> Settings:
        if self.environment == "production":
            if self.pseudonym_key == DEV_PSEUDONYM_KEY:
                raise ValueError(
                    "RADWATCH_PSEUDONYM_KEY must be set to a secret in production; the built-in "
                    "development key would make study pseudonyms reversible."
                )
            if self.session_secret == DEV_SESSION_SECRET:
                raise ValueError(
                    "RADWATCH_SESSION_SECRET must be set to a secret in production; the built-in "
                    "development value would let anyone forge sign-in sessions."
                )
            if self.database_url is None or self.database_url.startswith("sqlite"):
                raise ValueError("RADWATCH_DATABASE_URL must point at PostgreSQL in production.")
        if self.monitor_persistence_k > self.monitor_persistence_m:
            raise ValueError("RADWATCH_MONITOR_PERSISTENCE_K cannot exceed _M.")
        if self.webhook_backoff_max_s < self.webhook_backoff_s:
            raise ValueError("RADWATCH_WEBHOOK_BACKOFF_MAX_S cannot be below _BACKOFF_S.")
        return self

    @property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{(self.data_dir / 'radwatch.db').resolve()}"

    @property
    def resolved_broker_url(self) -> str:
        return self.broker_url or f"sqla+sqlite:///{(self.data_dir / 'broker.db').resolve()}"

    @property
    def resolved_mlflow_uri(self) -> str:
        return self.mlflow_tracking_uri or f"sqlite:///{(self.data_dir / 'mlflow.db').resolve()}"

    @property
    def triton_repository(self) -> Path:
        """Triton's model repository as this process sees it (a shared volume in Kubernetes)."""
        if self.triton_model_repository is not None:
            return self.triton_model_repository.resolve()
        return (self.data_dir / "triton-models").resolve()


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings. Tests build ``Settings(...)`` directly instead."""
    return Settings()
