"""Exercise checks of the five-minute RLHF lab: the win rate judged by gold.

Each check calls the learner's function on cases with known answers and raises
:class:`rlhf_course.teaching.checking.ExerciseError` with a hint naming the likely
mistake when it is wrong (the machinery is in :mod:`rlhf_course.teaching.checking`).
"""

from __future__ import annotations

from typing import Any, Callable

import torch

from rlhf_course.teaching.checking import ExerciseError, as_float, call_learner, exercise, near


def _win_rate_cases() -> list[tuple[str, list[float], list[float]]]:
    """(description, rewards of A, rewards of B): paired gold rewards on the same prompts."""
    gen = torch.Generator().manual_seed(0)
    a, b = torch.randn(200, generator=gen).round(decimals=1), torch.randn(200, generator=gen).round(decimals=1)
    return [
        ("four prompts: two wins, a tie and a loss", [1.0, 2.0, 3.0, 0.5], [0.0, 2.0, 1.0, 0.9]),
        ("three ties", [0.3, 0.3, -1.0], [0.3, 0.3, -1.0]),
        ("one prompt", [-0.2], [-0.7]),
        ("200 prompts, rounded rewards (many ties)", a.tolist(), b.tolist()),
    ]


def _win_rate_mistakes(a: list[float], b: list[float]) -> list[tuple[float, str]]:
    """(value a typical wrong win rate gives, hint) on one case."""
    wins = sum(x > y for x, y in zip(a, b))
    ties = sum(x == y for x, y in zip(a, b))
    n = len(a)
    unpaired = sum((x > y) + 0.5 * (x == y) for x in a for y in b) / n**2
    mistakes = [
        (wins / n, "Ties count as losses in your answer: a tie is half a win, so add 0.5 for each."),
        ((wins + ties) / n, "Ties count as wins in your answer: a tie is half a win, so add 0.5 for each."),
        ((n - wins - ties + 0.5 * ties) / n, "You computed B's win rate against A: the share where A's reward "
                                             "is the higher one."),
        (wins + 0.5 * ties, "You returned a count: divide by the number of prompts to get a share."),
        (unpaired, "You compared every response of A with every response of B: the win rate is paired, "
                   "entry i of A against entry i of B only (the same prompt)."),
    ]
    if n > ties:
        mistakes.append((wins / (n - ties), "You left the ties out: keep them in the total and count each as "
                                            "half a win."))
    return mistakes


@exercise("Gold win rate")
def check_win_rate(fn: Callable[[Any, Any], Any]) -> str:
    """Check ``fn(rewards_a, rewards_b) -> share of prompts where A beats B, ties counted half``.

    ``rewards_a[i]`` and ``rewards_b[i]`` are the gold rewards of two policies'
    responses to the same prompt i, as :func:`rlhf_course.core.evaluation.win_rate`
    takes them (numpy arrays here). The cases expose ties counted as a loss,
    as a win or left out, the arguments the wrong way round, a count instead of
    a share, and an unpaired comparison of every response with every other.
    """
    import numpy as np

    cases = _win_rate_cases()
    for label, a, b in cases:
        expected = (sum(x > y for x, y in zip(a, b)) + 0.5 * sum(x == y for x, y in zip(a, b))) / len(a)
        got = call_learner(fn, np.array(a), np.array(b), what="your gold_win_rate")
        got = as_float("the win rate", got.item() if isinstance(got, np.generic | np.ndarray) and np.size(got) == 1
                       else got)
        if near(got, expected, 1e-6):
            continue
        hint = next((h for value, h in _win_rate_mistakes(a, b) if near(got, value, 1e-6)),
                    "Count the prompts where A's reward is strictly higher, add half the ties, and divide by "
                    "the number of prompts.")
        raise ExerciseError(f"on {label}, your win rate is {got:.4g}; expected {expected:.4g}. {hint}")
    return f"correct on {len(cases)} paired cases, ties counted half"
