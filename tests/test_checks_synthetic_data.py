"""The Synthetic Data check passes right filters and names the typical mistakes."""

from __future__ import annotations

import torch
from exercise_checks import fails_with, no_grade_log  # noqa: F401  (no_grade_log is an autouse fixture)

from rlhf_course.synthetic_data import best_verified
from rlhf_course.synthetic_data.checks import check_filter


def stub(*args):
    raise NotImplementedError("Exercise: fill in this function")


def test_filter_passes_the_package_answer(capsys):
    check_filter(best_verified)
    assert capsys.readouterr().out.startswith("✓ Best-of-k behind a verifier:")


def test_filter_passes_a_loop_that_takes_the_last_of_tied_best():
    def loop(scores, passed):
        out = []
        for row, ok in zip(scores.tolist(), passed.tolist()):
            allowed = [j for j in range(len(row)) if ok[j]]
            out.append(max(reversed(allowed), key=lambda j: row[j]) if allowed else -1)
        return torch.tensor(out)

    check_filter(loop)


def test_filter_names_a_stub():
    fails_with(check_filter, stub, "not implemented")


def test_filter_names_ignoring_the_verifier():
    fails_with(check_filter, lambda s, p: s.argmax(dim=1), "whatever the verifier said")


def test_filter_names_verifying_after_the_argmax():
    def late(scores, passed):
        best = scores.argmax(dim=1)
        return torch.where(passed.gather(1, best[:, None]).squeeze(1), best, torch.full_like(best, -1))

    fails_with(check_filter, late, "best among the answers that passed")


def test_filter_names_zero_for_a_dropped_prompt():
    fails_with(check_filter, lambda s, p: s.masked_fill(~p, float("-inf")).argmax(dim=1), "-1", "not 0")


def test_filter_names_masking_with_zero():
    def zero(scores, passed):
        best = scores.masked_fill(~passed, 0.0).argmax(dim=1)
        return torch.where(passed.any(dim=1), best, torch.full_like(best, -1))

    fails_with(check_filter, zero, "-inf")


def test_filter_names_argmin_and_wrong_types():
    def lowest(scores, passed):
        best = scores.masked_fill(~passed, float("inf")).argmin(dim=1)
        return torch.where(passed.any(dim=1), best, torch.full_like(best, -1))

    fails_with(check_filter, lowest, "lowest")
    fails_with(check_filter, lambda s, p: s.max(dim=1), "tuple")
    fails_with(check_filter, lambda s, p: p, "dtype torch.bool")
    fails_with(check_filter, lambda s, p: s.argmax(dim=1).tolist(), "torch.Tensor")
