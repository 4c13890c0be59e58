"""The judges of the Style lab, built on the evaluation harness's pairwise judges.

Judges follow the course's pairwise convention (TRL's former
``BasePairwiseJudge``): ``judge(prompts, completions)`` returns, for each
prompt, 0 or 1 for the preferred of its two completions, or -1 when the judge
cannot decide. The judges themselves are :class:`rlhf_course.evaluation.ScoreJudge`
(the higher score wins) and :class:`rlhf_course.evaluation.AnnotatorJudge` (a
simulated annotator's Bradley–Terry vote); this module supplies the scores
and the length-loving judge, and turns verdicts into the outcomes a
length-controlled regression fits.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from rlhf_course.evaluation import AnnotatorJudge, ScoreJudge
from rlhf_course.toyworld import Prompt, default_annotators
from rlhf_course.toyworld.gold import gold_rewards

ScoreFunction = Callable[[list[Prompt], list[str]], list[float]]


def gold_scores(prompts: list[Prompt], responses: list[str]) -> list[float]:
    """The gold reward of each response (``toyworld.gold_rewards``)."""
    return gold_rewards(prompts, responses)


def reward_model_scores(reward_fn: Callable[[list[str], list[str]], torch.Tensor]) -> ScoreFunction:
    """A reward function on texts (``reward_modeling.load_reward_function``) as a score on toy-world prompts."""
    def scores(prompts: list[Prompt], responses: list[str]) -> list[float]:
        return reward_fn([p.text for p in prompts], responses).tolist()
    return scores


def gold_judge() -> ScoreJudge:
    """The truth as a judge: the higher gold reward wins; equal gold rewards are a tie."""
    return ScoreJudge(gold_scores)


def length_loving_judge(seed: int = 0) -> AnnotatorJudge:
    """A judge with the toy world's ``verbose_fan`` taste: the gold attributes plus 0.15 utility per word.

    It is one of the four annotators whose labels trained the course's reward
    model, used here as an evaluator, as an LLM judge with a length bias would
    be. Its votes are Bradley–Terry draws at the annotator's temperature (0.5).
    """
    return AnnotatorJudge(next(a for a in default_annotators() if a.name == "verbose_fan"), seed=seed)


def outcomes(judge, prompts: list[Prompt], responses: list[str], baseline: list[str]) -> torch.Tensor:
    """The judge's verdicts on ``responses[i]`` against ``baseline[i]``: 1 won, 0 lost, 0.5 undecided."""
    if not (len(prompts) == len(responses) == len(baseline)):
        raise ValueError(f"prompts, responses and baseline must be paired; got lengths {len(prompts)}, "
                         f"{len(responses)} and {len(baseline)}.")
    verdicts = judge.judge(prompts, [[r, b] for r, b in zip(responses, baseline)])
    return torch.tensor([1.0 if v == 0 else 0.0 if v == 1 else 0.5 for v in verdicts], dtype=torch.float64)
