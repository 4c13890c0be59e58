"""Measuring a policy against the truth the toy world knows.

Every stage of the course is judged the same way: sample the policy on
held-out test prompts, score the samples with the gold reward, and compare
with another policy on the *same* prompts (a paired win rate). KL to the
reference is estimated on the policy's own samples.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from rlhf_course.core.profiles import Profile
from rlhf_course.core.results import spending
from rlhf_course.core.sampling import completion_logprobs, generate
from rlhf_course.toyworld import Prompt, gold_reward, make_prompts


@dataclass
class PolicySamples:
    """A policy's samples on a prompt set and their gold rewards."""

    prompts: list[Prompt]
    responses: list[str]
    rewards: np.ndarray

    @property
    def mean(self) -> float:
        """Mean gold reward over the prompts."""
        return float(self.rewards.mean())

    @property
    def stderr(self) -> float:
        """Standard error of the mean gold reward, with a prompt's answers counted as one cluster.

        Answers to the same prompt are not independent (an easy prompt is easy
        for all of them), so the error is taken over per-prompt means.
        """
        per_prompt = pd.Series(self.rewards).groupby([p.id for p in self.prompts], sort=False).mean()
        return float(per_prompt.std(ddof=1) / math.sqrt(len(per_prompt))) if len(per_prompt) > 1 else 0.0


def eval_prompts(profile: Profile, seed: int = 0) -> list[Prompt]:
    """The held-out prompts a policy is measured on: each test prompt ``profile.eval_samples_per_prompt`` times.

    Several answers per prompt make a win rate less noisy: with one answer per
    prompt, 200 prompts leave about ±0.03 of sampling noise in it. The copies
    of a prompt are adjacent, so that entry ``i`` of two policies' samples
    always answers the same prompt (see :func:`win_rate`).
    """
    prompts = make_prompts("test", profile.n_eval_prompts, seed=seed)
    return [p for p in prompts for _ in range(profile.eval_samples_per_prompt)]


@spending("evaluation")
def sample_policy(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompts: list[Prompt],
    profile: Profile,
    *,
    seed: int = 0,
    temperature: float = 1.0,
) -> PolicySamples:
    """Sample one response per prompt and score it with the gold reward.

    Sampling at temperature 1 measures the policy itself, the distribution
    whose KL to the reference we report, not a sharpened version of it.
    Measuring never changes training: the samples are drawn under a forked
    random state, so whatever trains next sees the same random numbers however
    many answers were measured.
    """
    with torch.random.fork_rng():
        responses = generate(model, tokenizer, [p.text for p in prompts], max_new_tokens=profile.max_new_tokens,
                             temperature=temperature, batch_size=profile.eval_batch_size, seed=seed)
    rewards = np.array([gold_reward(p, r) for p, r in zip(prompts, responses)])
    return PolicySamples(prompts, responses, rewards)


def win_rate(rewards_a: np.ndarray | list[float], rewards_b: np.ndarray | list[float]) -> float:
    """Share of prompts where A's response beats B's by gold reward; ties count half.

    The two arrays must be paired: entry ``i`` of each answers the same prompt.
    """
    a, b = np.asarray(rewards_a, dtype=float), np.asarray(rewards_b, dtype=float)
    if a.shape != b.shape or a.size == 0:
        raise ValueError(f"win_rate needs two paired, non-empty arrays; got shapes {a.shape} and {b.shape}.")
    return float(np.mean((a > b) + 0.5 * (a == b)))


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased estimate of pass@k from ``n`` samples of which ``c`` are correct (Chen et al. 2021).

    pass@k is the chance that at least one of ``k`` samples is correct. Drawing
    ``k`` of the ``n`` samples without replacement, all ``k`` are wrong with
    probability ``C(n - c, k) / C(n, k)``, so

        pass@k = 1 - C(n - c, k) / C(n, k) = 1 - prod_{i = n - c + 1}^{n} (1 - k / i),

    the product form, which never forms the huge binomial coefficients. It is
    1 when fewer than ``k`` samples are wrong. Averaged over prompts it is
    unbiased, unlike ``1 - (1 - c / n) ** k``, which plugs in the estimated
    accuracy and underestimates pass@k.
    """
    for name, value in (("n", n), ("c", c), ("k", k)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise ValueError(f"pass_at_k needs integer counts; got {name}={value!r}.")
    if n < 1 or not 0 <= c <= n or not 1 <= k <= n:
        raise ValueError(f"pass_at_k needs n >= 1, 0 <= c <= n and 1 <= k <= n; got n={n}, c={c}, k={k}. "
                         "Draw at least k samples per prompt.")
    if n - c < k:
        return 1.0
    return float(1.0 - np.prod(1.0 - k / np.arange(n - c + 1, n + 1, dtype=np.float64)))


@spending("evaluation")
def kl_to_reference(
    policy: PreTrainedModel,
    reference: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    samples: PolicySamples,
    batch_size: int = 64,
) -> tuple[float, float]:
    """KL(policy‖reference) estimated on the policy's own samples, with its standard error.

    The estimator is the average of log π(y|x) − log π_ref(y|x) over samples
    y ~ π: unbiased for the sequence-level KL (the "k1" estimator).
    """
    texts = [p.text for p in samples.prompts]
    logp = completion_logprobs(policy, tokenizer, texts, samples.responses, batch_size=batch_size)
    logq = completion_logprobs(reference, tokenizer, texts, samples.responses, batch_size=batch_size)
    diff = (logp - logq).double()
    stderr = float(diff.std() / math.sqrt(len(diff))) if len(diff) > 1 else 0.0
    return float(diff.mean()), stderr


def samples_table(prompts: list[Prompt], columns: dict[str, PolicySamples], n: int = 8) -> pd.DataFrame:
    """Responses of several policies side by side with their gold rewards (HTML in a notebook).

    One row for each of the first ``n`` distinct prompts, showing each policy's
    first answer to it.
    """
    first: dict[str, int] = {}
    for i, prompt in enumerate(prompts):
        first.setdefault(prompt.id, i)
    rows = []
    for i in list(first.values())[:n]:
        row = {"prompt": prompts[i].text}
        for name, samples in columns.items():
            row[name] = f"{samples.responses[i]}  [{samples.rewards[i]:.2f}]"
        rows.append(row)
    return pd.DataFrame(rows)
