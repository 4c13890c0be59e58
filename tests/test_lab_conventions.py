"""Every lab follows the anatomy in book/contributing.md (checked without running it)."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest

from rlhf_course.tools.student import has_solutions, make_student_notebook

LABS = sorted((Path(__file__).resolve().parents[1] / "labs").glob("*.ipynb"))


@pytest.fixture(params=LABS, ids=[lab.stem for lab in LABS])
def lab(request) -> tuple[str, nbformat.NotebookNode]:
    return request.param.stem, nbformat.read(request.param, as_version=4)


def _code(nb: nbformat.NotebookNode) -> list[str]:
    return [c.source for c in nb.cells if c.cell_type == "code"]


def test_lab_is_stored_without_outputs(lab):
    name, nb = lab
    dirty = [i for i, c in enumerate(nb.cells) if c.cell_type == "code" and (c.outputs or c.execution_count)]
    assert not dirty, f"{name}: cells {dirty} have outputs; clear them (jupyter nbconvert --clear-output --inplace)"


def test_lab_has_title_setup_parameters_checks_and_results(lab):
    name, nb = lab
    assert nb.cells[0].cell_type == "markdown" and nb.cells[0].source.startswith("# "), f"{name}: no title cell"
    code = _code(nb)
    assert "google.colab" in code[0] and "pip install" in code[0], f"{name}: first code cell must be the Colab set-up"
    params = [c for c in nb.cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(params) == 1, f"{name}: exactly one cell must be tagged 'parameters'"
    assert "PROFILE" in params[0].source and "SEED" in params[0].source
    assert any("checks.check_" in c for c in code), f"{name}: no exercise check"
    assert any(f'record_outcome("{name}"' in c for c in code), f"{name}: no results cell recording its outcome"


def test_student_version_has_stubs_and_keeps_checks(lab):
    name, nb = lab
    assert has_solutions(nb), f"{name}: no exercise between solution markers"
    student = make_student_notebook(nb, name)
    text = "\n".join(_code(student))
    assert "BEGIN SOLUTION" not in text and "NotImplementedError" in text
    assert text.count("checks.check_") == "\n".join(_code(nb)).count("checks.check_")


# every training entry point a lab may call; each checkpoints into its output_dir at the profile's interval
TRAINING_CALLS = {"train", "train_sft", "train_reward_model", "train_outcome_reward_model", "train_dpo", "train_ipo",
                  "train_kto", "train_orpo", "train_simpo", "online_dpo", "train_policy_gradient", "train_trl_rloo",
                  "train_grpo", "train_ppo", "train_rlvr", "rejection_sampling_finetune", "self_training"}


def test_every_training_a_lab_runs_has_a_folder_named_by_its_settings(lab):
    """A lab re-run after a lost runtime resumes each of its own runs: each gets ``output_dir=lab_run_dir(...)``."""
    import ast

    name, nb = lab
    for index, source in enumerate(_code(nb)):
        lines = [line[:len(line) - len(line.lstrip())] + "pass" if line.lstrip().startswith(("!", "%")) else line
                 for line in source.splitlines()]  # shell and magic lines
        for node in ast.walk(ast.parse("\n".join(lines))):
            if not isinstance(node, ast.Call):
                continue
            called = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
            if called not in TRAINING_CALLS:
                continue
            folder = next((k.value for k in node.keywords if k.arg == "output_dir"), None)
            assert folder is not None, f"{name}, code cell {index}, line {node.lineno}: {called}(…) has no output_dir"
            text = ast.unparse(folder)
            assert "lab_run_dir(" in text or text in {"OUT", "top_dir"} or text.startswith("OUT /"), \
                f"{name}, code cell {index}, line {node.lineno}: {called}(output_dir={text}) is not a lab_run_dir"
