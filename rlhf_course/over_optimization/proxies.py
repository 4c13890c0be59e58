"""Proxy rewards to over-optimise: gold plus noise, gold plus a spurious feature, learned reward models, ensembles.

A proxy here is what every stage of the course optimises: a function
``(prompt texts, responses) -> tensor of scores``. The first two are built from
the gold reward itself, so that each kind of Goodhart can be produced on purpose:

- :func:`noisy_gold` adds independent noise (regressional Goodhart only: the
  proxy's favourite is, on average, still better than a random answer);
- :func:`gold_plus_feature` adds a bonus for a feature gold does not value
  (extremal and causal Goodhart: pushing the feature up stops paying in gold);
- learned reward models trained on several numbers of pairs, the proxies of
  Gao et al.'s data sweep, come from :func:`rlhf_course.shared_models.small_reward_model`;
- :func:`combine_scores` and :func:`ensemble_reward` combine several reward
  models by their mean, their minimum, or their mean minus λ times their
  variance (Coste et al., 2023).
"""

from __future__ import annotations

import hashlib
from typing import Callable, Sequence

import numpy as np
import torch

from rlhf_course.toyworld import Prompt, gold_reward

RewardFunction = Callable[[list[str], list[str]], torch.Tensor]
ENSEMBLE_RULES = ("mean", "min", "uncertainty")


def _by_text(prompts: Sequence[Prompt]) -> dict[str, Prompt]:
    return {p.text: p for p in prompts}


def _prompt_of(table: dict[str, Prompt], text: str) -> Prompt:
    if text not in table:
        raise KeyError(f"prompt {text!r} is not among the prompts this proxy was built for; build it with every "
                       "prompt it will score (the gold reward needs the Prompt object, not only its text).")
    return table[text]


def _unit_noise(prompt: str, response: str, seed: int) -> float:
    """A standard normal number fixed by (prompt, response, seed): the same answer always gets the same noise."""
    digest = hashlib.sha256(f"{seed}\x00{prompt}\x00{response}".encode()).digest()
    return float(np.random.default_rng(int.from_bytes(digest[:8], "little")).standard_normal())


def noisy_gold(prompts: Sequence[Prompt], noise: float, seed: int = 0,
               truth: Callable[[Prompt, str], float] = gold_reward) -> RewardFunction:
    """Gold plus independent Gaussian noise of standard deviation ``noise``: a proxy with no bias, only error.

    The noise is a fixed function of the answer (hashed with ``seed``), so the
    proxy is a reward function like any other: it scores the same answer the
    same way every time. Selecting on it can only be fooled by luck, never
    systematically.
    """
    if noise < 0:
        raise ValueError(f"noise is a standard deviation and cannot be negative; got {noise}.")
    table = _by_text(prompts)

    def reward(texts: list[str], responses: list[str]) -> torch.Tensor:
        return torch.tensor([truth(_prompt_of(table, t), r) + noise * _unit_noise(t, r, seed)
                             for t, r in zip(texts, responses, strict=True)])

    return reward


def gold_plus_feature(prompts: Sequence[Prompt], feature: Callable[[str], float], weight: float,
                      truth: Callable[[Prompt, str], float] = gold_reward) -> RewardFunction:
    """Gold plus ``weight`` × ``feature(response)``: a proxy that also pays for something gold does not value.

    With ``feature`` the number of times an answer says "I hope this helps!",
    for instance, the proxy agrees with gold on ordinary answers and prefers the
    ones that repeat the phrase, which gold charges for (every extra word costs
    conciseness).
    """
    table = _by_text(prompts)

    def reward(texts: list[str], responses: list[str]) -> torch.Tensor:
        return torch.tensor([truth(_prompt_of(table, t), r) + weight * feature(r)
                             for t, r in zip(texts, responses, strict=True)])

    return reward


def combine_scores(scores: torch.Tensor, how: str = "mean", lam: float = 1.0) -> torch.Tensor:
    """Combine the scores of several reward models, shape ``(members, N)``, into one score per answer, shape ``(N,)``.

    - ``"mean"``: the average; errors that the members do not share cancel.
    - ``"min"``: the worst case; an answer scores well only if every member likes it.
    - ``"uncertainty"``: mean − λ · variance across members (Coste et al.'s
      uncertainty-weighted optimisation): answers the members disagree on are
      penalised in proportion to the disagreement.

    Put the members on one scale first (e.g. :func:`standardize`): a Bradley–Terry
    reward is defined only up to a shift, so a raw minimum would pick whichever
    member happens to sit lowest.
    """
    if scores.dim() != 2 or scores.shape[0] < 1:
        raise ValueError(f"scores must have shape (members, N) with at least one member; got {tuple(scores.shape)}.")
    if how == "mean":
        return scores.mean(dim=0)
    if how == "min":
        return scores.min(dim=0).values
    if how == "uncertainty":
        if scores.shape[0] < 2:
            raise ValueError("the uncertainty rule needs at least two members to measure their disagreement.")
        return scores.mean(dim=0) - lam * scores.var(dim=0, unbiased=False)
    raise ValueError(f"how must be one of {ENSEMBLE_RULES}; got {how!r}.")


def standardize(scores: torch.Tensor, reference: torch.Tensor | None = None) -> torch.Tensor:
    """Each row of ``scores`` (one member each) shifted and scaled to mean 0, std 1 on ``reference`` (default: itself)."""
    reference = scores if reference is None else reference
    mean, std = reference.mean(dim=1, keepdim=True), reference.std(dim=1, keepdim=True).clamp_min(1e-8)
    return (scores - mean) / std


def ensemble_reward(members: Sequence[RewardFunction], how: str = "mean", lam: float = 1.0,
                    calibration: tuple[list[str], list[str]] | None = None) -> RewardFunction:
    """Several reward functions as one, combined by :func:`combine_scores` (``how``: mean, min or uncertainty).

    With ``calibration`` = (prompts, responses), each member is first put on a
    common scale: mean 0 and standard deviation 1 on those answers (the SFT
    model's own, say).
    """
    if not members:
        raise ValueError("an ensemble needs at least one member reward function.")
    reference = None
    if calibration is not None:
        reference = torch.stack([m(*calibration).float().cpu() for m in members])

    def reward(texts: list[str], responses: list[str]) -> torch.Tensor:
        scores = torch.stack([m(texts, responses).float().cpu() for m in members])
        if reference is not None:
            scores = standardize(scores, reference)
        return combine_scores(scores, how, lam)

    return reward
