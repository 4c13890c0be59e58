"""The measuring tools every stage is judged by: evaluation prompts, standard errors and win rates."""

from __future__ import annotations

import math

import numpy as np
import pytest

from rlhf_course.evaluation import PolicySamples, eval_prompts, win_rate
from rlhf_course.profiles import get_profile
from rlhf_course.toyworld import make_prompts


def test_eval_prompts_repeat_the_test_prompts_with_the_distinct_ones_first():
    profile = get_profile("tiny").replace(n_eval_prompts=5, eval_samples_per_prompt=3)
    prompts = eval_prompts(profile, seed=2)
    distinct = make_prompts("test", 5, seed=2)
    assert [p.id for p in prompts] == [p.id for p in distinct] * 3


def test_one_sample_per_prompt_keeps_the_plain_test_prompts():
    profile = get_profile("tiny").replace(n_eval_prompts=7, eval_samples_per_prompt=1)
    assert eval_prompts(profile, seed=0) == make_prompts("test", 7, seed=0)


def test_stderr_of_one_answer_per_prompt_is_the_usual_one():
    prompts = make_prompts("test", 4, seed=0)
    rewards = np.array([1.0, 2.0, 4.0, 4.5])
    samples = PolicySamples(prompts, [""] * 4, rewards)
    assert samples.stderr == pytest.approx(rewards.std(ddof=1) / 2)


def test_stderr_averages_a_prompts_answers_before_counting_prompts():
    # two prompts answered twice each: per-prompt means 1 and 4, so the error is std([1, 4]) / sqrt(2) = 1.5,
    # not std of the four answers / sqrt(4), which would pretend there were four independent prompts
    prompts = make_prompts("test", 2, seed=0) * 2
    samples = PolicySamples(prompts, [""] * 4, np.array([0.5, 4.0, 1.5, 4.0]))
    assert samples.mean == pytest.approx(2.5)
    assert samples.stderr == pytest.approx(np.std([1.0, 4.0], ddof=1) / math.sqrt(2))


def test_win_rate_counts_ties_half_and_needs_paired_arrays():
    assert win_rate([3.0, 1.0, 2.0, 2.0], [1.0, 3.0, 2.0, 0.0]) == pytest.approx((1 + 0 + 0.5 + 1) / 4)
    with pytest.raises(ValueError, match="paired"):
        win_rate([1.0, 2.0], [1.0])
