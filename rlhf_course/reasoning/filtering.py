"""Difficulty filtering and zero-variance groups: which prompts carry a learning signal.

A group-relative method (RLOO, GRPO) baselines each of a prompt's k responses
by the others. When all k rewards tie (the policy always solves the prompt,
or never does) every advantage is zero and the prompt teaches nothing, yet it
still costs k samples. Two remedies:

- **difficulty filtering** before training: estimate each prompt's solve rate
  from k samples of the starting policy and keep the prompts whose rate lies
  in ``[low, high]`` (Kimi k1.5, Skywork-OR1 and others filter so);
- **dynamic sampling** during training (DAPO): drop groups whose rewards all
  tie and sample more until the batch is full.

:func:`rlhf_course.reasoning.evaluation.correct_table` samples and verifies, :func:`solve_rates` and
:func:`filter_by_difficulty` do the first, :func:`zero_advantage_share`
measures how much of a batch is wasted.
"""

from __future__ import annotations

import numpy as np
import torch

from rlhf_course.toyworld import Prompt


def solve_rates(table: np.ndarray) -> np.ndarray:
    """Each prompt's share of correct samples: the row means of a :func:`correct_table`."""
    return np.asarray(table, dtype=float).mean(axis=1)


def filter_by_difficulty(prompts: list[Prompt], rates: np.ndarray, low: float = 0.1,
                         high: float = 0.9) -> list[Prompt]:
    """The prompts whose solve rate lies in ``[low, high]``: neither hopeless nor already solved."""
    if not 0.0 <= low <= high <= 1.0:
        raise ValueError(f"Need 0 <= low <= high <= 1; got low={low}, high={high}.")
    if len(prompts) != len(rates):
        raise ValueError(f"{len(prompts)} prompts but {len(rates)} solve rates; pass one rate per prompt.")
    return [p for p, rate in zip(prompts, rates) if low <= rate <= high]


def zero_advantage_groups(rewards: torch.Tensor) -> torch.Tensor:
    """For a ``(prompts, k)`` table of rewards, True where all k rewards of a prompt tie (every advantage is 0)."""
    rewards = torch.as_tensor(rewards, dtype=torch.float64)
    if rewards.dim() != 2:
        raise ValueError(f"rewards must have shape (prompts, k); got {tuple(rewards.shape)}.")
    return (rewards == rewards[:, :1]).all(dim=1)


def zero_advantage_share(rewards: torch.Tensor) -> float:
    """Share of prompts in a ``(prompts, k)`` reward table whose group has no learning signal (all rewards tie)."""
    return float(zero_advantage_groups(rewards).double().mean())
