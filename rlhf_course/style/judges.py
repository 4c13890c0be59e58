"""Pairwise judges built from a score: gold, a simulated annotator, or the reward model.

They follow the pairwise-judge convention of the course (TRL's former
``BasePairwiseJudge``): ``judge(prompts, completions)`` returns, for each
prompt, the index (0 or 1) of the preferred of its two completions, or -1
when the judge cannot decide. A :class:`ScoreJudge` prefers the completion
with the higher score; with a temperature it samples its verdict from the
Bradley–Terry probability ``σ(Δscore / temperature)``, like the toy world's
annotators.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence

import torch

from rlhf_course.toyworld import Annotator, Prompt, default_annotators, gold_reward

ScoreFunction = Callable[[list[Prompt], list[str]], Sequence[float]]


class ScoreJudge:
    """A pairwise judge that compares two completions by a score."""

    def __init__(self, score_fn: ScoreFunction, temperature: float = 0.0, seed: int = 0) -> None:
        if temperature < 0 or math.isnan(temperature):
            raise ValueError(f"temperature must be >= 0; got {temperature}.")
        self.score_fn, self.temperature, self.rng = score_fn, temperature, random.Random(f"judge/{seed}")

    def judge(self, prompts: list[Prompt], completions: list[list[str]], shuffle_order: bool = True) -> list[int]:
        """For each prompt, 0 or 1 for the preferred completion, -1 for a tie (at temperature 0)."""
        if len(prompts) != len(completions) or any(len(pair) != 2 for pair in completions):
            raise ValueError("judge needs one pair [completion_0, completion_1] for each prompt; got "
                             f"{len(completions)} entries for {len(prompts)} prompts.")
        first = list(self.score_fn(prompts, [a for a, _ in completions]))
        second = list(self.score_fn(prompts, [b for _, b in completions]))
        verdicts = []
        for a, b in zip(first, second):
            if self.temperature == 0:
                verdicts.append(0 if a > b else 1 if b > a else -1)
            else:
                p_first = 1.0 / (1.0 + math.exp(-(a - b) / self.temperature))
                verdicts.append(0 if self.rng.random() < p_first else 1)
        return verdicts


def gold_scores(prompts: list[Prompt], responses: list[str]) -> list[float]:
    """The gold reward of each response."""
    return [gold_reward(p, r) for p, r in zip(prompts, responses)]


def annotator_scores(annotator: Annotator) -> ScoreFunction:
    """An annotator's utility (gold attributes with its weights, plus its length and phrase biases) as a score."""
    def scores(prompts: list[Prompt], responses: list[str]) -> list[float]:
        return [annotator.utility(p, r) for p, r in zip(prompts, responses)]
    return scores


def reward_model_scores(reward_fn: Callable[[list[str], list[str]], torch.Tensor]) -> ScoreFunction:
    """A reward function on texts (``reward_modeling.load_reward_function``) as a score on toy-world prompts."""
    def scores(prompts: list[Prompt], responses: list[str]) -> list[float]:
        return reward_fn([p.text for p in prompts], responses).tolist()
    return scores


def gold_judge() -> ScoreJudge:
    """The truth as a judge: the higher gold reward wins; equal gold rewards are a tie."""
    return ScoreJudge(gold_scores)


def length_loving_judge(seed: int = 0, temperature: float = 0.5) -> ScoreJudge:
    """A judge with the toy world's ``verbose_fan`` taste: the gold attributes plus 0.15 per word.

    It is one of the four annotators whose labels trained the course's reward
    model, used here as an evaluator, as an LLM judge with a length bias would be.
    """
    fan = next(a for a in default_annotators() if a.name == "verbose_fan")
    return ScoreJudge(annotator_scores(fan), temperature=temperature, seed=seed)


def outcomes(judge, prompts: list[Prompt], responses: list[str], baseline: list[str]) -> torch.Tensor:
    """The judge's verdicts on ``responses[i]`` against ``baseline[i]``: 1 won, 0 lost, 0.5 undecided."""
    if not (len(prompts) == len(responses) == len(baseline)):
        raise ValueError(f"prompts, responses and baseline must be paired; got lengths {len(prompts)}, "
                         f"{len(responses)} and {len(baseline)}.")
    verdicts = judge.judge(prompts, [[r, b] for r, b in zip(responses, baseline)])
    return torch.tensor([1.0 if v == 0 else 0.0 if v == 1 else 0.5 for v in verdicts], dtype=torch.float64)
