"""Preference models: Bradley–Terry fits, Elo, cycles, and the exercise check on the likelihood."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
import torch

from rlhf_course.teaching import checking as checks
from rlhf_course.teaching.checking import ExerciseError
from rlhf_course.what_are_preferences.checks import check_bradley_terry_log_likelihood
from rlhf_course.what_are_preferences import (ELO_SCALE, best_ordering_accuracy, bradley_terry_log_likelihood,
                                              condorcet_example, distinct_responses, elo_ratings,
                                              elo_to_log_strength, fit_bradley_terry, kendall_tau, log_sigmoid,
                                              log_strength_to_elo, mle_exists, preference_shares, toy_comparisons,
                                              win_matrix)
from rlhf_course.toyworld import Annotator, default_annotators, gold_reward, make_prompts


def simulate(theta: list[float], per_pair: int, seed: int = 0) -> list[tuple[int, int]]:
    """Comparisons drawn from Bradley–Terry with known log-strengths, every pair ``per_pair`` times."""
    rng = random.Random(seed)
    out = []
    for i in range(len(theta)):
        for j in range(i + 1, len(theta)):
            p = 1 / (1 + math.exp(theta[j] - theta[i]))
            out += [(i, j) if rng.random() < p else (j, i) for _ in range(per_pair)]
    rng.shuffle(out)
    return out


# --- the likelihood ------------------------------------------------------------


def test_log_likelihood_matches_a_hand_computed_value():
    theta = [1.0, 0.0, -0.5]
    comparisons = [(0, 1), (0, 2), (2, 1), (1, 0)]
    by_hand = sum(math.log(1 / (1 + math.exp(-m))) for m in (1.0, 1.5, -0.5, -1.0))
    assert bradley_terry_log_likelihood(theta, comparisons) == pytest.approx(by_hand, abs=1e-12)
    assert by_hand == pytest.approx(-2.80201, abs=1e-5)


def test_log_likelihood_of_equal_strengths_is_n_log_half_and_empty_data_is_zero():
    assert bradley_terry_log_likelihood(np.zeros(4), [(0, 1), (2, 3), (3, 0)]) == pytest.approx(3 * math.log(0.5))
    assert bradley_terry_log_likelihood([0.3, 0.1], []) == 0.0


def test_log_likelihood_is_shift_invariant_and_stable_for_huge_gaps():
    theta = np.array([0.7, -0.2, 1.1])
    comparisons = [(0, 1), (2, 0), (1, 2)]
    assert bradley_terry_log_likelihood(theta + 5.0, comparisons) == pytest.approx(
        bradley_terry_log_likelihood(theta, comparisons))
    assert bradley_terry_log_likelihood([0.0, 1000.0], [(0, 1)]) == pytest.approx(-1000.0)
    assert np.isfinite(log_sigmoid(-5000.0)) and log_sigmoid(5000.0) == 0.0


@pytest.mark.parametrize(
    ("comparisons", "fragment"),
    [
        ([(0, 3)], "indices must lie in 0..2"),
        ([(0, -1)], "indices must lie in 0..2"),
        ([(1, 1)], "with itself"),
        ([(0, 1, 2)], "shape (m, 2)"),
        ([(0.5, 1)], "integer item indices"),
    ],
)
def test_bad_comparisons_raise_a_clear_value_error(comparisons, fragment):
    with pytest.raises(ValueError) as info:
        bradley_terry_log_likelihood([0.0, 0.0, 0.0], comparisons)
    assert fragment in str(info.value)


def test_bad_strengths_raise_a_clear_value_error():
    with pytest.raises(ValueError, match="finite"):
        bradley_terry_log_likelihood([0.0, float("nan")], [(0, 1)])
    with pytest.raises(ValueError, match="1-D"):
        bradley_terry_log_likelihood([[0.0, 1.0]], [(0, 1)])


def test_win_matrix_counts_each_comparison():
    wins = win_matrix([(0, 1), (0, 1), (1, 0), (2, 0)], 3)
    assert wins.tolist() == [[0, 2, 0], [1, 0, 0], [1, 0, 0]]


# --- the fit -------------------------------------------------------------------


def test_fit_recovers_known_strengths_from_simulated_comparisons():
    theta = np.array([1.2, 0.6, 0.0, -0.4, -1.4])
    fitted = fit_bradley_terry(simulate(list(theta), per_pair=400), n_items=5)
    assert fitted.mean() == pytest.approx(0.0, abs=1e-9)
    assert np.max(np.abs(fitted - (theta - theta.mean()))) < 0.15


def test_fit_is_the_maximum_likelihood():
    comparisons = simulate([0.5, 0.0, -0.5, 1.0], per_pair=30, seed=3)
    fitted = fit_bradley_terry(comparisons, n_items=4)
    wins = win_matrix(comparisons, 4)
    games = wins + wins.T
    expected_wins = (games / (1 + np.exp(-(fitted[:, None] - fitted[None, :])))).sum(axis=1)
    np.testing.assert_allclose(expected_wins, wins.sum(axis=1), atol=1e-6)  # the score equations
    best = bradley_terry_log_likelihood(fitted, comparisons)
    rng = np.random.default_rng(0)
    for _ in range(20):
        assert bradley_terry_log_likelihood(fitted + 0.05 * rng.normal(size=4), comparisons) < best


def test_fit_orders_items_by_wins_in_a_balanced_design():
    comparisons = simulate([0.3, -0.2, 0.9, 0.0, -0.8, 0.1], per_pair=15, seed=5)
    fitted = fit_bradley_terry(comparisons, n_items=6)
    wins = win_matrix(comparisons, 6).sum(axis=1)
    assert kendall_tau(fitted, wins) == pytest.approx(1.0)  # Borda count and Bradley–Terry agree


def test_fit_refuses_infinite_estimates_unless_given_a_prior():
    undefeated = [(0, 1), (0, 2), (1, 2), (2, 1)]
    assert not mle_exists(win_matrix(undefeated, 3))
    with pytest.raises(ValueError, match="item 0 never lost"):
        fit_bradley_terry(undefeated, n_items=3)
    fitted = fit_bradley_terry(undefeated, n_items=3, prior=0.5)
    assert np.all(np.isfinite(fitted)) and fitted[0] > fitted[1] == pytest.approx(fitted[2])
    with pytest.raises(ValueError, match="prior"):
        fit_bradley_terry(undefeated, n_items=3, prior=-1.0)


def test_prior_pulls_strengths_together():
    comparisons = simulate([1.0, 0.0, -1.0], per_pair=20, seed=1)
    spread = [np.ptp(fit_bradley_terry(comparisons, 3, prior=p)) for p in (0.0, 1.0, 10.0)]
    assert spread[0] > spread[1] > spread[2] > 0


# --- Elo against Bradley–Terry ---------------------------------------------------


def test_elo_depends_on_the_order_but_bradley_terry_does_not():
    comparisons = simulate([0.8, 0.2, -0.1, -0.9], per_pair=25, seed=2)
    reordered = list(comparisons)
    random.Random(7).shuffle(reordered)
    elo_a, elo_b = elo_ratings(comparisons, 4), elo_ratings(reordered, 4)
    assert np.max(np.abs(elo_a - elo_b)) > 5.0, "Elo should remember the order of the games"
    assert elo_a.mean() == pytest.approx(1500.0) and elo_b.mean() == pytest.approx(1500.0)
    np.testing.assert_array_equal(fit_bradley_terry(comparisons, 4), fit_bradley_terry(reordered, 4))


def test_one_elo_update_is_a_bradley_terry_gradient_step():
    ratings = elo_ratings([(1, 0)], 2, k=32.0, initial=1500.0)
    # Equal ratings: expected score 1/2, so the winner gains k / 2.
    assert ratings.tolist() == [1484.0, 1516.0]
    start = np.array([1600.0, 1450.0])
    theta = elo_to_log_strength(start)
    step = 32.0 * (1 - 1 / (1 + math.exp(-(theta[1] - theta[0]))))  # k (1 - P(winner wins)), winner = item 1
    after = start + np.array([-step, step])
    expected = 1 / (1 + 10 ** ((start[0] - start[1]) / ELO_SCALE))
    assert 1 / (1 + math.exp(-(theta[1] - theta[0]))) == pytest.approx(expected)
    assert after[1] - start[1] == pytest.approx(32.0 * (1 - expected))


def test_elo_and_log_strength_scales_invert_each_other():
    theta = np.array([0.5, -0.25, -0.25])
    np.testing.assert_allclose(elo_to_log_strength(log_strength_to_elo(theta)), theta)
    assert log_strength_to_elo([math.log(10), 0.0]).tolist() == pytest.approx([1700.0, 1300.0])


def test_elo_rejects_a_bad_k():
    with pytest.raises(ValueError, match="k must be"):
        elo_ratings([(0, 1)], 2, k=0.0)


# --- rankings and cycles ------------------------------------------------------------


def test_kendall_tau_on_hand_made_rankings():
    assert kendall_tau([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert kendall_tau([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    assert kendall_tau([1, 2, 3], [1, 3, 2]) == pytest.approx(1 / 3)  # 2 concordant, 1 discordant
    with pytest.raises(ValueError, match="constant"):
        kendall_tau([1, 1, 1], [1, 2, 3])


def test_a_cycle_caps_what_any_ranking_explains():
    cycle = np.array([[0.5, 2 / 3, 1 / 3], [1 / 3, 0.5, 2 / 3], [2 / 3, 1 / 3, 0.5]])
    accuracy, _ = best_ordering_accuracy(cycle)
    assert accuracy == pytest.approx(2 / 3)
    transitive = np.array([[0.5, 0.9, 0.8], [0.1, 0.5, 0.6], [0.2, 0.4, 0.5]])
    assert best_ordering_accuracy(transitive) == (1.0, (0, 1, 2))


def test_condorcet_example_is_a_majority_cycle_of_transitive_annotators():
    prompt, responses, annotators = condorcet_example(temperature=0.0)
    names = list(responses)
    assert names == ["A", "B", "C"]
    rankings = [tuple(sorted(names, key=lambda n: -a.utility(prompt, responses[n]))) for a in annotators]
    assert sorted(rankings) == sorted([("A", "B", "C"), ("B", "C", "A"), ("C", "A", "B")])
    for first, second in [("A", "B"), ("B", "C"), ("C", "A")]:
        votes = sum(a.prob_prefers_first(prompt, responses[first], responses[second]) for a in annotators)
        assert votes == 2, f"{first} should beat {second} two votes to one"
    gold = [gold_reward(prompt, responses[n]) for n in names]
    assert gold == sorted(gold, reverse=True), "the gold reward ranks A > B > C"


def test_sampled_labels_of_the_cycle_defeat_every_ranking_and_flatten_bradley_terry():
    prompt, responses, annotators = condorcet_example(temperature=0.1)
    comparisons = toy_comparisons(prompt, list(responses.values()), annotators, per_pair=150, seed=0)
    shares = preference_shares(comparisons, 3)
    assert shares[0, 1] > 0.5 and shares[1, 2] > 0.5 and shares[2, 0] > 0.5
    assert best_ordering_accuracy(shares)[0] == pytest.approx(2 / 3)
    assert np.ptp(fit_bradley_terry(comparisons, 3)) < 0.3  # nearly equal strengths


# --- the toy world ---------------------------------------------------------------


def test_distinct_responses_have_separated_gold_rewards_best_first():
    prompt = make_prompts("test", 8, seed=0)[0]
    responses = distinct_responses(prompt, 6, seed=0, min_gap=0.2)
    gold = [gold_reward(prompt, r) for r in responses]
    assert len(set(responses)) == 6
    assert all(a - b > 0.2 for a, b in zip(gold, gold[1:]))
    with pytest.raises(ValueError, match="gold rewards"):
        distinct_responses(prompt, 40, seed=0, min_gap=0.2, max_draws=200)


def test_toy_comparisons_are_balanced_reproducible_and_follow_the_annotator():
    prompt = make_prompts("test", 8, seed=1)[0]
    responses = distinct_responses(prompt, 5, seed=1, min_gap=0.2)
    careful = [Annotator("careful", temperature=0.05)]
    comparisons = toy_comparisons(prompt, responses, careful, per_pair=6, seed=4)
    assert comparisons == toy_comparisons(prompt, responses, careful, per_pair=6, seed=4)
    games = win_matrix(comparisons, 5) + win_matrix(comparisons, 5).T
    assert (games[~np.eye(5, dtype=bool)] == 6).all()
    fitted = fit_bradley_terry(comparisons, 5, prior=0.5)
    assert kendall_tau(fitted, [gold_reward(prompt, r) for r in responses]) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="annotators"):
        toy_comparisons(prompt, responses, [], per_pair=1)
    assert len(toy_comparisons(prompt, responses, default_annotators(), per_pair=2)) == 2 * 10


# --- the exercise check -------------------------------------------------------------


@pytest.fixture(autouse=True)
def no_grade_log(monkeypatch):
    monkeypatch.delenv(checks.GRADES_ENV, raising=False)


def numpy_solution(strengths, comparisons):
    winners, losers = np.array(comparisons).T
    return float(-np.logaddexp(0.0, -(strengths[winners] - strengths[losers])).sum())


def each_term(strengths, comparisons, term):
    return sum(term(strengths[w], strengths[l]) for w, l in comparisons)


def fails_with(fn, *fragments: str) -> str:
    with pytest.raises(ExerciseError) as info:
        check_bradley_terry_log_likelihood(fn)
    message = str(info.value)
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"
    return message


@pytest.mark.parametrize("solution", [
    bradley_terry_log_likelihood,
    numpy_solution,
    lambda s, c: torch.nn.functional.logsigmoid(torch.tensor([s[w] - s[l] for w, l in c])).sum(),
    lambda s, c: np.float32(numpy_solution(s, c)),
])
def test_check_accepts_correct_answers(solution, capsys):
    check_bradley_terry_log_likelihood(solution)
    assert capsys.readouterr().out.startswith("✓ Bradley–Terry likelihood:")


def test_check_names_a_mean_instead_of_a_sum():
    message = fails_with(lambda s, c: numpy_solution(s, c) / len(c), "mean", "sum", "equal strengths")
    assert "3 × log(1/2)" in message


def test_check_names_the_negative_log_likelihood():
    fails_with(lambda s, c: -numpy_solution(s, c), "negative log-likelihood")


def test_check_names_swapped_roles():
    fails_with(lambda s, c: each_term(s, c, lambda w, l: float(log_sigmoid(l - w))), "swap winner and loser")


def test_check_names_a_forgotten_log():
    fails_with(lambda s, c: each_term(s, c, lambda w, l: 1 / (1 + math.exp(l - w))), "forget the log")
    fails_with(lambda s, c: math.prod(1 / (1 + math.exp(l - w)) for w, l in ((s[a], s[b]) for a, b in c)),
               "product of probabilities")


def test_check_names_sigmoid_of_the_sum():
    fails_with(lambda s, c: float(log_sigmoid(sum(s[w] - s[l] for w, l in c))), "σ of the summed margins")
    fails_with(lambda s, c: each_term(s, c, lambda w, l: float(log_sigmoid(w + l))), "difference of strengths")


def test_check_names_dropped_repeats():
    fails_with(lambda s, c: numpy_solution(s, sorted(set(c))), "repeats included")


def test_check_catches_the_naive_log_of_sigmoid_and_strengths_taken_as_probabilities():
    with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
        fails_with(lambda s, c: each_term(s, c, lambda w, l: np.log(1 / (1 + np.exp(l - w)))),
                   "huge gap", "logaddexp")
        fails_with(lambda s, c: each_term(s, c, lambda w, l: np.float64(w) / (w + l)), "NaN", "σ(θ_w − θ_l)")


def test_check_explains_one_value_per_comparison_and_the_stub():
    fails_with(lambda s, c: -np.logaddexp(0.0, -np.array([s[w] - s[l] for w, l in c])), "one per comparison")

    def stub(strengths, comparisons):
        raise NotImplementedError("Exercise: fill in bradley_terry_log_likelihood")

    fails_with(stub, "not implemented yet: fill in the cell above")
