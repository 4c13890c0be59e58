"""A record of an RL run: gold, proxy and KL measured on held-out prompts at a few steps of one run.

Gao et al. fit their RL law to many points of one run, each an intermediate
policy measured against the gold reward model. :func:`policy_recorder` makes
the hook that does this for the course's own loop
(``train_policy_gradient(..., on_step=hook)``): at the chosen steps it samples
the current policy on held-out prompts and records the gold reward, the proxy
reward and the KL to the reference, without saving a checkpoint. Measuring runs
under a forked random state, so the trained policy is exactly the one the same
run without a record gives. :func:`rlhf_course.shared_models.recorded_policy`
runs it (a chapter does not import another chapter's trainer).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from rlhf_course.core.evaluation import kl_to_reference, sample_policy
from rlhf_course.core.profiles import Profile
from rlhf_course.core.rollout import PolicyGradientResult, RewardFunction
from rlhf_course.toyworld import STOCK_PHRASE, Prompt, gold_attributes, words

Describe = Callable[[list[Prompt], list[str]], dict[str, float]]


@dataclass
class RecordedRun:
    """An RL run and its record: one row per evaluation step (step, gold, proxy, KL, √KL and what ``describe`` adds)."""

    result: PolicyGradientResult
    record: list[dict]


def evaluation_steps(total: int, points: int) -> list[int]:
    """``points`` steps from 0 to ``total`` (both included), spaced evenly in √step: denser early, where KL grows fastest."""
    if total < 1 or points < 2:
        raise ValueError(f"need at least one training step and two evaluation points; got {total} and {points}.")
    steps = {round(total * (i / (points - 1)) ** 2) for i in range(points)}
    return sorted(steps)


def describe_answers(prompts: list[Prompt], responses: list[str]) -> dict[str, float]:
    """Mean gold attributes of the answers (correct, format, tone, concise), their length and stock phrases."""
    rows = [gold_attributes(p, r) for p, r in zip(prompts, responses, strict=True)]
    out = {f"gold_{key}": float(np.mean([row[key] for row in rows])) for key in rows[0]}
    out["length"] = float(np.mean([len(words(r)) for r in responses]))
    out["stock_phrases"] = float(np.mean([r.count(STOCK_PHRASE) for r in responses]))
    return out


def policy_recorder(reference: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, prompts: list[Prompt],
                    reward_fn: RewardFunction, profile: Profile, steps: list[int], *, seed: int = 0,
                    describe: Describe | None = describe_answers) -> tuple[Callable[[int, PreTrainedModel], None], list[dict]]:
    """An ``on_step`` hook for the RL loop that measures the policy at ``steps``, and the list it appends rows to.

    Each row: the step, the mean gold and proxy reward of one sample per
    prompt (at temperature 1) with their standard errors, the KL to
    ``reference`` on those samples (the sequence k1) and its square root ``d``,
    and ``describe(prompts, responses)``.
    """
    texts, wanted, record = [p.text for p in prompts], set(steps), []

    def on_step(step: int, policy: PreTrainedModel) -> None:
        if step not in wanted:
            return
        was_training = policy.training
        with torch.no_grad():
            samples = sample_policy(policy, tokenizer, prompts, profile, seed=seed)
            proxy = reward_fn(texts, samples.responses).float().cpu().numpy()
            kl, kl_err = kl_to_reference(policy, reference, tokenizer, samples, profile.eval_batch_size)
        policy.train(was_training)
        row = {"step": step, "gold": samples.mean, "gold_stderr": samples.stderr, "proxy": float(proxy.mean()),
               "proxy_stderr": float(proxy.std() / math.sqrt(len(proxy))), "kl": kl, "kl_stderr": kl_err,
               "d": math.sqrt(max(kl, 0.0))}
        record.append({**row, **(describe(samples.prompts, samples.responses) if describe else {})})

    return on_step, record
