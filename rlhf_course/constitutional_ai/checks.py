"""Exercise checks of the Constitutional AI lab: the swap-averaged judgement and the critique-and-revise pairs.

Each check calls the learner's function on cases worked out by hand and raises
:class:`rlhf_course.teaching.checking.ExerciseError` with a hint naming the
likely mistake (the machinery is in :mod:`rlhf_course.teaching.checking`).
"""

from __future__ import annotations

from typing import Any, Callable

from rlhf_course.core.judges import PairwiseJudge
from rlhf_course.teaching.checking import ExerciseError, call_learner, exercise
from rlhf_course.toyworld import Prompt, make_prompts

from .constitution import CONSTITUTION, Principle, revise


class TableJudge(PairwiseJudge):
    """A judge whose P(first wins) for each ordered pair is read from a table (0.5 when absent)."""

    def __init__(self, table: dict[tuple[str, str], float]):
        self.table = table

    def prob_first(self, prompts, completions):
        return [self.table.get((a, b), 0.5) for a, b in completions]


# (label, table of P(first wins) for each order, expected verdicts on the pairs [x, y]) worked out by hand
_SWAP_CASES = [
    ("a judge that always picks position A", {("x", "y"): 0.9, ("y", "x"): 0.9}, -1,
     "A judge that always prefers position A says nothing about x or y: the average is exactly 0.5, a tie (-1)."),
    ("a judge that agrees with itself", {("x", "y"): 0.8, ("y", "x"): 0.3}, 0,
     "Shown as (x, y) x wins with 0.8; shown as (y, x) y wins with 0.3, so x wins with 0.7: average 0.75, x (0)."),
    ("a lean towards A that a weak preference survives", {("x", "y"): 0.9, ("y", "x"): 0.6}, 0,
     "Average the probabilities, don't vote: P(x wins) is 0.9 and 1 - 0.6 = 0.4, mean 0.65, so x (0). Two "
     "votes that disagree would give a tie."),
    ("a preference for y under a lean towards A", {("x", "y"): 0.6, ("y", "x"): 0.8}, 1,
     "In the swapped order the probability is that y (shown first) wins: P(x wins) = 1 - 0.8 = 0.2. The mean "
     "(0.6 + 0.2) / 2 = 0.4 < 0.5, so y (1). Did you forget 1 - p for the swapped order?"),
    ("a weak preference for x", {("x", "y"): 0.6, ("y", "x"): 0.2}, 0,
     "P(x wins) is 0.6 shown first and 1 - 0.2 = 0.8 shown second: mean 0.7, x (0). Averaging 0.6 and 0.2 "
     "without 1 - p gives the wrong side."),
]


@exercise("Swap-averaged pairwise judgement")
def check_swap_averaged(fn: Callable[[PairwiseJudge, list, list[list[str]]], list[int]]) -> str:
    """``fn(judge, prompts, completions)`` must average the two orders' probabilities that completion 0 wins."""
    for label, table, expected, hint in _SWAP_CASES:
        got = call_learner(fn, TableJudge(table), ["q"], [["x", "y"]], what="swap_averaged_judgement")
        if not isinstance(got, (list, tuple)) or len(got) != 1:
            raise ExerciseError(f"Expected a list with one verdict per prompt, got {got!r}.")
        if got[0] != expected:
            raise ExerciseError(f"On {label}: expected {expected}, got {got[0]}. {hint}")
    mixed = TableJudge({("x", "y"): 0.9, ("y", "x"): 0.6, ("u", "v"): 0.6, ("v", "u"): 0.8})
    got = call_learner(fn, mixed, ["q", "r"], [["x", "y"], ["u", "v"]], what="swap_averaged_judgement")
    if list(got) != [0, 1]:
        raise ExerciseError(f"On two pairs at once expected [0, 1], got {list(got)}: the verdicts must stay in the "
                            "order of the prompts.")
    return f"correct on {len(_SWAP_CASES) + 1} cases, the always-A judge and a lean towards A included"


def _revision_cases() -> list[tuple[Prompt, str, Principle]]:
    prompts = {p.family: p for p in make_prompts("test", 40, seed=0)}
    tone, concise = CONSTITUTION[2], CONSTITUTION[3]
    arithmetic = prompts["arithmetic"]
    return [(arithmetic, f"Ugh, fine. {arithmetic.answer}", tone),
            (arithmetic, f"Sure. {arithmetic.answer} I hope this helps!", concise),
            (arithmetic, arithmetic.answer, concise)]  # already follows the principle: no pair


@exercise("Critique-and-revise pairs")
def check_critique_and_revise_pairs(fn: Callable[[list[Prompt], list[str], Principle], list[dict]]) -> str:
    """``fn(prompts, responses, principle)``: rows with the revision chosen and the original rejected."""
    cases = _revision_cases()
    for principle in (CONSTITUTION[2], CONSTITUTION[3]):
        chosen = [c for c in cases if c[2] == principle]
        prompts, responses = [c[0] for c in chosen], [c[1] for c in chosen]
        got = call_learner(fn, prompts, responses, principle, what="critique_and_revise_pairs")
        expected = [{"prompt": p.text, "chosen": revise(p, r, principle), "rejected": r}
                    for p, r in zip(prompts, responses) if revise(p, r, principle) != r]
        _compare_rows(got, expected, principle)
    return "correct: the revision is chosen, the original rejected, unchanged responses left out"


def _compare_rows(got: Any, expected: list[dict], principle: Principle) -> None:
    if not isinstance(got, list):
        raise ExerciseError(f"Expected a list of rows (dicts), got {type(got).__name__}.")
    if len(got) != len(expected):
        raise ExerciseError(f"Principle {principle.name!r}: expected {len(expected)} rows, got {len(got)}. A "
                            "response the revision leaves unchanged carries no preference: leave it out.")
    for g, e in zip(got, expected):
        if not isinstance(g, dict) or not {"prompt", "chosen", "rejected"} <= set(g):
            raise ExerciseError(f"Each row needs the keys prompt, chosen and rejected; got {g!r}.")
        if g["chosen"] == e["rejected"] and g["rejected"] == e["chosen"]:
            raise ExerciseError("Chosen and rejected are swapped: the revision is the better response, so it is "
                                "chosen; the original is rejected.")
        if g["prompt"] != e["prompt"]:
            raise ExerciseError(f"The prompt should be the prompt's text ({e['prompt']!r}), got {g['prompt']!r}.")
        if g["chosen"] != e["chosen"] or g["rejected"] != e["rejected"]:
            raise ExerciseError(f"Expected chosen {e['chosen']!r} and rejected {e['rejected']!r}; got "
                                f"{g['chosen']!r} and {g['rejected']!r}. Use revise(prompt, response, principle).")
