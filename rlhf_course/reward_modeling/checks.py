"""Exercise checks of the Reward Modeling lab: the Bradley–Terry loss and the gain per doubling of data.

Each check calls the learner's function on cases with known answers and raises
:class:`rlhf_course.teaching.checking.ExerciseError` with a hint naming the likely
mistake when it is wrong (the machinery is in :mod:`rlhf_course.teaching.checking`).
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import torch

from rlhf_course.teaching.checking import (ExerciseError, as_float, call_learner, exercise, expect_close,
                                           expect_shape, expect_tensor, near)


def _bradley_terry_batches() -> list[tuple[str, torch.Tensor, torch.Tensor]]:
    """Test batches for the Bradley–Terry loss, each with a description."""
    gen = torch.Generator().manual_seed(0)
    return [
        ("equal rewards", torch.zeros(4), torch.zeros(4)),
        ("a random batch", torch.randn(8, generator=gen), torch.randn(8, generator=gen)),
        ("chosen far ahead", torch.full((3,), 6.0), torch.full((3,), -6.0)),
        ("mixed margins", torch.tensor([2.0, -1.0, 0.5, 0.0, 3.0]), torch.tensor([1.0, 1.0, 0.5, -2.0, 0.0])),
        ("huge margins", torch.tensor([-60.0, 60.0]), torch.tensor([60.0, -60.0])),
    ]


def _reference_bradley_terry(chosen: torch.Tensor, rejected: torch.Tensor) -> torch.Tensor:
    return -torch.nn.functional.logsigmoid(chosen - rejected).mean()


def _diagnose_bradley_terry(got: float, chosen: torch.Tensor, rejected: torch.Tensor) -> str:
    """Guess the learner's mistake from the value they returned."""
    expected = _reference_bradley_terry(chosen, rejected).item()
    swapped = _reference_bradley_terry(rejected, chosen).item()
    if near(got, -expected):
        return "Did you forget the minus sign? The loss is −log σ(r_chosen − r_rejected), which is never negative."
    if near(got, swapped):
        return "Did you swap chosen and rejected? The margin is r_chosen − r_rejected."
    if near(got, expected * len(chosen)):
        return "Did you sum over the batch? Take the mean, so the loss does not grow with the batch size."
    if near(got, torch.sigmoid(rejected - chosen).mean().item()):
        return "Did you forget the log? The loss is −log σ(r_chosen − r_rejected), not 1 − σ(·)."
    return "The loss is −log σ(r_chosen − r_rejected), averaged over the batch."


@exercise("Bradley–Terry loss")
def check_bradley_terry_loss(
    fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    trl_batch: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None,
) -> str:
    """Check ``fn(chosen_rewards, rejected_rewards) -> mean loss``, −log σ(r_c − r_r).

    Tries several batches: equal rewards (loss log 2), a random batch, a clear
    preference (loss near 0), and huge margins (a naive ``log(sigmoid(x))``
    gives infinity there). Then checks that gradients flow back to the rewards.
    With ``trl_batch = (loss, chosen_rewards, rejected_rewards)`` from
    ``reward_modeling.trl_loss_on_batch``, it also compares with the loss TRL's
    ``RewardTrainer`` computed on a real batch, to 1e-6.
    """
    batches = _bradley_terry_batches()
    for label, chosen, rejected in batches:
        got = call_learner(fn, chosen.clone(), rejected.clone(), what="your bradley_terry_loss")
        expect_tensor("the loss", got, "Build it from torch operations on the reward tensors.")
        if got.dim() == 1 and len(got) == len(chosen):
            raise ExerciseError(
                f"on {label}, your loss has shape {tuple(got.shape)}, one value per pair; expected a scalar. "
                "Did you forget to take the mean over the batch?"
            )
        expect_shape("the loss", got, (), "Reduce it to one number with .mean().")
        value = as_float("the loss", got)
        if not math.isfinite(value):
            raise ExerciseError(
                f"on {label} (margins up to {(chosen - rejected).abs().max().item():.0f}) your loss is {value}; "
                "expected a finite number. log(sigmoid(x)) underflows for very negative x: use "
                "torch.nn.functional.logsigmoid, which is computed stably."
            )
        expected = _reference_bradley_terry(chosen, rejected).item()
        if not near(value, expected):
            equal = " (log 2 ≈ 0.693, since σ(0) = 1/2)" if label == "equal rewards" else ""
            raise ExerciseError(
                f"on {label}, your loss is {value:.4g}; expected {expected:.4g}{equal}. "
                + _diagnose_bradley_terry(value, chosen, rejected)
            )

    chosen = torch.tensor([1.0, -0.5, 2.0], requires_grad=True)
    rejected = torch.tensor([0.0, 0.5, 2.5], requires_grad=True)
    loss = call_learner(fn, chosen, rejected, what="your bradley_terry_loss")
    if not getattr(loss, "requires_grad", False):
        raise ExerciseError(
            "your loss carries no gradient, so a reward model could not learn from it. "
            "Did you call .item(), .detach() or build a new tensor with torch.tensor(...)? "
            "Keep it a tensor computation."
        )
    loss.backward()
    expected_grad = -torch.sigmoid(rejected.detach() - chosen.detach()) / len(chosen)
    expect_close("d loss / d r_chosen", chosen.grad, expected_grad, atol=1e-5,
                 hint="The gradient should push chosen rewards up: −σ(r_r − r_c) / batch size.")
    note = f"correct on {len(batches)} batches (equal rewards give log 2, huge margins stay finite), gradients included"
    if trl_batch is not None:
        trl_loss, chosen, rejected = trl_batch
        got = as_float("your loss", call_learner(fn, chosen.clone(), rejected.clone(), what="your bradley_terry_loss"))
        if abs(got - trl_loss.item()) > 1e-6:
            raise ExerciseError(
                f"on a real batch your loss is {got:.7f} but TRL's RewardTrainer computed {trl_loss.item():.7f}. "
                + _diagnose_bradley_terry(got, chosen, rejected))
        note += f", and equal to TRL's RewardTrainer loss ({trl_loss.item():.4f}) on a real batch"
    return note


@exercise("Gain per doubling of the data")
def check_gain_per_doubling(fn: Callable[[Sequence[int], Sequence[float]], float]) -> str:
    """Check ``fn(counts, accuracies) -> accuracy gained per doubling of the pairs``.

    The expected answer is the least-squares slope of accuracy against
    log2(count): learning curves are close to straight lines on a log axis,
    and the slope in log2 units reads as "points per doubling".
    """
    counts, accuracies = [250, 1000, 4000, 16000], [0.60, 0.66, 0.70, 0.76]
    x = [math.log2(c) for c in counts]
    mx, my = sum(x) / len(x), sum(accuracies) / len(accuracies)
    slope = sum((a - mx) * (b - my) for a, b in zip(x, accuracies)) / sum((a - mx) ** 2 for a in x)
    got = as_float("the gain per doubling", call_learner(fn, list(counts), list(accuracies),
                                                         what="your gain_per_doubling"))
    if near(got, slope / math.log(2)) or near(got, slope * math.log2(10)):
        raise ExerciseError(f"your gain is {got:.4f}; expected {slope:.4f}. A doubling is one unit of log2(count): "
                            "use math.log2 (or np.log2), not the natural or base-10 logarithm.")
    endpoints = (accuracies[-1] - accuracies[0]) / (x[-1] - x[0])
    if near(got, endpoints) and not near(endpoints, slope):
        raise ExerciseError(f"your gain is {got:.4f}, the slope between the first and last points; expected "
                            f"{slope:.4f}, the least-squares slope through all of them (np.polyfit(x, y, 1)[0]).")
    if near(got, 1 / slope, 1e-3):
        raise ExerciseError("your answer is the inverse of the slope: regress accuracy on log2(count), not the reverse.")
    if not near(got, slope):
        raise ExerciseError(f"on counts {counts} and accuracies {accuracies} your gain is {got:.4f}; expected "
                            f"{slope:.4f}, the least-squares slope of accuracy against log2(count).")
    flat = as_float("the gain per doubling", call_learner(fn, [100, 200, 400], [0.7, 0.7, 0.7],
                                                          what="your gain_per_doubling"))
    expect_close("the gain of a flat curve", flat, 0.0, atol=1e-9, hint="A flat learning curve gains nothing.")
    return f"{slope:.4f} per doubling on a hand-made curve, least squares on log2(count)"
