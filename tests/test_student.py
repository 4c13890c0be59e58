"""Student versions strip solutions safely; grading runs them and tabulates the checks."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import nbformat
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from rlhf_course.tools import cli, student
from rlhf_course.tools.student import (SolutionMarkerError, cell_errors, execute_notebook, expected_exercises,
                                       grade_notebook, grades_table, make_student_notebook, strip_solutions,
                                       write_student_versions)

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "bradley_terry_lab.ipynb"
GRADING_FIXTURE = Path(__file__).resolve().parent / "fixtures" / "grading_lab.ipynb"
ANSWER = "    return -F.logsigmoid(chosen_rewards - rejected_rewards).mean()"


# --- stripping one cell ----------------------------------------------------


def test_block_becomes_indented_stub_named_after_function():
    source = "def f(x):\n    '''Doc.'''\n    # BEGIN SOLUTION\n    y = x + 1\n    return y\n    # END SOLUTION\n"
    assert strip_solutions(source) == (
        "def f(x):\n    '''Doc.'''\n    raise NotImplementedError(\"Exercise: fill in f\")\n"
    )


def test_several_blocks_and_top_level_block():
    source = "a = 1\n# BEGIN SOLUTION\nb = 2\n# END SOLUTION\nclass C:\n    def m(self):\n" \
             "        #  BEGIN SOLUTION  \n        return 3\n        # END SOLUTION\nprint(a)"
    assert strip_solutions(source).splitlines() == [
        "a = 1",
        'raise NotImplementedError("Exercise: fill in this part")',
        "class C:",
        "    def m(self):",
        '        raise NotImplementedError("Exercise: fill in m")',
        "print(a)",
    ]


@pytest.mark.parametrize("source, fragment", [
    ("# BEGIN SOLUTION\nx = 1\n", "line 1 is never closed"),
    ("x = 1\n# END SOLUTION\n", "line 2 has no '# BEGIN SOLUTION'"),
    ("# BEGIN SOLUTION\n# BEGIN SOLUTION\n# END SOLUTION\n", "still open"),
])
def test_unbalanced_markers_say_where_and_what_to_do(source, fragment):
    with pytest.raises(SolutionMarkerError) as info:
        strip_solutions(source, where="lab.ipynb, cell 3")
    assert str(info.value).startswith("lab.ipynb, cell 3: ") and fragment in str(info.value)
    assert "Add" in str(info.value) or "delete" in str(info.value)


marker_free_lines = st.lists(
    st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\n"), max_size=30)
    .filter(lambda line: "SOLUTION" not in line),
    max_size=10,
)


@given(marker_free_lines)
def test_cells_without_markers_are_unchanged(lines):
    source = "\n".join(lines)
    assert strip_solutions(source) == source


# --- whole notebooks ---------------------------------------------------------


def test_student_notebook_from_fixture():
    nb = nbformat.read(FIXTURE, as_version=4)
    nb.cells[6].outputs = [nbformat.v4.new_output("stream", text="✓ old output\n")]
    nb.cells[6].execution_count = 7
    student = make_student_notebook(nb, name="fixture")
    sources = [cell.source for cell in student.cells]
    assert len(student.cells) == len(nb.cells) - 1, "the solution-tagged cell is dropped"
    assert not any("Solution notes" in s for s in sources)
    assert not any("SOLUTION" in s or "logsigmoid(margin)" in s for s in sources)
    assert 'raise NotImplementedError("Exercise: fill in bradley_terry_loss")' in sources[5]
    assert "checks.check_bradley_terry_loss(bradley_terry_loss)" in sources, "checks are kept"
    assert all(cell.get("outputs", []) == [] and cell.get("execution_count") is None
               for cell in student.cells if cell.cell_type == "code")
    assert student.cells[2].metadata["tags"] == ["parameters"]
    assert nb.cells[6].execution_count == 7, "the instructor's notebook is not modified"
    nbformat.validate(student)


def test_notebook_errors_name_file_and_cell():
    nb = new_notebook(cells=[new_markdown_cell("# T"), new_code_cell("x = 1\n# BEGIN SOLUTION\n")])
    with pytest.raises(SolutionMarkerError, match=r"^labs/x.ipynb, cell 2: .*line 2 is never closed"):
        make_student_notebook(nb, name="labs/x.ipynb")


def test_expected_exercises_from_check_calls():
    nb = nbformat.read(FIXTURE, as_version=4)
    assert expected_exercises(nb) == ["bradley_terry_loss"]


def _copy_fixture(folder: Path, name: str = "bradley_terry_lab.ipynb") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_bytes((FIXTURE.parent / name).read_bytes())
    return path


def test_write_student_versions(tmp_path):
    lab = _copy_fixture(tmp_path / "labs")
    [written] = write_student_versions([lab], tmp_path / "student")
    assert written == tmp_path / "student" / lab.name
    assert "NotImplementedError" in written.read_text()
    assert lab.read_bytes() == FIXTURE.read_bytes()
    write_student_versions([lab], tmp_path / "student")  # regenerating over a student version is fine


def test_refuses_to_overwrite_the_source(tmp_path):
    lab = _copy_fixture(tmp_path / "labs")
    with pytest.raises(ValueError, match="would overwrite the lab"):
        write_student_versions([lab], tmp_path / "labs" / ".")
    assert lab.read_bytes() == FIXTURE.read_bytes()


def test_refuses_to_overwrite_an_instructor_version(tmp_path):
    lab = _copy_fixture(tmp_path / "labs")
    other = _copy_fixture(tmp_path / "elsewhere")
    with pytest.raises(FileExistsError, match="contains solutions"):
        write_student_versions([lab], other.parent)
    assert other.read_bytes() == FIXTURE.read_bytes()


def test_missing_lab_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="'nope.ipynb' does not exist"):
        write_student_versions(["nope.ipynb"], tmp_path / "out")


def test_one_bad_lab_means_nothing_is_written(tmp_path):
    good = _copy_fixture(tmp_path / "labs")
    bad_nb = new_notebook(cells=[new_code_cell("# END SOLUTION")])
    bad = tmp_path / "labs" / "bad.ipynb"
    nbformat.write(bad_nb, bad)
    with pytest.raises(SolutionMarkerError, match="bad.ipynb, cell 1"):
        write_student_versions([good, bad], tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_cli_student(tmp_path, capsys):
    lab = _copy_fixture(tmp_path / "labs")
    assert cli.main(["student", str(lab), "--out", str(tmp_path / "student")]) == 0
    assert "wrote" in capsys.readouterr().out
    assert cli.main(["student", str(lab), "--out", str(lab.parent)]) == 1
    err = capsys.readouterr().err
    assert "would overwrite the lab" in err and "Nothing was written" in err


# --- placing errors in the submitted notebook (papermill's own code, no kernel) ---------


def _papermill_copy(submitted: Path, executed: Path, errors: dict[int, tuple[str, str]]) -> None:
    """What papermill makes of ``submitted``, without a kernel: its parameter cell and error markers.

    ``errors`` maps a cell index of the submitted notebook to the ``(ename, evalue)``
    that cell raised. The parameters are injected and the markers inserted by
    papermill's own functions, so the test follows papermill if it changes.
    """
    from papermill.exceptions import PapermillExecutionError
    from papermill.execute import raise_for_execution_errors, remove_error_markers
    from papermill.iorw import load_notebook_node
    from papermill.parameterize import parameterize_notebook

    nb = load_notebook_node(str(submitted))
    for index, (ename, evalue) in errors.items():
        nb.cells[index].outputs = [nbformat.v4.new_output("error", ename=ename, evalue=evalue, traceback=[])]
    nb = remove_error_markers(parameterize_notebook(nb, {"PROFILE": "tiny"}))
    try:
        raise_for_execution_errors(nb, str(executed))
    except PapermillExecutionError:
        return
    nbformat.write(nb, executed)


def _notebook(kinds: list[str], parameters_at: int | None, leftovers: bool) -> nbformat.NotebookNode:
    """Cells of the given kinds ("code"/"markdown"), a parameters cell, and maybe an earlier run's papermill cells."""
    cells = [new_code_cell(f"x = {i}") if kind == "code" else new_markdown_cell(f"# {i}")
             for i, kind in enumerate(kinds)]
    if parameters_at is not None:
        cells.insert(min(parameters_at, len(cells)), new_code_cell('PROFILE = "auto"', metadata={"tags": ["parameters"]}))
    if leftovers:  # a submission that was itself run by papermill
        cells.insert(0, new_markdown_cell("old error", metadata={"tags": ["papermill-error-cell-tag"]}))
        cells.append(new_code_cell('PROFILE = "tiny"', metadata={"tags": ["injected-parameters"]}))
    nb = new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    return nb


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])  # files, a busy CPU
@given(kinds=st.lists(st.sampled_from(["code", "markdown"]), min_size=1, max_size=8),
       parameters_at=st.none() | st.integers(0, 8), leftovers=st.booleans(), data=st.data())
def test_fuzz_errors_are_placed_in_the_submitted_notebook(tmp_path_factory, kinds, parameters_at, leftovers, data):
    folder = tmp_path_factory.mktemp("placed")
    nb = _notebook(kinds, parameters_at, leftovers)
    code = [i for i, cell in enumerate(nb.cells) if cell.cell_type == "code" and not cell.metadata.get("tags")]
    failing = sorted(data.draw(st.sets(st.sampled_from(code), max_size=3))) if code else []
    nbformat.write(nb, folder / "submitted.ipynb")
    _papermill_copy(folder / "submitted.ipynb", folder / "executed.ipynb",
                    {i: ("ValueError", f"in {i}") for i in failing})
    errors = cell_errors(folder / "executed.ipynb", folder / "submitted.ipynb")
    assert [(e.cell, e.evalue) for e in errors] == [(i, f"in {i}") for i in failing]
    assert [str(e) for e in errors] == [f"cell {i + 1}: ValueError: in {i}" for i in failing]


def _student_grading_lab(folder: Path) -> Path:
    [path] = write_student_versions([GRADING_FIXTURE], folder)
    return path


def test_the_failing_cell_is_named_as_submitted_with_its_exercise(tmp_path):
    submitted = _student_grading_lab(tmp_path / "student")
    executed = tmp_path / "executed.ipynb"
    _papermill_copy(submitted, executed, {5: ("ExerciseError", "bradley_terry_loss is not implemented yet"),
                                          7: ("NotImplementedError", "Exercise: fill in gold_win_rate")})
    ran = nbformat.read(executed, as_version=4).cells
    assert [i for i, cell in enumerate(ran) if cell.get("outputs")] == [7, 10], "papermill moved the cells down"
    assert student.first_error(executed, submitted) == (
        "cell 6 (exercise bradley_terry_loss): ExerciseError: bradley_terry_loss is not implemented yet")
    assert str(cell_errors(executed, submitted)[1]) == (
        "cell 8 (exercise win_rate): NotImplementedError: Exercise: fill in gold_win_rate")


@pytest.mark.parametrize("source, evalue, exercise", [
    ("checks.check_gae(gae)", "wrong", "gae"),
    ("def clipped_loss(r, a):\n    raise NotImplementedError", "", "clipped_policy_loss"),
    ("loss = my_select_best(x)", "Exercise: fill in my_select_best", "select_best"),
    ("print(1)", "", None),
])
def test_a_cell_belongs_to_the_exercise_whose_check_uses_its_function(source, evalue, exercise):
    nb = new_notebook(cells=[new_code_cell(source), new_code_cell("checks.check_gae(gae)"),
                             new_code_cell("checks.check_clipped_policy_loss(clipped_loss)"),
                             new_markdown_cell("text"), new_code_cell("checks.check_select_best(my_select_best)")])
    assert student.exercise_of(nb, 0, evalue) == exercise


def test_a_stub_that_raises_before_its_check_fails_as_not_implemented(tmp_path, monkeypatch):
    """Grading without a kernel: the executed copy is what papermill would write for the student version."""
    submitted = _student_grading_lab(tmp_path / "student")

    def execute(notebook, output, parameters, env, keep_going, timeout):
        Path(env["RLHF_COURSE_GRADES"]).write_text(json.dumps(
            {"exercise": "bradley_terry_loss", "passed": False, "message": "not implemented yet"}) + "\n")
        _papermill_copy(notebook, output, {5: ("ExerciseError", "not implemented yet"),
                                           7: ("NotImplementedError", "Exercise: fill in gold_win_rate")})
        return student.Execution(notebook, output, 0.0, student.first_error(output, notebook))

    monkeypatch.setattr(student, "execute_notebook", execute)
    report = grade_notebook(submitted)
    assert [(g.exercise, g.status) for g in report.grades] == [("bradley_terry_loss", "fail"), ("win_rate", "fail")]
    assert report.grades[1].message == ("not implemented: cell 8 (exercise win_rate): NotImplementedError: Exercise: "
                                        "fill in gold_win_rate. Fill in the exercise, then run the notebook again.")
    assert report.error == "cell 6 (exercise bradley_terry_loss): ExerciseError: not implemented yet"


# --- executing and grading (slow: each runs a kernel) ----------------------


@pytest.mark.slow
def test_kernel_python3_is_this_python(tmp_path, kernel_env):
    code = "import sys, rlhf_course\nprint(sys.executable)\nprint(rlhf_course.__file__)"
    nb = new_notebook(cells=[new_code_cell(code)])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, tmp_path / "which.ipynb")
    run = execute_notebook(tmp_path / "which.ipynb", tmp_path / "out.ipynb", env=kernel_env)
    assert run.ok, run.error
    executable, package = nbformat.read(run.output, as_version=4).cells[0].outputs[0].text.split()
    assert Path(executable).resolve() == Path(sys.executable).resolve()
    assert Path(package).resolve().parent == Path(cli.__file__).resolve().parents[1]  # the package this test imports


@pytest.mark.slow
def test_instructor_version_passes_its_check(tmp_path, kernel_env):
    env = {**kernel_env, "RLHF_COURSE_RESULTS_DIR": str(tmp_path)}
    run = execute_notebook(FIXTURE, tmp_path / "executed.ipynb", {"PROFILE": "tiny"}, env=env, cwd=tmp_path)
    assert run.ok, run.error
    check_cell = [c for c in nbformat.read(run.output, as_version=4).cells if "check_bradley" in c.source][0]
    assert "✓ Bradley–Terry loss" in check_cell.outputs[0].text


@pytest.mark.slow
def test_student_fails_until_filled_in_then_grades_pass(tmp_path, kernel_env, monkeypatch, capsys):
    """Student version: 'not implemented yet'; with a learner's answer: pass. Graded via the CLI."""
    for key, value in kernel_env.items():
        monkeypatch.setenv(key, value)
    [student] = write_student_versions([FIXTURE], tmp_path / "student")
    filled = tmp_path / "filled" / student.name
    filled.parent.mkdir()
    nb = nbformat.read(student, as_version=4)
    stub = '    raise NotImplementedError("Exercise: fill in bradley_terry_loss")'
    for cell in nb.cells:
        cell.source = cell.source.replace(stub, ANSWER)
    nbformat.write(nb, filled)

    csv_path = tmp_path / "grades.csv"
    executed = tmp_path / "executed"
    assert cli.main(["grade", str(student), str(filled), "--out", str(csv_path), "--executed", str(executed)]) == 0
    assert (executed / "bradley_terry_lab.executed.ipynb").is_file()
    rows = list(csv.DictReader(csv_path.open()))
    assert [(Path(r["notebook"]).parent.name, r["exercise"], r["status"]) for r in rows] == [
        ("student", "bradley_terry_loss", "fail"),
        ("filled", "bradley_terry_loss", "pass"),
    ]
    assert "not implemented yet: fill in the cell above" in rows[0]["message"]
    table = capsys.readouterr().out
    assert "1/1 exercises passed" in table and "0/1 exercises passed" in table


@pytest.mark.slow
def test_grading_reports_unreached_checks_and_the_first_error(tmp_path, kernel_env, monkeypatch):
    for key, value in kernel_env.items():
        monkeypatch.setenv(key, value)
    nb = new_notebook(cells=[
        new_code_cell('PROFILE = "auto"', metadata={"tags": ["parameters"]}),
        new_code_cell("raise ValueError('early')"),
        new_code_cell("checks.check_bradley_terry_loss(None)"),  # NameError: never reaches the check
        new_code_cell("raise KeyError('later')"),
    ])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    path = tmp_path / "broken.ipynb"
    nbformat.write(nb, path)
    report = grade_notebook(path)
    assert [(g.exercise, g.status) for g in report.grades] == [("bradley_terry_loss", "not run")]
    assert report.grades[0].message == ("its check did not run: cell 3 (exercise bradley_terry_loss): NameError: "
                                        "name 'checks' is not defined")
    assert report.error == "cell 2: ValueError: early"
    assert "0/1 exercises passed" in grades_table([report])


@pytest.mark.slow
def test_grading_names_the_submitted_cell_and_fails_stubs_that_raise_before_their_check(tmp_path, kernel_env,
                                                                                        monkeypatch):
    for key, value in kernel_env.items():
        monkeypatch.setenv(key, value)
    submitted = _student_grading_lab(tmp_path / "student")
    report = grade_notebook(submitted)
    assert [(g.exercise, g.status) for g in report.grades] == [("bradley_terry_loss", "fail"), ("win_rate", "fail")]
    assert report.error.startswith("cell 6 (exercise bradley_terry_loss): ExerciseError: ")
    assert report.grades[1].message.startswith("not implemented: cell 8 (exercise win_rate): NotImplementedError: "
                                               "Exercise: fill in gold_win_rate.")
    report = grade_notebook(_copy_fixture(tmp_path / "instructor", GRADING_FIXTURE.name))  # solutions pass
    assert [(g.exercise, g.status) for g in report.grades] == [("bradley_terry_loss", "pass"), ("win_rate", "pass")]
    assert report.error is None


@pytest.mark.slow
def test_a_runaway_cell_times_out(tmp_path, kernel_env):
    nb = new_notebook(cells=[new_code_cell("import time\ntime.sleep(60)")])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, tmp_path / "slow.ipynb")
    run = execute_notebook(tmp_path / "slow.ipynb", tmp_path / "out.ipynb", env=kernel_env, timeout=2)
    assert not run.ok and "Timeout" in run.error and run.seconds < 30
