"""The package is laid out like the book: a subpackage per chapter, a core below, no stage imports another's trainer."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "rlhf_course"
CHAPTERS = ("what_are_preferences", "optimization_rl", "preference_data", "reward_modeling", "regularization",
            "instruction_tuning", "rejection_sampling", "policy_gradients", "ppo", "direct_alignment",
            "constitutional_ai")
# Rejection-sampling fine-tuning runs the instruction-tuning stage on the kept samples; it will take the
# fine-tuning function as an argument when the trainers take their data as arguments (issue 19, later step).
KNOWN_TRAINER_IMPORTS = {("rejection_sampling", "rlhf_course.instruction_tuning.train")}


def imported_modules(path: Path) -> set[str]:
    """Every ``rlhf_course`` module a file imports, at the top or inside a function."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("rlhf_course"):
            found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("rlhf_course"))
    return found


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_each_chapter_has_its_subpackage_with_its_checks_and_book_page(chapter):
    folder = PACKAGE / chapter
    assert (folder / "__init__.py").is_file()
    assert (PACKAGE.parent / "book" / f"{chapter}.md").is_file()
    page = (PACKAGE.parent / "book" / f"{chapter}.md").read_text(encoding="utf-8")
    assert f"`rlhf_course/{chapter}/`" in page, f"book/{chapter}.md should name its subpackage"
    if (PACKAGE.parent / "labs" / f"{chapter}.ipynb").exists():
        assert (folder / "checks.py").is_file()


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_a_chapter_imports_no_other_chapters_trainer(chapter):
    for path in sorted((PACKAGE / chapter).glob("*.py")):
        for module in imported_modules(path):
            parts = module.split(".")
            if len(parts) >= 3 and parts[1] in CHAPTERS and parts[1] != chapter and parts[2] == "train":
                assert (chapter, ".".join(parts[:3])) in KNOWN_TRAINER_IMPORTS, f"{path.name} imports {module}"


def test_the_core_and_teaching_import_no_chapter():
    for folder in ("core", "teaching"):
        for path in sorted((PACKAGE / folder).glob("*.py")):
            chapters = {m.split(".")[1] for m in imported_modules(path) if len(m.split(".")) > 1} & set(CHAPTERS)
            assert not chapters, f"{folder}/{path.name} imports {chapters}"


def test_only_the_distributed_helpers_read_the_rank():
    for path in sorted(PACKAGE.rglob("*.py")):
        if path != PACKAGE / "core" / "distributed.py":
            assert '"RANK"' not in path.read_text(encoding="utf-8"), f"{path} reads RANK; use core.distributed"


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_chapter_names_are_importable_from_the_chapter(chapter):
    module = importlib.import_module(f"rlhf_course.{chapter}")
    for name in getattr(module, "__all__", []):
        assert hasattr(module, name)


def test_no_module_is_left_at_an_old_path():
    old = {"checks", "dpo", "sft", "reward_model", "preference_models", "rl_objective", "data", "annotation",
           "profiles", "models", "sampling", "evaluation", "runs", "results", "plots", "history", "cli", "doctor",
           "benchmark", "footprint", "student", "policy_gradients", "ppo", "rejection_sampling", "regularization"}
    assert not {p.stem for p in PACKAGE.glob("*.py")} & old
