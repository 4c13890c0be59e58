"""Exercise checks of the Instruction Tuning lab: completion-only labels and the flawed-data sweep.

Each check calls the learner's function on cases with known answers and raises
:class:`rlhf_course.teaching.checking.ExerciseError` with a hint naming the likely
mistake when it is wrong (the machinery is in :mod:`rlhf_course.teaching.checking`).
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch

from rlhf_course.teaching.checking import ExerciseError, as_float, call_learner, exercise


def _completion_label_cases() -> list[tuple[str, list[int], list[int]]]:
    return [
        ("a short prompt", [5, 6, 7], [8, 9]),
        ("a one-token completion", [11, 12, 13, 14], [2]),
        ("an empty prompt", [], [3, 4, 5]),
        ("a prompt with a repeated id", [7, 7, 8], [7, 9]),
    ]


@exercise("Completion-only labels")
def check_completion_labels(fn: Callable[[list[int], list[int]], tuple[list[int], list[int]]]) -> str:
    """Check ``fn(prompt_ids, completion_ids) -> (input_ids, labels)``.

    ``input_ids`` is the prompt followed by the completion; ``labels`` copies
    them, except that every prompt position is -100, the index PyTorch's
    cross-entropy ignores. The same rule is what TRL's SFTTrainer applies with
    ``completion_only_loss=True`` (a test of the package shows they agree).
    """
    for label, prompt, completion in _completion_label_cases():
        got = call_learner(fn, list(prompt), list(completion), what="your completion_labels")
        if not (isinstance(got, tuple) and len(got) == 2):
            raise ExerciseError(f"on {label}, expected a pair (input_ids, labels), got {type(got).__name__}.")
        input_ids, labels = (list(x.tolist() if isinstance(x, torch.Tensor) else x) for x in got)
        if input_ids != prompt + completion:
            raise ExerciseError(
                f"on {label}, input_ids should be {prompt + completion}, but got {input_ids}. "
                "The model reads the prompt and the completion together, prompt first."
            )
        want = [-100] * len(prompt) + completion
        if labels == want:
            continue
        if len(labels) != len(want):
            hint = "labels must have one entry per input id, so the loss lines up with the tokens."
        elif labels == [0] * len(prompt) + completion:
            hint = "You used 0 for the prompt, but 0 is a real token id: use -100, which the loss ignores."
        elif labels == prompt + [-100] * len(completion):
            hint = "You masked the completion instead of the prompt: the model must learn to write the answer."
        elif labels == prompt + completion:
            hint = "Nothing is masked: the prompt positions need the label -100."
        else:
            hint = "Prompt positions get -100; completion positions keep their token id."
        raise ExerciseError(f"on {label}, labels should be {want}, but got {labels}. {hint}")
    return f"correct on {len(_completion_label_cases())} cases, including an empty prompt"


@exercise("Demonstration quality sweep")
def check_flawed_sweep(fractions: Sequence[float], gold_rewards: Sequence[float]) -> str:
    """Check the sweep of flawed-demonstration fractions against gold reward.

    Expects one gold reward per fraction, fractions from 0 up to at least 0.6,
    and a clear drop in gold reward from the cleanest to the most flawed data.
    """
    fractions, gold_rewards = list(fractions), [as_float("a gold reward", g) for g in gold_rewards]
    if len(fractions) != len(gold_rewards) or len(fractions) < 3:
        raise ExerciseError(
            f"expected one gold reward per fraction and at least 3 fractions; got {len(fractions)} fractions "
            f"and {len(gold_rewards)} gold rewards."
        )
    if min(fractions) > 0.0 or max(fractions) < 0.6:
        raise ExerciseError(
            f"your fractions span {min(fractions)}–{max(fractions)}; include 0 and go to at least 0.6 so "
            "the effect of demonstration quality is visible."
        )
    low = gold_rewards[fractions.index(min(fractions))]
    high = gold_rewards[fractions.index(max(fractions))]
    if not high < low - 0.2:
        raise ExerciseError(
            f"gold reward with clean demonstrations is {low:.2f} and with {max(fractions):.0%} flawed ones "
            f"{high:.2f}; expected a clear drop (> 0.2). Did each run train on demonstrations made with its "
            "own flawed_fraction, and measure the model trained in that run?"
        )
    return f"gold reward falls from {low:.2f} (clean) to {high:.2f} ({max(fractions):.0%} flawed)"
