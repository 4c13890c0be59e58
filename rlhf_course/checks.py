"""Exercise checks: tell a learner whether their function is right, and why not.

A lab asks the learner to write a function, then calls a check on it:

    >>> checks.check_bradley_terry_loss(bradley_terry_loss)   # doctest: +SKIP
    ✓ Bradley–Terry loss: correct on 5 batches, gradients included

When the function is wrong, the check raises :class:`ExerciseError` with a
message that says what was expected, what was got, and a hint about the likely
mistake, e.g. a missing minus sign. A stub that still raises
``NotImplementedError`` gets "not implemented yet: fill in the cell above".

Every check call is also appended to a grading log when the environment
variable ``RLHF_COURSE_GRADES`` names a file (JSON lines: exercise, passed,
message); ``rlhf-course grade`` sets it and collects the results.

The machinery comes first; the exercise checks follow, one per exercise, below
the section comment "Exercise checks".
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
        raise ExerciseError(_message(f"{name} should be a torch.Tensor", f"a {type(value).__name__}", hint))
    return value


def expect_shape(name: str, value: Any, shape: Sequence[int], hint: str = "") -> None:
    """Fail unless ``value`` is a tensor of exactly ``shape`` (``()`` for a scalar)."""
    tensor = expect_tensor(name, value)
    if tuple(tensor.shape) != tuple(shape):
        raise ExerciseError(
            _message(f"{name} should have shape {tuple(shape)}", f"shape {tuple(tensor.shape)}", hint)
        )


def expect_finite(name: str, value: Any, hint: str = "") -> None:
    """Fail if ``value`` contains NaN or infinity."""
    tensor = torch.as_tensor(value).detach()
    if not torch.isfinite(tensor).all():
        raise ExerciseError(_message(f"{name} should be finite", _show(tensor), hint))


def expect_close(name: str, got: Any, expected: Any, atol: float = 1e-5, hint: str = "") -> None:
    """Fail unless ``got`` equals ``expected`` within ``atol`` (numbers or tensors)."""
    got_t = torch.as_tensor(got, dtype=torch.float64).detach()
    exp_t = torch.as_tensor(expected, dtype=torch.float64).detach()
    if got_t.shape != exp_t.shape:
        raise ExerciseError(
            _message(f"{name} should have shape {tuple(exp_t.shape)}", f"shape {tuple(got_t.shape)}", hint)
        )
    if not torch.allclose(got_t, exp_t, atol=atol, rtol=0.0, equal_nan=False):
        raise ExerciseError(_message(f"{name} should be {_show(exp_t)}", _show(got_t), hint))


def _message(expected: str, got: str, hint: str) -> str:
    """One sentence saying what was expected and got, then the hint."""
    text = f"{expected}, but got {got}."
    return f"{text} {hint}" if hint else text


def _show(tensor: torch.Tensor) -> str:
    """A short rendering of a number or a small tensor for messages."""
    if tensor.numel() == 1:
        return f"{tensor.item():.4g}"
    values = ", ".join(f"{v:.4g}" for v in tensor.flatten()[:6].tolist())
    more = ", …" if tensor.numel() > 6 else ""
    return f"[{values}{more}]"


def _near(a: float, b: float, tol: float = 1e-4) -> bool:
    return math.isfinite(a) and abs(a - b) <= tol * max(1.0, abs(b))


# ---------------------------------------------------------------------------
# Exercise checks (one per exercise; the name after "check_" is the exercise)
# ---------------------------------------------------------------------------


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
    if _near(got, -expected):
        return "Did you forget the minus sign? The loss is −log σ(r_chosen − r_rejected), which is never negative."
    if _near(got, swapped):
        return "Did you swap chosen and rejected? The margin is r_chosen − r_rejected."
    if _near(got, expected * len(chosen)):
        return "Did you sum over the batch? Take the mean, so the loss does not grow with the batch size."
    if _near(got, torch.sigmoid(rejected - chosen).mean().item()):
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
    ``reward_model.trl_loss_on_batch``, it also compares with the loss TRL's
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
        if not _near(value, expected):
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


# --- Instruction tuning -------------------------------------------------------


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


# --- Preference data ----------------------------------------------------------


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
    if _near(got, 2 / 5):
        raise ExerciseError("your accuracy is 0.4; expected 0.5. Pairs with equal gold reward (gold_margin == 0) "
                            "carry no information: leave them out of the total as well as the count.")
    if _near(got, 3 / 5) or _near(got, 3 / 4):
        raise ExerciseError(f"your accuracy is {got:.2f}; expected 0.5. Did you count a tie as agreement? A label "
                            "agrees only when the chosen response has the strictly higher gold reward.")
    if not _near(got, 0.5):
        raise ExerciseError(f"on 5 hand-made rows (one gold tie) your accuracy is {got:.3f}; expected 0.5 "
                            "(2 of the 4 decided pairs have gold_chosen > gold_rejected).")
    flipped = [dict(r, gold_chosen=r["gold_rejected"], gold_rejected=r["gold_chosen"],
                    gold_margin=-r["gold_margin"]) for r in rows[:2]]
    got = as_float("the accuracy", call_learner(fn, flipped, what="your label_accuracy"))
    expect_close("the accuracy of two flipped rows", got, 0.5, atol=1e-6,
                 hint="Compare gold_chosen with gold_rejected row by row.")
    return "correct on hand-made rows, gold ties left out"


# --- Reward modelling ---------------------------------------------------------


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
    if _near(got, slope / math.log(2)) or _near(got, slope * math.log2(10)):
        raise ExerciseError(f"your gain is {got:.4f}; expected {slope:.4f}. A doubling is one unit of log2(count): "
                            "use math.log2 (or np.log2), not the natural or base-10 logarithm.")
    endpoints = (accuracies[-1] - accuracies[0]) / (x[-1] - x[0])
    if _near(got, endpoints) and not _near(endpoints, slope):
        raise ExerciseError(f"your gain is {got:.4f}, the slope between the first and last points; expected "
                            f"{slope:.4f}, the least-squares slope through all of them (np.polyfit(x, y, 1)[0]).")
    if _near(got, 1 / slope, 1e-3):
        raise ExerciseError("your answer is the inverse of the slope: regress accuracy on log2(count), not the reverse.")
    if not _near(got, slope):
        raise ExerciseError(f"on counts {counts} and accuracies {accuracies} your gain is {got:.4f}; expected "
                            f"{slope:.4f}, the least-squares slope of accuracy against log2(count).")
    flat = as_float("the gain per doubling", call_learner(fn, [100, 200, 400], [0.7, 0.7, 0.7],
                                                          what="your gain_per_doubling"))
    expect_close("the gain of a flat curve", flat, 0.0, atol=1e-9, hint="A flat learning curve gains nothing.")
    return f"{slope:.4f} per doubling on a hand-made curve, least squares on log2(count)"


# --- Optimization and RL ------------------------------------------------------


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
                    f"on {label}, your answer is {_show(got)}; expected {_show(expected)}. r / β = 100000 and "
                    "exp(100000) overflows to infinity (inf / inf = nan). Subtract the largest logit "
                    "log π_ref + r / β before exponentiating (the log-sum-exp trick), or use torch.softmax."
                )
            raise ExerciseError(f"on {label}, your answer is {_show(got)}; expected finite probabilities "
                                f"{_show(expected)}. " + _diagnose_optimal_policy(got, ref, r, beta))
        if (got < -1e-12).any() and (got <= 0).all():
            raise ExerciseError(
                f"on {label}, your answer {_show(got)} is all negative: these look like log-probabilities. "
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
                f"{_show(got)}; expected {_show(expected)}. " + _diagnose_optimal_policy(got, ref, r, beta)
            )
    return (f"correct on {len(cases)} cases, including equal rewards (π* = π_ref), a response π_ref never "
            "writes, and rewards of 1000 at β = 0.01")


# --- What are preferences? ----------------------------------------------------


def _bt_likelihood_cases() -> list[tuple[str, list[float], list[tuple[int, int]]]]:
    """Hand-made (description, strengths, comparisons) cases for the Bradley–Terry log-likelihood."""
    return [
        ("equal strengths", [0.0, 0.0, 0.0], [(0, 1), (1, 2), (2, 0)]),
        ("a small hand-made data set", [1.0, 0.0, -0.5], [(0, 1), (0, 2), (2, 1), (1, 0)]),
        ("positive strengths", [2.0, 1.0, 0.5, 3.0], [(0, 1), (3, 2), (1, 3), (2, 0), (0, 3)]),
        ("a pair compared four times", [0.3, -0.3], [(0, 1), (0, 1), (0, 1), (1, 0)]),
        ("a huge gap in strength", [0.0, 1000.0], [(0, 1), (1, 0)]),
    ]


def _learner_number(value: Any, n_comparisons: int) -> float:
    """The learner's answer as a float: a Python, numpy or torch scalar, or a clear error."""
    if hasattr(value, "shape") and tuple(value.shape) == (n_comparisons,) and n_comparisons > 1:
        raise ExerciseError(
            f"your function returned {n_comparisons} values, one per comparison; expected one number. "
            "The log-likelihood of the data set is the sum of the per-comparison terms."
        )
    if not isinstance(value, torch.Tensor) and hasattr(value, "item") and getattr(value, "size", 0) == 1:
        value = value.item()  # a numpy scalar or one-element array; as_float takes tensors itself
    return as_float("the log-likelihood", value)


def _bt_likelihood_mistakes(got: float, strengths: list[float], comparisons: list[tuple[int, int]]) -> list[str]:
    """Hints for every typical mistake that would have returned ``got`` on this case."""
    margins = [strengths[w] - strengths[l] for w, l in comparisons]

    def log_sigmoid(x: float) -> float:
        return -math.log1p(math.exp(-x)) if x > -30 else x - math.log1p(math.exp(x))

    def sigmoid(x: float) -> float:
        return math.exp(log_sigmoid(x))

    expected = sum(log_sigmoid(m) for m in margins)
    guesses = [
        (expected / len(margins), "You took the mean over comparisons; this function returns the sum, the "
                                  "log-probability of the whole data set."),
        (-expected, "That is the negative log-likelihood (the loss). Return the log-likelihood itself, "
                    "which is never positive."),
        (sum(log_sigmoid(-m) for m in margins), "Did you swap winner and loser? Each comparison is "
                                                "(winner, loser), and the winner's strength comes first."),
        (sum(sigmoid(m) for m in margins), "Did you forget the log? Sum log σ(θ_winner − θ_loser), not σ(·)."),
        (math.prod(sigmoid(m) for m in margins), "That is the likelihood, a product of probabilities; "
                                                  "take logs, which turns the product into a sum."),
        (log_sigmoid(sum(margins)), "You took σ of the summed margins. Each comparison contributes its own "
                                    "term: sum log σ(θ_winner − θ_loser) over the comparisons."),
        (sum(log_sigmoid(strengths[w] + strengths[l]) for w, l in comparisons),
         "Bradley–Terry depends on the difference of strengths, θ_winner − θ_loser, not their sum."),
        (sum(log_sigmoid(strengths[w] - strengths[l]) for w, l in set(comparisons)),
         "Every comparison counts, repeats included: a pair compared four times contributes four terms."),
    ]
    return [hint for value, hint in guesses if _near(got, value) and not _near(value, expected)]


@exercise("Bradley–Terry likelihood")
def check_bradley_terry_log_likelihood(fn: Callable[[Any, list[tuple[int, int]]], float]) -> str:
    """Check ``fn(strengths, comparisons) -> sum over (w, l) of log σ(θ_w − θ_l)``.

    ``strengths`` is a numpy array of log-strengths and ``comparisons`` a list
    of ``(winner, loser)`` index pairs. The answer is the *sum* over
    comparisons (the log-probability of the whole data set), as in
    ``rlhf_course.preference_models.bradley_terry_log_likelihood``. The cases
    are built by hand: equal strengths (each comparison costs log 2, and
    θ_i / (θ_i + θ_j) gives 0/0), swapped roles and a mean instead of a sum
    give other values, a repeated pair (every comparison counts), and a gap
    of 1000 (a naive ``log(sigmoid(x))`` gives -inf).
    """
    import numpy as np

    from .preference_models import bradley_terry_log_likelihood

    cases = _bt_likelihood_cases()
    wrong = []  # (label, strengths, comparisons, value, expected) of every case answered wrongly
    for label, strengths, comparisons in cases:
        expected = bradley_terry_log_likelihood(strengths, comparisons)
        try:
            got = call_learner(fn, np.array(strengths), list(comparisons), what="your bradley_terry_log_likelihood")
            value = _learner_number(got, len(comparisons))
            if math.isnan(value):
                raise ExerciseError(
                    f"on {label} (strengths {strengths}) your log-likelihood is NaN; expected {expected:.4g}. "
                    "NaN comes from 0/0 or the log of a negative number. The strengths are log-strengths θ, "
                    "which may be 0 or negative: use P(w beats l) = σ(θ_w − θ_l), not θ_w / (θ_w + θ_l)."
                )
            if not math.isfinite(value):
                raise ExerciseError(
                    f"on {label} (strengths {strengths}) your log-likelihood is {value}; expected "
                    f"{expected:.4g}. log(sigmoid(x)) underflows to log(0) for very negative x: compute "
                    "log σ(x) as -np.logaddexp(0, -x), which never overflows."
                )
        except ExerciseError:
            if wrong:
                break  # an earlier case already went wrong, and its value says more about the mistake
            raise
        if not _near(value, expected):
            wrong.append((label, strengths, comparisons, value, expected))
    if wrong:
        # A mistake can look like another on one case (on equal strengths a mean and σ of the summed
        # margins both give log 1/2); the hint that fits every wrong answer names it.
        fits = [_bt_likelihood_mistakes(v, s, c) for _, s, c, v, _ in wrong]
        common = [hint for hint in fits[0] if all(hint in f for f in fits[1:])]
        hint = (common or fits[0] or ["The log-likelihood is the sum over comparisons (w, l) of log σ(θ_w − θ_l)."])[0]
        label, strengths, comparisons, value, expected = wrong[0]
        equal = (f" (each comparison has probability 1/2, so {len(comparisons)} × log(1/2))"
                 if label == "equal strengths" else "")
        raise ExerciseError(
            f"on {label} (strengths {strengths}, comparisons {comparisons}) your log-likelihood is "
            f"{value:.4g}; expected {expected:.4g}{equal}. {hint}"
        )
    return (f"correct on {len(cases)} hand-made cases (equal strengths give −n log 2, every repeated comparison "
            "counts, a gap of 1000 stays finite)")


# --- Policy gradients -----------------------------------------------------------


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
        raise ExerciseError(_message(f"on {label}, the advantages should have shape {(prompts, k)}",
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
    from .policy_gradients import rloo_advantages

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
        raise ExerciseError(f"on {label}, rewards {rewards.tolist()}, your advantages are {_show(got)}; expected "
                            f"{_show(expected)}. {hint}")
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
    from .policy_gradients import grpo_advantages

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
            raise ExerciseError(f"on {label}, your advantages are {_show(got)}; expected {_show(expected)}. {hint}")
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
        raise ExerciseError(f"on {label}, rewards {rewards.tolist()}, your advantages are {_show(got)}; expected "
                            f"{_show(expected)}. {hint}")
    noisy = torch.tensor([[0.51, 0.49, 0.49, 0.51]])
    got = _learner_advantages(fn, noisy, "a group that differs by ±0.01", "your grpo_advantages")
    expected = grpo_advantages(noisy).double()
    if not torch.isfinite(got).all() or not torch.allclose(got, expected, rtol=0.02, atol=0.0):
        raise ExerciseError(f"on the group (0.51, 0.49, 0.49, 0.51), your advantages are {_show(got)}; expected "
                            f"about {_show(expected)}. Is your eps too large? It should only guard against a zero std, "
                            "not compete with a std of 0.01 (inside a square root, eps = 1e-4 adds up to 0.01 to the "
                            "std): use (r − mean) / (std + 1e-4).")
    return (f"equal to rlhf_course.policy_gradients.grpo_advantages on {len(cases) + 1} hand-made cases, sample "
            f"std included; note that (0.51, 0.49, 0.49, 0.51) gets {_show(got)}, nearly the same advantages as "
            "(1, 0, 0, 1)")


# --- Rejection sampling -------------------------------------------------------


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


# --- Direct alignment -----------------------------------------------------------


def _dpo_cases() -> list[tuple[str, tuple[torch.Tensor, ...], float]]:
    """(label, (policy_chosen, policy_rejected, ref_chosen, ref_rejected), beta): sequence log-probs, by hand."""
    gen = torch.Generator().manual_seed(0)
    random = tuple(-30 * torch.rand(8, generator=gen, dtype=torch.float64) for _ in range(4))
    return [
        ("the policy equal to the reference", (torch.tensor([-5.0, -9.0]), torch.tensor([-7.0, -3.0]),
                                              torch.tensor([-5.0, -9.0]), torch.tensor([-7.0, -3.0])), 0.1),
        ("a random batch", random, 0.1),
        ("a random batch with beta = 0.5", random, 0.5),
        ("the policy preferring the rejected responses", (torch.tensor([-12.0, -8.0, -20.0]),
                                                         torch.tensor([-4.0, -6.0, -10.0]),
                                                         torch.tensor([-10.0, -8.0, -15.0]),
                                                         torch.tensor([-10.0, -8.0, -15.0])), 0.2),
        ("huge margins", (torch.tensor([-900.0, -10.0]), torch.tensor([-10.0, -900.0]),
                          torch.tensor([-10.0, -10.0]), torch.tensor([-10.0, -10.0])), 1.0),
    ]


def _dpo_mistakes(pc, pr, rc, rr, beta: float) -> list[tuple[float, str]]:
    """(value a typical wrong DPO loss gives, hint) on one batch."""
    F = torch.nn.functional
    h = beta * ((pc - rc) - (pr - rr))
    return [
        ((-F.logsigmoid(-h)).mean().item(), "Chosen and rejected are swapped: the margin is β[(log π_θ(y_w) − log "
                                            "π_ref(y_w)) − (log π_θ(y_l) − log π_ref(y_l))], winner first."),
        (F.logsigmoid(h).mean().item(), "The sign is missing: the loss is −log σ(margin), never negative."),
        ((-F.logsigmoid(h / beta)).mean().item(), "β is missing: the margin is β times the difference of the two "
                                                  "log-ratios."),
        ((-F.logsigmoid(h * beta)).mean().item(), "β appears twice, or is squared: multiply the difference of the "
                                                  "log-ratios by β once."),
        ((-F.logsigmoid(beta * (pc - pr))).mean().item(), "The reference is missing: each response's implicit reward "
                                                          "is β(log π_θ − log π_ref), a log-ratio, not a log-prob."),
        ((-F.logsigmoid(beta * ((pc + rc) - (pr + rr)))).mean().item(),
         "The reference log-probs are added: the implicit reward is β(log π_θ − log π_ref), a difference."),
        ((-F.logsigmoid(h)).sum().item(), "You summed over the batch: take the mean."),
        ((1 - torch.sigmoid(h)).mean().item(), "The log is missing: −log σ(margin), not 1 − σ(margin)."),
        ((-torch.sigmoid(h)).mean().item(), "The log is missing: the loss is −log σ(margin)."),
    ]


@exercise("DPO loss")
def check_dpo_loss(fn: Callable[..., Any], trl_batch: dict | None = None) -> str:
    """Check ``fn(policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps, beta) -> loss``.

    The answer is −log σ(β[(log π_θ(y_w) − log π_ref(y_w)) − (log π_θ(y_l) − log
    π_ref(y_l))]) averaged over the batch, as ``rlhf_course.dpo.dpo_loss``
    computes it (tested equal to TRL's ``DPOTrainer``). The function may return
    the loss alone or a tuple that starts with it. The cases: a policy equal to
    its reference (loss log 2), random batches at two β, a policy that prefers
    the rejected responses, and margins so large that ``log(sigmoid(x))``
    underflows. The gradient must reach the policy's log-probabilities. With ``trl_batch`` (from ``dpo.trl_loss_on_batch``: TRL's loss
    and the sequence log-probabilities of a real batch) the loss must also
    equal TRL's to 1e-5.
    """
    from .dpo import dpo_loss

    def learner_loss(args, beta, label):
        got = call_learner(fn, *[a.clone() for a in args], beta, what="your dpo_loss")
        got = got[0] if isinstance(got, (tuple, list)) else got
        expect_tensor("the loss", got, "Build it from torch operations on the log-probability tensors.")
        if got.dim() == 1:
            raise ExerciseError(f"on {label}, your loss has shape {tuple(got.shape)}, one value per pair; expected a "
                                "single number. Take the mean over the batch.")
        return got, as_float("the loss", got)

    cases = _dpo_cases()
    for label, args, beta in cases:
        _, value = learner_loss(args, beta, label)
        expected = dpo_loss(*[a.double() for a in args], beta)[0].item()
        if not math.isfinite(value):
            raise ExerciseError(f"on {label}, your loss is {value}; expected {expected:.4g}. log(sigmoid(x)) "
                                "underflows to −inf for very negative x: use torch.nn.functional.logsigmoid.")
        if not _near(value, expected):
            hint = next((h for v, h in _dpo_mistakes(*[a.double() for a in args], beta) if _near(value, v)),
                        "The loss is −log σ(β[(log π_θ(y_w) − log π_ref(y_w)) − (log π_θ(y_l) − log π_ref(y_l))]), "
                        "averaged over the batch.")
            equal = " (log 2 ≈ 0.693: the margin is 0)" if label.startswith("the policy equal") else ""
            raise ExerciseError(f"on {label} (β = {beta}), your loss is {value:.5g}; expected {expected:.5g}{equal}. "
                                f"{hint}")

    pc, pr = torch.tensor([-4.0, -6.0], requires_grad=True), torch.tensor([-5.0, -3.0], requires_grad=True)
    rc, rr = torch.tensor([-4.5, -6.0], requires_grad=True), torch.tensor([-4.0, -4.0], requires_grad=True)
    loss, _ = learner_loss((pc, pr, rc, rr), 0.5, "a batch that needs gradients")
    if not loss.requires_grad:
        raise ExerciseError("your loss carries no gradient, so the policy could not learn from it. Did you call "
                            ".item() or .detach(), or build a new tensor with torch.tensor(...)?")
    loss.backward()
    expected = torch.tensor([-4.0, -6.0], requires_grad=True)
    dpo_loss(expected, pr.detach(), rc.detach(), rr.detach(), 0.5)[0].backward()
    expect_close("d loss / d log π_θ(y_w)", pc.grad, expected.grad, atol=1e-5,
                 hint="The gradient should raise the chosen log-probabilities, weighted by σ(−margin).")
    note = f"correct on {len(cases)} batches (log 2 when the policy is the reference; huge margins stay finite)"
    if trl_batch is not None:
        args = [trl_batch[k] for k in ("policy_chosen_logps", "policy_rejected_logps",
                                       "ref_chosen_logps", "ref_rejected_logps")]
        _, value = learner_loss(args, trl_batch["beta"], "a real batch")
        if abs(value - trl_batch["loss"]) > 1e-5:
            raise ExerciseError(f"on a real batch of {len(args[0])} pairs your loss is {value:.6f} but TRL's "
                                f"DPOTrainer computed {trl_batch['loss']:.6f}.")
        note += f", and equal to TRL's DPOTrainer loss ({trl_batch['loss']:.4f}) on a real batch"
    return note


@exercise("β sweep")
def check_beta_sweep(results: Sequence[dict]) -> str:
    """Check a sweep of DPO's β: rows ``{"beta", "gold", "kl"}``, one per trained policy.

    Expects at least three distinct β spanning a factor of ten, finite
    numbers, and the signature of the KL term: the KL to the reference, measured
    on each policy's own samples, is smaller at the largest β than at the
    smallest, and falls with β overall (rank correlation at most −0.5; a
    middle point may wobble, since each run is one noisy training).
    """
    rows = list(results) if not isinstance(results, dict) else [results]
    if len(rows) < 3:
        raise ExerciseError(f"your sweep has {len(rows)} row(s); train and measure at least 3 values of β.")
    for i, row in enumerate(rows):
        if not isinstance(row, dict) or not {"beta", "gold", "kl"} <= set(row):
            raise ExerciseError(f"row {i} of your sweep is {row!r}; each row must be a dict with keys 'beta', "
                                "'gold' (mean gold reward of the samples) and 'kl' (KL to the SFT model).")
    betas = [as_float(f"row {i}'s beta", r["beta"]) for i, r in enumerate(rows)]
    kls = [as_float(f"row {i}'s kl", r["kl"]) for i, r in enumerate(rows)]
    golds = [as_float(f"row {i}'s gold", r["gold"]) for i, r in enumerate(rows)]
    if not all(math.isfinite(v) for v in betas + kls + golds):
        raise ExerciseError("your sweep holds a NaN or infinite number; check the training runs that produced it.")
    if len(set(betas)) < 3 or min(betas) <= 0 or max(betas) / min(betas) < 10:
        raise ExerciseError(f"your β values {sorted(betas)} should be at least 3 distinct positive numbers spanning a "
                            "factor of ten or more (e.g. 0.03, 0.3, 1), so that the KL has room to change.")
    if min(kls) < -0.1:
        raise ExerciseError(f"a KL of {min(kls):.3f} is negative beyond sampling noise. Measure it on the trained "
                            "policy's own samples, with the SFT model as the reference: "
                            "kl_to_reference(policy, sft, tokenizer, samples, batch_size).")
    order = sorted(range(len(rows)), key=lambda i: betas[i])
    ranks_beta = {i: r for r, i in enumerate(order)}
    ranks_kl = {i: r for r, i in enumerate(sorted(range(len(rows)), key=lambda i: kls[i]))}
    n = len(rows)
    rho = 1 - 6 * sum((ranks_beta[i] - ranks_kl[i]) ** 2 for i in range(n)) / (n * (n * n - 1))
    smallest, largest = order[0], order[-1]
    if not kls[largest] < kls[smallest] or rho > -0.5:
        raise ExerciseError(
            f"the KL does not fall as β grows: β {[round(betas[i], 4) for i in order]} gave KL "
            f"{[round(kls[i], 3) for i in order]}. A larger β should hold the policy closer to the SFT model. Did each "
            "run pass its own beta to dpo.train_dpo, and did you measure the model that run trained?")
    return (f"KL to the SFT model falls from {kls[smallest]:.2f} at β = {betas[smallest]:g} to {kls[largest]:.2f} at "
            f"β = {betas[largest]:g}, with gold reward {golds[smallest]:.2f} and {golds[largest]:.2f}")


# --- PPO --------------------------------------------------------------------------


def _gae_cases() -> list[tuple[str, torch.Tensor, torch.Tensor, float, float]]:
    """(label, rewards, values, gamma, lam); every row is a whole response (no padding)."""
    gen = torch.Generator().manual_seed(0)
    r, v = torch.randn(3, 5, generator=gen, dtype=torch.float64), torch.randn(3, 5, generator=gen, dtype=torch.float64)
    return [
        ("the chapter's example", torch.tensor([[0.0, 0.0, 1.0]]), torch.tensor([[0.5, 0.6, 0.7]]), 0.9, 0.5),
        ("γ = λ = 1 (reward-to-go minus the value)", r, v, 1.0, 1.0),
        ("λ = 0 (one-step residuals)", r, v, 0.95, 0.0),
        ("a batch with γ = 1, λ = 0.95", r, v, 1.0, 0.95),
        ("a batch with γ = 0.8, λ = 0.7", r, v, 0.8, 0.7),
    ]


def _gae_mistakes(r: torch.Tensor, v: torch.Tensor, gamma: float, lam: float) -> list[tuple[torch.Tensor, str]]:
    """(wrong advantages, hint) for the usual mistakes in GAE."""
    from .ppo import generalized_advantage_estimation as gae

    def backward(delta: torch.Tensor, decay: float) -> torch.Tensor:
        out, running = torch.zeros_like(delta), torch.zeros_like(delta[:, 0])
        for t in reversed(range(delta.shape[1])):
            running = delta[:, t] + decay * running
            out[:, t] = running
        return out

    next_v = torch.cat([v[:, 1:], torch.zeros_like(v[:, :1])], dim=1)
    delta = r + gamma * next_v - v
    forward = torch.zeros_like(delta)
    running = torch.zeros_like(delta[:, 0])
    for t in range(delta.shape[1]):
        running = delta[:, t] + gamma * lam * running
        forward[:, t] = running
    last_bootstrap = r + gamma * torch.cat([v[:, 1:], v[:, -1:]], dim=1) - v
    return [
        (backward(r - v, gamma * lam), "Each residual must look one step ahead: δ_t = r_t + γ V_{t+1} − V_t "
                                       "(with V = 0 after the last token)."),
        (backward(delta, gamma), "The recursion decays by γλ, not γ alone: A_t = δ_t + γλ A_{t+1}."),
        (backward(delta, lam), "The recursion decays by γλ, not λ alone: A_t = δ_t + γλ A_{t+1}."),
        (forward, "The sum runs over the residuals *ahead* of t, so the loop goes backwards, from the last token "
                  "to the first."),
        (gae(r, v, gamma, lam)[1], "Those are the returns A_t + V_t (the critic's targets); return the advantages."),
        (backward(last_bootstrap, gamma * lam), "After the last token the episode is over: V_{T+1} = 0, not V_T."),
        (delta, "That is only the one-step residual δ_t; add γλ times the next advantage: A_t = δ_t + γλ A_{t+1}."),
    ]


@exercise("Generalized advantage estimation")
def check_gae(fn: Callable[..., Any]) -> str:
    """Check ``fn(rewards, values, gamma, lam) -> advantages`` on whole responses, shape ``(batch, T)``.

    The answer is ``rlhf_course.ppo.generalized_advantage_estimation``'s
    advantages: δ_t = r_t + γ V_{t+1} − V_t with V_{T+1} = 0, and
    A_t = δ_t + γλ A_{t+1}, computed backwards. The function may return the
    advantages alone or a tuple that starts with them. Cases: the chapter's
    three-token example, the limits λ = 1 (reward-to-go minus the value) and
    λ = 0 (one-step residuals), and random batches.
    """
    from .ppo import generalized_advantage_estimation as gae

    for label, rewards, values, gamma, lam in _gae_cases():
        got = call_learner(fn, rewards.clone(), values.clone(), gamma, lam, what="your gae")
        got = got[0] if isinstance(got, (tuple, list)) else got
        got = expect_tensor("your advantages", got, "Return a tensor of the rewards' shape.")
        if tuple(got.shape) != tuple(rewards.shape):
            raise ExerciseError(f"on {label}, your advantages have shape {tuple(got.shape)}; expected "
                                f"{tuple(rewards.shape)}, one advantage per token.")
        expected = gae(rewards, values, gamma, lam)[0]
        got = got.detach().to(expected.dtype)
        if not torch.allclose(got, expected, atol=1e-5):
            hint = next((h for wrong, h in _gae_mistakes(rewards, values, gamma, lam)
                         if torch.allclose(got, wrong, atol=1e-5)),
                        "A_t = δ_t + γλ A_{t+1}, with δ_t = r_t + γ V_{t+1} − V_t and nothing after the last token.")
            raise ExerciseError(f"on {label} (γ = {gamma}, λ = {lam}), your advantages are {_show(got)}; expected "
                                f"{_show(expected)}. {hint}")
    return (f"equal to rlhf_course.ppo.generalized_advantage_estimation on {len(_gae_cases())} cases, "
            "including the λ = 0 and λ = 1 limits")


def _clip_cases() -> list[tuple[str, torch.Tensor, torch.Tensor, torch.Tensor, float]]:
    """(label, new_logps, old_logps, advantages, clip): the ratio on both sides of the clip, for both signs of A."""
    ratios = torch.tensor([[1.0, 1.1, 1.5, 0.5, 1.5, 0.5]], dtype=torch.float64)
    advantages = torch.tensor([[1.0, 2.0, 1.0, -1.0, -1.0, 1.0]], dtype=torch.float64)
    old = torch.full_like(ratios, -2.0)
    gen = torch.Generator().manual_seed(1)
    rand_old = -3 * torch.rand(4, 6, generator=gen, dtype=torch.float64)
    rand_new = rand_old + 0.6 * torch.randn(4, 6, generator=gen, dtype=torch.float64)
    return [
        ("six tokens, each case of the chapter's table", old + ratios.log(), old, advantages, 0.2),
        ("the same tokens with ε = 0.1", old + ratios.log(), old, advantages, 0.1),
        ("a random batch", rand_new, rand_old, torch.randn(4, 6, generator=gen, dtype=torch.float64), 0.2),
    ]


def _clip_mistakes(new, old, adv, clip) -> list[tuple[float, str]]:
    ratio = (new - old).exp()
    clipped = ratio.clamp(1 - clip, 1 + clip)
    return [
        ((-torch.maximum(ratio * adv, clipped * adv)).mean().item(),
         "Take the minimum of the two terms, min(r A, clip(r) A): the pessimistic one."),
        (torch.minimum(ratio * adv, clipped * adv).mean().item(),
         "The sign is missing: the loss is −mean(min(r A, clip(r) A)), the objective negated."),
        ((-(ratio * adv)).mean().item(), "There is no clipping: clip the ratio to [1 − ε, 1 + ε] and take the minimum "
                                         "with the unclipped term."),
        ((-(clipped * adv)).mean().item(), "Take the minimum of the clipped and the unclipped term, not the clipped "
                                           "term alone."),
        ((-torch.minimum((new - old) * adv, (new - old).clamp(1 - clip, 1 + clip) * adv)).mean().item(),
         "The ratio is π_θ/π_old = exp(log π_θ − log π_old), not the difference of the log-probabilities."),
        ((-torch.minimum(ratio * adv, clipped * adv)).sum().item(), "Average over the tokens instead of summing."),
        ((-torch.minimum(ratio * adv, ratio * adv.clamp(1 - clip, 1 + clip))).mean().item(),
         "Clip the ratio, not the advantage."),
    ]


@exercise("PPO clipped loss")
def check_clipped_policy_loss(fn: Callable[..., Any]) -> str:
    """Check ``fn(new_logps, old_logps, advantages, clip) -> loss``: −mean over tokens of min(r A, clip(r, 1±ε) A).

    Per-token tensors of shape ``(batch, T)``, all tokens real. The answer is
    ``rlhf_course.ppo.clipped_policy_loss``'s loss; a tuple that starts with the
    loss is accepted. The first case holds one token for each row of the
    chapter's table (ratio inside the clip; above 1 + ε with A > 0 and A < 0;
    below 1 − ε with both signs). Then the gradient: zero exactly on the tokens
    whose clipped term is used.
    """
    from .ppo import clipped_policy_loss

    for label, new, old, adv, clip in _clip_cases():
        got = call_learner(fn, new.clone(), old.clone(), adv.clone(), clip, what="your clipped_policy_loss")
        got = got[0] if isinstance(got, (tuple, list)) else got
        got = expect_tensor("your loss", got, "Return a tensor built from torch operations.")
        if got.numel() != 1:
            raise ExerciseError(f"on {label}, your loss has shape {tuple(got.shape)}; expected one number, the mean "
                                "over tokens.")
        value = as_float("your loss", got)
        expected = clipped_policy_loss(new, old, adv, clip=clip).loss.item()
        if not _near(value, expected):
            hint = next((h for v, h in _clip_mistakes(new, old, adv, clip) if _near(value, v)),
                        "The loss is −mean(min(r A, clip(r, 1 − ε, 1 + ε) A)) with r = exp(log π_θ − log π_old).")
            raise ExerciseError(f"on {label}, your loss is {value:.5g}; expected {expected:.5g}. {hint}")
    _, new, old, adv, clip = _clip_cases()[0]
    new = new.clone().requires_grad_(True)
    loss = call_learner(fn, new, old.clone(), adv.clone(), clip, what="your clipped_policy_loss")
    loss = loss[0] if isinstance(loss, (tuple, list)) else loss
    if not getattr(loss, "requires_grad", False):
        raise ExerciseError("your loss carries no gradient: keep it a torch computation on new_logps "
                            "(no .item(), .detach() or torch.tensor(...)).")
    loss.backward()
    reference = new.detach().clone().requires_grad_(True)
    clipped_policy_loss(reference, old, adv, clip=clip).loss.backward()
    expect_close("d loss / d log π_θ", new.grad, reference.grad, atol=1e-6,
                 hint="Tokens whose clipped term is used (ratio past the clip in the direction A asks for) must get "
                      "zero gradient; the others r·A/N.")
    return ("equal to rlhf_course.ppo.clipped_policy_loss on every case of the chapter's table and a random batch, "
            "with zero gradient exactly where the clip binds")


# --- Regularization ---------------------------------------------------------------


def _kl_estimator_cases() -> list[tuple[str, torch.Tensor, torch.Tensor]]:
    """(label, logp_policy, logp_ref) cases, worked out by hand in the docstring of check_kl_estimators."""
    gen = torch.Generator().manual_seed(0)
    policy = -4 * torch.rand(3, 5, generator=gen, dtype=torch.float64)
    return [
        ("one sample the policy likes more (π_θ = 0.5, π_ref = 0.25)",
         torch.tensor([math.log(0.5)], dtype=torch.float64), torch.tensor([math.log(0.25)], dtype=torch.float64)),
        ("one sample the reference likes more (π_θ = 0.25, π_ref = 0.5)",
         torch.tensor([math.log(0.25)], dtype=torch.float64), torch.tensor([math.log(0.5)], dtype=torch.float64)),
        ("a policy equal to its reference", policy[0].clone(), policy[0].clone()),
        ("a batch of per-token log-probabilities, shape (3, 5)", policy,
         policy + 0.7 * torch.randn(3, 5, generator=gen, dtype=torch.float64)),
    ]


def _kl_estimator_mistakes(logp_policy: torch.Tensor, logp_ref: torch.Tensor) -> dict[str, list[tuple[torch.Tensor, str]]]:
    """Per estimator, (wrong values, hint) for the usual mistakes."""
    log_rho = logp_ref - logp_policy
    rho = log_rho.exp()
    swapped = "The log-ratio is the wrong way round: log ω = log π_ref − log π_θ (reference first), so k1 = −log ω = " \
              "log π_θ − log π_ref."
    ratio_of_logs = logp_ref / logp_policy
    not_a_ratio = "ω = π_ref / π_θ = exp(log π_ref − log π_θ): subtract the log-probabilities, do not divide them."
    uses_rho = "You used ω where the formula has log ω; ω = exp(log π_ref − log π_θ), and log ω is the difference itself."
    return {
        "k1": [(log_rho, swapped), (1 - rho, uses_rho), (-rho, uses_rho), (rho - 1, uses_rho),
               (-ratio_of_logs.log(), not_a_ratio)],
        "k2": [(log_rho**2, "The ½ is missing: k2 = ½ (log ω)²."),
               (0.5 * rho**2, uses_rho), (0.5 * (rho - 1) ** 2, uses_rho),
               ((0.5 * log_rho) ** 2, "Square, then halve: k2 = ½ (log ω)², not (½ log ω)²."),
               (0.5 * log_rho, "The square is missing: k2 = ½ (log ω)²."),
               (0.5 * ratio_of_logs.log() ** 2, not_a_ratio)],
        "k3": [((-log_rho).exp() - 1 + log_rho, swapped.replace("so k1 = −log ω = log π_θ − log π_ref", "so "
                                                                 "k3 = (ω − 1) − log ω with ω = π_ref / π_θ")),
               ((rho - 1) + log_rho, "The sign of the log term is wrong: k3 = (ω − 1) − log ω."),
               ((1 - rho) - log_rho, "The first term is ω − 1, not 1 − ω: k3 = (ω − 1) − log ω, never negative."),
               (rho.exp() - 1 - rho, uses_rho), ((rho - 1) - rho, uses_rho),
               (rho - 1, "The −log ω term is missing: k3 = (ω − 1) − log ω. On its own, ω − 1 has mean 0."),
               ((ratio_of_logs - 1) - ratio_of_logs.log(), not_a_ratio)],
    }


def _learner_estimates(fn: Callable[..., Any], logp_policy: torch.Tensor, logp_ref: torch.Tensor,
                       label: str) -> dict[str, torch.Tensor]:
    """Call ``fn`` on copies of the inputs; return its three estimates as float64 tensors of the inputs' shape."""
    given_policy, given_ref = logp_policy.clone(), logp_ref.clone()
    got = call_learner(fn, given_policy, given_ref, what="your kl_estimators")
    if not (torch.equal(given_policy, logp_policy) and torch.equal(given_ref, logp_ref)):
        raise ExerciseError(f"on {label}, your function changed a log-probability tensor it was given (an in-place "
                            "operation such as -= or .exp_()). Compute new tensors and leave the inputs alone.")
    if isinstance(got, (tuple, list)) and len(got) == 3:
        got = dict(zip(("k1", "k2", "k3"), got))
    if not isinstance(got, dict) or not {"k1", "k2", "k3"} <= set(got):
        keys = sorted(got) if isinstance(got, dict) else type(got).__name__
        raise ExerciseError(f"your kl_estimators should return a dict with keys 'k1', 'k2' and 'k3'; got {keys}.")
    out = {}
    for name in ("k1", "k2", "k3"):
        value = expect_tensor(f"{name}", got[name], "Build it from torch operations on the two log-prob tensors.")
        if tuple(value.shape) != tuple(logp_policy.shape):
            hint = ("Return one value per sample, the input's shape: do not average here; the mean over samples "
                    "is the KL estimate, taken afterwards." if value.dim() < logp_policy.dim()
                    else "Return one value per sample, with the shape of the inputs.")
            raise ExerciseError(_message(f"on {label}, {name} should have shape {tuple(logp_policy.shape)}",
                                         f"shape {tuple(value.shape)}", hint))
        out[name] = value.detach().double()
    return out


@exercise("KL estimators")
def check_kl_estimators(fn: Callable[[torch.Tensor, torch.Tensor], Any]) -> str:
    """Check ``fn(logp_policy, logp_ref) -> {"k1", "k2", "k3"}``: Schulman's three per-sample KL estimators.

    With log ω = log π_ref − log π_θ: k1 = −log ω, k2 = ½ (log ω)², k3 = (ω − 1) − log ω,
    as ``rlhf_course.regularization.kl_estimators`` computes them. A tuple
    ``(k1, k2, k3)`` is accepted too. The hand-made cases:

    - π_θ = 0.5, π_ref = 0.25: log ω = −log 2, so k1 = log 2 ≈ 0.693,
      k2 = ½ (log 2)² ≈ 0.240 and k3 = −0.5 + log 2 ≈ 0.193;
    - π_θ = 0.25, π_ref = 0.5: log ω = log 2, so k1 ≈ −0.693 (a single sample
      can be negative), k2 ≈ 0.240 and k3 = 1 − log 2 ≈ 0.307;
    - a policy equal to its reference: all three are 0;
    - a (3, 5) batch of per-token log-probabilities: one value per token.

    The success note reports the estimators' exact expectations on a
    five-outcome distribution: k1 and k3 average to the exact KL, k2 does not.
    """
    from .regularization import kl_estimators

    def same(a: torch.Tensor, b: torch.Tensor) -> bool:
        return bool(torch.isfinite(a).all()) and torch.allclose(a, b, atol=1e-6, rtol=1e-6)

    cases = _kl_estimator_cases()
    wrong: dict[str, list] = {"k1": [], "k2": [], "k3": []}
    for label, logp_policy, logp_ref in cases:
        got = _learner_estimates(fn, logp_policy, logp_ref, label)
        expected = kl_estimators(logp_policy, logp_ref)
        for name in wrong:
            if not same(got[name], expected[name]):
                wrong[name].append((label, got[name], expected[name], _kl_estimator_mistakes(logp_policy, logp_ref)))
    for name, failures in wrong.items():
        if not failures:
            continue
        # the hint of the mistake that explains the most wrong cases (one case alone can be ambiguous)
        counts: dict[str, int] = {}
        for _, got, _, mistakes in failures:
            for hint in {hint for value, hint in mistakes[name] if same(got, value)}:
                counts[hint] = counts.get(hint, 0) + 1
        default = {"k1": "k1 = −log ω = log π_θ − log π_ref.", "k2": "k2 = ½ (log ω)², log ω = log π_ref − log π_θ.",
                   "k3": "k3 = (ω − 1) − log ω, with ω = exp(log π_ref − log π_θ); torch.expm1 computes e^x − 1 "
                         "accurately."}[name]
        hint = max(counts, key=counts.get) if counts else default
        label, got, expected, _ = failures[0]
        raise ExerciseError(f"on {label}, your {name} is {_show(got)}; expected {_show(expected)}. {hint}")
    policy = torch.tensor([0.40, 0.25, 0.15, 0.12, 0.08], dtype=torch.float64)
    ref = torch.tensor([0.10, 0.20, 0.30, 0.25, 0.15], dtype=torch.float64)
    exact = float((policy * (policy.log() - ref.log())).sum())
    means = {name: float((policy * value).sum()) for name, value in
             _learner_estimates(fn, policy.log(), ref.log(), "a five-outcome distribution").items()}
    return (f"correct on {len(cases)} hand-made cases; on a five-outcome distribution with KL {exact:.4f}, the exact "
            f"means are k1 {means['k1']:.4f}, k3 {means['k3']:.4f} (unbiased) and k2 {means['k2']:.4f} (biased)")


# --- The five-minute lab: judging a policy by gold ----------------------------------


def _win_rate_cases() -> list[tuple[str, list[float], list[float]]]:
    """(description, rewards of A, rewards of B): paired gold rewards on the same prompts."""
    gen = torch.Generator().manual_seed(0)
    a, b = torch.randn(200, generator=gen).round(decimals=1), torch.randn(200, generator=gen).round(decimals=1)
    return [
        ("four prompts: two wins, a tie and a loss", [1.0, 2.0, 3.0, 0.5], [0.0, 2.0, 1.0, 0.9]),
        ("three ties", [0.3, 0.3, -1.0], [0.3, 0.3, -1.0]),
        ("one prompt", [-0.2], [-0.7]),
        ("200 prompts, rounded rewards (many ties)", a.tolist(), b.tolist()),
    ]


def _win_rate_mistakes(a: list[float], b: list[float]) -> list[tuple[float, str]]:
    """(value a typical wrong win rate gives, hint) on one case."""
    wins = sum(x > y for x, y in zip(a, b))
    ties = sum(x == y for x, y in zip(a, b))
    n = len(a)
    unpaired = sum((x > y) + 0.5 * (x == y) for x in a for y in b) / n**2
    mistakes = [
        (wins / n, "Ties count as losses in your answer: a tie is half a win, so add 0.5 for each."),
        ((wins + ties) / n, "Ties count as wins in your answer: a tie is half a win, so add 0.5 for each."),
        ((n - wins - ties + 0.5 * ties) / n, "You computed B's win rate against A: the share where A's reward "
                                             "is the higher one."),
        (wins + 0.5 * ties, "You returned a count: divide by the number of prompts to get a share."),
        (unpaired, "You compared every response of A with every response of B: the win rate is paired, "
                   "entry i of A against entry i of B only (the same prompt)."),
    ]
    if n > ties:
        mistakes.append((wins / (n - ties), "You left the ties out: keep them in the total and count each as "
                                            "half a win."))
    return mistakes


@exercise("Gold win rate")
def check_win_rate(fn: Callable[[Any, Any], Any]) -> str:
    """Check ``fn(rewards_a, rewards_b) -> share of prompts where A beats B, ties counted half``.

    ``rewards_a[i]`` and ``rewards_b[i]`` are the gold rewards of two policies'
    responses to the same prompt i, as :func:`rlhf_course.evaluation.win_rate`
    takes them (numpy arrays here). The cases expose ties counted as a loss,
    as a win or left out, the arguments the wrong way round, a count instead of
    a share, and an unpaired comparison of every response with every other.
    """
    import numpy as np

    cases = _win_rate_cases()
    for label, a, b in cases:
        expected = (sum(x > y for x, y in zip(a, b)) + 0.5 * sum(x == y for x, y in zip(a, b))) / len(a)
        got = call_learner(fn, np.array(a), np.array(b), what="your gold_win_rate")
        got = as_float("the win rate", got.item() if isinstance(got, np.generic | np.ndarray) and np.size(got) == 1
                       else got)
        if _near(got, expected, 1e-6):
            continue
        hint = next((h for value, h in _win_rate_mistakes(a, b) if _near(got, value, 1e-6)),
                    "Count the prompts where A's reward is strictly higher, add half the ties, and divide by "
                    "the number of prompts.")
        raise ExerciseError(f"on {label}, your win rate is {got:.4g}; expected {expected:.4g}. {hint}")
    return f"correct on {len(cases)} paired cases, ties counted half"
