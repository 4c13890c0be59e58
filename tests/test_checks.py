"""The checks pass right answers and explain wrong ones, and log grades."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

from rlhf_course.reward_modeling.checks import check_bradley_terry_loss
from rlhf_course.teaching import checking as checks
from rlhf_course.teaching.checking import ExerciseError


def correct(chosen, rejected):
    return -F.logsigmoid(chosen - rejected).mean()


@pytest.fixture(autouse=True)
def no_grade_log(monkeypatch):
    monkeypatch.delenv(checks.GRADES_ENV, raising=False)


def fails_with(fn, *fragments: str) -> str:
    with pytest.raises(ExerciseError) as info:
        check_bradley_terry_loss(fn)
    message = str(info.value)
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"
    return message


def test_correct_answer_passes_and_says_so(capsys):
    check_bradley_terry_loss(correct)
    assert capsys.readouterr().out.startswith("✓ Bradley–Terry loss:")


def test_missing_minus_sign_is_named():
    message = fails_with(lambda c, r: F.logsigmoid(c - r).mean(), "minus sign", "equal rewards")
    assert "0.693" in message and "log 2" in message


def test_missing_mean_is_named():
    fails_with(lambda c, r: -F.logsigmoid(c - r), "mean", "(4,)")


def test_sum_instead_of_mean_is_named():
    fails_with(lambda c, r: -F.logsigmoid(c - r).sum(), "sum over the batch")


def test_swapped_arguments_are_named():
    fails_with(lambda c, r: -F.logsigmoid(r - c).mean(), "swap")


def test_unstable_log_sigmoid_is_caught():
    fails_with(lambda c, r: -torch.log(torch.sigmoid(c - r)).mean(), "logsigmoid", "finite")


def test_detached_loss_is_caught():
    fails_with(lambda c, r: correct(c, r).detach(), "no gradient")
    fails_with(lambda c, r: correct(c, r).item(), "torch.Tensor", "float")


def test_stub_says_not_implemented():
    def stub(chosen, rejected):
        raise NotImplementedError("Exercise: fill in bradley_terry_loss")

    fails_with(stub, "not implemented yet: fill in the cell above")


def test_learner_crash_is_reported_with_its_type():
    message = fails_with(lambda c, r: correct(c, r) + undefined_name, "NameError")  # noqa: F821
    assert "undefined_name" in message


def test_non_function_is_explained():
    fails_with(correct(torch.zeros(2), torch.zeros(2)), "expected a function")


def test_error_is_an_assertion_error():
    assert issubclass(ExerciseError, AssertionError)


def test_grade_log_records_each_call(tmp_path, monkeypatch):
    log = tmp_path / "grades.jsonl"
    monkeypatch.setenv(checks.GRADES_ENV, str(log))
    check_bradley_terry_loss(correct)
    with pytest.raises(ExerciseError):
        check_bradley_terry_loss(lambda c, r: -correct(c, r))
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    assert [(line["exercise"], line["passed"]) for line in lines] == [
        ("bradley_terry_loss", True),
        ("bradley_terry_loss", False),
    ]
    assert "minus sign" in lines[1]["message"]


def test_no_log_without_env(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    check_bradley_terry_loss(correct)
    assert list(tmp_path.iterdir()) == []


def test_exercise_decorator_names_from_function(tmp_path, monkeypatch):
    log = tmp_path / "g.jsonl"
    monkeypatch.setenv(checks.GRADES_ENV, str(log))

    @checks.exercise("Doubling")
    def check_doubling(fn):
        checks.expect_close("fn(2)", checks.call_learner(fn, 2), 4, hint="Multiply by two.")
        return "correct"

    check_doubling(lambda x: 2 * x)
    with pytest.raises(ExerciseError, match="fn\\(2\\) should be 4, but got 3. Multiply by two."):
        check_doubling(lambda x: x + 1)
    assert [json.loads(l)["exercise"] for l in log.read_text().splitlines()] == ["doubling", "doubling"]
    with pytest.raises(ValueError):
        checks.exercise("Bad")(lambda fn: "x")


def test_expect_helpers():
    checks.expect_shape("x", torch.zeros(2, 3), (2, 3))
    with pytest.raises(ExerciseError, match=r"should have shape \(3, 2\), but got shape \(2, 3\)"):
        checks.expect_shape("x", torch.zeros(2, 3), (3, 2))
    with pytest.raises(ExerciseError, match="torch.Tensor"):
        checks.expect_shape("x", [1, 2], (2,))
    checks.expect_close("x", torch.tensor([1.0, 2.0]), [1.0, 2.0 + 1e-7])
    with pytest.raises(ExerciseError, match=r"\[1, 2\], but got \[1, 2.5\]"):
        checks.expect_close("x", torch.tensor([1.0, 2.5]), [1.0, 2.0])
    with pytest.raises(ExerciseError, match="finite"):
        checks.expect_finite("x", torch.tensor([1.0, float("nan")]))
    assert checks.as_float("x", torch.tensor(2.5)) == 2.5
