"""PPO for language models: token-level rewards and advantages, and the clipped losses.

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

On top of these, PPO (Schulman et al. 2017, "Proximal Policy Optimization
Algorithms") adds:

- :func:`whiten`: advantages normalised over the real tokens of a batch;
- :func:`clipped_policy_loss`: the clipped surrogate, with the clip fraction
  and an approximate KL(π_old ‖ π_θ) to watch;
- :func:`clipped_value_loss`: the critic's regression onto the returns, clipped
  around its old predictions;
- :func:`missing_eos_penalty` and :func:`should_stop_early`.

The loop that uses them, :func:`rlhf_course.ppo.train.train_ppo`, and the
critic are in :mod:`rlhf_course.ppo.train`.

Shapes: every per-token tensor is ``(batch, T)``, one row per sequence. A
row's real tokens form one contiguous block marked by ``mask`` (1 on real
tokens, 0 elsewhere): either right-padded responses (a block of ones then
zeros) or, as in the training loop, prompt + response rows whose mask is the
``completion_mask`` of :func:`rlhf_course.core.sampling.pack` (zeros on the prompt,
ones on the response, zeros on the padding). Outputs are 0 off the mask.

The functions are written for reading, one loop or one line each. The
implementation details follow Huang et al. 2024, "The N+ Implementation
Details of RLHF with PPO".
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from rlhf_course.regularization.loss import kl_estimators


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
    estimator: str = "k1",
) -> torch.Tensor:
    """Per-token rewards of the KL-regularised objective, shape ``(batch, T)``.

    r_t = −β kl_t + [t = last] · score, with kl_t a per-token estimate of
    KL(π_θ ‖ π_ref) on the sampled token (:func:`rlhf_course.regularization.kl_estimators`):

    - ``"k1"`` (the default, InstructGPT's): kl_t = log π_θ(y_t | ·) − log π_ref(y_t | ·).
      Summed over a response, the return is r_φ(x, y) − β log(π_θ(y|x) / π_ref(y|x)),
      the shaped reward of the KL-regularised objective. Single tokens can be
      rewarded (kl_t < 0) for being likelier under the reference.
    - ``"k3"``: kl_t = (ω_t − 1) − log ω_t with ω_t = π_ref / π_θ. Its *value* is
      also unbiased per token, never negative and less noisy near π_θ ≈ π_ref,
      but as a reward it does not give the objective's gradient: the
      score-function gradient of a reward k3 is ∇[KL(π_θ ‖ π_ref) − KL(π_ref ‖ π_θ)]
      per next-token distribution, not ∇KL(π_θ ‖ π_ref). Near the reference the
      two KLs cancel to second order, so the penalty barely pulls back.
    - ``"k2"``: kl_t = ½ (log ω_t)²; biased in value, and its gradient as a
      reward is ∇E[k2] − ∇KL(π_θ ‖ π_ref).

    Only ``"k1"`` optimises the KL-regularised objective; the others are here to
    be compared with it (``tests/test_kl_in_reward.py`` checks these gradients).

    Args:
        scores: the reward model's score of each response, shape ``(batch,)``.
        logp_policy, logp_ref: per-token log-probabilities of the sampled
            tokens under the policy and the reference, shape ``(batch, T)``.
        beta: the strength of the KL penalty.
        mask: 1 on the real tokens of each row (one contiguous block); ``None`` means all.
        estimator: ``"k1"``, ``"k2"`` or ``"k3"``.

    The score goes on the last real token of each row. The rewards are data
    for the RL step, not part of its graph, so they are computed from detached inputs.
    """
    if estimator not in ("k1", "k2", "k3"):
        raise ValueError(f"estimator must be 'k1', 'k2' or 'k3'; got {estimator!r}.")
    logp_policy, logp_ref, scores = logp_policy.detach(), logp_ref.detach(), scores.detach()
    mask = _mask_like(mask, logp_policy)
    rewards = -beta * kl_estimators(logp_policy, logp_ref)[estimator] * mask
    positions = torch.arange(mask.shape[1], device=mask.device)
    last = (positions * mask).argmax(dim=1)  # index of each row's last real token
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


# ----------------------------------------------------------------------------- PPO's pieces


def whiten(values: torch.Tensor, mask: torch.Tensor | None = None, shift_mean: bool = True,
           eps: float = 1e-8) -> torch.Tensor:
    """Normalise ``values`` over the real tokens of a batch: (x − mean) / std.

    Mean and (population) standard deviation are taken over the entries where
    ``mask`` is 1; entries off the mask come back 0. With ``shift_mean=False``
    the values are only divided by the standard deviation, not shifted: the
    right thing for per-token *rewards*, where a shift would add a constant to
    every token and so a bonus or penalty for length (see the chapter's last
    exercise). Advantages may be shifted freely: a constant is a baseline.
    """
    mask = _mask_like(mask, values)
    n = mask.sum().clamp(min=1)
    mean = (values * mask).sum() / n
    std = (((values - mean) ** 2 * mask).sum() / n).sqrt()
    centred = values - mean if shift_mean else values
    return centred / (std + eps) * mask


class PolicyLoss(NamedTuple):
    """What :func:`clipped_policy_loss` returns: the loss and two numbers to watch."""

    loss: torch.Tensor  # −L^CLIP, the masked token mean; the one to backpropagate
    clip_fraction: float  # share of real tokens whose clipped term was used (zero gradient)
    approx_kl: float  # mean k3 estimate of KL(π_old ‖ π_θ) per token


def clipped_policy_loss(
    new_logps: torch.Tensor,
    old_logps: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor | None = None,
    clip: float = 0.2,
) -> PolicyLoss:
    """PPO's clipped surrogate as a loss: −mean over real tokens of min(ρ A, clip(ρ, 1 − ε, 1 + ε) A).

    The ratio ρ_t = π_θ(y_t | ·) / π_old(y_t | ·) is formed as
    exp(log π_θ − log π_old). The minimum is pessimistic: once the ratio has
    left [1 − ε, 1 + ε] in the direction the advantage asks for (ρ > 1 + ε with
    A > 0, ρ < 1 − ε with A < 0), the clipped term is used, which is constant,
    and the token's gradient is zero; in every other case the token keeps its
    importance-weighted policy gradient. ``clip_fraction`` is the share of
    real tokens in that first case.

    ``approx_kl`` is the mean of k3 = (ρ − 1) − log ρ over the tokens, which were
    sampled from π_old: an unbiased, never negative estimate of
    KL(π_old ‖ π_θ) per token (the roles of :mod:`rlhf_course.regularization`
    with the two policies swapped), used to stop a batch's epochs early.
    """
    if not new_logps.shape == old_logps.shape == advantages.shape:
        raise ValueError(f"new_logps, old_logps and advantages must have the same shape; got "
                         f"{tuple(new_logps.shape)}, {tuple(old_logps.shape)} and {tuple(advantages.shape)}.")
    mask = _mask_like(mask, new_logps)
    n = mask.sum().clamp(min=1)
    advantages, old_logps = advantages.detach(), old_logps.detach()
    log_ratio = (new_logps - old_logps) * mask
    ratio = log_ratio.exp()
    unclipped = ratio * advantages
    clipped = ratio.clamp(1 - clip, 1 + clip) * advantages
    loss = -(torch.minimum(unclipped, clipped) * mask).sum() / n
    with torch.no_grad():
        used_clip = ((clipped < unclipped) * mask).sum() / n
        approx_kl = ((ratio - 1 - log_ratio) * mask).sum() / n
    return PolicyLoss(loss, used_clip.item(), approx_kl.item())


class ValueLoss(NamedTuple):
    """What :func:`clipped_value_loss` returns."""

    loss: torch.Tensor  # L^V, the masked token mean
    clip_fraction: float  # share of real tokens where the clipped error was the larger (zero gradient)


def clipped_value_loss(
    values: torch.Tensor,
    old_values: torch.Tensor,
    returns: torch.Tensor,
    mask: torch.Tensor | None = None,
    clip: float = 0.2,
) -> ValueLoss:
    """The critic's loss: ½ mean over real tokens of max((V − R)², (V_clip − R)²).

    V_clip = V_old + clip(V − V_old, −ε_V, ε_V) may move at most ε_V (in units
    of reward) from the critic's prediction when the batch was collected. The
    maximum is pessimistic like the policy clip: once V has moved more than
    ε_V *towards* the target R, the clipped error is the larger one and its
    gradient is zero; a move away from the target keeps its full gradient.
    (A "code-level optimisation" of OpenAI's PPO; Engstrom et al. 2020.)
    """
    if not values.shape == old_values.shape == returns.shape:
        raise ValueError(f"values, old_values and returns must have the same shape; got "
                         f"{tuple(values.shape)}, {tuple(old_values.shape)} and {tuple(returns.shape)}.")
    mask = _mask_like(mask, values)
    n = mask.sum().clamp(min=1)
    old_values, returns = old_values.detach(), returns.detach()
    clipped_values = old_values + (values - old_values).clamp(-clip, clip)
    error = (values - returns) ** 2
    clipped_error = (clipped_values - returns) ** 2
    loss = 0.5 * (torch.maximum(error, clipped_error) * mask).sum() / n
    with torch.no_grad():
        used_clip = ((clipped_error > error) * mask).sum() / n
    return ValueLoss(loss, used_clip.item())


def missing_eos_penalty(scores: torch.Tensor, finished: torch.Tensor, penalty: float) -> torch.Tensor:
    """Scores with ``penalty`` subtracted from every response that did not finish.

    A response cut off at the length limit has no EOS token: the reward model
    never saw anything like it, and nothing would teach the policy to stop.
    Penalising it makes finishing part of the task (the "EOS trick" of Huang
    et al. 2024, who replace such a score by a fixed −1; subtracting keeps the
    reward model's ordering among unfinished responses). ``finished`` is
    :attr:`rlhf_course.core.rollout.Rollout.finished`.
    """
    finished = finished.to(device=scores.device, dtype=torch.bool)
    return scores - penalty * (~finished).to(scores.dtype)


def should_stop_early(approx_kl: float, limit: float) -> bool:
    """True once the policy has moved more than ``limit`` nats per token from π_old; never if ``limit`` <= 0.

    Clipping is a soft trust region: ratios drift out of the band as epochs go
    on. Stopping a batch's updates when the approximate KL(π_old ‖ π_θ)
    exceeds a limit makes each batch's step self-limiting.
    """
    return limit > 0 and approx_kl > limit
