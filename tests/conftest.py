"""Shared fixtures: where the repository is, how kernels find the package, lab timings."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).resolve().parent / "fixtures"

_TIMINGS = pytest.StashKey[dict]()


@pytest.fixture(scope="session")
def kernel_env() -> dict[str, str]:
    """Environment for notebook kernels: this checkout's package first on the path.

    The kernel is a separate process; without this it would import an installed
    ``rlhf_course`` (or none) instead of the code under test.
    """
    path = os.environ.get("PYTHONPATH")
    return {"PYTHONPATH": str(ROOT) + (os.pathsep + path if path else "")}


@pytest.fixture(scope="session")
def lab_timings(request: pytest.FixtureRequest) -> dict[str, float]:
    """Wall time in seconds per executed lab, reported at the end of the session."""
    return request.config.stash.setdefault(_TIMINGS, {})


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:
    """Print how long each lab took, slowest first, after the test results."""
    timings = config.stash.get(_TIMINGS, {})
    if not timings:
        return
    terminalreporter.section("lab wall times (profile tiny)")
    for lab, seconds in sorted(timings.items(), key=lambda item: -item[1]):
        terminalreporter.write_line(f"{seconds:7.1f} s  {lab}")
    terminalreporter.write_line(f"{sum(timings.values()):7.1f} s  total")
