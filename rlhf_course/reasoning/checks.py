"""Exercise checks of the Reasoning lab: the gated reward and the zero-advantage group detector.

Each check calls the learner's function on cases with known answers and raises
:class:`rlhf_course.teaching.checking.ExerciseError` with a hint naming the
likely mistake (machinery in :mod:`rlhf_course.teaching.checking`).
"""

from __future__ import annotations

from typing import Any, Callable

import torch

from rlhf_course.reasoning.verifiers import Verdict
from rlhf_course.teaching.checking import ExerciseError, as_float, call_learner, exercise

# (verdict, gated reward): every combination of right/wrong and well/badly formed.
_GATED_CASES = [(Verdict(1.0, 1.0), 1.0), (Verdict(1.0, 0.0), 0.0), (Verdict(0.0, 1.0), 0.0), (Verdict(0.0, 0.0), 0.0)]


def _gated_hint(got: dict[tuple[float, float], float]) -> str:
    """Name the mistake from the learner's rewards on the four verdicts (keyed by (correct, well_formed))."""
    if got[(1.0, 0.0)] > 0 and got[(0.0, 1.0)] == 0:
        return ("A right answer in the wrong form earned a reward: that is the plain correctness reward. The gate "
                "is the point: multiply by well_formed (or return 0 unless both hold).")
    if got[(0.0, 1.0)] > 0 and got[(1.0, 0.0)] == 0:
        return "A well-formed wrong answer earned a reward: you gated on the format but not on correctness."
    if got[(0.0, 1.0)] > 0 and got[(1.0, 0.0)] > 0:
        if got[(1.0, 1.0)] > max(got[(0.0, 1.0)], got[(1.0, 0.0)]):
            return "That is an additive reward (a bonus for each part); the gate pays only when both hold."
        return "Either part alone earns the reward: you used OR; the gate needs AND (correct * well_formed)."
    return "The gated reward is correct * well_formed: 1 for a right, well-formed answer, otherwise 0."


@exercise("Gated reward")
def check_gated_reward(fn: Callable[[Verdict], float]) -> str:
    """Check ``fn(verdict) -> reward``: 1 for a right answer in the right form, 0 otherwise (CS336's r1_zero).

    The four cases are every combination of right or wrong and well or badly
    formed; the hints name the usual slips: correctness alone, format alone,
    an additive bonus, OR instead of AND, and a boolean instead of a number.
    """
    got: dict[tuple[float, float], float] = {}
    for verdict, _ in _GATED_CASES:
        value = call_learner(fn, verdict, what="your gated_reward")
        if value is None:
            raise ExerciseError("your gated_reward returned None: return the reward, a number (1.0 or 0.0).")
        if isinstance(value, torch.Tensor) and value.numel() != 1:
            raise ExerciseError(f"your gated_reward returned a tensor of shape {tuple(value.shape)}; return one "
                                "number for the one verdict it is given.")
        got[(verdict.correct, verdict.well_formed)] = as_float("your gated reward", value)
    wrong = [(v, want) for v, want in _GATED_CASES if abs(got[(v.correct, v.well_formed)] - want) > 1e-9]
    if wrong:
        v, want = wrong[0]
        raise ExerciseError(f"for Verdict(correct={v.correct}, well_formed={v.well_formed}) your reward is "
                            f"{got[(v.correct, v.well_formed)]:g}; expected {want:g}. {_gated_hint(got)}")
    return "1 only for a right, well-formed answer; a right answer in the wrong form earns nothing"


def _zero_cases() -> list[tuple[str, torch.Tensor]]:
    gen = torch.Generator().manual_seed(0)
    return [
        ("more samples than prompts, 2 × 6", torch.tensor([[2., 2., 2., 2., 2., 2.], [0., 0., 0., 0., 0., 1.]])),
        ("binary rewards, 4 prompts × 4 samples", torch.tensor([[0., 0., 0., 0.], [1., 1., 1., 1.], [0., 1., 0., 0.],
                                                                [1., 1., 0., 1.]])),
        ("additive rewards (1.5 = right and well formed)", torch.tensor([[1.5, 1.5, 1.5], [0.5, 0.5, 0.5],
                                                                        [0.0, 0.5, 1.5], [0.5, 0.0, 0.5]])),
        ("more prompts than samples, 5 × 2", torch.tensor([[0., 0.], [1., 0.], [3., 3.], [0., 1.], [-1., -1.]])),
        ("random rewards (no ties)", torch.randn(3, 5, generator=gen)),
    ]


def _as_mask(got: Any, label: str, prompts: int) -> torch.Tensor:
    if isinstance(got, (float, int)) and not isinstance(got, bool):
        raise ExerciseError(f"on {label}, your function returned one number, {got}: that looks like the share of "
                            "such groups. Return one True/False per prompt (a boolean tensor of shape (prompts,)).")
    got = torch.as_tensor(got)
    if got.dim() == 0:
        raise ExerciseError(f"on {label}, your function returned a single value; return one True/False per prompt, "
                            f"shape ({prompts},).")
    return got


@exercise("Zero-advantage groups")
def check_zero_advantage_groups(fn: Callable[[torch.Tensor], torch.Tensor]) -> str:
    """Check ``fn(rewards) -> (prompts,) booleans``: True where all k rewards of a prompt are equal.

    ``rewards`` has shape ``(prompts, k)``. A group whose rewards all tie gets
    zero advantage under RLOO and GRPO, whatever the tied value is: all
    wrong (0), all right (1), or all 0.5 under an additive reward. The hints
    name the usual slips: only all-zero groups, only all-one groups, the wrong
    dimension, and a share instead of one flag per prompt.
    """
    cases = _zero_cases()
    for label, rewards in cases:
        prompts = rewards.shape[0]
        got = _as_mask(call_learner(fn, rewards.clone(), what="your zero_advantage_groups"), label, prompts)
        if tuple(got.shape) != (prompts,):
            hint = (" You reduced over the prompts (dim=0); compare within each row (dim=1)."
                    if tuple(got.shape) == (rewards.shape[1],) else "")
            raise ExerciseError(f"on {label} (rewards of shape {tuple(rewards.shape)}), your answer has shape "
                                f"{tuple(got.shape)}; expected ({prompts},), one flag per prompt.{hint}")
        want = (rewards == rewards[:, :1]).all(dim=1)
        if not torch.equal(got.bool(), want):
            rows = rewards.tolist()
            i = int((got.bool() != want).nonzero()[0])
            if want[i] and rows[i][0] != 0 and got.bool()[i] == False:  # noqa: E712
                hint = ("A group whose rewards all equal " f"{rows[i][0]:g} is missed: a tie at any value (all "
                        "right, say) leaves every advantage zero, not only all-zero groups.")
            elif not want[i]:
                hint = ("This group's rewards differ, so its advantages are not all zero. Compare every reward with "
                        "the first of its row (or test max == min per row).")
            else:
                hint = "Flag a prompt when all its k rewards are equal: (rewards == rewards[:, :1]).all(dim=1)."
            raise ExerciseError(f"on {label}, prompt {i} with rewards {rows[i]}: your flag is "
                                f"{bool(got.bool()[i])}, expected {bool(want[i])}. {hint}")
    return f"correct on {len(cases)} reward tables: ties at 0, at 1 and at any other value are all found"
