"""Exercise checks of the Policy Gradients lab: RLOO and GRPO advantages.

Each check calls the learner's function on cases with known answers and raises
:class:`rlhf_course.teaching.checking.ExerciseError` with a hint naming the likely
mistake when it is wrong (the machinery is in :mod:`rlhf_course.teaching.checking`).
"""

from __future__ import annotations

from typing import Any, Callable

import torch

from rlhf_course.teaching.checking import ExerciseError, call_learner, exercise, expect_tensor, mismatch, show


def _group_reward_cases() -> list[tuple[str, list[list[float]]]]:
    """Hand-made (description, rewards of shape (prompts, k)) cases for the group advantages."""
    return [
        ("the chapter's group (1, 0, 0, 1)", [[1.0, 0.0, 0.0, 1.0]]),
        ("a group whose responses all score 2", [[2.0, 2.0, 2.0, 2.0]]),
        ("three prompts at different reward levels, k = 4",
         [[1.0, 0.0, 0.0, 1.0], [4.0, 6.0, 3.0, 5.0], [-2.0, -1.0, -3.0, 0.0]]),
        ("three prompts with k = 2", [[1.0, 3.0], [0.0, -1.0], [5.0, 2.0]]),
        ("four prompts with k = 4", [[0.0, 1.0, 3.0, 2.0], [5.0, 5.0, 6.0, 4.0], [1.0, -1.0, 0.0, 2.0],
                                     [3.0, 3.0, 0.0, 2.0]]),
    ]


def _learner_advantages(fn: Callable[[torch.Tensor], Any], rewards: torch.Tensor, label: str,
                        what: str) -> torch.Tensor:
    """Call ``fn(rewards)`` and check the answer is a ``(prompts, k)`` tensor that left ``rewards`` alone."""
    given = rewards.clone()
    try:
        got = call_learner(fn, given, what=what)
    except ExerciseError as err:
        cause = err.__cause__
        if isinstance(cause, RuntimeError) and "must match the size" in str(cause):
            raise ExerciseError(
                f"{err} A (prompts,)-shaped mean or sum does not line up with the (prompts, k) rewards: "
                "reduce with keepdim=True (e.g. rewards.mean(dim=1, keepdim=True)) so that it broadcasts "
                "along each row."
            ) from cause
        raise
    if not torch.equal(given, rewards):
        raise ExerciseError(f"on {label}, your function changed the rewards tensor it was given (an in-place "
                            "operation such as -= or .sub_()). Compute a new tensor and leave the input alone.")
    expect_tensor("the advantages", got, "Build them from torch operations on the rewards.")
    prompts, k = rewards.shape
    if tuple(got.shape) != (prompts, k):
        if tuple(got.shape) == (prompts,) or tuple(got.shape) == (prompts, 1):
            hint = ("That is one number per prompt; every response gets its own advantage, so keep the "
                    "(prompts, k) shape.")
        elif got.numel() == prompts * k:
            hint = "Right number of values, wrong shape: keep one row per prompt and one column per response."
        else:
            hint = "Every response gets one advantage: the answer has the shape of the rewards."
        raise ExerciseError(mismatch(f"on {label}, the advantages should have shape {(prompts, k)}",
                                     f"shape {tuple(got.shape)}", hint))
    return got.detach().double()


def _explain(wrong: list[tuple[str, torch.Tensor, torch.Tensor, torch.Tensor]],
             mistakes: Callable[[torch.Tensor], list[tuple[torch.Tensor, str]]],
             default: str) -> tuple[tuple[str, torch.Tensor, torch.Tensor, torch.Tensor], str]:
    """The wrong case to show and the hint of the mistake that explains the most wrong answers."""
    def fits(rewards: torch.Tensor, got: torch.Tensor, expected: torch.Tensor) -> list[str]:
        out = []
        for value, hint in mistakes(rewards):
            if (value.shape == got.shape and torch.isfinite(value).all()
                    and torch.allclose(got, value, atol=1e-4, rtol=1e-3)
                    and not torch.allclose(value, expected, atol=1e-4, rtol=1e-3)):
                out.append(hint)
        return out

    per_case = [fits(rewards, got, expected) for _, rewards, got, expected in wrong]
    hints = [hint for hints in per_case for hint in hints]
    if not hints:
        return wrong[0], default
    best = max(hints, key=hints.count)  # max keeps the first of equally common hints
    return wrong[next(i for i, hints in enumerate(per_case) if best in hints)], best


def _rloo_mistakes(r: torch.Tensor) -> list[tuple[torch.Tensor, str]]:
    """(wrong answer, hint) for the usual mistakes in the RLOO advantage of rewards ``r`` (prompts, k)."""
    prompts, k = r.shape
    total = r.sum(dim=1, keepdim=True)
    others = (total - r) / (k - 1)
    mean = r.mean(dim=1, keepdim=True)
    mistakes = [
        (r - (total - r) / k, "You divided by k instead of k − 1: the baseline is the mean of the k − 1 *other* "
                              "responses, (Σ_j r_j − r_i) / (k − 1)."),
        (r - mean, "Your baseline includes r_i itself: r_i − mean(r) is (k − 1)/k times the RLOO advantage (Dr. "
                   "GRPO's advantage). Leave response i out: subtract (Σ_j r_j − r_i) / (k − 1)."),
        (others - r, "The sign is flipped: the advantage is r_i minus the others' mean, so a response better than "
                     "its siblings gets a positive advantage."),
        (others, "You returned the baseline, the others' mean; the advantage is r_i minus it."),
        (r.clone(), "You returned the rewards unchanged; subtract the mean of the other responses to the same prompt."),
        ((r - mean) / (r.std(dim=1, keepdim=True) + 1e-4), "That is GRPO's standardised advantage; RLOO subtracts "
                                                            "the others' mean and does not divide by a spread."),
    ]
    if prompts > 1:
        n = r.numel()
        mistakes += [
            (r - (r.sum() - r) / (n - 1), "Your baseline averages the other responses of the whole batch. The "
                                          "siblings of a response are the other responses to the *same prompt*, "
                                          "its row: sum over dim=1."),
            (r - (r.sum() - r) / (k - 1), "You summed the whole batch but divided by k − 1: the siblings of a "
                                          "response are the other entries of its row, so sum over dim=1 only."),
            (r - (r.sum(dim=0, keepdim=True) - r) / (prompts - 1),
             "You left one out along dim=0, across prompts. A prompt's group is a row of the (prompts, k) "
             "rewards: reduce over dim=1."),
            (r - r.mean(dim=0, keepdim=True), "You averaged along dim=0, across prompts. A prompt's group is a row "
                                              "of the (prompts, k) rewards: reduce over dim=1."),
            (r - r.mean(), "You subtracted the mean of the whole batch; RLOO uses the other responses to the same "
                           "prompt (reduce over dim=1, and leave response i out)."),
        ]
    if prompts == k:  # a (prompts,) mean broadcasts silently along the wrong axis only for a square table
        mistakes += [
            (r - ((total.flatten()[None, :] - r) / (k - 1)),
             "Your group sums lost their dimension and broadcast along the wrong axis: use "
             "rewards.sum(dim=1, keepdim=True)."),
            (r - r.mean(dim=1)[None, :], "Your group means lost their dimension and broadcast along the wrong axis "
                                         "(use keepdim=True); also leave response i out of its own baseline."),
        ]
    return mistakes


@exercise("RLOO advantage")
def check_rloo_advantages(fn: Callable[[torch.Tensor], torch.Tensor]) -> str:
    """Check ``fn(rewards) -> advantages`` for rewards of shape ``(prompts, k)``: RLOO's leave-one-out advantage.

    A_i = r_i − (Σ_{j≠i} r_j) / (k − 1), row by row, as
    ``rlhf_course.policy_gradients.rloo_advantages`` computes it. The cases are
    built by hand: the chapter's group (1, 0, 0, 1), whose answer is
    ±2/3; a group of equal rewards (all zero); several prompts at different
    reward levels (a batch-wide baseline, or one along the wrong dimension,
    gives other values); k = 2 (each response against its one sibling); and a
    square table, where a mean without ``keepdim`` broadcasts silently.
    """
    from rlhf_course.policy_gradients.loss import rloo_advantages

    cases = _group_reward_cases()
    wrong = []
    for label, table in cases:
        rewards = torch.tensor(table, dtype=torch.float32)
        got = _learner_advantages(fn, rewards, label, "your rloo_advantages")
        expected = rloo_advantages(rewards).double()
        if not torch.isfinite(got).all() or not torch.allclose(got, expected, atol=1e-5, rtol=1e-5):
            wrong.append((label, rewards.double(), got, expected))
    if wrong:
        (label, rewards, got, expected), hint = _explain(
            wrong, _rloo_mistakes, "Each response's baseline is the mean reward of the other k − 1 responses to "
                                   "the same prompt.")
        raise ExerciseError(f"on {label}, rewards {rewards.tolist()}, your advantages are {show(got)}; expected "
                            f"{show(expected)}. {hint}")
    return (f"equal to rlhf_course.policy_gradients.rloo_advantages on {len(cases)} hand-made cases "
            "((1, 0, 0, 1) gives ±2/3, equal rewards give 0)")


def _grpo_mistakes(r: torch.Tensor) -> list[tuple[torch.Tensor, str]]:
    """(wrong answer, hint) for the usual mistakes in the GRPO advantage of rewards ``r`` (prompts, k)."""
    prompts, k = r.shape
    eps = 1e-4
    mean = r.mean(dim=1, keepdim=True)
    std = r.std(dim=1, keepdim=True)
    mistakes = [
        ((r - mean) / (r.std(dim=1, keepdim=True, unbiased=False) + eps),
         "You used the population standard deviation (dividing by k). Like TRL's GRPOTrainer and the package, "
         "use the sample standard deviation, torch.std's default (dividing by k − 1)."),
        (r - mean, "You did not divide by the group's standard deviation: r − mean is Dr. GRPO's advantage. "
                   "GRPO standardises: (r − mean) / (std + eps)."),
        (r / (std + eps), "You divided by the standard deviation but did not subtract the group mean first."),
        ((mean - r) / (std + eps), "The sign is flipped: (r − mean) / (std + eps), so that better-than-average "
                                   "responses get positive advantages."),
        ((r - mean) / (r.var(dim=1, keepdim=True) + eps), "You divided by the variance; divide by the standard "
                                                          "deviation, its square root."),
        ((r - mean) / (r.var(dim=1, keepdim=True, unbiased=False) + eps),
         "You divided by the variance; divide by the standard deviation, its square root."),
        (r - (r.sum(dim=1, keepdim=True) - r) / (k - 1), "That is RLOO's leave-one-out advantage; GRPO subtracts "
                                                          "the group mean and divides by the group's std."),
    ]
    if prompts > 1:
        mistakes += [
            ((r - r.mean()) / (std + eps), "You subtracted the mean of the whole batch. GRPO centres each group "
                                           "on its own mean: rewards.mean(dim=1, keepdim=True)."),
            ((r - r.mean()) / (r.std() + eps), "You standardised with the whole batch's mean and std. GRPO "
                                               "standardises each prompt's group, a row: reduce over dim=1."),
            ((r - mean) / (r.std() + eps), "You divided by the standard deviation of the whole batch (TRL's "
                                           "scale_rewards='batch'). GRPO divides by each group's own std: "
                                           "rewards.std(dim=1, keepdim=True)."),
            ((r - r.mean(dim=0, keepdim=True)) / (r.std(dim=0, keepdim=True) + eps),
             "You standardised along dim=0, across prompts. A prompt's group is a row of the (prompts, k) "
             "rewards: reduce over dim=1."),
        ]
    if prompts == k:
        mistakes += [
            ((r - r.mean(dim=1)[None, :]) / (r.std(dim=1)[None, :] + eps),
             "Your group statistics lost their dimension and broadcast along the wrong axis: use "
             "mean(dim=1, keepdim=True) and std(dim=1, keepdim=True)."),
        ]
    return mistakes


def _implied_eps(rewards: torch.Tensor, got: torch.Tensor) -> float | None:
    """The eps for which ``got`` = (r − mean) / (std + eps) on every entry, if there is one."""
    centred = rewards - rewards.mean(dim=1, keepdim=True)
    usable = (centred.abs() > 1e-6) & (got.abs() > 1e-9)
    if not usable.any():
        return None
    implied = (centred / got - rewards.std(dim=1, keepdim=True))[usable]
    if implied.min() > 0 and implied.max() - implied.min() < 1e-3 * max(1.0, implied.max().item()):
        return implied.mean().item()
    return None


@exercise("GRPO advantage")
def check_grpo_advantages(fn: Callable[[torch.Tensor], torch.Tensor]) -> str:
    """Check ``fn(rewards) -> advantages`` for rewards of shape ``(prompts, k)``: GRPO's group-normalised advantage.

    A_i = (r_i − mean(r)) / (std(r) + eps) within each row, with the *sample*
    standard deviation (k − 1 in the denominator) as in TRL and
    ``rlhf_course.policy_gradients.grpo_advantages``. Any small eps (up to
    a few times 1e-4, added to the std) is accepted. The cases
    expose the population std (the chapter's pencil-and-paper convention),
    a forgotten eps (a group of equal rewards gives 0/0), statistics of the
    whole batch instead of each group, and the wrong dimension. A last case,
    a group that differs only by ±0.01, shows what standardising does.
    """
    from rlhf_course.policy_gradients.loss import grpo_advantages

    cases = _group_reward_cases()
    wrong = []
    for label, table in cases:
        rewards = torch.tensor(table, dtype=torch.float32)
        got = _learner_advantages(fn, rewards, label, "your grpo_advantages")
        expected = grpo_advantages(rewards).double()
        if not torch.isfinite(got).all():
            equal = (rewards.std(dim=1) == 0).any().item()
            hint = ("Its rewards are all equal, so the std is 0 and (r − mean) / std is 0/0 = NaN. Add a small "
                    "eps to the denominator, (r − mean) / (std + eps), so such a group gets advantage 0."
                    if equal else "The formula is (r − mean) / (std + eps) within each row.")
            raise ExerciseError(f"on {label}, your advantages are {show(got)}; expected {show(expected)}. {hint}")
        if not torch.allclose(got, expected, atol=2e-3, rtol=0.0):
            wrong.append((label, rewards.double(), got, expected))
    if wrong:
        (label, rewards, got, expected), hint = _explain(
            wrong, _grpo_mistakes, "Within each prompt's group (a row): subtract the mean, then divide by the "
                                   "sample standard deviation plus a small eps.")
        eps = _implied_eps(rewards, got)
        if eps is not None and hint.startswith("Within each"):
            hint = (f"Your answer is (r − mean) / (std + eps) with eps ≈ {eps:.2g}, which is too large: eps only "
                    "guards against a zero std and must not compete with a real one. Use something like 1e-4.")
        raise ExerciseError(f"on {label}, rewards {rewards.tolist()}, your advantages are {show(got)}; expected "
                            f"{show(expected)}. {hint}")
    noisy = torch.tensor([[0.51, 0.49, 0.49, 0.51]])
    got = _learner_advantages(fn, noisy, "a group that differs by ±0.01", "your grpo_advantages")
    expected = grpo_advantages(noisy).double()
    if not torch.isfinite(got).all() or not torch.allclose(got, expected, rtol=0.02, atol=0.0):
        raise ExerciseError(f"on the group (0.51, 0.49, 0.49, 0.51), your advantages are {show(got)}; expected "
                            f"about {show(expected)}. Is your eps too large? It should only guard against a zero std, "
                            "not compete with a std of 0.01 (inside a square root, eps = 1e-4 adds up to 0.01 to the "
                            "std): use (r − mean) / (std + 1e-4).")
    return (f"equal to rlhf_course.policy_gradients.grpo_advantages on {len(cases) + 1} hand-made cases, sample "
            f"std included; note that (0.51, 0.49, 0.49, 0.51) gets {show(got)}, nearly the same advantages as "
            "(1, 0, 0, 1)")
