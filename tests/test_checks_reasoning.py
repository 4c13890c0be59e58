"""The Reasoning checks pass right answers and name the typical mistakes."""

from __future__ import annotations

import torch
from exercise_checks import fails_with, no_grade_log  # noqa: F401  (no_grade_log is an autouse fixture)

from rlhf_course.reasoning import gated, zero_advantage_groups
from rlhf_course.reasoning.checks import check_gated_reward, check_zero_advantage_groups


def stub(*args):
    raise NotImplementedError("Exercise: fill in this function")


def test_gated_passes_the_package_answer_and_equivalents(capsys):
    check_gated_reward(gated)
    check_gated_reward(lambda v: 1.0 if v.correct and v.well_formed else 0.0)
    check_gated_reward(lambda v: torch.tensor(v.correct * v.well_formed))
    assert capsys.readouterr().out.startswith("✓ Gated reward:")


def test_gated_names_the_usual_mistakes():
    fails_with(check_gated_reward, lambda v: v.correct, "wrong form earned", "multiply by well_formed")
    fails_with(check_gated_reward, lambda v: v.well_formed, "gated on the format but not on correctness")
    fails_with(check_gated_reward, lambda v: v.correct + 0.5 * v.well_formed, "additive")
    fails_with(check_gated_reward, lambda v: float(v.correct or v.well_formed), "OR")
    fails_with(check_gated_reward, lambda v: None, "returned None")
    fails_with(check_gated_reward, stub, "not implemented yet")


def test_zero_advantage_passes_the_package_answer_and_equivalents(capsys):
    check_zero_advantage_groups(zero_advantage_groups)
    check_zero_advantage_groups(lambda r: r.max(dim=1).values == r.min(dim=1).values)
    check_zero_advantage_groups(lambda r: r.std(dim=1) == 0)
    assert capsys.readouterr().out.startswith("✓ Zero-advantage groups:")


def test_zero_advantage_names_the_usual_mistakes():
    fails_with(check_zero_advantage_groups, lambda r: (r == 0).all(dim=1), "tie at any value")
    fails_with(check_zero_advantage_groups, lambda r: (r == r[:1]).all(dim=0), "dim=0")
    fails_with(check_zero_advantage_groups, lambda r: float((r == r[:, :1]).all(dim=1).float().mean()), "share")
    fails_with(check_zero_advantage_groups, lambda r: (r == r[:, :1]).any(dim=1), "differ")
    fails_with(check_zero_advantage_groups, stub, "not implemented yet")
