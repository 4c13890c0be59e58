"""GAE against a hand computation and its two limits; KL-penalised rewards; the PG loss."""

from __future__ import annotations

import pytest
import torch

from rlhf_course.ppo import generalized_advantage_estimation, kl_penalised_rewards, policy_gradient_loss


def test_gae_hand_computed():
    # One response of three tokens, reward only at the end, gamma = 0.9, lambda = 0.5.
    rewards = torch.tensor([[0.0, 0.0, 1.0]])
    values = torch.tensor([[0.5, 0.6, 0.7]])
    # delta_2 = 1 + 0 - 0.7 = 0.3
    # delta_1 = 0 + 0.9 * 0.7 - 0.6 = 0.03
    # delta_0 = 0 + 0.9 * 0.6 - 0.5 = 0.04
    # A_2 = 0.3;  A_1 = 0.03 + 0.45 * 0.3 = 0.165;  A_0 = 0.04 + 0.45 * 0.165 = 0.11425
    advantages, returns = generalized_advantage_estimation(rewards, values, gamma=0.9, lam=0.5)
    torch.testing.assert_close(advantages, torch.tensor([[0.11425, 0.165, 0.3]]))
    torch.testing.assert_close(returns, torch.tensor([[0.61425, 0.765, 1.0]]))


def _random_batch(seed: int = 0, batch: int = 4, length: int = 6):
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(batch, length, generator=generator), torch.randn(batch, length, generator=generator)


def test_lambda_one_gamma_one_is_reward_to_go_minus_value():
    rewards, values = _random_batch()
    advantages, returns = generalized_advantage_estimation(rewards, values, gamma=1.0, lam=1.0)
    reward_to_go = rewards.flip(1).cumsum(1).flip(1)
    torch.testing.assert_close(advantages, reward_to_go - values)
    torch.testing.assert_close(returns, reward_to_go)


def test_lambda_zero_is_the_td_residual():
    rewards, values = _random_batch(1)
    gamma = 0.8
    advantages, _ = generalized_advantage_estimation(rewards, values, gamma=gamma, lam=0.0)
    next_values = torch.cat([values[:, 1:], torch.zeros(values.shape[0], 1)], dim=1)
    torch.testing.assert_close(advantages, rewards + gamma * next_values - values)


def test_padding_changes_nothing_for_the_real_tokens():
    rewards, values = _random_batch(2, batch=1, length=4)
    short_adv, short_ret = generalized_advantage_estimation(rewards, values, gamma=0.95, lam=0.9)
    # the same response, right-padded to 7 tokens with junk in the padding
    padded_rewards = torch.cat([rewards, torch.full((1, 3), 5.0)], dim=1)
    padded_values = torch.cat([values, torch.full((1, 3), -3.0)], dim=1)
    mask = torch.tensor([[1, 1, 1, 1, 0, 0, 0]])
    adv, ret = generalized_advantage_estimation(padded_rewards, padded_values, gamma=0.95, lam=0.9, mask=mask)
    torch.testing.assert_close(adv[:, :4], short_adv)
    torch.testing.assert_close(ret[:, :4], short_ret)
    assert torch.all(adv[:, 4:] == 0) and torch.all(ret[:, 4:] == 0)


def test_gae_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="shape"):
        generalized_advantage_estimation(torch.zeros(2, 3), torch.zeros(2, 4))


def test_kl_penalised_rewards_put_the_score_on_the_last_real_token():
    logp = torch.tensor([[-1.0, -2.0, -1.5], [-0.5, -0.5, 0.0]])
    logp_ref = torch.tensor([[-1.5, -2.0, -1.0], [-1.0, -0.5, 0.0]])
    mask = torch.tensor([[1, 1, 1], [1, 1, 0]])
    rewards = kl_penalised_rewards(torch.tensor([2.0, -1.0]), logp, logp_ref, beta=0.1, mask=mask)
    expected = torch.tensor([[-0.05, 0.0, 0.05 + 2.0], [-0.05, 0.0 - 1.0, 0.0]])
    torch.testing.assert_close(rewards, expected)
    # summed, the rewards are the score minus beta times the sequence log-ratio
    torch.testing.assert_close(rewards.sum(1), torch.tensor([2.0, -1.0]) - 0.1 * ((logp - logp_ref) * mask).sum(1))


def test_policy_gradient_loss_is_the_masked_token_mean():
    logp = torch.tensor([[-1.0, -2.0], [-3.0, -4.0]], requires_grad=True)
    advantages = torch.tensor([[1.0, 2.0], [0.5, 9.0]])
    mask = torch.tensor([[1, 1], [1, 0]])
    loss = policy_gradient_loss(logp, advantages, mask)
    assert loss.item() == pytest.approx(-(1 * -1 + 2 * -2 + 0.5 * -3) / 3)
    loss.backward()
    torch.testing.assert_close(logp.grad, -advantages * mask / 3)
