"""Exercise checks of the Optimization and RL lab: the optimal KL-regularised policy.

Each check calls the learner's function on cases with known answers and raises
:class:`rlhf_course.teaching.checking.ExerciseError` with a hint naming the likely
mistake when it is wrong (the machinery is in :mod:`rlhf_course.teaching.checking`).
"""

from __future__ import annotations

import math
from typing import Any, Callable

import torch

from rlhf_course.teaching.checking import ExerciseError, call_learner, exercise, show


def _optimal_policy_cases() -> list[tuple[str, list[float], list[float], float]]:
    """(description, ref_probs, rewards, beta) for the optimal-policy check."""
    return [
        ("the hand-made example (β = 1)", [0.5, 0.25, 0.25], [0.0, math.log(2), math.log(4)], 1.0),
        ("four responses at β = 0.5", [0.1, 0.2, 0.3, 0.4], [1.0, 0.0, 2.0, -1.0], 0.5),
        ("equal rewards (β = 2)", [0.6, 0.3, 0.1], [3.0, 3.0, 3.0], 2.0),
        ("a response π_ref never writes (β = 1)", [0.0, 0.5, 0.5], [5.0, 0.0, 1.0], 1.0),
        ("rewards near 1000 at β = 0.01", [0.2, 0.3, 0.5], [1000.0, 990.0, 0.0], 0.01),
    ]


def _tilt(ref: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """softmax(log ref + logits), with log 0 = -inf."""
    return torch.softmax(torch.log(ref) + logits, dim=0)


def _diagnose_optimal_policy(got: torch.Tensor, ref: torch.Tensor, r: torch.Tensor, beta: float) -> str:
    """Guess the learner's mistake from the distribution they returned."""
    def same(other: torch.Tensor) -> bool:
        return bool(torch.isfinite(other).all()) and torch.allclose(got, other, atol=1e-6, rtol=0.0)

    if beta != 1.0 and same(_tilt(ref, r * beta)):
        return "Did you multiply the reward by β? The tilt is exp(r / β): a small β means a weak penalty and a sharp policy."
    if same(torch.softmax(r / beta, dim=0)):
        return "Did you drop π_ref? π*(y) ∝ π_ref(y) · exp(r(y) / β): the reference weights every response."
    if same(_tilt(ref, -r / beta)):
        return "The sign is flipped: higher reward must get more probability, exp(+r / β)."
    if (ref * r).sum() > 0 and same(ref * r / (ref * r).sum()):
        return "You weighted π_ref by the reward itself; the weight is exp(r / β)."
    if same(ref):
        return "You returned π_ref unchanged; tilt it by exp(r / β)."
    return "π*(y) = π_ref(y) · exp(r(y) / β) / Z, with Z the sum of the numerators over all responses."


@exercise("The optimal KL-regularised policy")
def check_optimal_policy(fn: Callable[[torch.Tensor, torch.Tensor, float], Any]) -> str:
    """Check ``fn(ref_probs, rewards, beta) -> π*``, the maximiser of E_π[r] − β KL(π ‖ π_ref).

    π*(y) = π_ref(y) exp(r(y)/β) / Z. The inputs are 1-D float64 tensors and
    a float; any array-like answer of the same length is accepted. The cases
    expose the usual mistakes: no normalisation, r·β instead of r/β, a
    forgotten π_ref (caught by equal rewards, whose answer is π_ref itself),
    and rewards of 1000 at β = 0.01, where exp(r/β) overflows unless the
    largest logit is subtracted first (log-sum-exp, or torch.softmax).
    """
    cases = _optimal_policy_cases()
    for label, ref_list, reward_list, beta in cases:
        ref = torch.tensor(ref_list, dtype=torch.float64)
        r = torch.tensor(reward_list, dtype=torch.float64)
        answer = call_learner(fn, ref.clone(), r.clone(), beta, what="your optimal_policy")
        try:
            got = torch.as_tensor(answer, dtype=torch.float64).detach().flatten()
        except (TypeError, ValueError, RuntimeError) as err:
            raise ExerciseError(
                f"on {label}, your answer should be one probability per response (a tensor or a list), "
                f"but got {type(answer).__name__}."
            ) from err
        if got.numel() != len(ref):
            raise ExerciseError(
                f"on {label}, expected {len(ref)} probabilities, one per response, but got {got.numel()}. "
                "Combine π_ref and the rewards element by element."
            )
        expected = _tilt(ref, r / beta)
        if not torch.isfinite(got).all():
            if label.startswith("rewards near 1000"):
                raise ExerciseError(
                    f"on {label}, your answer is {show(got)}; expected {show(expected)}. r / β = 100000 and "
                    "exp(100000) overflows to infinity (inf / inf = nan). Subtract the largest logit "
                    "log π_ref + r / β before exponentiating (the log-sum-exp trick), or use torch.softmax."
                )
            raise ExerciseError(f"on {label}, your answer is {show(got)}; expected finite probabilities "
                                f"{show(expected)}. " + _diagnose_optimal_policy(got, ref, r, beta))
        if (got < -1e-12).any() and (got <= 0).all():
            raise ExerciseError(
                f"on {label}, your answer {show(got)} is all negative: these look like log-probabilities. "
                "Return the probabilities themselves (exponentiate)."
            )
        total = got.sum().item()
        if abs(total - 1.0) > 1e-6:
            raise ExerciseError(
                f"on {label}, your probabilities sum to {total:.4g}, not 1. Did you forget to normalise? "
                "Divide π_ref · exp(r / β) by Z, its sum over all responses."
            )
        if not torch.allclose(got, expected, atol=1e-6, rtol=0.0):
            raise ExerciseError(
                f"on {label}, with π_ref = {ref_list} and r = {[round(x, 3) for x in reward_list]}, your π* is "
                f"{show(got)}; expected {show(expected)}. " + _diagnose_optimal_policy(got, ref, r, beta)
            )
    return (f"correct on {len(cases)} cases, including equal rewards (π* = π_ref), a response π_ref never "
            "writes, and rewards of 1000 at β = 0.01")
