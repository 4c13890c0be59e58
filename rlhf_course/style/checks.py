"""Exercise check of the Style lab: the length-controlled win rate.

The learner writes ``fn(outcomes, length_diff) -> float``: fit
``P(win) = σ(θ + φ · tanh(Δ / sd(Δ)))`` to one policy's judged comparisons
with a baseline and return σ(θ), the win rate at equal length. The cases are
synthetic, with known θ and φ, so the right answer is known without calling
the package's own fit.
"""

from __future__ import annotations

import math
from typing import Callable

import torch

from rlhf_course.teaching.checking import ExerciseError, as_float, call_learner, exercise


def synthetic_comparisons(theta: float, phi: float, n: int = 6000, shift: float = 4.0, seed: int = 0
                          ) -> tuple[torch.Tensor, torch.Tensor]:
    """Judged comparisons with a known length effect: ``(outcomes, length_diff)``.

    Length differences Δ ~ Normal(shift, 6) words; each outcome is a Bernoulli
    draw with probability σ(θ + φ tanh(Δ / sd(Δ))). The length-controlled win
    rate is σ(θ) by construction.
    """
    gen = torch.Generator().manual_seed(seed)
    diff = torch.round(shift + 6.0 * torch.randn(n, generator=gen, dtype=torch.float64))
    logits = theta + phi * torch.tanh(diff / diff.std())
    return torch.bernoulli(torch.sigmoid(logits), generator=gen), diff


def _tolerance(n: int) -> float:
    """About four standard errors of a fitted win rate from n comparisons (the fit spends some on φ)."""
    return 4.0 * 0.5 / math.sqrt(n) * 1.6


@exercise("Length-controlled win rate")
def check_length_controlled_win_rate(fn: Callable[[torch.Tensor, torch.Tensor], float]) -> str:
    """Check ``fn(outcomes, length_diff) -> σ(θ)`` on synthetic comparisons with a known answer.

    Diagnoses the usual mistakes: returning the raw win rate (the mean of the
    outcomes), returning σ(θ + φ) or the prediction averaged over the observed
    lengths (the length term not set to zero), a flipped sign, and a crash or
    NaN when every length difference is zero (the standard deviation is 0).
    """
    cases = [("a judge that loves length, true win rate at equal length 0.50", 0.0, 2.0, 4.0),
             ("a better policy that is also longer, true 0.69", 0.8, 1.5, 5.0),
             ("a worse policy that is shorter, true 0.35", -0.6, 1.0, -4.0)]
    for label, theta, phi, shift in cases:
        outcomes, diff = synthetic_comparisons(theta, phi, shift=shift, seed=len(label))
        got = as_float("your length-controlled win rate",
                       call_learner(fn, outcomes.clone(), diff.clone(), what="your function"))
        truth, raw = 1 / (1 + math.exp(-theta)), float(outcomes.mean())
        if not math.isfinite(got):
            raise ExerciseError(f"on {label}, your function returned {got}. Check the fit for NaNs (are the "
                                "outcomes floats? is the optimiser's learning rate too large?).")
        if abs(got - truth) > _tolerance(len(outcomes)):
            hint = ("That is the raw win rate, the mean of the outcomes: fit the regression and read σ(θ), the "
                    "prediction with the length term set to zero." if abs(got - raw) < 0.005 else
                    "That is below one half where the policy is better: is the sign of θ (or of the outcomes) flipped?"
                    if abs(got - (1 - truth)) < _tolerance(len(outcomes)) else
                    "Return σ(θ) alone: the length term φ·tanh(Δ/sd) must be set to zero, not kept at the observed "
                    "lengths. Check also that the covariate is tanh(Δ / sd(Δ)).")
            raise ExerciseError(f"on {label}: expected about {truth:.3f} (the raw win rate is {raw:.3f}), but got "
                                f"{got:.3f}. {hint}")
    outcomes = torch.tensor([1.0, 0.0, 1.0, 1.0, 0.5, 0.0, 1.0, 1.0])
    got = as_float("your length-controlled win rate",
                   call_learner(fn, outcomes, torch.zeros(8, dtype=torch.float64), what="your function"))
    if not math.isfinite(got) or abs(got - float(outcomes.mean())) > 0.01:
        raise ExerciseError(f"with every length difference 0, the length-controlled win rate must equal the raw one, "
                            f"{float(outcomes.mean()):.3f}, but got {got}. With all Δ equal their standard deviation "
                            "is 0: divide by 1 instead of 0, so the covariate is 0 everywhere.")
    return f"recovers the win rate at equal length on {len(cases)} synthetic judges and equals the raw one at equal length"
