"""Exercise checks of the Synthetic Data lab: the filter that turns a teacher's answers into training data.

Each check calls the learner's function on cases with known answers and raises
:class:`rlhf_course.teaching.checking.ExerciseError` with a hint naming the likely
mistake when it is wrong (the machinery is in :mod:`rlhf_course.teaching.checking`).
"""

from __future__ import annotations

from typing import Callable

import torch

from rlhf_course.teaching.checking import ExerciseError, call_learner, exercise

T, F = True, False


def _filter_cases() -> list[tuple[str, torch.Tensor, torch.Tensor]]:
    """(description, scores, passed) with shapes (prompts, k)."""
    gen = torch.Generator().manual_seed(0)
    scores = torch.randn(6, 4, generator=gen)
    passed = torch.rand(6, 4, generator=gen) < 0.6
    passed[2] = False  # one prompt with no accepted answer
    passed[4] = True
    return [
        ("the top score fails the verifier", torch.tensor([[3.0, 1.0, 2.0], [0.5, 4.0, -1.0]]),
         torch.tensor([[F, T, T], [T, F, T]])),
        ("every answer passes (plain best-of-k)", torch.tensor([[0.1, 0.9, 0.4], [2.0, -1.0, 0.0]]),
         torch.ones(2, 3, dtype=torch.bool)),
        ("no answer passes for one prompt", torch.tensor([[1.0, 2.0], [5.0, 6.0]]), torch.tensor([[T, F], [F, F]])),
        ("all scores negative", torch.tensor([[-4.0, -0.5, -2.0], [-3.0, -1.0, -9.0]]),
         torch.tensor([[T, F, T], [F, F, T]])),
        ("6 prompts of 4 answers at random", scores, passed),
        ("a tie among the accepted", torch.tensor([[1.0, 3.0, 3.0, 5.0]]), torch.tensor([[T, T, T, F]])),
    ]


def _reference(scores: torch.Tensor, passed: torch.Tensor) -> list[int]:
    out = []
    for row, ok in zip(scores.tolist(), passed.tolist()):
        allowed = [j for j in range(len(row)) if ok[j]]
        out.append(max(allowed, key=lambda j: row[j]) if allowed else -1)
    return out


def _diagnose(scores: torch.Tensor, passed: torch.Tensor, got: list[int]) -> str:
    argmax = scores.argmax(dim=1).tolist()
    if got == argmax:
        return "You kept the highest score whatever the verifier said: a wrong answer must never be kept."
    if got == [j if passed[i, j] else -1 for i, j in enumerate(argmax)]:
        return ("You took the best score first and then dropped the prompt when that answer failed; take the best "
                "among the answers that passed, so a prompt is dropped only when none passed.")
    if got == [j if j >= 0 else 0 for j in _reference(scores, passed)]:
        return ("A prompt where no answer passed should give -1 (dropped), not 0: argmax of a row of -inf is 0, "
                "so test passed.any(dim=1) separately.")
    if got == scores.masked_fill(~passed, 0.0).argmax(dim=1).tolist():
        return ("Replacing a failed answer's score with 0 lets it beat accepted answers with negative scores; "
                "use -inf, or select among the passed ones only.")
    if got == scores.masked_fill(~passed, float("inf")).argmin(dim=1).tolist() or got == scores.argmin(dim=1).tolist():
        return "You picked the lowest score: best-of-k keeps the highest."
    return "Entry i must be the column of the highest-scoring answer of row i among those with passed True, or -1."


@exercise("Best-of-k behind a verifier")
def check_filter(fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> str:
    """Check ``fn(scores, passed) -> kept index per prompt, -1 for a dropped prompt``.

    ``scores`` holds the reward model's scores of k answers per prompt and
    ``passed`` the verifier's verdicts, both of shape ``(prompts, k)``. The
    answer is an integer tensor of shape ``(prompts,)``: the column of the
    highest score among the answers that passed, or -1 when none passed, as
    :func:`rlhf_course.synthetic_data.best_verified` returns. With a tie, any
    of the tied answers is accepted.
    """
    cases = _filter_cases()
    for label, scores, passed in cases:
        got = call_learner(fn, scores.clone(), passed.clone(), what="your filter")
        if isinstance(got, tuple):
            raise ExerciseError(f"on {label}, your filter returned a tuple (values and indices?); return only the "
                                "index of the kept answer of each prompt.")
        if not isinstance(got, torch.Tensor):
            raise ExerciseError(f"on {label}, your filter should return a torch.Tensor of indices, not a "
                                f"{type(got).__name__}.")
        if got.is_floating_point() or got.dtype == torch.bool:
            raise ExerciseError(f"on {label}, your filter returned dtype {got.dtype}; return integer positions "
                                "(the column of the kept answer, -1 when none is kept), not scores or a mask.")
        if tuple(got.shape) != (scores.shape[0],):
            raise ExerciseError(f"on {label} (scores of shape {tuple(scores.shape)}), your filter should return shape "
                                f"({scores.shape[0]},), one index per prompt, but returned {tuple(got.shape)}.")
        got_list, want = got.long().tolist(), _reference(scores, passed)
        ok = all((g == w) if w < 0 else (0 <= g < scores.shape[1] and bool(passed[i, g])
                                         and scores[i, g] == scores[i, w])
                 for i, (g, w) in enumerate(zip(got_list, want)))
        if not ok:
            raise ExerciseError(f"on {label}, with scores {scores.tolist()} and passed {passed.tolist()}, your filter "
                                f"kept {got_list}; expected {want}. {_diagnose(scores, passed, got_list)}")
    return f"correct on {len(cases)} cases, including a prompt with no accepted answer and all-negative scores"
