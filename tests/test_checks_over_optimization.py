"""The over-optimization check passes right answers and names the typical mistakes."""

from __future__ import annotations

import numpy as np
from exercise_checks import fails_with, no_grade_log  # noqa: F401  (no_grade_log is an autouse fixture)

from rlhf_course.over_optimization import fit_best_of_n_law
from rlhf_course.over_optimization.checks import check_fit_best_of_n


def lstsq(d, gain):
    coef = np.linalg.lstsq(np.stack([d, d * d], axis=1), gain, rcond=None)[0]
    return coef[0], -coef[1]


def test_right_answers_pass(capsys):
    check_fit_best_of_n(lstsq)
    check_fit_best_of_n(fit_best_of_n_law)  # an object with alpha and beta is accepted
    assert capsys.readouterr().out.startswith("✓ Fitting the best-of-n law:")


def test_a_stub_is_not_implemented():
    def stub(d, gain):
        raise NotImplementedError

    fails_with(check_fit_best_of_n, stub, "not implemented")


def test_sign_flip_on_beta():
    fails_with(check_fit_best_of_n, lambda d, g: (lstsq(d, g)[0], -lstsq(d, g)[1]), "wrong sign")


def test_swapped_coefficients():
    fails_with(check_fit_best_of_n, lambda d, g: lstsq(d, g)[::-1], "swapped")


def test_an_intercept():
    def with_intercept(d, g):
        c2, c1, _ = np.polyfit(d, g, 2)
        return c1, -c2

    fails_with(check_fit_best_of_n, with_intercept, "intercept", "R(0) = 0")


def test_a_fit_in_kl():
    def in_kl(d, g):
        kl = d * d
        coef = np.linalg.lstsq(np.stack([kl, kl * kl], axis=1), g, rcond=None)[0]
        return coef[0], -coef[1]

    fails_with(check_fit_best_of_n, in_kl, "KL")


def test_not_two_numbers():
    fails_with(check_fit_best_of_n, lambda d, g: 1.0, "two numbers")
