"""Test-suite wiring: fixtures live in tests/fixtures/ and are registered here."""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

pytest_plugins = [
    # Each module provides session fixtures for one real dependency.
    "tests.fixtures.postgres",
    "tests.fixtures.api",
    "tests.fixtures.seaweed",
    "tests.fixtures.logs",
    # The `reliability` fixture; `make test-long` writes docs/reliability.md from it.
    "tests.e2e.report",
]

settings.register_profile(
    "default",
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile("thorough", parent=settings.get_profile("default"), max_examples=2000)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))
