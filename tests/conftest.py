"""Shared test settings: hypothesis without deadlines (numba compiles on first call)."""
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

settings.register_profile("tinymeta", deadline=None, max_examples=15,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("tinymeta")

SHARED = Path(__file__).resolve().parents[2] / "shared"


@pytest.fixture
def shared_dir():
    """../shared beside the checkout (the project's data and notes); skip where absent."""
    if not SHARED.is_dir():
        pytest.skip(f"{SHARED} is absent (it ships with the development setup, not the repository)")
    return SHARED
