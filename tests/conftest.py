"""Shared test settings: hypothesis without deadlines (numba compiles on first call).

HYPOTHESIS_PROFILE selects the profile: "tinymeta" (the default) draws new examples
each run, which keeps finding new cases on developers' machines; "ci" (.ci/run) is
derandomized, so a CI run passes or fails the same way every time; "mutation" is "ci"
without shrinking, for mutmut.
"""
import os
import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, Phase, settings

settings.register_profile("tinymeta", deadline=None, max_examples=15,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("ci", settings.get_profile("tinymeta"), derandomize=True)
# mutation testing (tests/README.md): a failing example is enough, shrinking it only costs time
settings.register_profile("mutation", settings.get_profile("ci"),
                          phases=[Phase.explicit, Phase.reuse, Phase.generate])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "tinymeta"))

SHARED = Path(__file__).resolve().parents[2] / "shared"


@pytest.fixture
def shared_dir():
    """../shared beside the checkout (the project's data and notes); skip where absent."""
    if not SHARED.is_dir():
        pytest.skip(f"{SHARED} is absent (it ships with the development setup, not the repository)")
    return SHARED


def pytest_make_parametrize_id(config, val, argname):
    """String parameters (error messages as regular expressions) as ids that are also valid
    node ids: no brackets or spaces, so mutmut can hand them back to pytest."""
    if isinstance(val, str):
        return re.sub(r"[^\w.,=+-]+", "_", val).strip("_")[:60]
    return None
