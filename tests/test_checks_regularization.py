"""The KL-estimator exercise check passes right answers and names the typical mistakes."""

from __future__ import annotations

import pytest
from exercise_checks import fails_with, no_grade_log  # noqa: F401  (no_grade_log is an autouse fixture)

from rlhf_course.regularization import kl_estimators
from rlhf_course.regularization.checks import check_kl_estimators


def estimators(logp_policy, logp_ref, *, k1=None, k2=None, k3=None):
    """Plain k1, k2, k3 from log ω = log π_ref − log π_θ, with any of them replaced by a wrong formula."""
    log_rho = logp_ref - logp_policy
    rho = log_rho.exp()
    right = {"k1": -log_rho, "k2": 0.5 * log_rho**2, "k3": (rho - 1) - log_rho}
    wrong = {"k1": k1, "k2": k2, "k3": k3}
    return {name: right[name] if wrong[name] is None else wrong[name](log_rho, rho) for name in right}


def test_passes_the_package_a_plain_version_and_a_tuple(capsys):
    check_kl_estimators(kl_estimators)
    check_kl_estimators(estimators)
    check_kl_estimators(lambda p, r: tuple(estimators(p, r).values()))
    assert capsys.readouterr().out.startswith("✓ KL estimators:")


@pytest.mark.parametrize("wrong, fragments", [
    (lambda p, r: estimators(r, p), ["your k1", "wrong way round"]),
    (lambda p, r: estimators(p, r, k1=lambda lr, rho: 1 - rho), ["your k1", "used ω where the formula has log ω"]),
    (lambda p, r: estimators(p, r, k2=lambda lr, rho: lr**2), ["your k2", "½ is missing"]),
    (lambda p, r: estimators(p, r, k2=lambda lr, rho: 0.5 * rho**2), ["your k2", "used ω"]),
    (lambda p, r: estimators(p, r, k2=lambda lr, rho: (0.5 * lr) ** 2), ["Square, then halve"]),
    (lambda p, r: estimators(p, r, k3=lambda lr, rho: (rho - 1) + lr), ["your k3", "sign of the log term"]),
    (lambda p, r: estimators(p, r, k3=lambda lr, rho: (-lr).exp() - 1 + lr), ["your k3", "wrong way round"]),
    (lambda p, r: estimators(p, r, k3=lambda lr, rho: rho - 1), ["−log ω term is missing"]),
    (lambda p, r: estimators(p, r, k3=lambda lr, rho: (r / p - 1) - (r / p).log()), ["do not divide"]),
    (lambda p, r: {name: value.mean() for name, value in estimators(p, r).items()}, ["shape", "do not average"]),
    (lambda p, r: estimators(p, r)["k1"], ["dict with keys 'k1', 'k2' and 'k3'"]),
    (lambda p, r: estimators(p.sub_(0.1), r), ["changed a log-probability tensor"]),
])
def test_names_the_mistake(wrong, fragments):
    fails_with(check_kl_estimators, wrong, *fragments)


def test_a_stub_is_told_to_fill_in_the_cell():
    def stub(logp_policy, logp_ref):
        raise NotImplementedError

    fails_with(check_kl_estimators, stub, "not implemented yet")
