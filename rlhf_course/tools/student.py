"""Student versions of labs, and grading them.

A lab notebook is the instructor's version: each exercise's reference solution
sits between the lines ``# BEGIN SOLUTION`` and ``# END SOLUTION``. The student
version replaces each such block by a stub that raises ``NotImplementedError``
(which the checks recognise: "not implemented yet"), drops cells tagged
``solution``, and clears outputs:

    def bradley_terry_loss(chosen, rejected):
        # BEGIN SOLUTION
        return -F.logsigmoid(chosen - rejected).mean()
        # END SOLUTION

becomes

    def bradley_terry_loss(chosen, rejected):
        raise NotImplementedError("Exercise: fill in bradley_terry_loss")

Grading runs each filled-in notebook with papermill while the checks append to
a log (``RLHF_COURSE_GRADES``), then tabulates pass or fail per exercise. An
exercise whose stub raised before its check could run fails as "not
implemented". Errors name the cell of the notebook as submitted (counted from
1, markdown cells included, as an editor shows them), not its place in
papermill's executed copy, and the exercise the cell belongs to.
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import re
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Mapping, Sequence

import nbformat

from rlhf_course.teaching.checking import GRADES_ENV

BEGIN_MARKER = "# BEGIN SOLUTION"
END_MARKER = "# END SOLUTION"
SOLUTION_TAG = "solution"

_BEGIN = re.compile(r"^(\s*)#\s*BEGIN SOLUTION\s*$")
_END = re.compile(r"^\s*#\s*END SOLUTION\s*$")
_DEF = re.compile(r"^(\s*)(?:async\s+)?def\s+(\w+)")
_CHECK_CALL = re.compile(r"\bcheck_(\w+)\s*\(")
_TOP_DEF = re.compile(r"^(?:async\s+)?def\s+(\w+)", re.MULTILINE)
_STUB_MESSAGE = re.compile(r"Exercise: fill in (\w+)")
PAPERMILL_TAGS = frozenset({"injected-parameters", "papermill-error-cell-tag"})  # cells papermill adds


def cell_label(index: int) -> str:
    """How messages name the cell at 0-based ``index``: ``"cell 3"`` for index 2, as an editor counts."""
    return f"cell {index + 1}"


class SolutionMarkerError(ValueError):
    """Solution markers that do not pair up; the message names the notebook and cell."""


# ---------------------------------------------------------------------------
# Student versions
# ---------------------------------------------------------------------------


def strip_solutions(source: str, where: str = "this cell") -> str:
    """Replace each ``# BEGIN/END SOLUTION`` block of one code cell by a stub.

    The stub keeps the indentation of the ``# BEGIN SOLUTION`` line and names
    the enclosing function when there is one. ``where`` (e.g. "lab.ipynb, cell
    4") is used in error messages.
    """
    lines = source.split("\n")  # not splitlines(): joining back must restore the source exactly
    out: list[str] = []
    begin_line: int | None = None
    for number, line in enumerate(lines, start=1):
        begin = _BEGIN.match(line)
        if begin and begin_line is not None:
            raise SolutionMarkerError(
                f"{where}: '{BEGIN_MARKER}' on line {number} opens a block while the one from line "
                f"{begin_line} is still open. Add '{END_MARKER}' before line {number}."
            )
        if begin:
            begin_line = number
            indent = begin.group(1)
            out.append(f'{indent}raise NotImplementedError("Exercise: fill in {_exercise_name(out, indent)}")')
        elif _END.match(line):
            if begin_line is None:
                raise SolutionMarkerError(
                    f"{where}: '{END_MARKER}' on line {number} has no '{BEGIN_MARKER}' before it. "
                    f"Add '{BEGIN_MARKER}' above the solution, or delete this line."
                )
            begin_line = None
        elif begin_line is None:
            out.append(line)
    if begin_line is not None:
        raise SolutionMarkerError(
            f"{where}: '{BEGIN_MARKER}' on line {begin_line} is never closed. Add '{END_MARKER}' "
            "after the last line of the solution (both markers must be in the same cell)."
        )
    return "\n".join(out)


def _exercise_name(previous_lines: list[str], indent: str) -> str:
    """The function that encloses a solution block, for the stub's message."""
    for line in reversed(previous_lines):
        match = _DEF.match(line)
        if match and len(match.group(1)) < len(indent):
            return match.group(2)
    return "this part"


def has_solutions(nb: nbformat.NotebookNode) -> bool:
    """Whether a notebook contains solution markers or ``solution`` cells."""
    return any(
        SOLUTION_TAG in cell.get("metadata", {}).get("tags", [])
        or (cell.cell_type == "code" and any(_BEGIN.match(line) for line in cell.source.split("\n")))
        for cell in nb.cells
    )


def make_student_notebook(nb: nbformat.NotebookNode, name: str = "notebook") -> nbformat.NotebookNode:
    """The student version of a notebook (a new object; ``nb`` is unchanged).

    Cells tagged ``solution`` are removed, solution blocks become stubs,
    checks and everything else stay, and outputs are cleared. ``name`` is used
    in error messages.
    """
    student = copy.deepcopy(nb)
    kept = []
    for index, cell in enumerate(student.cells):
        if SOLUTION_TAG in cell.get("metadata", {}).get("tags", []):
            continue
        if cell.cell_type == "code":
            cell.source = strip_solutions(cell.source, where=f"{name}, {cell_label(index)}")
            cell.outputs = []
            cell.execution_count = None
            for key in ("execution", "papermill"):
                cell.metadata.pop(key, None)
        kept.append(cell)
    student.cells = kept
    student.metadata.pop("papermill", None)
    return student


def write_student_versions(labs: Sequence[str | Path], out_dir: str | Path) -> list[Path]:
    """Write the student version of each lab into ``out_dir``, under the same file name.

    Everything is checked before anything is written: every lab must exist,
    no two labs may share a file name, ``out_dir`` must not be a lab's own
    folder, and a file in ``out_dir`` that still contains solutions (an
    instructor's version) is never overwritten.
    """
    out = Path(out_dir)
    sources = [Path(lab) for lab in labs]
    for source in sources:
        if not source.is_file():
            raise FileNotFoundError(f"Lab {str(source)!r} does not exist (looked for the file {source.resolve()}).")
        if source.suffix != ".ipynb":
            raise ValueError(f"{source} is not a notebook; expected a .ipynb file.")
        if source.resolve().parent == out.resolve():
            raise ValueError(
                f"Refusing to write into {out}: it is the folder of {source}, so the student version "
                "would overwrite the lab. Choose another folder, e.g. --out student/."
            )
    names = [source.name for source in sources]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise ValueError(f"Several labs are called {', '.join(duplicates)}; their student versions would collide.")

    students = {}
    for source in sources:
        nb = nbformat.read(source, as_version=4)
        students[out / source.name] = make_student_notebook(nb, name=str(source))
    for target in students:
        if target.exists() and has_solutions(nbformat.read(target, as_version=4)):
            raise FileExistsError(f"{target} contains solutions (an instructor's version?); refusing to overwrite it.")

    out.mkdir(parents=True, exist_ok=True)
    for target, nb in students.items():
        nbformat.write(nb, target)
    return list(students)


# ---------------------------------------------------------------------------
# Executing notebooks (used by grading and by the notebook tests)
# ---------------------------------------------------------------------------


@dataclass
class Execution:
    """What happened when a notebook ran: where its output went, how long, which error."""

    notebook: Path
    output: Path
    seconds: float
    error: str | None = None  # "cell 7 (exercise gae): ExerciseError: ..." or None if every cell ran

    @property
    def ok(self) -> bool:
        return self.error is None


@contextlib.contextmanager
def environment(changes: Mapping[str, str]) -> Iterator[None]:
    """Set environment variables for the duration (the kernel inherits them)."""
    saved = {key: os.environ.get(key) for key in changes}
    os.environ.update(changes)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def execute_notebook(
    notebook: str | Path,
    output: str | Path,
    parameters: Mapping[str, object] | None = None,
    env: Mapping[str, str] | None = None,
    cwd: str | Path | None = None,
    keep_going: bool = False,
    timeout: int | None = None,
) -> Execution:
    """Run ``notebook`` with papermill (kernel ``python3``) and save the executed copy to ``output``.

    Never raises for an error inside the notebook: the first failing cell is
    reported in :attr:`Execution.error`, by its place in ``notebook`` (see
    :func:`first_error`). With ``keep_going`` every cell runs
    even after an error (for grading, so one wrong exercise does not hide the
    others). ``cwd`` defaults to the notebook's folder, as in Jupyter.
    """
    import papermill
    from nbclient.exceptions import CellTimeoutError, DeadKernelError
    from papermill.exceptions import PapermillExecutionError

    notebook, output = Path(notebook).resolve(), Path(output).resolve()  # papermill writes from ``cwd``
    output.parent.mkdir(parents=True, exist_ok=True)
    error = None
    start = time.perf_counter()
    with environment(env or {}):
        try:
            papermill.execute_notebook(
                str(notebook), str(output), parameters=dict(parameters or {}), kernel_name="python3",
                cwd=str(cwd or notebook.parent), progress_bar=False, allow_errors=keep_going,
                execution_timeout=timeout,
            )
        except PapermillExecutionError as err:
            # With keep_going papermill reports the *last* failing cell; the first one explains more.
            error = first_error(output, notebook) or f"{err.ename}: {err.evalue}"
        except (CellTimeoutError, DeadKernelError) as err:  # a runaway or crashed kernel
            error = f"{type(err).__name__}: {err}"
    return Execution(notebook, output, time.perf_counter() - start, error)


@dataclass(frozen=True)
class CellError:
    """An error output of an executed notebook, placed in the notebook as submitted.

    Attributes:
        cell: the cell's 0-based index in the submitted notebook, or ``None``
            for a cell that papermill added (its injected parameters).
        ename: the exception's type, e.g. ``"NotImplementedError"``.
        evalue: the exception's message.
        exercise: the exercise the cell belongs to (see :func:`exercise_of`), or ``None``.
    """

    cell: int | None
    ename: str
    evalue: str
    exercise: str | None = None

    def __str__(self) -> str:
        where = cell_label(self.cell) if self.cell is not None else "the parameters papermill injected"
        exercise = f" (exercise {self.exercise})" if self.exercise else ""
        return f"{where}{exercise}: {self.ename}: {self.evalue}"


def _tags(cell: nbformat.NotebookNode) -> set[str]:
    return set(cell.get("metadata", {}).get("tags", []))


def submitted_cells(executed: nbformat.NotebookNode, submitted: nbformat.NotebookNode) -> dict[int, int]:
    """Map each cell index of papermill's executed copy to the same cell's index in the submitted notebook.

    Papermill inserts its own cells (the injected parameters, and on an error
    a message at the top and an anchor before the failing cell) and removes
    such cells left in its input; every other cell keeps its order. So the
    cells that are not papermill's pair up in order. Papermill's cells are
    not in the map.
    """
    def own(nb: nbformat.NotebookNode) -> list[int]:
        return [i for i, cell in enumerate(nb.cells) if not _tags(cell) & PAPERMILL_TAGS]
    executed_own, submitted_own = own(executed), own(submitted)
    if len(executed_own) != len(submitted_own):  # not the executed copy of this notebook
        return {}
    return dict(zip(executed_own, submitted_own))


def exercise_of(nb: nbformat.NotebookNode, index: int, evalue: str = "") -> str | None:
    """The exercise (named as in its ``check_<name>`` call) that cell ``index`` belongs to, or ``None``.

    A stub's message (``"Exercise: fill in <function>"``) in ``evalue`` names
    the function that raised; otherwise the cell's own check call, else a
    function the cell defines, decides. A function belongs to the exercise
    whose name it has or whose check call mentions it
    (``check_clipped_policy_loss(clipped_loss)``).
    """
    source = nb.cells[index].source if nb.cells[index].cell_type == "code" else ""
    stub = _STUB_MESSAGE.search(evalue)
    called = _CHECK_CALL.findall(source)
    functions = [stub.group(1)] if stub else []
    if called and not stub:
        return called[0]
    checks = {name: cell.source for cell in nb.cells if cell.cell_type == "code"
              for name in _CHECK_CALL.findall(cell.source)}
    for function in functions + _TOP_DEF.findall(source):
        for name, check_source in checks.items():
            if function == name or re.search(rf"\b{re.escape(function)}\b", check_source):
                return name
    return called[0] if called else None


def cell_errors(executed: str | Path, submitted: str | Path | None = None) -> list[CellError]:
    """Every error output of an executed notebook, in order, placed in ``submitted`` (default: the same file).

    With ``submitted`` (the notebook papermill ran), cells are numbered as the
    author sees them; without it, or if ``executed`` is not its copy, as they
    are in ``executed``.
    """
    ran = nbformat.read(executed, as_version=4)
    original = nbformat.read(submitted, as_version=4) if submitted is not None else ran
    places = submitted_cells(ran, original)
    if not places:  # not the copy of ``submitted``: number the executed copy's own cells
        original, places = ran, {i: i for i in range(len(ran.cells))}
    errors = []
    for index, cell in enumerate(ran.cells):
        for output in cell.get("outputs", []):
            if output.output_type == "error":
                place = places.get(index)
                exercise = exercise_of(original, place, output.evalue) if place is not None else None
                errors.append(CellError(place, output.ename, output.evalue, exercise))
    return errors


def first_error(executed: str | Path, submitted: str | Path | None = None) -> str | None:
    """``"cell <n> (exercise <name>): <error type>: <message>"`` for the first failing cell, or ``None``.

    ``n`` counts the cells of ``submitted`` (the notebook that was run) from 1;
    see :func:`cell_errors`.
    """
    errors = cell_errors(executed, submitted)
    return str(errors[0]) if errors else None


# ---------------------------------------------------------------------------
# Grading
# ---------------------------------------------------------------------------


@dataclass
class Grade:
    """The result of one exercise in one notebook."""

    notebook: str
    exercise: str
    status: str  # "pass", "fail" (a check failed, or the stub was not filled in) or "not run"
    message: str = ""


@dataclass
class GradeReport:
    """All grades of one notebook, plus the notebook's first error, if any."""

    notebook: str
    grades: list[Grade] = field(default_factory=list)
    error: str | None = None


def expected_exercises(nb: nbformat.NotebookNode) -> list[str]:
    """Exercises a notebook checks, from its ``check_<exercise>(...)`` calls, in order."""
    found: list[str] = []
    for cell in nb.cells:
        if cell.cell_type == "code":
            for name in _CHECK_CALL.findall(cell.source):
                if name not in found:
                    found.append(name)
    return found


def grade_notebook(
    notebook: str | Path, profile: str = "tiny", timeout: int | None = 600, executed_dir: str | Path | None = None
) -> GradeReport:
    """Execute one filled-in student notebook and grade each of its exercises.

    An exercise passes if all of its check calls passed, and fails if one
    failed or if its stub raised ``NotImplementedError`` before the check
    could run ("not implemented"). It is "not run" if the notebook never
    reached its check for another reason; the message then gives the error of
    its check's cell, if any. ``timeout`` is per cell, in seconds;
    ``executed_dir`` keeps the executed copy for review.
    """
    notebook = Path(notebook)
    expected = expected_exercises(nbformat.read(notebook, as_version=4))
    with tempfile.TemporaryDirectory(prefix="rlhf-grade-") as tmp:
        log = Path(tmp) / "grades.jsonl"
        output = Path(executed_dir or tmp) / f"{notebook.stem}.executed.ipynb"  # never the submission itself
        env = {GRADES_ENV: str(log), "RLHF_COURSE_PROFILE": profile, "RLHF_COURSE_RESULTS_DIR": tmp}
        run = execute_notebook(notebook, output, {"PROFILE": profile}, env=env, keep_going=True, timeout=timeout)
        entries = [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines()] if log.exists() else []
        errors = cell_errors(output, notebook) if output.exists() else []

    report = GradeReport(str(notebook), error=run.error)
    for name in dict.fromkeys(expected + [entry["exercise"] for entry in entries]):
        report.grades.append(_grade(str(notebook), name, [e for e in entries if e["exercise"] == name], errors))
    return report


def _grade(notebook: str, exercise: str, entries: list[dict], errors: list[CellError]) -> Grade:
    """One exercise's grade from its check log ``entries`` and the notebook's cell ``errors``."""
    failed = [entry for entry in entries if not entry["passed"]]
    if failed:
        return Grade(notebook, exercise, "fail", failed[0]["message"])
    if entries:
        return Grade(notebook, exercise, "pass", entries[-1]["message"])
    mine = [error for error in errors if error.exercise == exercise]
    stub = next((error for error in mine if error.ename == "NotImplementedError"), None)
    if stub:
        return Grade(notebook, exercise, "fail", f"not implemented: {stub}. Fill in the exercise, then run the "
                                                 "notebook again.")
    return Grade(notebook, exercise, "not run", f"its check did not run: {mine[0]}" if mine else "")


def grades_table(reports: Sequence[GradeReport]) -> str:
    """A plain-text table: one row per notebook and exercise, then a score per notebook."""
    rows = [("notebook", "exercise", "status", "message")]
    for report in reports:
        for grade in report.grades:
            rows.append((grade.notebook, grade.exercise, grade.status, _short(grade.message)))
        if not report.grades:
            rows.append((report.notebook, "-", "no checks", _short(report.error or "")))
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)) + "  " + row[3] for row in rows]
    lines.insert(1, "-" * len(lines[0]))
    for report in reports:
        passed = sum(grade.status == "pass" for grade in report.grades)
        lines.append(f"{report.notebook}: {passed}/{len(report.grades)} exercises passed"
                     + (f" (first error: {_short(report.error)})" if report.error else ""))
    return "\n".join(lines)


def write_grades_csv(reports: Sequence[GradeReport], path: str | Path) -> Path:
    """Write one CSV row per notebook and exercise: notebook, exercise, status, message."""
    import csv

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as file:
        writer = csv.writer(file)
        writer.writerow(["notebook", "exercise", "status", "message"])
        for report in reports:
            for grade in report.grades:
                writer.writerow([grade.notebook, grade.exercise, grade.status, grade.message])
    return path


def _short(text: str, width: int = 90) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"
