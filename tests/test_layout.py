"""The package is laid out like the book: a subpackage per chapter, a core below, no stage imports another's trainer."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "rlhf_course"
CHAPTERS = ("definitions", "what_are_preferences", "optimization_rl", "preference_data", "reward_modeling", "regularization",
            "instruction_tuning", "rejection_sampling", "policy_gradients", "ppo", "direct_alignment", "evaluation",
            "style", "reasoning", "synthetic_data", "over_optimization", "constitutional_ai")
# (chapter, other chapter's trainer) allowed to be imported. RLVR is, by definition, the Policy Gradients chapter's
# RLOO (and TRL's GRPO) run against a verifier's reward, so the Reasoning stage calls those trainers.
KNOWN_TRAINER_IMPORTS: set[tuple[str, str]] = {("reasoning", "rlhf_course.policy_gradients.train")}
# Trainers take their prompts and reward as arguments and log gold only through a hook their caller passes,
# so no stage draws toy-world prompts or scores the gold reward itself. These modules are not trainers: they
# make the toy-world data and demonstrations the labs and the pipeline pass in, or measure a policy against it.
TOY_WORLD_EDGES = {
    "core/evaluation.py": "measures a policy on held-out toy-world prompts by gold reward",
    "instruction_tuning/data.py": "the toy-world demonstrations SFT is given",
    "preference_data/toy.py": "the toy-world preference rows the reward model and DPO are given",
    "preference_data/annotation.py": "the annotation exercise's toy-world pairs and their hidden gold",
    "what_are_preferences/preference_models.py": "toy-world responses ranked by gold, for the chapter's figures",
    "optimization_rl/objective.py": "the exact response space of one toy-world prompt, scored by gold",
    "reward_modeling/outcome.py": "toy-world prompts with one exact answer, for the outcome-reward lab",
    "core/judges.py": "the gold judge, the reference every other judge is measured against",
    "constitutional_ai/checks.py": "toy-world prompts for the exercise checks' hand-made cases",
    "constitutional_ai/constitution.py": "the toy-world constitution: seed labels per principle, read from gold's attributes",
    "constitutional_ai/feedback.py": "measures AI labels against gold's verdicts",
    "over_optimization/proxies.py": "proxies built from gold by construction (gold plus noise, gold plus a feature)",
}
TOY_WORLD_CALLS = {"make_prompts", "gold_reward"}


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


def toy_world_calls(path: Path) -> set[str]:
    """Names in ``TOY_WORLD_CALLS`` that a file calls, as ``name(...)`` or ``module.name(...)``."""
    called = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Call):
            name = node.func.id if isinstance(node.func, ast.Name) else getattr(node.func, "attr", None)
            if name in TOY_WORLD_CALLS:
                called.add(name)
    return called


def test_toy_world_calls_are_found_however_they_are_written(tmp_path):
    source = tmp_path / "stage.py"
    source.write_text("from x import make_prompts\nimport y\nprompts = make_prompts('train', 4)\n"
                      "score = y.toyworld.gold_reward(p, r)\nmake_prompts_later = 1\n", encoding="utf-8")
    assert toy_world_calls(source) == {"make_prompts", "gold_reward"}
    source.write_text("def f(make_prompts):\n    return gold_rewards(p, r)\n", encoding="utf-8")
    assert toy_world_calls(source) == set()


@pytest.mark.parametrize("folder", ("core", *CHAPTERS))
def test_no_trainer_draws_toy_world_prompts_or_scores_gold(folder):
    for path in sorted((PACKAGE / folder).glob("*.py")):
        where = f"{folder}/{path.name}"
        if where in TOY_WORLD_EDGES:
            assert path.name not in ("train.py", "online.py", "rollout.py"), f"{where} is a trainer"
            continue
        assert not toy_world_calls(path), (
            f"{where} calls {sorted(toy_world_calls(path))}: a trainer takes its prompts as an argument "
            "(toyworld.training gives the toy world's) and logs gold through its gold_fn hook")


def test_every_toy_world_edge_still_exists():
    assert all((PACKAGE / where).is_file() for where in TOY_WORLD_EDGES), "drop moved modules from TOY_WORLD_EDGES"
