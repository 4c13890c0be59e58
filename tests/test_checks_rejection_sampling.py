"""The rejection-sampling checks pass right answers and name the typical mistakes."""

from __future__ import annotations

import torch
from exercise_checks import fails_with, no_grade_log  # noqa: F401  (no_grade_log is an autouse fixture)

from rlhf_course.rejection_sampling import select_best, select_random_k
from rlhf_course.rejection_sampling.checks import check_select_best, check_select_random_k


def stub(*args):
    raise NotImplementedError("Exercise: fill in this function")


# --- best-of-n selection --------------------------------------------------------


def test_select_best_passes_the_package_answer(capsys):
    check_select_best(select_best)
    check_select_best(lambda s: s.argmax(dim=1))
    check_select_best(lambda s: s.max(dim=1).indices)
    assert capsys.readouterr().out.startswith("✓ Best-of-n selection:")


def test_select_best_accepts_any_of_tied_best():
    check_select_best(lambda s: s.shape[1] - 1 - s.flip(1).argmax(dim=1))  # the last of the tied best


def test_select_best_names_argmin():
    fails_with(check_select_best, lambda s: s.argmin(dim=1), "lowest", "argmax")


def test_select_best_names_the_wrong_dimension():
    fails_with(check_select_best, lambda s: s.argmax(dim=0), "dim=0", "dim=1", "shape (3,)")


def test_select_best_names_a_flat_argmax():
    fails_with(check_select_best, lambda s: s.argmax(), "one number", "flattened", "dim=1")


def test_select_best_names_values_instead_of_indices():
    fails_with(check_select_best, lambda s: s.max(dim=1).values, "not positions", "index")
    fails_with(check_select_best, lambda s: s.max(dim=1), "pair of tensors", ".indices")


def test_select_best_names_a_sort_and_a_kept_dimension():
    fails_with(check_select_best, lambda s: s.argsort(dim=1, descending=True), "argsort")
    fails_with(check_select_best, lambda s: s.argmax(dim=1, keepdim=True), "squeeze")


def test_select_best_names_absolute_values():
    fails_with(check_select_best, lambda s: s.abs().argmax(dim=1), "absolute values")


def test_select_best_catches_a_wrong_answer_and_shows_the_expected_one():
    message = fails_with(check_select_best, lambda s: torch.zeros(s.shape[0], dtype=torch.long), "expected")
    assert "argmax(dim=1)" in message


def test_select_best_rejects_non_tensors_and_stubs():
    fails_with(check_select_best, lambda s: s.argmax(dim=1).tolist(), "torch.Tensor", "list")
    fails_with(check_select_best, stub, "not implemented yet")


# --- random-k control --------------------------------------------------------------


def test_random_k_passes_the_package_answer_and_other_right_ones(capsys):
    check_select_random_k(select_random_k)
    check_select_random_k(lambda s, k: torch.rand(s.shape).argsort(dim=1)[:, :k])
    check_select_random_k(lambda s, k: torch.multinomial(torch.ones(s.shape), k))
    assert "A random-k control" in capsys.readouterr().out


def test_random_k_names_top_k_and_bottom_k():
    fails_with(check_select_random_k, lambda s, k: s.topk(k, dim=1).indices, "top-k", "ignore the scores")
    fails_with(check_select_random_k, lambda s, k: (-s).topk(k, dim=1).indices, "lowest")


def test_random_k_names_sampling_with_replacement():
    fails_with(check_select_random_k, lambda s, k: torch.randint(0, s.shape[1], (s.shape[0], k)),
               "with replacement", "distinct")


def test_random_k_names_one_subset_for_all_prompts():
    fails_with(check_select_random_k, lambda s, k: torch.randperm(s.shape[1])[:k].expand(s.shape[0], k),
               "same positions", "fresh")
    fails_with(check_select_random_k, lambda s, k: torch.arange(k).expand(s.shape[0], k), "the first k")
    fails_with(check_select_random_k, lambda s, k: torch.randperm(s.shape[1])[:k], "shape (4000, 2)",
               "one subset for all prompts")


def test_random_k_names_score_weighted_sampling():
    fails_with(check_select_random_k, lambda s, k: torch.multinomial(torch.softmax(2 * s, dim=1), k),
               "favours high scores")


def test_random_k_catches_a_biased_choice_of_positions():
    def biased(scores, k):  # position 0 plus one random other: position 0 kept every time
        others = torch.rand(scores.shape[0], scores.shape[1] - 1).argsort(dim=1)[:, :k - 1] + 1
        return torch.cat([torch.zeros(scores.shape[0], 1, dtype=torch.long), others], dim=1)

    fails_with(check_select_random_k, biased, "position 0", "k/n = 25%")


def test_random_k_names_returning_a_whole_shuffle_or_scores():
    fails_with(check_select_random_k, lambda s, k: torch.rand(s.shape).argsort(dim=1), "[:k]")
    fails_with(check_select_random_k, lambda s, k: s.gather(1, torch.rand(s.shape).argsort(dim=1)[:, :k]),
               "not positions")


def test_random_k_catches_a_fixed_k():
    fails_with(check_select_random_k, lambda s, k: torch.rand(s.shape).argsort(dim=1)[:, :2], "shape (3, 1)",
               "the k")


def test_random_k_stub_says_not_implemented():
    fails_with(check_select_random_k, stub, "not implemented yet")
