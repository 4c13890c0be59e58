"""The toy-world prompts each stage trains on (``toyworld.training``): the edges that feed the trainers.

The trainers take their prompts as arguments; these are the draws the pipeline,
the shared models and the labs pass, fixed so that a stage trained from a lab and
from the pipeline at the same seed sees the same prompts in the same order.
"""

from __future__ import annotations

import dataclasses

import pytest

from rlhf_course.core.profiles import apply_overrides, get_profile
from rlhf_course.toyworld import GOLD_MAX, gold_reward, gold_rewards, ideal_response, make_prompts, training


def ids(prompts) -> list[str]:
    return [p.id for p in prompts]


def test_rl_prompts_are_one_training_draw_of_steps_times_prompts_per_step():
    profile = apply_overrides(get_profile("tiny"), ["rl.steps=3", "rl.prompts_per_step=5", "ppo.steps=2"])
    assert ids(training.rl_prompts(profile, seed=4)) == ids(make_prompts("train", 15, seed=4))
    assert ids(training.rl_prompts(profile, seed=4, steps=1)) == ids(make_prompts("train", 5, seed=4))
    assert ids(training.ppo_prompts(profile, seed=4)) == ids(make_prompts("train", 10, seed=4))
    no_ppo_steps = profile.replace(ppo=dataclasses.replace(profile.ppo, steps=None))
    assert len(training.ppo_prompts(no_ppo_steps, seed=4)) == 15, "without ppo.steps, rl.steps"


def test_each_rejection_sampling_round_draws_fresh_prompts_with_its_own_seed():
    profile = apply_overrides(get_profile("tiny"), ["rs.rounds=2", "rs.n_prompts=6"])
    rounds = training.rejection_sampling_prompts(profile, seed=1)
    assert [ids(r) for r in rounds] == [ids(make_prompts("train", 6, seed=1100)),
                                        ids(make_prompts("train", 6, seed=1101))]
    assert ids(training.rejection_sampling_prompts(profile, seed=1, rounds=1)[0]) == ids(rounds[0])


def test_online_dpo_rounds_are_consecutive_slices_of_one_draw():
    profile = apply_overrides(get_profile("tiny"), ["dpo.online_rounds=3", "dpo.online_prompts=4"])
    rounds = training.online_dpo_prompts(profile, seed=2)
    assert [ids(r) for r in rounds] == [ids(make_prompts("train", 12, seed=2))[i:i + 4] for i in (0, 4, 8)]
    assert len(training.online_dpo_prompts(profile, seed=2, rounds=1)) == 1
    with pytest.raises(ValueError, match="at least one round"):
        training.online_dpo_prompts(profile, rounds=0)


def test_the_gold_hook_scores_each_response_to_the_prompt_beside_it():
    import random

    prompts = make_prompts("validation", 3, seed=0)
    responses = [ideal_response(prompts[0], random.Random(0)), "", "no idea"]
    assert gold_rewards(prompts, responses) == [gold_reward(p, r) for p, r in zip(prompts, responses)]
    assert gold_rewards(prompts, responses)[0] == pytest.approx(GOLD_MAX)
    with pytest.raises(ValueError, match="one prompt per response; got 3 prompts and 2 responses"):
        gold_rewards(prompts, responses[:2])


def test_trainers_with_rounds_say_when_they_get_a_flat_list():
    from rlhf_course.direct_alignment import online_dpo
    from rlhf_course.rejection_sampling import rejection_sampling_finetune

    flat = make_prompts("train", 4, seed=0)
    with pytest.raises(ValueError, match="one non-empty list of prompts per round.*got a flat list of prompts"):
        online_dpo("unused", None, None, get_profile("tiny"), prompts=flat)
    with pytest.raises(ValueError, match="got rounds of sizes \\[4, 0\\]"):
        rejection_sampling_finetune(None, None, None, [flat, []], get_profile("tiny"), None)
    with pytest.raises(ValueError, match="got a flat list of prompts"):
        rejection_sampling_finetune(None, None, None, ["What is 2 plus 3?"], get_profile("tiny"), None)
