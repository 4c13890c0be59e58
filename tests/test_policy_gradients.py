"""Advantages and losses of REINFORCE, RLOO and GRPO on hand-computed examples."""

import itertools

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


def test_sequence_and_token_level_losses():
    logps = torch.tensor([[-1.0, -2.0, 0.0], [-1.0, -1.0, -1.0]], requires_grad=True)
    mask = torch.tensor([[1, 1, 0], [1, 1, 1]])
    advantages = torch.tensor([1.0, -2.0])
    # sequence: mean(-(1)(-3), -(-2)(-3)) = mean(3, -6) = -1.5; token: (3 - 6) / 5 tokens = -0.6
    assert sequence_loss(logps, advantages, mask).item() == pytest.approx(-1.5)
    assert sequence_loss(logps, advantages, mask, level="token").item() == pytest.approx(-0.6)
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
