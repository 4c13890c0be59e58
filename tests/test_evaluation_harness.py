"""The evaluation harness (rlhf_course/evaluation): estimators against enumeration, intervals against their
nominal coverage, leaderboards against a known ranking, siblings and overlap on hand-made texts."""

from __future__ import annotations

import itertools
import math
import random

import numpy as np
import pytest

from rlhf_course.core.evaluation import pass_at_k
from rlhf_course.evaluation import (AnnotatorJudge, ScoreJudge, bootstrap_interval, exact_match_by_family,
                                    leaderboard, mean_pass_at_k, ngram_overlap, paired_bootstrap, paired_win_rate,
                                    pairwise_votes, perturbed_siblings, rank_agreement, required_prompts,
                                    simulated_power, template_of, with_template)
from rlhf_course.toyworld import Annotator, Prompt, gold_reward, ideal_response, make_prompts
from rlhf_course.toyworld.prompts import TEMPLATES


# --- pass@k ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("n", [1, 2, 5, 8])
def test_pass_at_k_equals_enumerating_every_subset(n):
    for c in range(n + 1):
        for k in range(1, n + 1):
            subsets = list(itertools.combinations(range(n), k))  # samples 0..c-1 are the correct ones
            expected = sum(any(i < c for i in s) for s in subsets) / len(subsets)
            assert pass_at_k(n, c, k) == pytest.approx(expected, abs=1e-12), (n, c, k)


def test_pass_at_k_is_stable_where_binomials_overflow_and_beats_the_plug_in():
    # C(2000, 1000) overflows a float; the exact value from integer binomials:
    exact = 1 - math.comb(1993, 1000) / math.comb(2000, 1000)
    assert pass_at_k(2000, 7, 1000) == pytest.approx(exact, rel=1e-9)
    # 1 - (1 - c/n)^k is biased low: with n = k = 4 and one correct sample, pass@4 is certain
    assert pass_at_k(4, 1, 4) == 1.0 and 1 - (1 - 1 / 4) ** 4 < 0.7
    assert mean_pass_at_k([0, 1, 4], n=4, k=2) == pytest.approx((0 + 0.5 + 1) / 3)
    with pytest.raises(ValueError, match="at least one prompt"):
        mean_pass_at_k([], n=4, k=2)


@pytest.mark.parametrize("args", [(0, 0, 1), (5, 6, 1), (5, 2, 0), (5, 2, 6), (5.0, 2, 1)])
def test_pass_at_k_rejects_impossible_counts(args):
    with pytest.raises(ValueError, match="pass_at_k"):
        pass_at_k(*args)


# --- intervals ---------------------------------------------------------------------------------------------------


def test_bootstrap_interval_covers_a_known_mean_at_its_nominal_rate():
    # 300 data sets of 100 draws from an exponential distribution of mean 1: the 90% interval should cover 1
    # about 90% of the time (a binomial standard error of 0.017; the percentile bootstrap runs slightly low on skew).
    rng = np.random.default_rng(0)
    covered = [bootstrap_interval(rng.exponential(1.0, 100), n_boot=400, level=0.9, seed=i).covers(1.0)
               for i in range(300)]
    assert 0.84 <= np.mean(covered) <= 0.95


def test_cluster_bootstrap_is_wider_than_pretending_answers_are_independent():
    # 50 prompts of very different difficulty, 8 answers each that barely differ: 50 independent values, not 400.
    rng = np.random.default_rng(1)
    difficulty = np.repeat(rng.normal(0, 1, 50), 8)
    values = difficulty + rng.normal(0, 0.05, 400)
    clusters = np.repeat(np.arange(50), 8)
    naive, clustered = bootstrap_interval(values, seed=0), bootstrap_interval(values, clusters, seed=0)
    assert clustered.stderr / naive.stderr == pytest.approx(math.sqrt(8), rel=0.25)
    assert clustered.estimate == pytest.approx(values.mean())


def test_paired_intervals_by_hand():
    a, b = np.array([3.0, 1.0, 2.0, 5.0]), np.array([1.0, 1.0, 4.0, 0.0])
    win = paired_win_rate(a, b, n_boot=500)
    assert win.estimate == pytest.approx((1 + 0.5 + 0 + 1) / 4)
    assert 0.0 <= win.low <= win.estimate <= win.high <= 1.0
    # A shared difficulty cancels in the paired difference: the interval is tight around 0.3
    rng = np.random.default_rng(2)
    d = rng.normal(0, 3, 300)
    diff = paired_bootstrap(d + 0.3, d + rng.normal(0, 0.01, 300), seed=1)
    assert diff.covers(0.3) and diff.high - diff.low < 0.01


@pytest.mark.parametrize("call", [lambda: paired_win_rate([1.0, 2.0], [1.0]),
                                  lambda: paired_win_rate([1.0, float("nan")], [1.0, 2.0]),
                                  lambda: bootstrap_interval([1.0, 2.0, 3.0], clusters=[0, 1]),
                                  lambda: bootstrap_interval([1.0, 2.0], level=1.5),
                                  lambda: required_prompts(0.0, 0.5)])
def test_malformed_input_is_refused_with_a_reason(call):
    with pytest.raises(ValueError, match="need|must|NaN"):
        call()


# --- power -------------------------------------------------------------------------------------------------------


def test_required_prompts_matches_the_textbook_formula_and_simulation():
    # (1.96 + 0.8416)^2 * 0.5^2 / 0.05^2 = 784.9
    assert required_prompts(0.05, 0.5) == 785
    assert required_prompts(0.1, 0.5) == 197  # a quarter of 784.9, rounded up
    # A population of outcomes with mean 0.55 and sd 0.5 (win/loss only): the simulated power at n is about 0.8.
    population = np.array([1.0] * 55 + [0.0] * 45)
    n = required_prompts(0.05, population.std())
    assert simulated_power(population, n, n_trials=2000, seed=0) == pytest.approx(0.8, abs=0.04)
    # and an A/A population (mean exactly 0.5) is rejected about alpha of the time
    assert simulated_power(np.array([1.0, 0.0, 0.5, 0.5]), 200, n_trials=2000, seed=1) == pytest.approx(0.05, abs=0.02)


# --- leaderboards ------------------------------------------------------------------------------------------------


def _synthetic_arena(strengths, n_prompts, seed):
    """Policies whose 'responses' are their names; a judge that prefers i over j with BT probability."""
    rng = random.Random(seed)
    names = [f"p{i}" for i in range(len(strengths))]

    class BTJudge:
        def judge(self, prompts, completions, shuffle_order=True):
            out = []
            for a, b in completions:
                p = 1 / (1 + math.exp(-(strengths[int(a[1:])] - strengths[int(b[1:])])))
                out.append(0 if rng.random() < p else 1)
            return out

    prompts = [f"prompt {t}" for t in range(n_prompts)]
    return pairwise_votes(BTJudge(), prompts, {n: [n] * n_prompts for n in names}, seed=seed), names


def test_bradley_terry_leaderboard_recovers_a_known_ranking_with_honest_intervals():
    truth = np.array([1.2, 0.6, 0.0, -0.4, -1.4])
    votes, names = _synthetic_arena(truth, 300, seed=0)
    board = leaderboard(votes, n_boot=100, seed=0)
    assert list(board["policy"]) == names  # the order of the strengths
    elo_truth = (truth - truth.mean()) * 400 / math.log(10) + 1000
    covered = [row.low <= elo_truth[names.index(row.policy)] <= row.high for row in board.itertuples()]
    assert sum(covered) >= 4
    assert (board["high"] - board["low"]).max() < 120


def test_rank_agreement_is_one_for_the_same_judge_and_low_for_a_reversed_one():
    truth = np.array([1.0, 0.5, 0.0, -0.5])
    votes, names = _synthetic_arena(truth, 200, seed=1)
    reversed_votes, _ = _synthetic_arena(-truth, 200, seed=2)
    assert rank_agreement(votes, votes, n_boot=50).estimate == 1.0
    agreement = rank_agreement(reversed_votes, votes, n_boot=50)
    assert agreement.estimate == -1.0 and agreement.high < 0


def test_score_judge_votes_map_back_through_the_position_shuffle():
    prompts = make_prompts("test", 40, seed=0)
    good = [ideal_response(p) for p in prompts]
    bad = ["Whatever."] * len(prompts)
    gold = ScoreJudge(lambda ps, rs: [gold_reward(p, r) for p, r in zip(ps, rs)])
    votes = pairwise_votes(gold, prompts, {"good": good, "bad": bad, "also good": good}, seed=3)
    board = leaderboard(votes, n_boot=50)
    assert board.iloc[-1]["policy"] == "bad"
    # the two identical policies always tie, and 'good' wins every vote against 'bad' whichever was shown first
    tied = (votes.first == 0) & (votes.second == 2)
    assert (votes.winner[tied] == -1).all()
    against = (votes.first == 0) & (votes.second == 1)
    assert (votes.winner[against] == 0).all()


def test_annotator_judge_follows_its_utility_and_refuses_bare_text():
    prompts = make_prompts("test", 200, seed=1)
    careful = AnnotatorJudge(Annotator("careful", temperature=0.1), seed=0)
    picks = careful.judge(prompts, [[ideal_response(p), "Whatever."] for p in prompts])
    assert np.mean(np.array(picks) == 0) > 0.95
    with pytest.raises(ValueError, match="Prompt objects"):
        careful.judge(["What is 1 plus 1?"], [["2", "3"]])
    with pytest.raises(ValueError, match="exactly two"):
        careful.judge(prompts[:1], [["2", "3", "4"]])


def test_pairwise_votes_refuses_misaligned_responses():
    with pytest.raises(ValueError, match="one response per prompt"):
        pairwise_votes(ScoreJudge(lambda p, r: [0.0] * len(r)), ["x", "y"], {"a": ["1", "2"], "b": ["1"]})
    with pytest.raises(ValueError, match="at least two policies"):
        pairwise_votes(ScoreJudge(lambda p, r: [0.0] * len(r)), ["x"], {"a": ["1"]})


# --- exact match, siblings, overlap ------------------------------------------------------------------------------


def test_exact_match_by_family():
    prompts = make_prompts("test", 8, seed=0)
    responses = [ideal_response(p) if i % 2 == 0 else "Whatever." for i, p in enumerate(prompts)]
    table = exact_match_by_family(prompts, responses)
    assert table["all"] == 0.5
    assert set(table) == {p.family for p in prompts} | {"all"}


def test_siblings_keep_the_template_and_change_the_numbers_or_words():
    prompts = make_prompts("test", 200, seed=0)
    siblings = perturbed_siblings(prompts, seed=0)
    ids = {p.id for p in prompts}
    for prompt, sibling in zip(prompts, siblings):
        assert template_of(sibling) == template_of(prompt) and sibling.family == prompt.family
        assert sibling.id not in ids and sibling.text != prompt.text
        assert gold_reward(sibling, ideal_response(sibling)) == 4.5  # a well-formed task with its own answer
        if prompt.family == "arithmetic":
            assert sibling.spec["op"] == prompt.spec["op"] and int(sibling.answer) >= 0
    hand = Prompt("arithmetic/What is 3 plus 4?", "arithmetic", "What is 3 plus 4?", {"a": 3, "b": 4, "op": "plus"}, "7")
    sibling = perturbed_siblings([hand], seed=1)[0]
    assert sibling.text.startswith("What is ") and sibling.text.endswith("?") and sibling.text != hand.text
    assert sibling.answer == str(sibling.spec["a"] + sibling.spec["b"])


def test_with_template_asks_the_same_task_in_another_phrasing():
    prompt = next(p for p in make_prompts("test", 50, seed=0) if p.family == "listing")
    for template in TEMPLATES["listing"]:
        rephrased = with_template(prompt, template)
        assert rephrased.spec == prompt.spec and template_of(rephrased) == template
    with pytest.raises(ValueError, match="not a 'listing' template"):
        with_template(prompt, "What is {a} {op} {b}?")
    with pytest.raises(ValueError, match="not written by any"):
        template_of(Prompt("arithmetic/x", "arithmetic", "Add 3 and 4.", {"a": 3, "b": 4, "op": "plus"}, "7"))


def test_ngram_overlap_on_hand_written_texts():
    train = ["the quick brown fox jumps over the lazy dog", "What is 3 plus 4? 7"]
    test = ["the quick brown fox jumps", "a slow green turtle crawls", "What is 3 plus 4?", "What is 5 plus 4?"]
    # 3-grams: all three of the first text are in training, none of the second; "what is 3 / is 3 plus / 3 plus 4"
    # all seen; of "what is 5 / is 5 plus / 5 plus 4" none.
    assert ngram_overlap(test, train, n=3).tolist() == [1.0, 0.0, 1.0, 0.0]
    # with 2-grams the template leaks: "what is" and "plus 4" are shared by the innocent sibling
    assert ngram_overlap(test[3:], train, n=2)[0] == pytest.approx(2 / 4)
    # a text shorter than n is looked up whole, anywhere in the training text
    assert ngram_overlap(["quick brown", "brown quick"], train, n=5).tolist() == [1.0, 0.0]
    with pytest.raises(ValueError, match="lists of texts"):
        ngram_overlap("the quick brown fox", train)
