"""Exercise checks of the What Are Preferences lab: the Bradley–Terry log-likelihood.

Each check calls the learner's function on cases with known answers and raises
:class:`rlhf_course.teaching.checking.ExerciseError` with a hint naming the likely
mistake when it is wrong (the machinery is in :mod:`rlhf_course.teaching.checking`).
"""

from __future__ import annotations

import math
from typing import Any, Callable

import torch

from rlhf_course.teaching.checking import ExerciseError, as_float, call_learner, exercise, near


def _bt_likelihood_cases() -> list[tuple[str, list[float], list[tuple[int, int]]]]:
    """Hand-made (description, strengths, comparisons) cases for the Bradley–Terry log-likelihood."""
    return [
        ("equal strengths", [0.0, 0.0, 0.0], [(0, 1), (1, 2), (2, 0)]),
        ("a small hand-made data set", [1.0, 0.0, -0.5], [(0, 1), (0, 2), (2, 1), (1, 0)]),
        ("positive strengths", [2.0, 1.0, 0.5, 3.0], [(0, 1), (3, 2), (1, 3), (2, 0), (0, 3)]),
        ("a pair compared four times", [0.3, -0.3], [(0, 1), (0, 1), (0, 1), (1, 0)]),
        ("a huge gap in strength", [0.0, 1000.0], [(0, 1), (1, 0)]),
    ]


def _learner_number(value: Any, n_comparisons: int) -> float:
    """The learner's answer as a float: a Python, numpy or torch scalar, or a clear error."""
    if hasattr(value, "shape") and tuple(value.shape) == (n_comparisons,) and n_comparisons > 1:
        raise ExerciseError(
            f"your function returned {n_comparisons} values, one per comparison; expected one number. "
            "The log-likelihood of the data set is the sum of the per-comparison terms."
        )
    if not isinstance(value, torch.Tensor) and hasattr(value, "item") and getattr(value, "size", 0) == 1:
        value = value.item()  # a numpy scalar or one-element array; as_float takes tensors itself
    return as_float("the log-likelihood", value)


def _bt_likelihood_mistakes(got: float, strengths: list[float], comparisons: list[tuple[int, int]]) -> list[str]:
    """Hints for every typical mistake that would have returned ``got`` on this case."""
    margins = [strengths[w] - strengths[l] for w, l in comparisons]

    def log_sigmoid(x: float) -> float:
        return -math.log1p(math.exp(-x)) if x > -30 else x - math.log1p(math.exp(x))

    def sigmoid(x: float) -> float:
        return math.exp(log_sigmoid(x))

    expected = sum(log_sigmoid(m) for m in margins)
    guesses = [
        (expected / len(margins), "You took the mean over comparisons; this function returns the sum, the "
                                  "log-probability of the whole data set."),
        (-expected, "That is the negative log-likelihood (the loss). Return the log-likelihood itself, "
                    "which is never positive."),
        (sum(log_sigmoid(-m) for m in margins), "Did you swap winner and loser? Each comparison is "
                                                "(winner, loser), and the winner's strength comes first."),
        (sum(sigmoid(m) for m in margins), "Did you forget the log? Sum log σ(θ_winner − θ_loser), not σ(·)."),
        (math.prod(sigmoid(m) for m in margins), "That is the likelihood, a product of probabilities; "
                                                  "take logs, which turns the product into a sum."),
        (log_sigmoid(sum(margins)), "You took σ of the summed margins. Each comparison contributes its own "
                                    "term: sum log σ(θ_winner − θ_loser) over the comparisons."),
        (sum(log_sigmoid(strengths[w] + strengths[l]) for w, l in comparisons),
         "Bradley–Terry depends on the difference of strengths, θ_winner − θ_loser, not their sum."),
        (sum(log_sigmoid(strengths[w] - strengths[l]) for w, l in set(comparisons)),
         "Every comparison counts, repeats included: a pair compared four times contributes four terms."),
    ]
    return [hint for value, hint in guesses if near(got, value) and not near(value, expected)]


@exercise("Bradley–Terry likelihood")
def check_bradley_terry_log_likelihood(fn: Callable[[Any, list[tuple[int, int]]], float]) -> str:
    """Check ``fn(strengths, comparisons) -> sum over (w, l) of log σ(θ_w − θ_l)``.

    ``strengths`` is a numpy array of log-strengths and ``comparisons`` a list
    of ``(winner, loser)`` index pairs. The answer is the *sum* over
    comparisons (the log-probability of the whole data set), as in
    ``rlhf_course.what_are_preferences.bradley_terry_log_likelihood``. The cases
    are built by hand: equal strengths (each comparison costs log 2, and
    θ_i / (θ_i + θ_j) gives 0/0), swapped roles and a mean instead of a sum
    give other values, a repeated pair (every comparison counts), and a gap
    of 1000 (a naive ``log(sigmoid(x))`` gives -inf).
    """
    import numpy as np

    from rlhf_course.what_are_preferences.preference_models import bradley_terry_log_likelihood

    cases = _bt_likelihood_cases()
    wrong = []  # (label, strengths, comparisons, value, expected) of every case answered wrongly
    for label, strengths, comparisons in cases:
        expected = bradley_terry_log_likelihood(strengths, comparisons)
        try:
            got = call_learner(fn, np.array(strengths), list(comparisons), what="your bradley_terry_log_likelihood")
            value = _learner_number(got, len(comparisons))
            if math.isnan(value):
                raise ExerciseError(
                    f"on {label} (strengths {strengths}) your log-likelihood is NaN; expected {expected:.4g}. "
                    "NaN comes from 0/0 or the log of a negative number. The strengths are log-strengths θ, "
                    "which may be 0 or negative: use P(w beats l) = σ(θ_w − θ_l), not θ_w / (θ_w + θ_l)."
                )
            if not math.isfinite(value):
                raise ExerciseError(
                    f"on {label} (strengths {strengths}) your log-likelihood is {value}; expected "
                    f"{expected:.4g}. log(sigmoid(x)) underflows to log(0) for very negative x: compute "
                    "log σ(x) as -np.logaddexp(0, -x), which never overflows."
                )
        except ExerciseError:
            if wrong:
                break  # an earlier case already went wrong, and its value says more about the mistake
            raise
        if not near(value, expected):
            wrong.append((label, strengths, comparisons, value, expected))
    if wrong:
        # A mistake can look like another on one case (on equal strengths a mean and σ of the summed
        # margins both give log 1/2); the hint that fits every wrong answer names it.
        fits = [_bt_likelihood_mistakes(v, s, c) for _, s, c, v, _ in wrong]
        common = [hint for hint in fits[0] if all(hint in f for f in fits[1:])]
        hint = (common or fits[0] or ["The log-likelihood is the sum over comparisons (w, l) of log σ(θ_w − θ_l)."])[0]
        label, strengths, comparisons, value, expected = wrong[0]
        equal = (f" (each comparison has probability 1/2, so {len(comparisons)} × log(1/2))"
                 if label == "equal strengths" else "")
        raise ExerciseError(
            f"on {label} (strengths {strengths}, comparisons {comparisons}) your log-likelihood is "
            f"{value:.4g}; expected {expected:.4g}{equal}. {hint}"
        )
    return (f"correct on {len(cases)} hand-made cases (equal strengths give −n log 2, every repeated comparison "
            "counts, a gap of 1000 stays finite)")
