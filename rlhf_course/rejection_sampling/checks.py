"""Exercise checks of the Rejection Sampling lab: selecting the best and a random k.

Each check calls the learner's function on cases with known answers and raises
:class:`rlhf_course.teaching.checking.ExerciseError` with a hint naming the likely
mistake when it is wrong (the machinery is in :mod:`rlhf_course.teaching.checking`).
"""

from __future__ import annotations

from typing import Any, Callable

import torch

from rlhf_course.teaching.checking import ExerciseError, call_learner, exercise


def _learner_indices(name: str, got: Any, label: str) -> torch.Tensor:
    """The learner's answer as a tensor of integer indices, or a clear error naming what it is instead."""
    if isinstance(got, tuple) and len(got) == 2 and all(isinstance(x, torch.Tensor) for x in got):
        raise ExerciseError(f"on {label}, your function returned a pair of tensors (values and indices?), as "
                            "scores.max(dim=1) or scores.topk(...) do; return only the indices (.indices).")
    if not isinstance(got, torch.Tensor):
        raise ExerciseError(f"on {label}, {name} should be a torch.Tensor of indices, but got a "
                            f"{type(got).__name__}. Build it with torch operations (e.g. argmax) on the scores.")
    if got.is_floating_point():
        raise ExerciseError(f"on {label}, {name} has dtype {got.dtype}: these look like scores, not positions. "
                            "Return the index of each kept candidate (an integer tensor), not its score.")
    return got


def _select_best_cases() -> list[tuple[str, torch.Tensor]]:
    """(description, scores of shape (prompts, n)) for the best-of-n selection check."""
    gen = torch.Generator().manual_seed(0)
    return [
        ("3 prompts with 5 candidates each", torch.randn(3, 5, generator=gen)),
        ("the best candidate last in every row", torch.tensor([[0.1, 0.2, 0.9], [-3.0, -2.0, -1.0]])),
        ("all scores negative", torch.tensor([[-5.0, -0.5, -2.0, -9.0], [-1.0, -7.0, -3.0, -0.1]])),
        ("more prompts than candidates", torch.randn(6, 2, generator=gen)),
        ("one prompt", torch.tensor([[0.3, 2.0, -1.0, 0.7, 1.9]])),
        ("one candidate per prompt (best-of-1)", torch.randn(4, 1, generator=gen)),
        ("a tie for the best", torch.tensor([[1.0, 3.0, 3.0, 0.0], [2.0, 2.0, 2.0, 2.0]])),
    ]


@exercise("Best-of-n selection")
def check_select_best(fn: Callable[[torch.Tensor], torch.Tensor]) -> str:
    """Check ``fn(scores) -> index of the best candidate of each prompt``.

    ``scores`` has shape ``(prompts, n)``: row i holds the reward-model scores
    of the n candidates of prompt i. The answer is an integer tensor of shape
    ``(prompts,)`` whose entry i is the column of row i's highest score, as
    :func:`rlhf_course.rejection_sampling.select_best` returns. With a tie for
    the best, any of the tied candidates is accepted (``select_best`` takes the
    first). The cases expose the usual mistakes: argmax over the wrong
    dimension (more prompts than candidates), argmax without a dimension (one
    flat index), the lowest instead of the highest score, the best score
    instead of its position, and a shape that breaks for one prompt or one
    candidate.
    """
    cases = _select_best_cases()
    for label, scores in cases:
        prompts, n = scores.shape
        got = _learner_indices("your selection", call_learner(fn, scores.clone(), what="your select_best"),
                               label)
        if got.dim() == 0:
            raise ExerciseError(
                f"on {label} (scores of shape {tuple(scores.shape)}), your selection is one number, {got.item()}; "
                f"expected one index per prompt, shape ({prompts},). argmax without dim= picks one position in the "
                "flattened table: use scores.argmax(dim=1).")
        if tuple(got.shape) != (prompts,):
            if tuple(got.shape) == (n,) and n != prompts:
                hint = ("You get one entry per candidate: did you take the argmax over dim=0, across prompts? "
                        "Each prompt's candidates are a row, so take it over dim=1.")
            elif tuple(got.shape) == (prompts, n):
                hint = ("You return a whole table: did you sort (argsort)? Keep only the position of the best, "
                        "argmax(dim=1).")
            elif tuple(got.shape) == (prompts, 1):
                hint = "Drop the extra dimension (keepdim=False, or .squeeze(1))."
            else:
                hint = "Take scores.argmax(dim=1): one index per row."
            raise ExerciseError(f"on {label} (scores of shape {tuple(scores.shape)}), your selection should have "
                                f"shape ({prompts},), one index per prompt, but got shape {tuple(got.shape)}. {hint}")
        picked = got.long()
        if ((picked < 0) | (picked >= n)).any():
            raise ExerciseError(f"on {label}, your indices {picked.tolist()} are not all between 0 and {n - 1}, "
                                "the positions of a row's candidates.")
        best = scores.max(dim=1).values
        got_scores = scores.gather(1, picked[:, None]).squeeze(1)
        if not torch.equal(got_scores, best):
            expected = scores.argmax(dim=1).tolist()
            if torch.equal(got_scores, scores.min(dim=1).values):
                hint = "You picked the lowest score in each row: best-of-n keeps the highest (argmax, not argmin)."
            elif torch.equal(got_scores.abs(), scores.abs().max(dim=1).values):
                hint = "You compared absolute values: the best score is the largest, however negative all of them are."
            else:
                hint = "Entry i must be the column of the largest score in row i: scores.argmax(dim=1)."
            table = "[" + ", ".join("[" + ", ".join(f"{v:.2f}" for v in row) + "]" for row in scores.tolist()) + "]"
            raise ExerciseError(f"on {label}, with scores {table}, your selection is "
                                f"{picked.tolist()}; expected {expected}. {hint}")
    return (f"correct on {len(cases)} cases, including one prompt, one candidate per prompt and ties "
            "(any of the tied best is fine; select_best takes the first)")


def _random_k_scores(prompts: int, n: int) -> torch.Tensor:
    return torch.randn(prompts, n, generator=torch.Generator().manual_seed(prompts * 100 + n))


@exercise("A random-k control")
def check_select_random_k(fn: Callable[[torch.Tensor, int], torch.Tensor]) -> str:
    """Check ``fn(scores, k) -> k distinct candidates per prompt, chosen uniformly at random``.

    ``scores`` has shape ``(prompts, n)``; the answer is an integer tensor of
    shape ``(prompts, k)`` of column indices, distinct within each row, drawn
    afresh for every prompt and *ignoring the scores*, like
    :func:`rlhf_course.rejection_sampling.select_random_k`. The check draws
    4000 prompts of 8 candidates with random scores and tests the statistics:
    every position is kept about k/n of the time, and the best-scoring
    candidate of a row is kept about k/n of the time too, neither more (a
    choice that leans on the scores) nor less. It names the usual mistakes:
    top-k (or bottom-k) instead of random, sampling with replacement, one
    subset shared by every prompt, always the first k, and sampling in
    proportion to the scores.
    """
    prompts, n, k = 4000, 8, 2
    scores = _random_k_scores(prompts, n)
    label = f"scores of shape ({prompts}, {n}) and k = {k}"
    got = _learner_indices("your choice", call_learner(fn, scores.clone(), k, what="your select_random_k"),
                           label)
    if tuple(got.shape) != (prompts, k):
        if tuple(got.shape) == (prompts, n):
            hint = "That is every candidate of each row (a shuffle?): keep only the first k of it, e.g. [:k]."
        elif tuple(got.shape) == (k,):
            hint = "That is one subset for all prompts; draw k indices for each prompt and stack them."
        elif tuple(got.shape) == (prompts,):
            hint = f"That is one index per prompt; keep k = {k}."
        else:
            hint = "Row i must hold the k kept positions of prompt i."
        raise ExerciseError(f"on {label}, your choice should have shape ({prompts}, {k}), but got shape "
                            f"{tuple(got.shape)}. {hint}")
    picked = got.long()
    if ((picked < 0) | (picked >= n)).any():
        raise ExerciseError(f"on {label}, your indices should be positions between 0 and {n - 1}, but range from "
                            f"{picked.min().item()} to {picked.max().item()}.")
    repeats = int(sum(len(set(row)) < k for row in picked.tolist()))
    if repeats:
        raise ExerciseError(
            f"on {label}, {repeats} of {prompts} rows keep the same candidate twice. You sampled with replacement "
            "(torch.randint, or multinomial with replacement=True), so a response would be trained on twice and "
            "another one never: draw k *distinct* positions, e.g. torch.randperm(n)[:k] for each prompt.")
    kept = [set(row) for row in picked.tolist()]
    top = [set(row) for row in scores.topk(k, dim=1).indices.tolist()]
    bottom = [set(row) for row in (-scores).topk(k, dim=1).indices.tolist()]
    if kept == top:
        raise ExerciseError(f"on {label}, you kept the {k} highest-scoring candidates of every prompt: that is top-k, "
                            "the selection itself. The control must ignore the scores and keep k at random.")
    if kept == bottom:
        raise ExerciseError(f"on {label}, you kept the {k} lowest-scoring candidates of every prompt. The control "
                            "must ignore the scores and keep k candidates at random.")
    if all(s == kept[0] for s in kept):
        first = " (the first k)" if kept[0] == set(range(k)) else ""
        raise ExerciseError(
            f"on {label}, every prompt keeps the same positions {sorted(kept[0])}{first}. Draw a fresh random subset "
            "for each prompt (one torch.randperm per row); the same positions everywhere depend on the order in "
            "which the candidates happen to be stored.")
    share = torch.bincount(picked.flatten(), minlength=n).double() / prompts
    worst = int((share - k / n).abs().argmax())
    if abs(share[worst].item() - k / n) > 0.05:
        raise ExerciseError(
            f"on {label}, position {worst} is kept in {share[worst].item():.0%} of prompts; a uniform random choice "
            f"keeps every position in k/n = {k / n:.0%} of them (got {', '.join(f'{s:.0%}' for s in share.tolist())}). "
            "Give every subset of k positions the same chance, e.g. torch.randperm(n)[:k].")
    best = scores.argmax(dim=1)
    best_kept = (picked == best[:, None]).any(dim=1).double().mean().item()
    if abs(best_kept - k / n) > 0.05:
        more = best_kept > k / n
        raise ExerciseError(
            f"on {label}, the highest-scoring candidate of a prompt is kept in {best_kept:.0%} of prompts; a choice "
            f"that ignores the scores keeps it in k/n = {k / n:.0%}. Your choice "
            + ("favours high scores (sampling in proportion to the scores, or a softmax of them?)" if more
               else "avoids high scores")
            + ": the control must not look at the scores at all, only at how many candidates there are.")
    for p, m, kk in ((3, 5, 1), (2, 4, 4), (1, 6, 3)):
        small = _random_k_scores(p, m)
        where = f"scores of shape ({p}, {m}) and k = {kk}"
        got = _learner_indices("your choice", call_learner(fn, small.clone(), kk, what="your select_random_k"),
                               where)
        if tuple(got.shape) != (p, kk):
            raise ExerciseError(f"on {where}, your choice should have shape ({p}, {kk}), but got shape "
                                f"{tuple(got.shape)}. Use the k and the shape you are given, not fixed numbers.")
        rows = got.long().tolist()
        if any(len(set(row)) < kk or min(row) < 0 or max(row) >= m for row in rows):
            raise ExerciseError(f"on {where}, your choice {rows} should hold {kk} distinct positions between 0 and "
                                f"{m - 1} in each row.")
    return (f"on {prompts} prompts every position is kept {share.min().item():.0%}–{share.max().item():.0%} of the "
            f"time and the best-scoring candidate {best_kept:.0%} (k/n = {k / n:.0%}): random, and blind to the scores")
