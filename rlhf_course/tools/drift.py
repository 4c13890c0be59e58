"""The drift check: does the course still work with the newest releases of what it depends on?

    make drift                      # or: python -m rlhf_course.tools.drift [--dir _build/drift]

``constraints.txt`` pins the stack that CI tests, so a new release of TRL or
transformers never changes the course silently. This check looks ahead: in a
separate virtual environment (``<dir>/venv``, made afresh each time) it
installs torch's CPU build from PyTorch's CPU wheel index (a bare ``torch``
from PyPI can be the multi-gigabyte CUDA build), then the course with its
dependencies unpinned (no ``-c constraints.txt``: the newest releases pip
finds), runs the quick tests (:data:`QUICK_TESTS`) and one short lab on
``tiny``, and writes ``<dir>/report.md``: the versions installed, next to the
pins, and whether each step passed. Every command's output goes to
``<dir>/drift.log``. It needs the package registries, so no test runs it; the
README records its last result.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

TORCH_CPU_INDEX = "https://download.pytorch.org/whl/cpu"

# Fast and representative: the layout, a TRL trainer (DPO) and the course's own policy-gradient loop.
QUICK_TESTS = ("tests/test_layout.py", "tests/test_dpo_training.py", "tests/test_policy_gradients.py")

LAB = "labs/optimization_rl.ipynb"  # seconds on tiny

REPORTED = ("torch", "transformers", "trl", "accelerate", "datasets", "peft", "tokenizers", "numpy")


def run_logged(command: list[str], log: Path, env: dict[str, str] | None = None) -> tuple[bool, float, str]:
    """Run ``command`` from the repository root, appending its output to ``log``; (passed, seconds, last line)."""
    start = time.perf_counter()
    with log.open("a") as out:
        out.write(f"\n$ {' '.join(command)}\n")
        out.flush()
        done = subprocess.run(command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, text=True)
    lines = [line for line in log.read_text().splitlines() if line.strip()]
    return done.returncode == 0, time.perf_counter() - start, lines[-1] if lines else ""


def venv_env(venv: Path, runs: Path) -> dict[str, str]:
    """The environment of every command in the drift venv: its bin first, offline, one thread, no pins."""
    env = {k: v for k, v in os.environ.items() if k not in ("PIP_CONSTRAINT", "PYTHONPATH", "VIRTUAL_ENV")}
    env.update(PATH=f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}", VIRTUAL_ENV=str(venv), OMP_NUM_THREADS="1",
               PIP_DISABLE_PIP_VERSION_CHECK="1", RLHF_COURSE_RUNS=str(runs), RLHF_COURSE_PROFILE="tiny")
    return env


def installed_versions(python: Path, env: dict[str, str]) -> dict[str, str]:
    """Versions of :data:`REPORTED` in the drift venv (``"missing"`` for one that is not installed)."""
    code = ("import importlib.metadata as m, json, sys\n"
            "def v(p):\n    try: return m.version(p)\n    except m.PackageNotFoundError: return 'missing'\n"
            f"print(json.dumps({{p: v(p) for p in {list(REPORTED)!r}}}))")
    done = subprocess.run([str(python), "-c", code], env=env, capture_output=True, text=True)
    return json.loads(done.stdout) if done.returncode == 0 else {p: "unknown" for p in REPORTED}


def pip_config_constraints(python: Path, env: dict[str, str]) -> list[str]:
    """Constraints that pip's own configuration adds on this machine (they cap "newest"; the report says so)."""
    done = subprocess.run([str(python), "-m", "pip", "config", "list"], env=env, capture_output=True, text=True)
    return [line for line in done.stdout.splitlines() if "constraint" in line.split("=")[0]]


def pinned_versions() -> dict[str, str]:
    """The versions ``constraints.txt`` pins for :data:`REPORTED`."""
    pins = dict(re.findall(r"^([A-Za-z0-9_.-]+)==(\S+)", (ROOT / "constraints.txt").read_text(), re.M))
    return {p: pins.get(p, "–") for p in REPORTED}


def report(steps: list[tuple[str, bool, float, str]], versions: dict[str, str], out: Path,
           caps: list[str] = ()) -> str:
    """The Markdown report: when, which versions (next to the pins), and each step's result."""
    pins = pinned_versions()
    when = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = [f"# Drift check, {when}", "",
             f"Python {sys.version.split()[0]}; the course's dependencies unpinned (newest releases), "
             "torch from the CPU wheel index.", "",
             "| package | installed | pinned (constraints.txt) |", "|---|---|---|"]
    lines += [f"| {p} | {versions.get(p, '?')} | {pins[p]} |" for p in REPORTED]
    if caps:
        lines += ["", "pip's configuration on this machine adds constraints, which cap the newest releases: "
                  + ", ".join(f"`{c}`" for c in caps) + "."]
    lines += ["", "| step | result | seconds | last line of output |", "|---|---|---|---|"]
    lines += [f"| {name} | {'pass' if ok else 'FAIL'} | {seconds:.0f} | `{tail[:120].replace('|', '/')}` |"
              for name, ok, seconds, tail in steps]
    verdict = "PASSED" if steps and all(ok for _, ok, _, _ in steps) else "FAILED"
    lines += ["", f"Result: **{verdict}**. Full output: `{out / 'drift.log'}`.", ""]
    return "\n".join(lines)


def drift(out: Path, tests: tuple[str, ...] = QUICK_TESTS, lab: str = LAB) -> bool:
    """Create the venv, install unpinned, run the tests and the lab, write ``out/report.md``; True if all passed."""
    out = out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    log, venv = out / "drift.log", out / "venv"
    log.write_text("")
    python, env = venv / "bin" / "python", venv_env(venv, out / "runs")
    steps = []

    def step(name: str, command: list[str]) -> bool:
        ok, seconds, tail = run_logged(command, log, env)
        steps.append((name, ok, seconds, tail))
        print(f"drift: {name}: {'pass' if ok else 'FAIL'} ({seconds:.0f} s)", flush=True)
        return ok

    installed = (step("create the venv", [sys.executable, "-m", "venv", "--clear", str(venv)])
                 and step("upgrade pip", [str(python), "-m", "pip", "install", "--upgrade", "pip"])
                 and step("install torch (CPU build)",
                          [str(python), "-m", "pip", "install", "torch", "--index-url", TORCH_CPU_INDEX])
                 # no --upgrade: pip keeps the CPU torch, which satisfies the course's loose bound
                 and step("install the course, unpinned",
                          [str(python), "-m", "pip", "install", "-e", str(ROOT), "pytest", "hypothesis", "ipykernel"]))
    versions = installed_versions(python, env) if installed else {}
    if installed:
        step(f"quick tests ({', '.join(Path(t).name for t in tests)})",
             [str(python), "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *tests])
        step(f"lab {Path(lab).stem} on tiny",
             [str(python), "-m", "papermill", lab, str(out / Path(lab).name), "--cwd", str(ROOT / Path(lab).parent),
              "-k", "python3", "--no-progress-bar"])
    caps = pip_config_constraints(python, env) if installed else []
    (out / "report.md").write_text(report(steps, versions, out, caps))
    print(f"drift: report in {out / 'report.md'}")
    return all(ok for _, ok, _, _ in steps)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``rlhf-course drift`` (and ``python -m rlhf_course.tools.drift``)."""
    parser.add_argument("--dir", type=Path, default=ROOT / "_build" / "drift", help="venv, log and report go here")
    parser.add_argument("--lab", default=LAB, help=f"the lab to execute on tiny (default {LAB})")
    parser.add_argument("--tests", nargs="+", default=list(QUICK_TESTS), help="test files to run")


def run_from_args(args: argparse.Namespace) -> int:
    """Run the check from a checkout (it needs ``tests/`` and ``labs/``); exit code 0 when every step passed."""
    if not (ROOT / "tests").is_dir() or not (ROOT / args.lab).is_file():
        print(f"rlhf-course drift runs in a checkout of the course; {ROOT} has no tests/ or {args.lab}. "
              "Clone the repository and run `make drift` there.", file=sys.stderr)
        return 2
    return 0 if drift(args.dir, tuple(args.tests), args.lab) else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m rlhf_course.tools.drift", description=__doc__.split("\n")[0])
    add_arguments(parser)
    return run_from_args(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
