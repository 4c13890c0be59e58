"""Student versions strip solutions safely; grading runs them and tabulates the checks."""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import nbformat
import pytest
from hypothesis import given
from hypothesis import strategies as st
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from rlhf_course import cli
from rlhf_course.student import (SolutionMarkerError, execute_notebook, expected_exercises,
                                 grade_notebook, grades_table, make_student_notebook,
                                 strip_solutions, write_student_versions)

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "bradley_terry_lab.ipynb"
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
    with pytest.raises(SolutionMarkerError, match=r"^labs/x.ipynb, cell 1: .*line 2 is never closed"):
        make_student_notebook(nb, name="labs/x.ipynb")


def test_expected_exercises_from_check_calls():
    nb = nbformat.read(FIXTURE, as_version=4)
    assert expected_exercises(nb) == ["bradley_terry_loss"]


def _copy_fixture(folder: Path, name: str = "bradley_terry_lab.ipynb") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_bytes(FIXTURE.read_bytes())
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
    with pytest.raises(SolutionMarkerError, match="bad.ipynb, cell 0"):
        write_student_versions([good, bad], tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_cli_student(tmp_path, capsys):
    lab = _copy_fixture(tmp_path / "labs")
    assert cli.main(["student", str(lab), "--out", str(tmp_path / "student")]) == 0
    assert "wrote" in capsys.readouterr().out
    assert cli.main(["student", str(lab), "--out", str(lab.parent)]) == 1
    err = capsys.readouterr().err
    assert "would overwrite the lab" in err and "Nothing was written" in err


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
    assert Path(package).resolve().parent == Path(cli.__file__).resolve().parent


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
    assert report.error.endswith("ValueError: early")
    assert "0/1 exercises passed" in grades_table([report])


@pytest.mark.slow
def test_a_runaway_cell_times_out(tmp_path, kernel_env):
    nb = new_notebook(cells=[new_code_cell("import time\ntime.sleep(60)")])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, tmp_path / "slow.ipynb")
    run = execute_notebook(tmp_path / "slow.ipynb", tmp_path / "out.ipynb", env=kernel_env, timeout=2)
    assert not run.ok and "Timeout" in run.error and run.seconds < 30
