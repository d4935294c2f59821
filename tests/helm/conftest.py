"""Fixtures of the chart tests."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def api_get_routes() -> set[str]:
    """Paths the real API answers to GET (the probes and the ServiceMonitor must use these)."""
    from services.api.app import create_app
    from services.core.settings import Settings

    schema = create_app(Settings()).openapi()
    return {path for path, ops in schema["paths"].items() if "get" in ops}
