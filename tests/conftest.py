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


class BuiltSite:
    """The real website built once per test session, every lab executed on ``tiny``.

    Executing a lab is the slowest thing the suite does, so it is done once:
    the book build runs every lab (as ``make book`` does) with
    ``RLHF_COURSE_RESULTS_DIR`` pointing at ``results_dir``, and the notebook
    tests read the outcomes the labs recorded there.
    """

    def __init__(self, root: Path, results_dir: Path, result) -> None:
        self.root, self.results_dir, self.result = root, results_dir, result

    def lab_seconds(self, lab: str) -> float | None:
        """Wall time of a lab in the build, from the cell timings nbclient records."""
        import json
        from datetime import datetime

        executed = self.root / "_build" / "jupyter_execute" / "labs" / f"{lab}.ipynb"
        if not executed.exists():
            return None
        cells = [c.get("metadata", {}).get("execution", {}) for c in json.loads(executed.read_text())["cells"]]
        stamps = [t for c in cells for t in (c.get("iopub.execute_input"), c.get("shell.execute_reply")) if t]
        if not stamps:
            return None
        parse = [datetime.fromisoformat(t.replace("Z", "+00:00")) for t in stamps]
        return (max(parse) - min(parse)).total_seconds()


@pytest.fixture(scope="session")
def built_site(tmp_path_factory: pytest.TempPathFactory, kernel_env) -> BuiltSite:
    """Build the whole website once (see :class:`BuiltSite`); the build's log is in ``.result``."""
    import shutil
    import subprocess
    import sys

    root = tmp_path_factory.mktemp("site")
    results_dir = root / "_lab_results"
    ignore = shutil.ignore_patterns("_build", ".venv", ".git", "runs", "__pycache__", ".pytest_cache", ".hypothesis")
    shutil.copytree(ROOT, root, ignore=ignore, dirs_exist_ok=True)
    env = {**os.environ, **kernel_env, "RLHF_COURSE_PLOTLYJS": "cdn", "RLHF_COURSE_RESULTS_DIR": str(results_dir),
           "RLHF_COURSE_PROFILE": "tiny"}
    command = [sys.executable, "-c", "import sys; from jupyter_book.cli.main import main; "
               "sys.argv[0] = 'jupyter-book'; sys.exit(main())",
               "build", str(root), "--warningiserror", "--nitpick", "--keep-going"]
    result = subprocess.run(command, cwd=root, env=env, capture_output=True, text=True, timeout=4200)
    return BuiltSite(root, results_dir, result)


@pytest.fixture(scope="session")
def tiny_policy(tmp_path_factory: pytest.TempPathFactory):
    """The tiny base model and its tokenizer, saved once: the starting point ("SFT model") of stage tests."""
    from rlhf_course import models

    path = tmp_path_factory.mktemp("tiny_policy")
    model, tokenizer = models.load_model("tiny", progress=False)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path, tokenizer
