"""Exercise checks of the Preference Data lab: the annotators' label accuracy.

Each check calls the learner's function on cases with known answers and raises
:class:`rlhf_course.teaching.checking.ExerciseError` with a hint naming the likely
mistake when it is wrong (the machinery is in :mod:`rlhf_course.teaching.checking`).
"""

from __future__ import annotations

from typing import Callable

from rlhf_course.teaching.checking import ExerciseError, as_float, call_learner, exercise, expect_close, near


def _label_rows() -> list[dict]:
    return [
        {"gold_chosen": 3.0, "gold_rejected": 1.0, "gold_margin": 2.0},
        {"gold_chosen": 1.0, "gold_rejected": 2.5, "gold_margin": -1.5},
        {"gold_chosen": 2.0, "gold_rejected": 2.0, "gold_margin": 0.0},
        {"gold_chosen": 4.0, "gold_rejected": 3.5, "gold_margin": 0.5},
        {"gold_chosen": 0.5, "gold_rejected": 4.5, "gold_margin": -4.0},
    ]


@exercise("Label accuracy")
def check_label_accuracy(fn: Callable[[list[dict]], float]) -> str:
    """Check ``fn(rows) -> share of labels that agree with the gold reward``.

    A label agrees when the chosen response has the higher gold reward; pairs
    the gold reward ranks equal (``gold_margin == 0``) say nothing and are left
    out of both the count and the total.
    """
    rows = _label_rows()
    got = as_float("the accuracy", call_learner(fn, [dict(r) for r in rows], what="your label_accuracy"))
    if near(got, 2 / 5):
        raise ExerciseError("your accuracy is 0.4; expected 0.5. Pairs with equal gold reward (gold_margin == 0) "
                            "carry no information: leave them out of the total as well as the count.")
    if near(got, 3 / 5) or near(got, 3 / 4):
        raise ExerciseError(f"your accuracy is {got:.2f}; expected 0.5. Did you count a tie as agreement? A label "
                            "agrees only when the chosen response has the strictly higher gold reward.")
    if not near(got, 0.5):
        raise ExerciseError(f"on 5 hand-made rows (one gold tie) your accuracy is {got:.3f}; expected 0.5 "
                            "(2 of the 4 decided pairs have gold_chosen > gold_rejected).")
    flipped = [dict(r, gold_chosen=r["gold_rejected"], gold_rejected=r["gold_chosen"],
                    gold_margin=-r["gold_margin"]) for r in rows[:2]]
    got = as_float("the accuracy", call_learner(fn, flipped, what="your label_accuracy"))
    expect_close("the accuracy of two flipped rows", got, 0.5, atol=1e-6,
                 hint="Compare gold_chosen with gold_rejected row by row.")
    return "correct on hand-made rows, gold ties left out"
