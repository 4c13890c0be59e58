"""Best-of-n: selection, its KL against the bound, and the curve estimated from one pool."""

import itertools
import math

import pytest
import torch

from rlhf_course.rejection_sampling import (best_of_n_curve, best_of_n_kl, best_of_n_kl_bound, estimate_best_of_n_kl,
                                            select_best, select_random_k, select_top_k)


def test_select_best_takes_the_highest_and_the_first_of_ties():
    scores = torch.tensor([[0.1, 0.9, 0.3], [0.5, 0.5, 0.2]])
    assert select_best(scores).tolist() == [1, 0]
    with pytest.raises(ValueError, match="shape"):
        select_best(torch.ones(3))


def test_bound_values():
    assert best_of_n_kl_bound(1) == 0.0
    assert best_of_n_kl_bound(2) == pytest.approx(math.log(2) - 0.5)
    with pytest.raises(ValueError, match="positive integer"):
        best_of_n_kl_bound(0)


def test_exact_kl_approaches_the_bound_when_responses_never_repeat():
    m = 4000  # many equally likely responses: repeats are rare, the bound is nearly tight
    probs, rewards = torch.full((m,), 1.0 / m, dtype=torch.float64), torch.arange(m, dtype=torch.float64)
    for n in (2, 8, 64):
        kl = best_of_n_kl(probs, rewards, n)
        assert kl <= best_of_n_kl_bound(n) + 1e-9
        assert kl == pytest.approx(best_of_n_kl_bound(n), abs=0.01)


def test_exact_kl_is_far_below_the_bound_for_a_peaked_policy():
    probs, rewards = torch.tensor([0.6, 0.3, 0.1]), torch.tensor([2.0, 1.0, 0.0])  # the best answer is common
    kl = best_of_n_kl(probs, rewards, 64)
    assert kl == pytest.approx(-math.log(0.6), abs=1e-6)
    assert kl < best_of_n_kl_bound(64) / 5


def test_plug_in_estimate_counts_repeats():
    responses = [["a", "a", "b", "c"]]  # empirical probabilities 0.5, 0.25, 0.25
    scores = torch.tensor([[1.0, 1.0, 3.0, 2.0]])
    assert estimate_best_of_n_kl(responses, scores, 4) == pytest.approx(
        best_of_n_kl(torch.tensor([0.5, 0.25, 0.25]), [1.0, 3.0, 2.0], 4))


def test_curve_averages_over_every_subset_of_the_pool():
    proxy = torch.tensor([[0.3, 0.1, 0.7, 0.5, 0.2]])
    gold = torch.tensor([[1.0, 4.0, 0.0, 2.0, 3.0]])
    curve = best_of_n_curve(proxy, gold, [1, 2, 3, 5])
    for n, value in zip(curve["n"], curve["gold"]):
        subsets = list(itertools.combinations(range(5), n))
        brute = sum(gold[0, max(s, key=lambda j: proxy[0, j])].item() for s in subsets) / len(subsets)
        assert value == pytest.approx(brute)
    assert curve["gold"][0] == pytest.approx(gold.mean().item())
    with pytest.raises(ValueError, match="pool size"):
        best_of_n_curve(proxy, gold, [6])


def test_top_k_and_random_k():
    scores = torch.tensor([[0.1, 0.9, 0.3, 0.5]])
    assert sorted(select_top_k(scores, 2)[0].tolist()) == [1, 3]
    random_k = select_random_k(scores.repeat(50, 1), 2, seed=0)
    assert random_k.shape == (50, 2) and all(len(set(row)) == 2 for row in random_k.tolist())
    assert len({tuple(row) for row in random_k.tolist()}) > 5
