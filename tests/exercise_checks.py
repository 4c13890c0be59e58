"""Shared by the tests of the exercise checks: assert that a check rejects a wrong answer, and how."""

from __future__ import annotations

import pytest

from rlhf_course.teaching import checking as checks
from rlhf_course.teaching.checking import ExerciseError


@pytest.fixture(autouse=True)
def no_grade_log(monkeypatch):
    """Checks log grades when $RLHF_COURSE_GRADES is set; tests must not write to a learner's log."""
    monkeypatch.delenv(checks.GRADES_ENV, raising=False)


def fails_with(check, fn, *fragments: str) -> str:
    """Run ``check(fn)``, expect an ExerciseError whose message contains every fragment; return the message."""
    with pytest.raises(ExerciseError) as info:
        check(fn)
    message = str(info.value)
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"
    return message
