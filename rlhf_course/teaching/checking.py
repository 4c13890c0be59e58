"""The exercise-checking machinery every chapter's ``checks.py`` uses.

A lab asks the learner to write a function, then calls a check on it:

    >>> from rlhf_course.reward_modeling import checks
    >>> checks.check_bradley_terry_loss(bradley_terry_loss)   # doctest: +SKIP
    ✓ Bradley–Terry loss: correct on 5 batches, gradients included

When the function is wrong, the check raises :class:`ExerciseError` with a
message that says what was expected, what was got, and a hint about the likely
mistake, e.g. a missing minus sign. A stub that still raises
``NotImplementedError`` gets "not implemented yet: fill in the cell above".

Every check call is also appended to a grading log when the environment
variable ``RLHF_COURSE_GRADES`` names a file (JSON lines: exercise, passed,
message); ``rlhf-course grade`` sets it and collects the results.

This module holds the machinery (the :func:`exercise` decorator, the grading
log, and the ``expect_*`` helpers); the checks themselves live with their
chapter, in ``rlhf_course/<chapter>/checks.py``.
"""

from __future__ import annotations

import functools
import json
import math
import os
from pathlib import Path
from typing import Any, Callable, Sequence

import torch


GRADES_ENV = "RLHF_COURSE_GRADES"


class ExerciseError(AssertionError):
    """A learner's answer is wrong (or missing); the message says how to fix it."""


# ---------------------------------------------------------------------------
# Machinery
# ---------------------------------------------------------------------------


def record_grade(exercise: str, passed: bool, message: str) -> None:
    """Append one check result to the grading log, if ``RLHF_COURSE_GRADES`` is set.

    One JSON object per line, so that several checks (and several processes)
    can append without reading the file first.
    """
    log = os.environ.get(GRADES_ENV)
    if not log:
        return
    line = json.dumps({"exercise": exercise, "passed": passed, "message": message}, ensure_ascii=False)
    path = Path(log)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as file:
        file.write(line + "\n")


def exercise(title: str) -> Callable[[Callable[..., str]], Callable[..., None]]:
    """Turn a function ``check_<name>`` that raises :class:`ExerciseError` into a check.

    The decorated function returns a short success note (e.g. "correct on 5
    batches"). The wrapper prints "✓ <title>: <note>" and records pass or fail
    in the grading log under ``<name>``, the function's name without
    ``check_``; the grader finds the exercises of a notebook by looking for
    ``check_<name>(`` calls, so the two always agree.
    """

    def decorate(check: Callable[..., str]) -> Callable[..., None]:
        if not check.__name__.startswith("check_"):
            raise ValueError(f"exercise checks are named check_<exercise>, not {check.__name__}")
        name = check.__name__.removeprefix("check_")

        @functools.wraps(check)
        def run(*args: Any, **kwargs: Any) -> None:
            try:
                note = check(*args, **kwargs)
            except ExerciseError as err:
                record_grade(name, False, str(err))
                raise
            except Exception as err:  # a crash inside the check counts as a fail too
                record_grade(name, False, f"{type(err).__name__}: {err}")
                raise
            record_grade(name, True, note)
            print(f"✓ {title}: {note}")

        run.exercise_name = name  # type: ignore[attr-defined]
        return run

    return decorate


def call_learner(fn: Callable[..., Any], *args: Any, what: str = "your function") -> Any:
    """Call the learner's function, turning its exceptions into teaching messages.

    A ``NotImplementedError`` means the student stub is still there. Any other
    exception is reported with its type and text, and chained so the traceback
    still points at the learner's line.
    """
    if not callable(fn):
        raise ExerciseError(
            f"expected a function, got {type(fn).__name__}. "
            "Pass the function itself, without calling it (no parentheses)."
        )
    try:
        return fn(*args)
    except NotImplementedError as err:
        raise ExerciseError(f"{what} is not implemented yet: fill in the cell above, then run it again.") from err
    except Exception as err:
        raise ExerciseError(
            f"{what} raised {type(err).__name__}: {err}. The traceback above shows the line."
        ) from err


def as_float(name: str, value: Any) -> float:
    """A Python float from a number or a one-element tensor, or a clear error."""
    if isinstance(value, torch.Tensor):
        if value.numel() != 1:
            raise ExerciseError(f"{name} should be a single number, got a tensor of shape {tuple(value.shape)}.")
        return float(value.detach().item())
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    raise ExerciseError(f"{name} should be a number or a tensor, got {type(value).__name__}.")


def expect_tensor(name: str, value: Any, hint: str = "") -> torch.Tensor:
    """Fail unless ``value`` is a ``torch.Tensor``."""
    if not isinstance(value, torch.Tensor):
        raise ExerciseError(mismatch(f"{name} should be a torch.Tensor", f"a {type(value).__name__}", hint))
    return value


def expect_shape(name: str, value: Any, shape: Sequence[int], hint: str = "") -> None:
    """Fail unless ``value`` is a tensor of exactly ``shape`` (``()`` for a scalar)."""
    tensor = expect_tensor(name, value)
    if tuple(tensor.shape) != tuple(shape):
        raise ExerciseError(
            mismatch(f"{name} should have shape {tuple(shape)}", f"shape {tuple(tensor.shape)}", hint)
        )


def expect_finite(name: str, value: Any, hint: str = "") -> None:
    """Fail if ``value`` contains NaN or infinity."""
    tensor = torch.as_tensor(value).detach()
    if not torch.isfinite(tensor).all():
        raise ExerciseError(mismatch(f"{name} should be finite", show(tensor), hint))


def expect_close(name: str, got: Any, expected: Any, atol: float = 1e-5, hint: str = "") -> None:
    """Fail unless ``got`` equals ``expected`` within ``atol`` (numbers or tensors)."""
    got_t = torch.as_tensor(got, dtype=torch.float64).detach()
    exp_t = torch.as_tensor(expected, dtype=torch.float64).detach()
    if got_t.shape != exp_t.shape:
        raise ExerciseError(
            mismatch(f"{name} should have shape {tuple(exp_t.shape)}", f"shape {tuple(got_t.shape)}", hint)
        )
    if not torch.allclose(got_t, exp_t, atol=atol, rtol=0.0, equal_nan=False):
        raise ExerciseError(mismatch(f"{name} should be {show(exp_t)}", show(got_t), hint))


def mismatch(expected: str, got: str, hint: str) -> str:
    """One sentence saying what was expected and got, then the hint."""
    text = f"{expected}, but got {got}."
    return f"{text} {hint}" if hint else text


def show(tensor: torch.Tensor) -> str:
    """A short rendering of a number or a small tensor for messages."""
    if tensor.numel() == 1:
        return f"{tensor.item():.4g}"
    values = ", ".join(f"{v:.4g}" for v in tensor.flatten()[:6].tolist())
    more = ", …" if tensor.numel() > 6 else ""
    return f"[{values}{more}]"


def near(a: float, b: float, tol: float = 1e-4) -> bool:
    return math.isfinite(a) and abs(a - b) <= tol * max(1.0, abs(b))
