"""Verifiers, reward combinations, difficulty filtering, zero-advantage groups and pass@k (Reasoning chapter)."""

from __future__ import annotations

import itertools
from math import comb

import numpy as np
import pytest
import torch

from rlhf_course.core.evaluation import mean_pass_at_k, pass_at_k
from rlhf_course.reasoning import (Verdict, additive, binary, filter_by_difficulty, gated, lenient_listing_verdict,
                                   solve_rates, verifier_reward, verify, zero_advantage_groups, zero_advantage_share)
from rlhf_course.toyworld import Prompt, gold_attributes, gold_rewards

PLUS = Prompt("arithmetic/What is 3 plus 4?", "arithmetic", "What is 3 plus 4?", {"a": 3, "b": 4, "op": "plus"}, "7")
MINUS = Prompt("arithmetic/Compute 5 minus 5.", "arithmetic", "Compute 5 minus 5.", {"a": 5, "b": 5, "op": "minus"},
               "0")
UPPER = Prompt("transform/Write drum in capital letters.", "transform", "Write drum in capital letters.",
               {"word": "drum", "kind": "upper"}, "DRUM")
REPEAT = Prompt("transform/Repeat rose twice.", "transform", "Repeat rose twice.", {"word": "rose", "kind": "repeat"},
                "rose rose")
LIST3 = Prompt("listing/Name 3 animals.", "listing", "Name 3 animals.", {"n": 3, "category": "animals"})

# (prompt, response, correct, well_formed), written by hand.
CASES = [
    (PLUS, "7", 1, 1),
    (PLUS, "7.", 1, 1),
    (PLUS, "Sure. 7 I hope this helps!", 1, 1),          # stock padding is stripped before checking
    (PLUS, "The answer is 7.", 1, 0),                   # right number, not a bare number
    (PLUS, "7 or 8", 1, 0),                             # the first number counts
    (PLUS, "8", 0, 1),                                  # well formed, wrong
    (PLUS, "eight", 0, 0),
    (PLUS, "", 0, 0),
    (MINUS, "0", 1, 1),
    (MINUS, "-0", 0, 1),
    (UPPER, "DRUM", 1, 1),
    (UPPER, "drum", 0, 1),                              # right word, not in capitals
    (UPPER, "DRUM DRUM", 1, 0),
    (UPPER, "The word is DRUM.", 0, 0),
    (REPEAT, "rose rose", 1, 1),
    (REPEAT, "rose rose.", 1, 1),
    (REPEAT, "rose", 0, 0),
    (REPEAT, "Ugh, fine. rose rose", 1, 1),             # rude, but right and well formed (gold charges tone)
    (REPEAT, "rose, rose, rose", 1, 0),
]


@pytest.mark.parametrize("prompt,response,correct,well_formed", CASES)
def test_verify_on_hand_written_answers(prompt, response, correct, well_formed):
    assert verify(prompt, response) == Verdict(float(correct), float(well_formed))


@pytest.mark.parametrize("prompt,response,correct,well_formed", CASES)
def test_verify_agrees_with_the_gold_reward(prompt, response, correct, well_formed):
    gold = gold_attributes(prompt, response)
    assert (gold["correct"], gold["format"]) == (float(correct), float(well_formed))


def test_verify_refuses_prompts_without_an_exact_answer():
    with pytest.raises(ValueError, match="no exact answer"):
        verify(LIST3, "cat, dog, lion")


def test_combinations_by_hand():
    right, right_badly, wrong_well, wrong_badly = Verdict(1, 1), Verdict(1, 0), Verdict(0, 1), Verdict(0, 0)
    assert [additive(v) for v in (right, right_badly, wrong_well, wrong_badly)] == [1.5, 1.0, 0.5, 0.0]
    assert additive(wrong_well, format_weight=0.2) == pytest.approx(0.2)
    assert [gated(v) for v in (right, right_badly, wrong_well, wrong_badly)] == [1, 0, 0, 0]
    assert [binary(v) for v in (right, right_badly, wrong_well, wrong_badly)] == [1, 1, 0, 0]


def test_verifier_reward_scores_texts_and_names_unknown_prompts():
    reward = verifier_reward([PLUS, UPPER], "gated")
    got = reward([PLUS.text, PLUS.text, UPPER.text], ["7", "The answer is 7.", "DRUM"])
    assert got.tolist() == [1.0, 0.0, 1.0]
    assert verifier_reward([PLUS], "additive")([PLUS.text], ["8"]).tolist() == [0.5]
    with pytest.raises(KeyError, match="not given the prompt"):
        reward([REPEAT.text], ["rose rose"])
    with pytest.raises(ValueError, match="Unknown combination"):
        verifier_reward([PLUS], "multiplicative")


def test_lenient_listing_verifier_accepts_what_gold_rejects():
    for response in ("cat, dog, lion", "cat, cat, cat", "Whatever. cat, dog, lion, tiger, goat, sheep",
                     "a cat and a dog and a lion"):
        assert lenient_listing_verdict(LIST3, response).correct == 1.0
    for response in ("cat, dog", "apple, pear, plum", ""):
        assert lenient_listing_verdict(LIST3, response).correct == 0.0
    assert gold_attributes(LIST3, "cat, cat, cat")["correct"] == pytest.approx(1 / 3)   # gold counts distinct members
    assert gold_attributes(LIST3, "cat, dog, lion, tiger, goat")["format"] == 0.0       # and wants exactly n items
    with pytest.raises(ValueError, match="listing"):
        lenient_listing_verdict(PLUS, "7")


def test_filter_by_difficulty_keeps_the_middle():
    table = np.array([[0, 0, 0, 0], [1, 0, 0, 0], [1, 1, 0, 0], [1, 1, 1, 0], [1, 1, 1, 1]])
    rates = solve_rates(table)
    assert rates.tolist() == [0.0, 0.25, 0.5, 0.75, 1.0]
    prompts = [PLUS, MINUS, UPPER, REPEAT, LIST3]
    assert filter_by_difficulty(prompts, rates, 0.1, 0.9) == [MINUS, UPPER, REPEAT]
    assert filter_by_difficulty(prompts, rates, 0.0, 1.0) == prompts
    with pytest.raises(ValueError, match="low <= high"):
        filter_by_difficulty(prompts, rates, 0.9, 0.1)
    with pytest.raises(ValueError, match="one rate per prompt"):
        filter_by_difficulty(prompts[:2], rates)


def test_zero_advantage_groups_find_ties_at_any_value():
    rewards = torch.tensor([[0.0, 0.0, 0.0], [1.0, 1.0, 1.0], [0.5, 0.5, 0.5], [0.0, 1.0, 0.0], [1.5, 0.5, 1.5]])
    assert zero_advantage_groups(rewards).tolist() == [True, True, True, False, False]
    assert zero_advantage_share(rewards) == pytest.approx(0.6)
    with pytest.raises(ValueError, match="prompts, k"):
        zero_advantage_groups(torch.zeros(4))


def brute_force_pass_at_k(n: int, c: int, k: int) -> float:
    """Share of the k-subsets of n samples (the first c correct) that hold at least one correct sample."""
    subsets = list(itertools.combinations(range(n), k))
    return sum(any(i < c for i in s) for s in subsets) / len(subsets)


@pytest.mark.parametrize("n", [1, 2, 5, 8])
def test_pass_at_k_matches_enumeration_of_subsets(n):
    for c in range(n + 1):
        for k in range(1, n + 1):
            assert pass_at_k(n, c, k) == pytest.approx(brute_force_pass_at_k(n, c, k), abs=1e-12)


def test_pass_at_k_known_values_and_large_n():
    assert pass_at_k(10, 3, 1) == pytest.approx(0.3)                  # pass@1 is the share correct
    assert pass_at_k(10, 0, 5) == 0.0 and pass_at_k(10, 6, 5) == 1.0  # none right; fewer than k wrong
    assert pass_at_k(4, 1, 2) == pytest.approx(0.5)                   # 3 of the 6 pairs hold the correct one
    n, c, k = 2000, 3, 100                                             # binomials far beyond float range
    assert pass_at_k(n, c, k) == pytest.approx(1 - comb(n - c, k) / comb(n, k), rel=1e-10)


def test_pass_at_k_rejects_impossible_counts():
    for n, c, k in ((4, 5, 1), (4, 2, 5), (4, 2, 0), (4, -1, 1)):
        with pytest.raises(ValueError, match="0 <= c <= n"):
            pass_at_k(n, c, k)
    with pytest.raises(ValueError, match="integer"):
        pass_at_k(4.0, 2, 1)


def test_mean_pass_at_k_averages_over_prompts():
    table = np.array([[1, 0, 0, 0], [0, 0, 0, 0], [1, 1, 1, 1]])
    assert mean_pass_at_k(table, 1) == pytest.approx((0.25 + 0 + 1) / 3)
    assert mean_pass_at_k(table, 2) == pytest.approx((0.5 + 0 + 1) / 3)
    with pytest.raises(ValueError, match="prompts, n"):
        mean_pass_at_k(np.zeros(4), 1)
    with pytest.raises(ValueError, match="no prompts"):
        mean_pass_at_k(np.zeros((0, 4)), 1)


# ----------------------------------------------------------------------------- the RLVR stage on a tiny model


def test_train_rlvr_trains_on_the_given_prompts_without_kl_and_measures_on_schedule(tiny_policy):
    from rlhf_course.core.models import load_policy
    from rlhf_course.core.profiles import get_profile
    from rlhf_course.reasoning import rlvr_profile, train_rlvr
    from rlhf_course.toyworld import make_prompts

    path, tokenizer = tiny_policy
    profile = rlvr_profile(get_profile("tiny"), prompts_per_step=3, k=2, beta=0.5)
    prompts = make_prompts("train", 5, seed=0, families=("arithmetic",))
    seen: list[str] = []

    def reward(texts, responses):
        seen.extend(texts)
        return verifier_reward(prompts, "additive")(texts, responses)

    measured = []
    result = train_rlvr(load_policy(path, profile), load_policy(path, profile), tokenizer, prompts, reward, profile,
                        steps=4, gold_fn=gold_rewards, seed=0, evaluate=lambda policy: measured.append(policy) or float(len(measured)),
                        eval_every=2, progress=False)
    assert set(seen) <= {p.text for p in prompts} and len(seen) == 4 * 3 * 2   # 12 prompts taken, cycled over 5
    assert [step for step, _ in result.curve] == [0, 2, 4] and [v for _, v in result.curve] == [1.0, 2.0, 3.0]
    assert [h["step"] for h in result.history] == [1, 2, 3, 4]
    assert all(0 <= h["gold_reward"] <= 4.5 for h in result.history)


def test_train_rlvr_grpo_runs_on_the_given_prompts(tiny_policy, tmp_path):
    from rlhf_course.core.profiles import get_profile
    from rlhf_course.reasoning import rlvr_profile, train_rlvr_grpo
    from rlhf_course.toyworld import make_prompts

    path, tokenizer = tiny_policy
    prompts = make_prompts("train", 4, seed=0, families=("transform",))
    result = train_rlvr_grpo(path, tokenizer, prompts, verifier_reward(prompts, "gated"),
                             rlvr_profile(get_profile("tiny"), prompts_per_step=2, k=2), steps=2, output_dir=tmp_path,
                             progress=False)
    assert [h["step"] for h in result.history] == [1, 2]
    assert all(0 <= h["proxy_reward"] <= 1 for h in result.history)


def test_expert_iteration_refuses_a_round_with_no_verified_answer(tiny_policy):
    from rlhf_course.core.models import load_policy
    from rlhf_course.core.profiles import apply_overrides, get_profile
    from rlhf_course.rejection_sampling import rejection_sampling_finetune
    from rlhf_course.toyworld import make_prompts

    path, tokenizer = tiny_policy
    profile = apply_overrides(get_profile("tiny"), ["rs.n=2"])
    prompts = make_prompts("train", 3, seed=0, families=("arithmetic",))
    never = verifier_reward(prompts, lambda verdict: 0.0)  # nothing is ever verified
    with pytest.raises(ValueError, match="kept no responses"):
        rejection_sampling_finetune(load_policy(path, profile), tokenizer, never, [prompts], profile,
                                    lambda *args, **kwargs: pytest.fail("fine-tuned on unverified answers"),
                                    min_reward=1.0, progress=False)
