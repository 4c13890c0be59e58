"""Policy gradients for RLHF: REINFORCE with a baseline, RLOO and GRPO.

The bandit view of RLHF: a prompt x is the state, a whole response y is the
action, and the reward r(x, y) arrives at the end. The policy-gradient
theorem says

    ∇ E_{y~π_θ}[r(x, y)] = E_{y~π_θ}[(r(x, y) − b(x)) ∇ log π_θ(y | x)]

for any baseline b that does not depend on y. The methods here differ only
in the baseline they subtract, which is what :func:`reinforce_advantages`,
:func:`rloo_advantages` and :func:`grpo_advantages` compute. One training
step is then:

1. :func:`rlhf_course.core.rollout.rollout`: sample k responses for each of a batch of prompts and
   score them with the reward function (the learned reward model, or a
   verifier);
2. subtract β times the sampled KL to the reference from each reward (a
   sequence-level KL penalty, the k1 estimate of log π_θ/π_ref);
3. turn rewards into advantages and take a gradient step on
   :func:`sequence_loss`.

This module holds the advantages and the loss; the loop,
:func:`rlhf_course.policy_gradients.train.train_policy_gradient`, and TRL's
GRPO and RLOO are in :mod:`rlhf_course.policy_gradients.train`. The rollout is
in :mod:`rlhf_course.core.rollout`, which PPO (its own chapter) shares.
"""

from __future__ import annotations

import warnings

import torch


# ----------------------------------------------------------------------------- advantages


def _grouped(rewards: torch.Tensor) -> torch.Tensor:
    """Check that rewards are a ``(prompts, k)`` table with k >= 2."""
    if rewards.dim() != 2 or rewards.shape[1] < 2:
        raise ValueError(f"rewards must have shape (prompts, k) with k >= 2 samples per prompt; "
                         f"got shape {tuple(rewards.shape)}.")
    return rewards.float()


def reinforce_advantages(rewards: torch.Tensor, baseline: float | torch.Tensor = 0.0) -> torch.Tensor:
    """REINFORCE's advantage: reward minus a baseline that ignores the sampled response.

    The baseline is usually a running mean of past rewards; any value that does
    not depend on the response keeps the gradient unbiased and, chosen well,
    makes it far less noisy.
    """
    return rewards.float() - baseline


def rloo_advantages(rewards: torch.Tensor) -> torch.Tensor:
    """RLOO: each of the k responses to a prompt is baselined by the mean of the other k − 1.

    ``rewards`` has shape ``(prompts, k)``. The baseline of response i never
    sees r_i, so it is unbiased; algebraically A_i = k/(k−1) · (r_i − mean r).
    """
    rewards = _grouped(rewards)
    k = rewards.shape[1]
    others = (rewards.sum(dim=1, keepdim=True) - rewards) / (k - 1)
    return rewards - others


def grpo_advantages(rewards: torch.Tensor, scale: bool = True, eps: float = 1e-4) -> torch.Tensor:
    """GRPO: reward minus the group mean, divided by the group's standard deviation.

    ``rewards`` has shape ``(prompts, k)``. With ``scale=False`` this is Dr.
    GRPO's advantage (no division: prompts the policy finds easy or hopeless,
    whose rewards barely vary, are not blown up). The standard deviation is the
    sample one (k − 1 in the denominator), as TRL computes it.
    """
    rewards = _grouped(rewards)
    centred = rewards - rewards.mean(dim=1, keepdim=True)
    return centred / (rewards.std(dim=1, keepdim=True) + eps) if scale else centred


def sequence_loss(
    token_logps: torch.Tensor, advantages: torch.Tensor, mask: torch.Tensor, level: str = "constant"
) -> torch.Tensor:
    """The REINFORCE surrogate −A_i · log π_θ(y_i|x_i) over a batch of N responses, as one number.

    ``token_logps`` and ``mask`` have shape ``(N, length)``; ``advantages`` has
    one value per response, shape ``(N,)``. Two of the aggregations of the
    Policy Gradients chapter:

    - ``"constant"`` (the default): the sum over each response's tokens,
      divided by a constant, here the number of responses N (Dr. GRPO's
      normaliser with L = 1). A response's log-probability is the sum of its
      tokens', as in the policy-gradient theorem, so this is the unbiased
      gradient up to a fixed scale;
    - ``"token"``: the token mean over the batch, divided by the number of real
      tokens in it (DAPO's choice, TRL's default ``loss_type="dapo"``, and the
      mean of ``rlhf_course.ppo.policy_gradient_loss``). That count changes
      with the lengths sampled in each batch.

    ``"sequence"`` is the old name of ``"constant"``; it still works, with a
    DeprecationWarning. It never meant GRPO's mean per sequence.
    """
    if level == "sequence":
        warnings.warn('sequence_loss(level="sequence") is now level="constant" (the sum over tokens divided by '
                      'the number of responses, not a mean per sequence); the old name will go.',
                      DeprecationWarning, stacklevel=2)
        level = "constant"
    if advantages.shape != token_logps.shape[:1]:
        raise ValueError(f"advantages must have one value per response, shape ({token_logps.shape[0]},); "
                         f"got {tuple(advantages.shape)}.")
    per_token = -advantages.detach()[:, None] * token_logps * mask
    if level == "constant":
        return per_token.sum(dim=1).mean()
    if level == "token":
        return per_token.sum() / mask.sum().clamp(min=1)
    raise ValueError(f"level must be 'constant' (sum over tokens / number of responses) or 'token' (token mean); "
                     f"got {level!r}.")
