"""Benchmark metrics with honest error bars: exact match, pass@k, paired win rates, power.

Every number a benchmark reports is an estimate from a finite sample of
prompts, so it comes here with an interval. The intervals are bootstrap
intervals over *prompts* (clusters): answers to the same prompt share its
difficulty, so resampling single answers would pretend to more data than there
is (Miller 2024, "Adding Error Bars to Evals"). Two policies are always
compared on the same prompts, which is what makes the comparison *paired*: the
prompt's difficulty cancels in the per-prompt difference.

    >>> outcomes = paired_outcomes([3.0, 1.0, 2.0], [1.0, 1.0, 4.0])
    >>> outcomes.tolist()
    [1.0, 0.5, 0.0]
    >>> required_prompts(effect=0.05, sd=0.5)
    785
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist
from typing import Sequence

import numpy as np

from rlhf_course.core.evaluation import pass_at_k
from rlhf_course.toyworld import FAMILIES, Prompt, gold_attributes

__all__ = ["AATest", "Interval", "aa_test", "bootstrap_interval", "exact_match", "exact_match_by_family", "mean_pass_at_k",
           "paired_bootstrap", "paired_outcomes", "paired_win_rate", "pass_at_k", "required_prompts",
           "simulated_power"]


@dataclass(frozen=True)
class Interval:
    """An estimate with its confidence interval ``[low, high]`` and standard error."""

    estimate: float
    low: float
    high: float
    stderr: float
    level: float = 0.95

    def covers(self, value: float) -> bool:
        """True when ``value`` lies inside the interval (ends included)."""
        return self.low <= value <= self.high

    def __str__(self) -> str:
        return f"{self.estimate:.3f} [{self.low:.3f}, {self.high:.3f}]"


# ---------------------------------------------------------------------------
# Accuracy
# ---------------------------------------------------------------------------


def exact_match(prompt: Prompt, response: str) -> bool:
    """True when the response is right *and* in the asked-for form (both gold attributes are 1).

    For the verifiable families (arithmetic, transform) that is the one exact
    answer, in the form asked for; for listing, ``n`` members of the category
    as a comma-separated list; for tone, the relevant reply opening in some tone.
    """
    attributes = gold_attributes(prompt, response)
    return attributes["correct"] == 1.0 and attributes["format"] == 1.0


def exact_match_by_family(prompts: Sequence[Prompt], responses: Sequence[str]) -> dict[str, float]:
    """Share of exact matches in each task family that occurs in ``prompts`` (and ``"all"``)."""
    if len(prompts) != len(responses) or not prompts:
        raise ValueError(f"exact_match_by_family needs one response per prompt; got {len(prompts)} prompts and "
                         f"{len(responses)} responses.")
    hits = np.array([exact_match(p, r) for p, r in zip(prompts, responses)], dtype=float)
    families = np.array([p.family for p in prompts])
    out = {f: float(hits[families == f].mean()) for f in FAMILIES if (families == f).any()}
    out["all"] = float(hits.mean())
    return out


def mean_pass_at_k(correct_counts: Sequence[int], n: int, k: int) -> float:
    """pass@k of a benchmark: the unbiased per-prompt estimates (:func:`pass_at_k`) averaged over prompts."""
    if len(correct_counts) == 0:
        raise ValueError("mean_pass_at_k needs the number of correct samples of at least one prompt; got none.")
    return float(np.mean([pass_at_k(n, int(c), k) for c in correct_counts]))


# ---------------------------------------------------------------------------
# Bootstrap intervals over prompts
# ---------------------------------------------------------------------------


def _as_vector(name: str, values: Sequence[float] | np.ndarray) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1 or array.size < 2:
        raise ValueError(f"{name} must be a 1-D array of at least two numbers; got shape {array.shape}.")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} holds NaN or infinite values; score every response before comparing.")
    return array


def bootstrap_interval(
    values: Sequence[float] | np.ndarray,
    clusters: Sequence | None = None,
    *,
    n_boot: int = 2000,
    level: float = 0.95,
    seed: int = 0,
) -> Interval:
    """Percentile bootstrap interval of the mean of ``values``, resampling whole clusters.

    ``clusters[i]`` names the prompt that value ``i`` answers (``None``: every
    value is its own cluster). Each bootstrap replicate draws as many clusters
    as there are, with replacement, and takes the mean over all their values;
    the interval holds the central ``level`` share of the replicates. The
    standard error is the replicates' standard deviation.
    """
    x = _as_vector("values", values)
    if not 0 < level < 1 or n_boot < 100:
        raise ValueError(f"need 0 < level < 1 and n_boot >= 100; got level={level}, n_boot={n_boot}.")
    if clusters is None:
        sums, counts = x, np.ones_like(x)
    else:
        if len(clusters) != len(x):
            raise ValueError(f"clusters must name one cluster per value; got {len(clusters)} for {len(x)} values.")
        _, index = np.unique(np.asarray([str(c) for c in clusters]), return_inverse=True)
        sums, counts = np.bincount(index, weights=x), np.bincount(index).astype(np.float64)
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(sums), size=(n_boot, len(sums)))
    replicates = sums[picks].sum(axis=1) / counts[picks].sum(axis=1)
    tail = (1 - level) / 2
    low, high = np.quantile(replicates, [tail, 1 - tail])
    return Interval(float(x.mean()), float(low), float(high), float(replicates.std(ddof=1)), level)


def paired_outcomes(scores_a: Sequence[float] | np.ndarray, scores_b: Sequence[float] | np.ndarray) -> np.ndarray:
    """Per-prompt result of A against B: 1 when A scores higher, 0.5 for a tie, 0 when B does."""
    a, b = _as_vector("scores_a", scores_a), _as_vector("scores_b", scores_b)
    if a.shape != b.shape:
        raise ValueError(f"a paired comparison needs one score of each policy per prompt; got {a.size} and {b.size}.")
    return (a > b) + 0.5 * (a == b)


def paired_win_rate(
    scores_a: Sequence[float] | np.ndarray,
    scores_b: Sequence[float] | np.ndarray,
    clusters: Sequence | None = None,
    *,
    n_boot: int = 2000,
    level: float = 0.95,
    seed: int = 0,
) -> Interval:
    """A's win rate against B (ties half) with a bootstrap interval over prompts.

    Entry ``i`` of both arrays must answer the same prompt; ``clusters`` names
    it when a prompt has several answers (see :func:`bootstrap_interval`).
    """
    return bootstrap_interval(paired_outcomes(scores_a, scores_b), clusters, n_boot=n_boot, level=level, seed=seed)


def paired_bootstrap(
    scores_a: Sequence[float] | np.ndarray,
    scores_b: Sequence[float] | np.ndarray,
    clusters: Sequence | None = None,
    *,
    n_boot: int = 2000,
    level: float = 0.95,
    seed: int = 0,
) -> Interval:
    """Mean of A's score minus B's on the same prompts, with a paired bootstrap interval.

    Resampling the per-prompt *differences* keeps each prompt's two scores
    together; resampling A's and B's scores separately would throw the pairing
    away and give a much wider interval when the two policies find the same
    prompts hard.
    """
    a, b = _as_vector("scores_a", scores_a), _as_vector("scores_b", scores_b)
    if a.shape != b.shape:
        raise ValueError(f"a paired comparison needs one score of each policy per prompt; got {a.size} and {b.size}.")
    return bootstrap_interval(a - b, clusters, n_boot=n_boot, level=level, seed=seed)


# ---------------------------------------------------------------------------
# Power
# ---------------------------------------------------------------------------


def required_prompts(effect: float, sd: float, alpha: float = 0.05, power: float = 0.8) -> int:
    """Prompts needed to detect a true mean difference ``effect`` with a two-sided test at level ``alpha``.

    For a mean of per-prompt outcomes of standard deviation ``sd`` (for a win
    rate, the outcomes 1, 1/2 and 0; for a score difference, the per-prompt
    differences), the estimate's standard error is ``sd / sqrt(n)``, and the
    test finds the effect with probability ``power`` when

        n = ((z_{1 - alpha/2} + z_{power}) * sd / effect) ** 2.

    Halving the effect quadruples the prompts.
    """
    if effect == 0 or not math.isfinite(effect) or sd <= 0 or not math.isfinite(sd):
        raise ValueError(f"need a non-zero effect and a positive sd; got effect={effect}, sd={sd}.")
    if not 0 < alpha < 1 or not 0 < power < 1:
        raise ValueError(f"alpha and power must lie in (0, 1); got alpha={alpha}, power={power}.")
    z = NormalDist().inv_cdf(1 - alpha / 2) + NormalDist().inv_cdf(power)
    return math.ceil((z * sd / abs(effect)) ** 2)


def simulated_power(
    outcomes: Sequence[float] | np.ndarray,
    n: int,
    null: float = 0.5,
    *,
    alpha: float = 0.05,
    n_trials: int = 2000,
    seed: int = 0,
) -> float:
    """Share of simulated evaluations of ``n`` prompts that reject "the mean is ``null``".

    Each trial draws ``n`` per-prompt outcomes with replacement from
    ``outcomes`` (taken as the population) and runs the two-sided z-test that
    a benchmark report would run: reject when ``|mean - null| > z * s / sqrt(n)``.
    With ``n`` from :func:`required_prompts` the share should be close to the
    power asked for.
    """
    population = _as_vector("outcomes", outcomes)
    if n < 2:
        raise ValueError(f"n must be at least 2 prompts; got {n}.")
    rng = np.random.default_rng(seed)
    rejected = 0
    z = NormalDist().inv_cdf(1 - alpha / 2)
    for start in range(0, n_trials, 200):
        draws = population[rng.integers(0, len(population), size=(min(200, n_trials - start), n))]
        se = draws.std(axis=1, ddof=1) / math.sqrt(n)
        rejected += int(np.sum(np.abs(draws.mean(axis=1) - null) > z * se))
    return rejected / n_trials


# ---------------------------------------------------------------------------
# A/A tests
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class AATest:
    """Many A/A comparisons of one policy with itself: their win-rate intervals and how often they cover 1/2."""

    intervals: list[Interval]

    @property
    def coverage(self) -> float:
        """Share of the intervals that contain 0.5, the true win rate of a policy against itself."""
        return float(np.mean([i.covers(0.5) for i in self.intervals]))

    @property
    def nominal(self) -> float:
        """The coverage the intervals claim."""
        return self.intervals[0].level


def aa_test(
    scores: np.ndarray,
    clusters: Sequence | None = None,
    *,
    n_splits: int = 400,
    n_boot: int = 1000,
    level: float = 0.95,
    seed: int = 0,
) -> AATest:
    """A/A tests from one set of samples: each split pits two of a prompt's samples against each other.

    ``scores[i]`` holds the scores of ``m >= 2`` samples of one policy on row
    ``i``'s prompt. Each split draws, for every row, two different samples at
    random, calls one "A" and the other "B", and computes A's win rate against
    B with :func:`paired_win_rate`. A and B are the same policy, so the true
    win rate is exactly 1/2 whatever the pool holds, and a correct interval
    should contain it in a share ``level`` of the splits.
    """
    table = np.asarray(scores, dtype=np.float64)
    if table.ndim != 2 or table.shape[1] < 2 or table.shape[0] < 2:
        raise ValueError(f"scores must have shape (prompts, samples) with at least 2 of each; got {table.shape}.")
    rng = np.random.default_rng(seed)
    rows = np.arange(len(table))
    intervals = []
    for split in range(n_splits):
        first = rng.integers(0, table.shape[1], len(table))
        second = (first + rng.integers(1, table.shape[1], len(table))) % table.shape[1]  # never the same sample
        intervals.append(paired_win_rate(table[rows, first], table[rows, second], clusters, n_boot=n_boot,
                                         level=level, seed=seed * 100_003 + split))
    return AATest(intervals)
