"""Filtering synthetic answers: best-of-k by a reward model, among the answers a verifier accepts.

A teacher's answers are not all good. The cheapest filter samples ``k``
answers per prompt and keeps the one a reward model scores highest
(best-of-k, as in rejection sampling); where the task has a checkable answer,
a verifier first throws out the wrong ones, and a prompt with no accepted
answer is dropped altogether. What survives is the distillation data.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from rlhf_course.core.profiles import Profile
from rlhf_course.core.rollout import GoldFunction, RewardFunction, scored_samples
from rlhf_course.toyworld import Prompt


def best_verified(scores: torch.Tensor, passed: torch.Tensor) -> torch.Tensor:
    """Per prompt, the index of the highest-scoring candidate that passed the verifier; -1 when none did.

    ``scores`` (float) and ``passed`` (bool) have shape ``(prompts, k)``. A
    candidate that failed never wins, however high its score; ties go to the
    first candidate.
    """
    if scores.shape != passed.shape or scores.dim() != 2:
        raise ValueError(f"scores and passed must both have shape (prompts, k); got {tuple(scores.shape)} and "
                         f"{tuple(passed.shape)}.")
    masked = scores.float().masked_fill(~passed.bool(), float("-inf"))
    best = masked.argmax(dim=1)
    return torch.where(passed.bool().any(dim=1), best, torch.full_like(best, -1))


def verifier_mask(prompts: list[Prompt], candidates: list[str], k: int,
                  verifier: Callable[[Prompt, str], bool] | None) -> torch.Tensor:
    """``(prompts, k)`` booleans: did candidate j of prompt i pass ``verifier``?

    Prompts without an exact answer (``prompt.verifiable`` false) pass every
    candidate, as do all prompts when ``verifier`` is None: the reward model
    alone decides there.
    """
    return torch.tensor([[verifier is None or not p.verifiable or verifier(p, c)
                          for c in candidates[i * k:(i + 1) * k]] for i, p in enumerate(prompts)])


@dataclass
class FilteredAnswers:
    """A teacher's k answers per prompt, their scores, and the one kept per prompt (or -1: dropped)."""

    prompts: list[Prompt]
    k: int
    candidates: list[str]  # prompt i's answers at positions i*k … i*k+k−1
    scores: torch.Tensor  # (prompts, k) reward-model scores
    passed: torch.Tensor  # (prompts, k) verifier verdicts
    gold: torch.Tensor | None  # (prompts, k) gold rewards, to measure the filter, never to filter
    kept: torch.Tensor  # (prompts,) index of the kept answer, -1 for a dropped prompt

    @property
    def rows(self) -> list[dict]:
        """The distillation data: ``{"prompt", "completion"}`` for every prompt with a kept answer."""
        return [{"prompt": p.text, "completion": self.candidates[i * self.k + j], "prompt_id": p.id}
                for i, (p, j) in enumerate(zip(self.prompts, self.kept.tolist())) if j >= 0]

    def summary(self) -> dict[str, float]:
        """Share of prompts kept, and the mean gold reward of all answers, of the first answer and of the kept."""
        if self.gold is None:
            raise ValueError("These answers have no gold rewards; pass gold_fn to filtered_answers to record them.")
        kept = self.kept >= 0
        picked = self.gold[kept.nonzero().squeeze(1), self.kept[kept]]
        return {"kept_share": float(kept.float().mean()), "gold_all": float(self.gold.mean()),
                "gold_first": float(self.gold[:, 0].mean()), "gold_kept": float(picked.mean())}


def filtered_answers(
    teacher: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompts: list[Prompt],
    k: int,
    reward_fn: RewardFunction,
    profile: Profile,
    *,
    verifier: Callable[[Prompt, str], bool] | None = None,
    gold_fn: GoldFunction | None = None,
    select: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = best_verified,
    seed: int = 0,
    output_dir: str | Path | None = None,
) -> FilteredAnswers:
    """Sample ``k`` answers per prompt from ``teacher``, score them and keep one per prompt with ``select``.

    ``reward_fn(prompt_texts, responses)`` scores the answers (the reward
    model); ``verifier(prompt, response)`` checks those with an exact answer;
    ``select(scores, passed)`` picks (the lab passes the learner's filter).
    ``gold_fn``, when given, scores every answer for ``gold``: measured, never
    used to filter. With ``output_dir`` the teacher's answers are saved as they
    are drawn, and an interrupted run resumes its sampling
    (``core.rollout.scored_samples``).
    """
    candidates, scores, gold = scored_samples(teacher, tokenizer, prompts, k, reward_fn, profile, gold_fn=gold_fn,
                                              seed=seed, output_dir=output_dir)
    passed = verifier_mask(prompts, candidates, k, verifier)
    return FilteredAnswers(prompts, k, candidates, scores, passed, gold, select(scores, passed))
