"""Run the whole test suite the way `make test` does: the book build beside everything else.

Two jobs dominate the suite's time: executing every lab on ``tiny`` and building
the book from them (the ``built_site`` fixture of tests/conftest.py runs two labs
at a time; tests/test_book.py checks the website, tests/test_notebooks.py reads
the outcomes the labs recorded), and the two-seed pipeline test. With ``--jobs 2``
they run in pytest processes side by side: the book tests (two labs at a time),
the pipeline's second seed, and every other test, so that two cores stay busy
until the end. ``--jobs 1`` runs a single pytest process.

CI trains the pipeline on seed 1 only, because the labs train and assert the
same stages at seed 0. ``--seeds`` (``make seeds``) runs the other halves side
by side: every lab on its own at seed 1 (two at a time, in two pytest-xdist
workers sharing one cache of shared models), and the pipeline at seed 0, recording
what they measured in ``tests/seed_check.json`` (see tests/seed_check.py).

Each process gets ``cores // jobs`` torch threads unless ``OMP_NUM_THREADS`` is
set. The exit status is pytest's: non-zero as soon as one process fails, and 5
(nothing collected) only when no process ran a test.

    python tests/run_suite.py --jobs 2 --junit-dir _build/ci -- -ra --durations=25
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

BOOK_TESTS = ["tests/test_book.py", "tests/test_notebooks.py"]
# The pipeline's second seed runs in a process of its own: the rest would otherwise train both seeds one after the
# other (about 28 CPU-minutes each) and finish long after the labs.
PIPELINE = "tests/test_sft_pipeline.py::test_pipeline_stages_learn"
SECOND_SEED = f"{PIPELINE}[1]"
NO_TESTS_COLLECTED = 5
SEED_CHECK = str(Path(__file__).resolve().parent / "seed_check.json")


def commands(jobs: int, pytest_args: list[str], junit_dir: str | None,
             seeds: bool = False) -> dict[str, tuple[list[str], dict[str, str]]]:
    """The pytest command line of each process and the environment it adds, by name."""
    if seeds:
        record = {"RLHF_COURSE_SEED_CHECK": SEED_CHECK}
        # two pytest workers execute the labs, sharing one fresh cache of shared models
        lab_runs = tempfile.mkdtemp(prefix="rlhf-course-seed1-runs-")
        parts = {"labs-seed1": (["tests/test_notebooks.py", "-k", "test_lab_runs_and_learns", "-n", "2"],
                                {**record, "RLHF_COURSE_SKIP_REAL_BOOK": "1", "RLHF_COURSE_LAB_SEED": "1",
                                 "RLHF_COURSE_LAB_RUNS": lab_runs}),
                 "pipeline-seed0": ([PIPELINE], {**record, "RLHF_COURSE_PIPELINE_SEEDS": "0"})}
    elif jobs <= 1:
        parts = {"all": ([], {})}
    else:
        parts = {
            "book": (BOOK_TESTS, {}),
            "seed1": ([SECOND_SEED], {}),
            "rest": ([*(f"--ignore={t}" for t in BOOK_TESTS), f"--deselect={SECOND_SEED}"], {}),
        }
    result = {}
    for name, (selection, env) in parts.items():
        junit = [f"--junitxml={Path(junit_dir) / f'{name}.xml'}"] if junit_dir else []
        result[name] = ([sys.executable, "-m", "pytest", *selection, *pytest_args, *junit], env)
    return result


def combined_status(statuses: list[int]) -> int:
    """Fail if any process failed; report "nothing collected" only if that is true of every process."""
    failures = [s for s in statuses if s not in (0, NO_TESTS_COLLECTED)]
    if failures:
        return failures[0]
    return NO_TESTS_COLLECTED if all(s == NO_TESTS_COLLECTED for s in statuses) else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=2,
                        help="1: one pytest process; 2: the book, the second pipeline seed and the rest side by side")
    parser.add_argument("--junit-dir", default=None, help="write one JUnit XML report per process here")
    parser.add_argument("--seeds", action="store_true",
                        help="the second-seed check: every lab at seed 1 and the pipeline at seed 0, side by side")
    parser.add_argument("pytest_args", nargs=argparse.REMAINDER, help="passed to pytest (after --)")
    args = parser.parse_args(argv)
    pytest_args = args.pytest_args[1:] if args.pytest_args[:1] == ["--"] else args.pytest_args
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // max(1, args.jobs))))

    runs = commands(args.jobs, pytest_args, args.junit_dir, args.seeds)
    *background, foreground = runs.items()
    logs, processes = {}, {}
    for name, (command, extra) in background:  # its output is shown when it ends, not interleaved
        logs[name] = tempfile.NamedTemporaryFile("w+", prefix=f"pytest-{name}-", suffix=".log", delete=False)
        print(f"[{name}] {' '.join(command[1:])}  (output shown when it ends)", flush=True)
        processes[name] = subprocess.Popen(command, env={**env, **extra}, stdout=logs[name], stderr=subprocess.STDOUT)
    name, (command, extra) = foreground
    print(f"[{name}] {' '.join(command[1:])}", flush=True)
    statuses = {name: subprocess.call(command, env={**env, **extra})}
    for name, process in processes.items():
        statuses[name] = process.wait()
        logs[name].seek(0)
        print(f"\n========== [{name}] {' '.join(runs[name][0][1:])} ==========", flush=True)
        sys.stdout.write(logs[name].read())
        logs[name].close()
        os.unlink(logs[name].name)
    print("\n" + ", ".join(f"[{n}] exit {s}" for n, s in statuses.items()), flush=True)
    return combined_status(list(statuses.values()))


if __name__ == "__main__":
    sys.exit(main())
