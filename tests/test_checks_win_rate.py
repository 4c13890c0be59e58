"""The five-minute lab's win-rate check passes right answers and names the typical mistakes."""

from __future__ import annotations

import numpy as np
from exercise_checks import fails_with, no_grade_log  # noqa: F401  (no_grade_log is an autouse fixture)

from rlhf_course.core.evaluation import win_rate
from rlhf_course.five_minute_rlhf.checks import check_win_rate


def test_win_rate_passes_the_package_answer(capsys):
    check_win_rate(win_rate)
    check_win_rate(lambda a, b: np.mean((a > b) + 0.5 * (a == b)))  # a numpy scalar is fine
    assert capsys.readouterr().out.startswith("✓ Gold win rate:")


def test_win_rate_names_ties_as_losses():
    fails_with(check_win_rate, lambda a, b: float(np.mean(a > b)), "Ties count as losses", "0.5")


def test_win_rate_names_ties_as_wins():
    fails_with(check_win_rate, lambda a, b: float(np.mean(a >= b)), "Ties count as wins")


def test_win_rate_names_swapped_arguments():
    fails_with(check_win_rate, lambda a, b: win_rate(b, a), "B's win rate against A")


def test_win_rate_names_a_count():
    fails_with(check_win_rate, lambda a, b: float(np.sum((a > b) + 0.5 * (a == b))), "returned a count")


def test_win_rate_names_an_unpaired_comparison():
    fails_with(check_win_rate, lambda a, b: float(np.mean((a[:, None] > b[None]) + 0.5 * (a[:, None] == b[None]))),
               "paired")


def test_win_rate_names_dropped_ties():
    fails_with(check_win_rate, lambda a, b: float(np.sum(a > b) / max(np.sum(a != b), 1)), "left the ties out")


def test_win_rate_names_a_stub():
    def stub(a, b):
        raise NotImplementedError
    fails_with(check_win_rate, stub, "not implemented yet")
