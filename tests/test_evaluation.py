"""Measuring a policy: several answers per prompt, clustered errors, and measuring that never changes training."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rlhf_course.core import models
from rlhf_course.core.evaluation import (PolicySamples, compare_policies, compare_samples, eval_prompts,
                                         measure_policy, sample_policy, samples_table, win_rate)
from rlhf_course.core.profiles import apply_overrides, get_profile
from rlhf_course.toyworld import make_prompts


def test_eval_prompts_repeat_each_test_prompt_next_to_itself():
    profile = apply_overrides(get_profile("tiny"), ["n_eval_prompts=5", "eval_samples_per_prompt=3"])
    prompts = eval_prompts(profile, seed=1)
    distinct = make_prompts("test", 5, seed=1)
    assert [p.id for p in prompts] == [p.id for p in distinct for _ in range(3)]
    assert get_profile("tiny").eval_samples_per_prompt == 4


def test_stderr_counts_the_answers_to_one_prompt_as_one_cluster():
    prompts = make_prompts("test", 2, seed=0)
    # Two prompts, two identical answers each: four rewards but only two independent ones.
    samples = PolicySamples([prompts[0]] * 2 + [prompts[1]] * 2, ["a"] * 4, np.array([1.0, 1.0, 3.0, 3.0]))
    assert samples.mean == pytest.approx(2.0)
    assert samples.stderr == pytest.approx(np.std([1.0, 3.0], ddof=1) / np.sqrt(2))
    assert win_rate(samples.rewards, [1.0, 2.0, 3.0, 4.0]) == pytest.approx((0.5 + 0 + 0.5 + 0) / 4)


def test_measuring_does_not_move_the_random_state_training_draws_from():
    """However many answers are measured, what trains next sees the same random numbers."""
    profile = apply_overrides(get_profile("tiny"), ["n_eval_prompts=4"])
    model, tokenizer = models.load_model(profile, progress=False)
    torch.manual_seed(123)
    expected = torch.rand(3)
    for answers in (1, 3):
        torch.manual_seed(123)
        sample_policy(model, tokenizer, eval_prompts(profile.replace(eval_samples_per_prompt=answers)), profile,
                      seed=7)
        assert torch.equal(torch.rand(3), expected), answers


def test_samples_table_shows_each_prompt_once():
    prompts = [p for p in make_prompts("test", 3, seed=0) for _ in range(2)]
    samples = PolicySamples(prompts, [f"answer {i}" for i in range(6)], np.arange(6.0))
    table = samples_table(prompts, {"sft": samples}, n=2)
    assert list(table["prompt"]) == [prompts[0].text, prompts[2].text]
    assert list(table["sft"]) == ["answer 0  [0.00]", "answer 2  [2.00]"]


def test_compare_samples_gives_paired_win_rates_and_the_proxy_mean():
    prompts = make_prompts("test", 4, seed=0)
    ours = PolicySamples(prompts, ["a", "bb", "ccc", "dddd"], np.array([1.0, 2.0, 3.0, 4.0]))
    theirs = PolicySamples(prompts, ["w", "x", "y", "z"], np.array([2.0, 2.0, 1.0, 0.0]))
    length = lambda texts, responses: torch.tensor([float(len(r)) for r in responses])  # noqa: E731
    measured = compare_samples(ours, {"SFT": theirs, "self": ours}, reward_fn=length)
    assert measured.win_rates == {"SFT": pytest.approx((0 + 0.5 + 1 + 1) / 4), "self": 0.5}
    assert measured.proxy_reward == pytest.approx(2.5) and measured.gold_reward == pytest.approx(2.5)
    assert measured.kl is None and compare_samples(ours, {}).proxy is None


def test_compare_policies_measures_each_against_the_baseline():
    import copy

    profile = apply_overrides(get_profile("tiny"), ["n_eval_prompts=3", "eval_samples_per_prompt=2"])
    model, tokenizer = models.load_model(profile, progress=False)
    prompts = eval_prompts(profile, seed=0)
    comparison = compare_policies({"SFT": model, "copy": copy.deepcopy(model)}, tokenizer, prompts, profile, seed=5,
                                  extra={"answers": lambda s: float(len(s.responses))})
    table = comparison.table
    assert list(table.index) == ["SFT", "copy"]
    assert table.loc["SFT", "gold win rate vs SFT"] == 0.5 and table.loc["SFT", "KL to SFT"] == 0.0
    # the same weights sampled with the same seed: the same answers, so a tie everywhere and no KL
    assert comparison.samples["copy"].responses == comparison.samples["SFT"].responses
    assert table.loc["copy", "gold win rate vs SFT"] == 0.5 and abs(table.loc["copy", "KL to SFT"]) < 1e-4
    assert table.loc["copy", "answers"] == 6 and "proxy reward" not in table
    alone = measure_policy(model, tokenizer, prompts, profile, seed=5)
    assert alone.samples.responses == comparison.samples["SFT"].responses and alone.kl is None
    with pytest.raises(ValueError, match="baseline 'base' is not among the policies"):
        compare_policies({"SFT": model}, tokenizer, prompts, profile, baseline="base")
