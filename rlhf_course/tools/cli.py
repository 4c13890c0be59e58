"""The ``rlhf-course`` command: ``doctor``, ``student``, ``grade``, ``pipeline``, ``benchmark``, ``footprint``, ``plan``,
``drift``.

Each subcommand is a thin wrapper over a module function, so everything the
command does can also be done from Python:

    rlhf-course doctor                               # what this machine has
    rlhf-course student labs/*.ipynb --out student/  # strip solutions
    rlhf-course grade submissions/*.ipynb --out grades.csv
    rlhf-course pipeline --help                      # the whole RLHF pipeline
    rlhf-course benchmark pretrain                   # time the tiny model's pretraining
    rlhf-course footprint --profile colab-t4         # time and GPU memory of each stage, under a cap
    rlhf-course plan --profile multi-gpu --stage dpo --gpus 8   # estimated memory per GPU, settings that fit
    rlhf-course drift                                # newest dependency releases, in a venv of their own
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Sequence


# The commands that live in a module of their own: (module in rlhf_course.tools, one line for --help).
TOOL_COMMANDS = (
    ("benchmark", "measure wall times the README reports (e.g. pretrain)"),
    ("footprint", "wall time and peak GPU memory of each stage, under a memory cap"),
    ("plan", "estimate a stage's peak memory per GPU and recommend settings that fit"),
    ("drift", "test a checkout against the newest releases of its dependencies"),
)


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` (default: the command line), run the subcommand, return its exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["pipeline"]:  # its options belong to rlhf_course.pipeline, parsed there
        return run_pipeline(argv[1:])
    parser = build_parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "run"):
        parser.print_help()
        return 2
    return args.run(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rlhf-course", description="Companion tool of the RLHF course.")
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")

    doctor = commands.add_parser("doctor", help="show hardware, versions, and the profile `auto` picks")
    doctor.set_defaults(run=_doctor)

    student = commands.add_parser("student", help="write student versions of labs (solutions stripped)")
    student.add_argument("labs", nargs="+", metavar="LAB", help="lab notebooks (.ipynb)")
    student.add_argument("--out", required=True, metavar="DIR", help="folder for the student versions")
    student.set_defaults(run=_student)

    grade = commands.add_parser("grade", help="execute filled-in notebooks and grade each exercise")
    grade.add_argument("notebooks", nargs="+", metavar="NOTEBOOK")
    grade.add_argument("--profile", default="tiny", help="profile to run them on (default: tiny)")
    grade.add_argument("--out", metavar="CSV", help="also write the grades to this CSV file")
    grade.add_argument("--timeout", type=int, default=600, metavar="SECONDS", help="limit per cell (default: 600)")
    grade.add_argument("--executed", metavar="DIR", help="keep the executed notebooks in this folder")
    grade.set_defaults(run=_grade)

    for name, help_text in TOOL_COMMANDS:  # each a module of rlhf_course.tools with add_arguments and run_from_args
        module = importlib.import_module(f"rlhf_course.tools.{name}")
        command = commands.add_parser(name, help=help_text)
        module.add_arguments(command)
        command.set_defaults(run=module.run_from_args)

    # Listed for --help only: main() hands "pipeline ..." to run_pipeline before parsing.
    commands.add_parser("pipeline", help="run the RLHF pipeline end to end (see `rlhf-course pipeline --help`)")
    return parser


def _doctor(args: argparse.Namespace) -> int:
    from rlhf_course.tools import doctor

    return doctor.main()


def _student(args: argparse.Namespace) -> int:
    from rlhf_course.tools.student import SolutionMarkerError, write_student_versions

    try:
        written = write_student_versions(args.labs, args.out)
    except (SolutionMarkerError, FileNotFoundError, FileExistsError, ValueError) as err:
        print(f"rlhf-course student: {err}", file=sys.stderr)
        print("Nothing was written.", file=sys.stderr)
        return 1
    for path in written:
        print(f"wrote {path}")
    return 0


def _grade(args: argparse.Namespace) -> int:
    from pathlib import Path

    from rlhf_course.tools.student import grade_notebook, grades_table, write_grades_csv

    missing = [path for path in args.notebooks if not Path(path).is_file()]
    if missing:
        print(f"rlhf-course grade: no such notebook: {', '.join(missing)}", file=sys.stderr)
        return 1
    reports = []
    for path in args.notebooks:
        print(f"grading {path} on profile {args.profile} ...", flush=True)
        reports.append(grade_notebook(path, profile=args.profile, timeout=args.timeout, executed_dir=args.executed))
    print(grades_table(reports))
    if args.out:
        print(f"wrote {write_grades_csv(reports, args.out)}")
    return 0


def run_pipeline(argv: Sequence[str]) -> int:
    """Hand over to ``rlhf_course.pipeline``, imported only when asked for (it is heavy)."""
    import importlib

    try:
        pipeline = importlib.import_module("rlhf_course.pipeline")
    except ModuleNotFoundError as err:
        if err.name != "rlhf_course.pipeline":  # pipeline exists but one of its imports is missing
            raise
        print("rlhf-course pipeline: rlhf_course.pipeline is not available in this version.", file=sys.stderr)
        return 1
    parser = argparse.ArgumentParser(prog="rlhf-course pipeline", description="Run the RLHF pipeline.")
    pipeline.add_arguments(parser)
    return pipeline.run_from_args(parser.parse_args(argv))
