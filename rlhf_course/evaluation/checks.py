"""Exercise checks of the Evaluation lab: the unbiased pass@k estimator and a paired bootstrap interval.

Each check calls the learner's function on cases with known answers and raises
:class:`rlhf_course.teaching.checking.ExerciseError` with a hint naming the likely
mistake when it is wrong (the machinery is in :mod:`rlhf_course.teaching.checking`).
"""

from __future__ import annotations

import itertools
import math
from fractions import Fraction
from typing import Any, Callable

import numpy as np

from rlhf_course.teaching.checking import ExerciseError, as_float, call_learner, exercise

# (n, c, k): every count small enough to enumerate, the edge cases, and one whose binomials overflow floats
PASS_AT_K_CASES = [(5, 0, 1), (5, 5, 3), (10, 3, 1), (10, 3, 2), (8, 2, 5), (6, 1, 6), (7, 4, 4), (12, 5, 3),
                   (2000, 7, 1000)]


def brute_force_pass_at_k(n: int, c: int, k: int) -> float:
    """pass@k by definition: the share of the k-subsets of n samples (c of them correct) that hold a correct one.

    Enumerates every subset when there are few; otherwise counts the all-wrong
    subsets exactly with integer binomials (no rounding, no overflow).
    """
    if math.comb(n, k) <= 50_000:
        hits = sum(any(i < c for i in subset) for subset in itertools.combinations(range(n), k))
        return hits / math.comb(n, k)
    return float(1 - Fraction(math.comb(n - c, k), math.comb(n, k)))


def _pass_at_k_hint(got: float, n: int, c: int, k: int) -> str:
    guesses = [
        (1 - (1 - c / n) ** k, "That is 1 - (1 - c/n)^k, which draws the k samples *with* replacement from the "
                               "estimated accuracy; it is biased low. Count the k-subsets without replacement."),
        (c / n, "That is pass@1 (c/n) whatever k is: with k tries the chance of at least one success grows."),
        (math.comb(n - c, k) / math.comb(n, k) if k <= n - c else 0.0,
         "That is the chance that all k samples are wrong; pass@k is one minus it."),
    ]
    for value, hint in guesses:
        if math.isfinite(got) and abs(got - value) < 1e-6:
            return hint
    if not math.isfinite(got):
        return "The binomial coefficients overflowed a float: use the product form prod (1 - k / i)."
    return "pass@k = 1 - C(n-c, k) / C(n, k); when fewer than k samples are wrong it is 1."


@exercise("Unbiased pass@k")
def check_pass_at_k(fn: Callable[[int, int, int], Any]) -> str:
    """The learner's ``pass_at_k(n, c, k)`` against enumeration of every k-subset."""
    for n, c, k in PASS_AT_K_CASES:
        got = as_float(f"pass_at_k({n}, {c}, {k})", call_learner(fn, n, c, k, what="pass_at_k"))
        expected = brute_force_pass_at_k(n, c, k)
        if not (math.isfinite(got) and abs(got - expected) < 1e-6):
            raise ExerciseError(f"pass_at_k(n={n}, c={c}, k={k}) should be {expected:.6f}, got {got!r}. "
                                + _pass_at_k_hint(got, n, c, k))
    return f"agrees with enumerating every subset on {len(PASS_AT_K_CASES)} cases, n up to 2000"


def _paired_data(seed: int, n: int = 400) -> tuple[np.ndarray, np.ndarray]:
    """Scores of two policies on ``n`` prompts whose difficulty (sd 2) dwarfs their difference (0.3)."""
    rng = np.random.default_rng(seed)
    difficulty = rng.normal(0.0, 2.0, n)
    return difficulty + 0.3 + rng.normal(0.0, 0.3, n), difficulty + rng.normal(0.0, 0.3, n)


def _as_pair(value: Any) -> tuple[float, float]:
    try:
        low, high = value
    except (TypeError, ValueError) as err:
        raise ExerciseError(f"return the interval as two numbers (low, high); got {type(value).__name__}.") from err
    low, high = as_float("low", low if not hasattr(low, "item") else float(low)), as_float(
        "high", high if not hasattr(high, "item") else float(high))
    if not low <= high:
        raise ExerciseError(f"the interval ({low:.4f}, {high:.4f}) has low > high; return (low, high).")
    return low, high


@exercise("Paired bootstrap interval")
def check_paired_bootstrap(fn: Callable[..., Any]) -> str:
    """The learner's ``paired_bootstrap(scores_a, scores_b, n_boot, seed)`` -> 95% interval of mean(a - b)."""
    for seed in (0, 1):
        a, b = _paired_data(seed)
        diff = a - b
        low, high = _as_pair(call_learner(fn, a, b, 2000, seed, what="paired_bootstrap"))
        width = high - low
        normal_width = 2 * 1.96 * diff.std(ddof=1) / math.sqrt(len(diff))  # what a correct interval is close to
        centre = diff.mean()
        if width > 12 * normal_width:
            raise ExerciseError(f"the interval ({low:.3f}, {high:.3f}) is {width / normal_width:.0f} times too wide. "
                                "If you took quantiles of the per-prompt differences themselves, take them of the "
                                "bootstrap *means*; if you resampled A's and B's scores with different indices, "
                                "resample prompts: the same indices for both, so each pair stays together.")
        if width > 2 * normal_width:
            raise ExerciseError(f"the interval ({low:.3f}, {high:.3f}) is {width / normal_width:.1f} times wider than "
                                "a paired interval. Resample the *prompts*: draw one set of indices and use it for both "
                                "A and B, so the prompt's difficulty cancels in each difference.")
        if width < 0.5 * normal_width:
            raise ExerciseError(f"the interval ({low:.4f}, {high:.4f}) is too narrow (width {width:.4f}; about "
                                f"{normal_width:.4f} expected). Return the 2.5% and 97.5% quantiles of the bootstrap "
                                "means, each mean over a resample as large as the data.")
        if not low < centre < high:
            raise ExerciseError(f"the interval ({low:.3f}, {high:.3f}) does not contain the observed mean difference "
                                f"{centre:.3f}. Bootstrap the mean of a - b (A's score minus B's).")
    return "paired, about as wide as theory says, centred on the observed difference (two data sets)"
