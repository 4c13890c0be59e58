"""Measuring a policy against the truth the toy world knows.

Every stage of the course is judged the same way: sample the policy on
held-out test prompts, score the samples with the gold reward, and compare
with another policy on the *same* prompts (a paired win rate). KL to the
reference is estimated on the policy's own samples.

:func:`measure_policy` does all of that for one policy (the pipeline measures
each stage with it); :func:`compare_policies` measures several against one of
them (usually the SFT model) and returns the table every lab shows.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from rlhf_course.core.profiles import Profile
from rlhf_course.core.results import spending
from rlhf_course.core.rollout import RewardFunction
from rlhf_course.core.sampling import completion_logprobs, generate
from rlhf_course.toyworld import Prompt, gold_reward, make_prompts, words


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


@dataclass
class Measurement:
    """One policy measured on the evaluation prompts: its samples and how they compare.

    ``win_rates`` maps the name of each policy it was compared with to the
    paired gold win rate against that policy's samples (ties count half);
    ``kl`` and ``kl_stderr`` are KL(policy‖reference) on its own samples
    (``None`` when no reference was given); ``proxy`` is the reward model's
    score of each sample (``None`` without a reward function).
    """

    samples: PolicySamples
    win_rates: dict[str, float] = field(default_factory=dict)
    kl: float | None = None
    kl_stderr: float | None = None
    proxy: np.ndarray | None = None

    @property
    def gold_reward(self) -> float:
        return self.samples.mean

    @property
    def gold_reward_stderr(self) -> float:
        return self.samples.stderr

    @property
    def proxy_reward(self) -> float | None:
        return None if self.proxy is None else float(self.proxy.mean())


def compare_samples(samples: PolicySamples, against: Mapping[str, PolicySamples],
                    reward_fn: RewardFunction | None = None) -> Measurement:
    """Win rates of samples already drawn against each of ``against``, and their proxy reward if ``reward_fn`` is given.

    For samples that are not one policy's plain draws (best-of-n's picks);
    :func:`measure_policy` draws them and adds the KL.
    """
    rates = {name: win_rate(samples.rewards, other.rewards) for name, other in against.items()}
    proxy = None if reward_fn is None else reward_fn(
        [p.text for p in samples.prompts], samples.responses).float().cpu().numpy()
    return Measurement(samples, rates, proxy=proxy)


def measure_policy(
    policy: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompts: list[Prompt],
    profile: Profile,
    *,
    seed: int = 0,
    reference: PreTrainedModel | None = None,
    against: Mapping[str, PolicySamples] | None = None,
    reward_fn: RewardFunction | None = None,
) -> Measurement:
    """Sample ``policy`` once per prompt (:func:`sample_policy`) and measure it.

    Gold reward and its clustered standard error; the paired gold win rate
    against each policy in ``against`` (samples of the same ``prompts``);
    KL to ``reference`` on the policy's own samples (0 when the policy is its
    own reference); the proxy reward when ``reward_fn`` is given.
    """
    samples = sample_policy(policy, tokenizer, prompts, profile, seed=seed)
    measured = compare_samples(samples, against or {}, reward_fn)
    if reference is policy:
        measured.kl, measured.kl_stderr = 0.0, 0.0
    elif reference is not None:
        measured.kl, measured.kl_stderr = kl_to_reference(policy, reference, tokenizer, samples,
                                                          profile.eval_batch_size)
    return measured


@dataclass
class PolicyComparison:
    """Several policies measured against one of them (``baseline``), and the table a lab shows."""

    baseline: str
    measurements: dict[str, Measurement]
    extra: dict[str, Callable[[PolicySamples], float]] = field(default_factory=dict)

    @property
    def samples(self) -> dict[str, PolicySamples]:
        """Each policy's samples, by name (for :func:`samples_table`)."""
        return {name: m.samples for name, m in self.measurements.items()}

    @property
    def table(self) -> pd.DataFrame:
        """One row per policy: gold reward (± clustered s.e.), proxy reward, win rate and KL against the baseline.

        Then the mean length in words, and a column for each of ``extra``.
        """
        rows = []
        for name, m in self.measurements.items():
            row = {"method": name, "gold reward": m.gold_reward, "gold std err": m.gold_reward_stderr}
            if m.proxy is not None:
                row["proxy reward"] = m.proxy_reward
            row.update({f"gold win rate vs {self.baseline}": m.win_rates[self.baseline],
                        f"KL to {self.baseline}": m.kl, "KL std err": m.kl_stderr,
                        "length (words)": float(np.mean([len(words(r)) for r in m.samples.responses]))})
            row.update({column: fn(m.samples) for column, fn in self.extra.items()})
            rows.append(row)
        return pd.DataFrame(rows).set_index("method")


def compare_policies(
    policies: Mapping[str, PreTrainedModel],
    tokenizer: PreTrainedTokenizerBase,
    prompts: list[Prompt],
    profile: Profile,
    *,
    baseline: str = "SFT",
    seed: int = 0,
    reward_fn: RewardFunction | None = None,
    extra: Mapping[str, Callable[[PolicySamples], float]] | None = None,
) -> PolicyComparison:
    """Measure every policy on the same prompts against ``policies[baseline]`` (:func:`measure_policy`).

    The baseline is both the policy each win rate is against and the
    reference of each KL, so its own row reads win rate 0.5 and KL 0.
    Every policy is sampled with the same ``seed``. ``extra`` adds columns
    to the table, each a function of a policy's samples (for example the
    share of responses that contain a phrase).
    """
    if baseline not in policies:
        raise ValueError(f"The baseline {baseline!r} is not among the policies ({', '.join(policies)}); "
                         "pass it in `policies` too.")
    reference = policies[baseline]
    first = measure_policy(reference, tokenizer, prompts, profile, seed=seed, reference=reference, reward_fn=reward_fn)
    first.win_rates[baseline] = win_rate(first.samples.rewards, first.samples.rewards)
    measurements = {baseline: first}
    for name, policy in policies.items():
        if name != baseline:
            measurements[name] = measure_policy(policy, tokenizer, prompts, profile, seed=seed, reference=reference,
                                                against={baseline: first.samples}, reward_fn=reward_fn)
    return PolicyComparison(baseline, {name: measurements[name] for name in policies}, dict(extra or {}))


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


def mean_pass_at_k(correct: np.ndarray, k: int) -> float:
    """pass@k averaged over prompts, from a ``(prompts, n)`` table of correct (1) and wrong (0) samples."""
    table = np.asarray(correct)
    if table.ndim != 2:
        raise ValueError(f"correct must be a (prompts, n) table; got shape {table.shape}.")
    if table.shape[0] == 0:
        raise ValueError("correct has no prompts (shape (0, n)); score at least one prompt's samples.")
    n = table.shape[1]
    return float(np.mean([pass_at_k(n, int(c), k) for c in (table > 0).sum(axis=1)]))
