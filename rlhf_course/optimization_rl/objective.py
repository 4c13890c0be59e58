"""The KL-regularised RLHF objective, solved exactly on a small set of responses.

RLHF maximises expected reward minus a KL penalty that keeps the policy near a
reference policy:

    J(π) = E_{y~π}[r(y)] − β KL(π ‖ π_ref).

For one prompt with a *finite* set of candidate responses everything about
this objective can be computed exactly, which a language model never allows:

- :func:`optimal_policy` is the maximiser, π*(y) ∝ π_ref(y) exp(r(y)/β), the
  reference policy tilted towards high reward;
- :func:`log_partition` is log Z, and β log Z is the best value J can reach;
- :func:`policy_gradient` climbs J by sampled REINFORCE on softmax logits, the
  way RL does for a language model, so its path can be compared with the exact
  answer;
- :func:`best_of_n_policy` is the distribution of the best of n samples, the
  other common way to trade KL for reward;
- :func:`response_space` builds such a finite problem from the toy world.

Distributions are 1-D float64 tensors over the same list of responses.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field

import torch

from rlhf_course.toyworld import Prompt, gold_reward, sample_response

# ----------------------------------------------------------------------------- input checks


def _as_vector(name: str, values: object) -> torch.Tensor:
    """A 1-D float64 tensor (a copy), or a ValueError that says what is wrong."""
    tensor = torch.as_tensor(values, dtype=torch.float64).detach().clone()
    if tensor.dim() != 1 or tensor.numel() == 0:
        raise ValueError(f"{name} must be a non-empty 1-D sequence, got shape {tuple(tensor.shape)}.")
    if torch.isnan(tensor).any():
        raise ValueError(f"{name} contains NaN.")
    return tensor


def _as_distribution(name: str, probs: object) -> torch.Tensor:
    """A probability vector: non-negative entries summing to 1 (within 1e-6)."""
    p = _as_vector(name, probs)
    if (p < 0).any():
        raise ValueError(f"{name} has negative entries; probabilities must be >= 0.")
    total = p.sum().item()
    if abs(total - 1.0) > 1e-6:
        raise ValueError(f"{name} sums to {total:.6g}, not 1; normalise it first (p / p.sum()).")
    return p


def _check_beta(beta: float) -> float:
    beta = float(beta)
    if math.isnan(beta) or beta <= 0:
        raise ValueError(
            f"beta must be positive, got {beta}. At beta = 0 there is no KL penalty and the optimum is the "
            "argmax of the reward (all mass on the best responses); use a small positive beta to approach it."
        )
    return beta


def _same_length(**vectors: torch.Tensor) -> None:
    lengths = {name: v.numel() for name, v in vectors.items()}
    if len(set(lengths.values())) > 1:
        listed = ", ".join(f"{name} has {n}" for name, n in lengths.items())
        raise ValueError(f"one entry per response is needed, but {listed}.")


# ----------------------------------------------------------------------------- the exact solution


def _tilted_logits(ref_probs: object, rewards: object, beta: float) -> torch.Tensor:
    """log π_ref(y) + r(y)/β, the unnormalised log-probabilities of π*."""
    ref = _as_distribution("ref_probs", ref_probs)
    r = _as_vector("rewards", rewards)
    _same_length(ref_probs=ref, rewards=r)
    if not torch.isfinite(r).all():
        raise ValueError("rewards must be finite.")
    return torch.log(ref) + r / _check_beta(beta)  # log 0 = -inf: responses π_ref never writes stay at 0


def optimal_policy(ref_probs: object, rewards: object, beta: float) -> torch.Tensor:
    """The maximiser of E_π[r] − β KL(π ‖ π_ref): π*(y) = π_ref(y) exp(r(y)/β) / Z.

    Computed as a softmax of log π_ref + r/β, which subtracts the largest
    logit before exponentiating (the log-sum-exp trick): exp(r/β) alone
    overflows for r/β above about 709, e.g. a reward of 10 at β = 0.01.
    Responses with π_ref(y) = 0 keep probability 0, whatever their reward.

    Raises:
        ValueError: for beta <= 0, lengths that differ, or ref_probs that are
            not a probability vector.
    """
    return torch.softmax(_tilted_logits(ref_probs, rewards, beta), dim=0)


def log_partition(ref_probs: object, rewards: object, beta: float) -> float:
    """log Z = log Σ_y π_ref(y) exp(r(y)/β), computed stably with logsumexp.

    β log Z is the largest value the regularised objective can take; it is
    reached at :func:`optimal_policy` and nowhere else.
    """
    return torch.logsumexp(_tilted_logits(ref_probs, rewards, beta), dim=0).item()


def optimal_value(ref_probs: object, rewards: object, beta: float) -> float:
    """max_π E_π[r] − β KL(π ‖ π_ref) = β log Z."""
    return beta * log_partition(ref_probs, rewards, beta)


def kl_divergence(p: object, q: object) -> float:
    """KL(p ‖ q) = Σ p log(p/q) in nats, with 0 log 0 = 0.

    Infinite when p puts mass where q has none: the policy writes something
    the reference never would.
    """
    p, q = _as_distribution("p", p), _as_distribution("q", q)
    _same_length(p=p, q=q)
    support = p > 0
    if (q[support] == 0).any():
        return math.inf
    return torch.sum(p[support] * (torch.log(p[support]) - torch.log(q[support]))).item()


def expected_reward(policy: object, rewards: object) -> float:
    """E_{y~π}[r(y)]."""
    p, r = _as_distribution("policy", policy), _as_vector("rewards", rewards)
    _same_length(policy=p, rewards=r)
    return torch.dot(p, r).item()


def regularised_objective(policy: object, ref_probs: object, rewards: object, beta: float) -> float:
    """J(π) = E_π[r] − β KL(π ‖ π_ref), the quantity RLHF maximises for one prompt."""
    beta = _check_beta(beta)
    return expected_reward(policy, rewards) - beta * kl_divergence(policy, ref_probs)


@dataclass
class BetaSweep:
    """Reward, KL and value of π* for each β of a sweep (lists aligned with ``betas``)."""

    betas: list[float]
    reward: list[float]
    kl: list[float]
    value: list[float]
    policies: list[torch.Tensor] = field(repr=False)


def beta_sweep(ref_probs: object, rewards: object, betas: list[float]) -> BetaSweep:
    """π* and its expected reward, KL(π* ‖ π_ref) and value β log Z for each β."""
    policies = [optimal_policy(ref_probs, rewards, b) for b in betas]
    return BetaSweep(
        betas=[float(b) for b in betas],
        reward=[expected_reward(p, rewards) for p in policies],
        kl=[kl_divergence(p, ref_probs) for p in policies],
        value=[optimal_value(ref_probs, rewards, b) for b in betas],
        policies=policies,
    )


def best_of_n_policy(ref_probs: object, rewards: object, n: int) -> torch.Tensor:
    """The distribution of the highest-reward response among n samples from π_ref.

    Responses are ordered by reward (ties broken by position, as a fixed rule
    would); the best of n i.i.d. draws is response y with probability
    F(y)^n − F(y⁻)^n, where F is the cumulative probability in that order.
    Best-of-n moves the policy by selection only, never by training.
    """
    ref = _as_distribution("ref_probs", ref_probs)
    r = _as_vector("rewards", rewards)
    _same_length(ref_probs=ref, rewards=r)
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive integer, got {n!r}.")
    order = sorted(range(len(r)), key=lambda i: (r[i].item(), i))
    cdf = torch.cumsum(ref[order], dim=0).clamp(max=1.0)
    below = torch.cat([torch.zeros(1, dtype=torch.float64), cdf[:-1]])
    policy = torch.zeros_like(ref)
    policy[order] = cdf**n - below**n
    return policy / policy.sum()


# ----------------------------------------------------------------------------- policy gradient


@dataclass
class PolicyGradientRun:
    """What :func:`policy_gradient` did, one entry per step (step 0 is the start).

    ``objective``, ``reward``, ``kl`` (to π_ref) and ``kl_to_optimum``
    (KL(π_θ ‖ π*)) are exact values of the current policy, not estimates from
    the samples; ``optimum`` is β log Z, the value ``objective`` approaches.
    """

    steps: list[int]
    objective: list[float]
    reward: list[float]
    kl: list[float]
    kl_to_optimum: list[float]
    optimum: float
    policy: torch.Tensor = field(repr=False)


def policy_gradient(
    ref_probs: object,
    rewards: object,
    beta: float,
    steps: int = 300,
    lr: float = 0.1,
    samples_per_step: int = 32,
    seed: int = 0,
) -> PolicyGradientRun:
    """Maximise E_π[r] − β KL(π ‖ π_ref) with sampled REINFORCE on softmax logits.

    The policy is π_θ = softmax(θ), one logit per response, started at the
    reference (θ = log π_ref), as RLHF starts from the SFT model. Each step
    draws ``samples_per_step`` responses y_i from π_θ and scores each with the
    *shaped* reward R_i = r(y_i) − β log(π_θ(y_i)/π_ref(y_i)), whose mean
    estimates the objective. The score-function (REINFORCE) estimate of the
    gradient is

        g = 1/N Σ_i (R_i − b_i) ∇_θ log π_θ(y_i),

    with a leave-one-out baseline b_i, the mean shaped reward of the *other*
    samples: it does not depend on y_i, so the estimate stays unbiased, and it
    cancels most of the noise of R_i's level. The update is written as a
    surrogate loss, −mean((R_i − b_i) · log π_θ(y_i)) with the weights
    detached, and handed to Adam, which is how RL code for language models
    does it. The gradient is *sampled*, never computed exactly, so the policy
    ends near π*, jittering by an amount set by ``lr`` and ``samples_per_step``.
    """
    ref = _as_distribution("ref_probs", ref_probs)
    r = _as_vector("rewards", rewards)
    _same_length(ref_probs=ref, rewards=r)
    beta = _check_beta(beta)
    if samples_per_step < 2:
        raise ValueError("samples_per_step must be at least 2 for a leave-one-out baseline.")
    if (ref == 0).any():
        raise ValueError("ref_probs must be positive everywhere; drop responses the reference never writes.")
    target = optimal_policy(ref, r, beta)
    log_ref = torch.log(ref)
    logits = log_ref.clone().requires_grad_(True)
    optimizer = torch.optim.Adam([logits], lr=lr)
    generator = torch.Generator().manual_seed(seed)
    run = PolicyGradientRun(steps=[], objective=[], reward=[], kl=[], kl_to_optimum=[],
                            optimum=optimal_value(ref, r, beta), policy=ref)

    def record(step: int) -> None:
        policy = torch.softmax(logits.detach(), dim=0)
        run.steps.append(step)
        run.objective.append(regularised_objective(policy, ref, r, beta))
        run.reward.append(expected_reward(policy, r))
        run.kl.append(kl_divergence(policy, ref))
        run.kl_to_optimum.append(kl_divergence(policy, target))
        run.policy = policy

    record(0)
    n = samples_per_step
    for step in range(1, steps + 1):
        log_probs = torch.log_softmax(logits, dim=0)
        samples = torch.multinomial(log_probs.detach().exp(), n, replacement=True, generator=generator)
        shaped = r[samples] - beta * (log_probs.detach()[samples] - log_ref[samples])
        baseline = (shaped.sum() - shaped) / (n - 1)  # leave-one-out mean
        loss = -((shaped - baseline) * log_probs[samples]).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        record(step)
    return run


# ----------------------------------------------------------------------------- a toy-world problem


@dataclass
class ResponseSpace:
    """One prompt, a finite list of distinct responses, π_ref over them and their gold rewards."""

    prompt: Prompt
    responses: list[str]
    ref_probs: torch.Tensor
    rewards: torch.Tensor

    def __len__(self) -> int:
        return len(self.responses)


def response_space(
    prompt: Prompt, n_responses: int = 30, n_samples: int = 4000, p_flaw: float = 0.8, seed: int = 0
) -> ResponseSpace:
    """The ``n_responses`` responses the toy-world sampler writes most often for ``prompt``.

    π_ref is the *empirical* distribution of the sampler: draw ``n_samples``
    responses with :func:`~rlhf_course.toyworld.sample_response` (flaw rate
    ``p_flaw``, so that the reference is a mediocre writer, like an SFT
    model), keep the most frequent distinct ones, and normalise their counts.
    So π_ref(y) is literally how often the reference writes y, among the
    responses kept. Rewards are the gold rewards. Responses come sorted by
    reward, best first (ties by frequency).
    """
    if n_responses < 2:
        raise ValueError(f"n_responses must be at least 2, got {n_responses}.")
    rng = random.Random(f"rl_objective/{prompt.id}/{seed}")
    counts: dict[str, int] = {}
    for _ in range(n_samples):
        response = sample_response(prompt, rng, p_flaw=p_flaw)
        counts[response] = counts.get(response, 0) + 1
    kept = sorted(counts, key=lambda y: -counts[y])[:n_responses]
    kept.sort(key=lambda y: (-gold_reward(prompt, y), -counts[y]))
    freq = torch.tensor([counts[y] for y in kept], dtype=torch.float64)
    return ResponseSpace(
        prompt=prompt,
        responses=kept,
        ref_probs=freq / freq.sum(),
        rewards=torch.tensor([gold_reward(prompt, y) for y in kept], dtype=torch.float64),
    )
