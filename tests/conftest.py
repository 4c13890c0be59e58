"""Shared fixtures: where the repository is, how kernels find the package, lab timings."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).resolve().parent / "fixtures"

_TIMINGS = pytest.StashKey[dict]()


@pytest.fixture(scope="session", autouse=True)
def fresh_runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every test session trains into a cache of shared models of its own (``RLHF_COURSE_RUNS``), never the checkout's."""
    path = tmp_path_factory.mktemp("shared_runs")
    previous = os.environ.get("RLHF_COURSE_RUNS")
    os.environ["RLHF_COURSE_RUNS"] = str(path)
    yield path
    if previous is None:
        os.environ.pop("RLHF_COURSE_RUNS", None)
    else:
        os.environ["RLHF_COURSE_RUNS"] = previous


@pytest.fixture(scope="session")
def kernel_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Environment for notebook kernels: this checkout's package first on the path, and a fresh cache of runs.

    The kernel is a separate process; without this it would import an installed
    ``rlhf_course`` (or none) instead of the code under test. The labs of one
    test session share one cache of shared models (``RLHF_COURSE_RUNS``), made
    empty for it, so that every test session trains what it measures; pytest
    workers that run labs side by side (``make seeds``) share the folder that
    ``RLHF_COURSE_LAB_RUNS`` names instead, so that they train each model once.
    """
    path = os.environ.get("PYTHONPATH")
    runs = os.environ.get("RLHF_COURSE_LAB_RUNS") or str(tmp_path_factory.mktemp("runs"))
    return {"PYTHONPATH": str(ROOT) + (os.pathsep + path if path else ""), "RLHF_COURSE_RUNS": runs}


@pytest.fixture(scope="session")
def lab_timings(request: pytest.FixtureRequest) -> dict[str, dict]:
    """What each executed lab cost (wall seconds, and the CPU and ledger seconds it recorded), reported at the end."""
    return request.config.stash.setdefault(_TIMINGS, {})


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:
    """Print what each lab cost, slowest first, after the test results (the per-lab table of book/contributing.md)."""
    from rlhf_course.tools.benchmark import labs_markdown

    timings = config.stash.get(_TIMINGS, {})
    if not timings:
        return
    terminalreporter.section("what each lab cost (profile tiny; seconds)")
    ordered = dict(sorted(timings.items(), key=lambda item: -item[1]["wall"]))
    terminalreporter.write(labs_markdown({"labs": ordered}))
    terminalreporter.write_line(f"total wall {sum(row['wall'] for row in timings.values()):.0f} s, "
                                f"CPU {sum(row.get('cpu', 0) for row in timings.values()):.0f} s")


# The order in which labs start, two at a time. The first lab to ask trains the shared SFT model and reward model
# (about 11 minutes) while the other waits for them; so the slowest lab goes first, and beside it labs that need
# neither (the five-minute lab trains its own) or only the SFT model; then the rest, slowest first, so that both
# workers finish at about the same time. A lab not listed runs last.
LAB_ORDER = ("direct_alignment", "five_minute_rlhf", "instruction_tuning", "policy_gradients", "regularization",
             "reward_modeling", "rejection_sampling", "ppo", "what_are_preferences", "preference_data",
             "optimization_rl")


@dataclass
class LabRun:
    """One lab executed for the website: how long it took and the error of its first failing cell, if any."""

    seconds: float
    error: str | None = None


def execute_lab(notebook: Path, timeout: int) -> LabRun:
    """Execute ``notebook`` in its own folder, as the book build does, and save it with its outputs in place."""
    import re
    import time

    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError

    nb = nbformat.read(notebook, as_version=4)
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3",
                            resources={"metadata": {"path": str(notebook.parent)}})
    start, error = time.perf_counter(), None
    try:
        client.execute()
    except (CellExecutionError, CellTimeoutError, DeadKernelError) as err:
        error = re.sub(r"\x1b\[[0-9;]*m", "", f"{type(err).__name__}: {err}")[-3000:]  # no terminal colours
    nbformat.write(nb, notebook)
    return LabRun(time.perf_counter() - start, error)


def execute_labs(labs_dir: Path, env: dict[str, str], jobs: int, timeout: int) -> dict[str, LabRun]:
    """Execute every lab in ``labs_dir``, ``jobs`` at a time, in ``LAB_ORDER``; the kernels inherit ``env``.

    Labs that need the shared SFT model or reward model wait for whichever lab
    trains it first (see ``rlhf_course.core.runs.cached``).
    """
    from concurrent.futures import ThreadPoolExecutor

    from rlhf_course.tools.student import environment

    rank = {lab: i for i, lab in enumerate(LAB_ORDER)}
    labs = sorted(labs_dir.glob("*.ipynb"), key=lambda nb: rank.get(nb.stem, len(rank)))
    with environment(env), ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        runs = dict(zip([nb.stem for nb in labs], pool.map(lambda nb: execute_lab(nb, timeout), labs)))
    return runs


class BuiltSite:
    """The real website built once per test session, every lab executed on ``tiny``.

    Executing the labs is the slowest thing the suite does, so it is done once,
    and two labs at a time (``RLHF_COURSE_LAB_JOBS``, default 2): on the two
    cores of CI one lab after another would not fit in the time CI allows.
    The labs run in a copy of the repository with ``RLHF_COURSE_RESULTS_DIR``
    pointing at ``results_dir``, and are saved there with their outputs; then
    the book is built from that copy with the `make book` flags, rendering
    those outputs instead of executing the labs a second time (every other
    page is executed by the build). The notebook tests read the outcomes the
    labs recorded.
    """

    def __init__(self, root: Path, results_dir: Path, lab_runs: dict[str, LabRun], result) -> None:
        self.root, self.results_dir, self.lab_runs, self.result = root, results_dir, lab_runs, result

    def lab_seconds(self, lab: str) -> float | None:
        """Wall time of a lab, with another lab running beside it."""
        run = self.lab_runs.get(lab)
        return run.seconds if run else None

    def lab_errors(self) -> dict[str, str]:
        """The labs that failed, with the error of each one's first failing cell."""
        return {lab: run.error for lab, run in self.lab_runs.items() if run.error}


@pytest.fixture(scope="session")
def built_site(tmp_path_factory: pytest.TempPathFactory, kernel_env) -> BuiltSite:
    """Execute every lab and build the whole website once (see :class:`BuiltSite`); the build's log is in ``.result``."""
    import shutil
    import subprocess
    import sys

    import yaml

    root = tmp_path_factory.mktemp("site")
    results_dir = root / "_lab_results"
    ignore = shutil.ignore_patterns("_build", ".venv", ".git", "runs", "__pycache__", ".pytest_cache", ".hypothesis")
    shutil.copytree(ROOT, root, ignore=ignore, dirs_exist_ok=True)
    env = {**kernel_env, "RLHF_COURSE_PLOTLYJS": "site", "RLHF_COURSE_RESULTS_DIR": str(results_dir),
           "RLHF_COURSE_PROFILE": "tiny"}
    config = yaml.safe_load((root / "_config.yml").read_text())
    jobs = int(os.environ.get("RLHF_COURSE_LAB_JOBS", "2"))
    lab_runs = execute_labs(root / "labs", env, jobs, timeout=config["execute"]["timeout"])

    # The labs now hold their outputs: the build renders them and executes every other page (the Seminal Works
    # timeline) as `make book` does; the rest of _config.yml is the real one.
    config["execute"]["exclude_patterns"] = [*config["execute"].get("exclude_patterns", []), "labs/*.ipynb"]
    (root / "_config.yml").write_text(yaml.safe_dump(config, sort_keys=False, allow_unicode=True))
    command = [sys.executable, "-c", "import sys; from jupyter_book.cli.main import main; "
               "sys.argv[0] = 'jupyter-book'; sys.exit(main())",
               "build", str(root), "--warningiserror", "--nitpick", "--keep-going"]
    result = subprocess.run(command, cwd=root, env={**os.environ, **env}, capture_output=True, text=True,
                            timeout=1200)
    return BuiltSite(root, results_dir, lab_runs, result)


@pytest.fixture(scope="session")
def tiny_policy(tmp_path_factory: pytest.TempPathFactory):
    """The tiny base model and its tokenizer, saved once: the starting point ("SFT model") of stage tests."""
    from rlhf_course.core import models

    path = tmp_path_factory.mktemp("tiny_policy")
    model, tokenizer = models.load_model("tiny", progress=False)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path, tokenizer
