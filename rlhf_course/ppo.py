"""Token-level pieces of policy-gradient RLHF: rewards, advantages, the loss.

RLHF with PPO treats the generation of a response y = (y_1, …, y_T) to a
prompt x as an episode of T steps. The state at step t is (x, y_<t), the
action is the token y_t, and:

- :func:`kl_penalised_rewards` gives each token its reward: a KL penalty
  −β (log π_θ(y_t | ·) − log π_ref(y_t | ·)) on every token, plus the reward
  model's score of the whole response on the last one;
- :func:`generalized_advantage_estimation` turns those rewards and a value
  model's predictions V(x, y_<t) into advantages (how much better each token
  did than expected) and returns (the value model's regression targets);
- :func:`policy_gradient_loss` is the surrogate loss whose gradient is the
  score-function (REINFORCE) estimate of the policy gradient.

Shapes: every per-token tensor is ``(batch, T)``, one row per response,
with position ``t`` for the response's token ``t`` (prompt tokens are not
part of the episode). Responses of different lengths are *right-padded* and
come with a ``mask`` of the same shape that is 1 on real tokens and 0 on
padding, so each row is a block of ones followed by zeros. Outputs are 0
on padding.

The functions are written for reading, one loop or one line each; PPO's
clipped objective and the training loop come in the policy-gradient chapter.
"""

from __future__ import annotations

import torch


def _mask_like(mask: torch.Tensor | None, reference: torch.Tensor) -> torch.Tensor:
    """The mask as a float tensor of ``reference``'s shape (all ones if None)."""
    if mask is None:
        return torch.ones_like(reference)
    if mask.shape != reference.shape:
        raise ValueError(f"mask must have shape {tuple(reference.shape)}, got {tuple(mask.shape)}.")
    return mask.to(reference.dtype)


def kl_penalised_rewards(
    scores: torch.Tensor,
    logp_policy: torch.Tensor,
    logp_ref: torch.Tensor,
    beta: float,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Per-token rewards of the KL-regularised objective, shape ``(batch, T)``.

    r_t = −β (log π_θ(y_t | x, y_<t) − log π_ref(y_t | x, y_<t)) + [t = last] · score.

    Summed over a response, the penalty is −β times the k1 estimate of
    KL(π_θ ‖ π_ref) on that response (:func:`rlhf_course.regularization.kl_estimators`),
    so the return of the episode is r_φ(x, y) − β log(π_θ(y|x) / π_ref(y|x)),
    the shaped reward of the KL-regularised objective.

    Args:
        scores: the reward model's score of each response, shape ``(batch,)``.
        logp_policy, logp_ref: per-token log-probabilities of the sampled
            tokens under the policy and the reference, shape ``(batch, T)``.
        beta: the strength of the KL penalty.
        mask: 1 on real tokens, 0 on right padding; ``None`` means no padding.

    The rewards are data for the RL step, not part of its graph, so they are
    computed from detached inputs.
    """
    logp_policy, logp_ref, scores = logp_policy.detach(), logp_ref.detach(), scores.detach()
    mask = _mask_like(mask, logp_policy)
    rewards = -beta * (logp_policy - logp_ref) * mask
    last = (mask.sum(dim=1).long() - 1).clamp(min=0)  # index of each response's last real token
    rows = torch.arange(rewards.shape[0], device=rewards.device)
    rewards[rows, last] += scores.to(rewards.dtype) * (mask.sum(dim=1) > 0)
    return rewards


def generalized_advantage_estimation(
    rewards: torch.Tensor,
    values: torch.Tensor,
    gamma: float = 1.0,
    lam: float = 0.95,
    mask: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalized advantage estimates and returns for a batch of token sequences.

    With the TD residual δ_t = r_t + γ V_{t+1} − V_t (and V_{T+1} = 0: the
    episode ends after the last real token), the advantage is the
    exponentially weighted sum of residuals ahead,

        A_t = Σ_{l ≥ 0} (γλ)^l δ_{t+l},   computed backwards as A_t = δ_t + γλ A_{t+1},

    and the return, the value model's target, is A_t + V_t. λ trades bias
    for variance: λ = 0 gives the one-step residual δ_t (low variance, biased
    by V's errors), λ = 1 gives the Monte Carlo reward-to-go minus V_t
    (unbiased, high variance).

    Args:
        rewards: per-token rewards r_t, shape ``(batch, T)`` (e.g. from
            :func:`kl_penalised_rewards`).
        values: the value model's V_t = V(x, y_<t) at each position, same shape.
        gamma: discount factor; RLHF usually uses 1.
        lam: the GAE parameter λ in [0, 1].
        mask: 1 on real tokens, 0 on right padding; ``None`` means every row
            has all T tokens. Padding neither contributes nor receives value.

    Returns:
        ``(advantages, returns)``, both ``(batch, T)``, zero on padding and
        detached from the graph (they are targets, not things to optimise).
    """
    if rewards.shape != values.shape or rewards.dim() != 2:
        raise ValueError(
            f"rewards and values must both have shape (batch, T), got {tuple(rewards.shape)} and {tuple(values.shape)}."
        )
    rewards, values = rewards.detach(), values.detach()
    mask = _mask_like(mask, rewards)
    values = values * mask
    T = rewards.shape[1]
    advantages = torch.zeros_like(rewards)
    next_advantage = torch.zeros_like(rewards[:, 0])
    for t in reversed(range(T)):
        # V_{t+1} and A_{t+1} count only if token t+1 exists (mask 0 after the end).
        next_real = mask[:, t + 1] if t + 1 < T else torch.zeros_like(mask[:, 0])
        next_value = values[:, t + 1] if t + 1 < T else torch.zeros_like(values[:, 0])
        delta = rewards[:, t] + gamma * next_value * next_real - values[:, t]
        next_advantage = (delta + gamma * lam * next_real * next_advantage) * mask[:, t]
        advantages[:, t] = next_advantage
    returns = (advantages + values) * mask
    return advantages, returns


def policy_gradient_loss(
    logp_policy: torch.Tensor, advantages: torch.Tensor, mask: torch.Tensor | None = None
) -> torch.Tensor:
    """The score-function surrogate: −mean over real tokens of A_t · log π_θ(y_t | x, y_<t).

    Its gradient, −mean(A_t ∇ log π_θ(y_t | ·)), is the REINFORCE estimate of
    the (negative) policy gradient from the sampled tokens. The advantages
    are treated as constants (detached): whatever baseline they subtract
    (a value model, the mean reward of a group) does not change the expected
    gradient, because E_{y~π}[∇ log π(y)] = 0, but it lowers its variance.

    The mean is over all real tokens of the batch (a token-level average), one
    of several conventions in use; longer responses therefore weigh more.
    """
    if logp_policy.shape != advantages.shape:
        raise ValueError(
            f"logp_policy and advantages must have the same shape, got {tuple(logp_policy.shape)} "
            f"and {tuple(advantages.shape)}."
        )
    mask = _mask_like(mask, logp_policy)
    return -(advantages.detach() * logp_policy * mask).sum() / mask.sum().clamp(min=1)
