"""The Evaluation lab's checks pass right answers and name the typical mistakes."""

from __future__ import annotations

import math

import numpy as np
from exercise_checks import fails_with, no_grade_log  # noqa: F401  (no_grade_log is an autouse fixture)

from rlhf_course.core.evaluation import pass_at_k
from rlhf_course.evaluation import paired_bootstrap
from rlhf_course.evaluation.checks import check_paired_bootstrap, check_pass_at_k


def test_pass_at_k_passes_the_package_answer(capsys):
    check_pass_at_k(pass_at_k)
    assert capsys.readouterr().out.startswith("✓ Unbiased pass@k:")


def test_pass_at_k_names_the_plug_in_estimator():
    fails_with(check_pass_at_k, lambda n, c, k: 1 - (1 - c / n) ** k, "biased low")


def test_pass_at_k_names_pass_at_1():
    fails_with(check_pass_at_k, lambda n, c, k: c / n, "pass@1")


def test_pass_at_k_names_the_missing_one_minus():
    fails_with(check_pass_at_k, lambda n, c, k: math.comb(n - c, k) / math.comb(n, k), "one minus")


def test_pass_at_k_names_float_overflow():
    def naive(n, c, k):
        return 1 - math.factorial(n - c) / math.factorial(n - c - k) / (math.factorial(n) / math.factorial(n - k)) \
            if n - c >= k else 1.0
    fails_with(check_pass_at_k, lambda n, c, k: naive(n, c, k) if n < 100 else float("nan"), "overflow")


def test_pass_at_k_names_the_stub():
    def stub(n, c, k):
        raise NotImplementedError
    fails_with(check_pass_at_k, stub, "not implemented yet")


def _bootstrap(a, b, n_boot, seed, paired=True, of_means=True):
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(a), size=(n_boot, len(a)))
    idx_b = idx if paired else rng.integers(0, len(a), size=(n_boot, len(a)))
    diffs = a[idx] - b[idx_b]
    values = diffs.mean(axis=1) if of_means else (a - b)
    return tuple(np.quantile(values, [0.025, 0.975]))


def test_paired_bootstrap_passes_right_answers(capsys):
    check_paired_bootstrap(_bootstrap)
    interval = paired_bootstrap  # the package's, returning an Interval
    check_paired_bootstrap(lambda a, b, n_boot, seed: (interval(a, b, n_boot=n_boot, seed=seed).low,
                                                       interval(a, b, n_boot=n_boot, seed=seed).high))
    assert "✓ Paired bootstrap interval:" in capsys.readouterr().out


def test_paired_bootstrap_names_unpaired_resampling():
    fails_with(check_paired_bootstrap, lambda a, b, n, s: _bootstrap(a, b, n, s, paired=False), "one set of indices")


def test_paired_bootstrap_names_quantiles_of_the_raw_differences():
    fails_with(check_paired_bootstrap, lambda a, b, n, s: _bootstrap(a, b, n, s, of_means=False), "bootstrap *means*")


def test_paired_bootstrap_names_a_too_narrow_interval_and_a_wrong_centre():
    fails_with(check_paired_bootstrap, lambda a, b, n, s: (float((a - b).mean()) - 1e-4, float((a - b).mean()) + 1e-4),
               "too narrow")
    fails_with(check_paired_bootstrap, lambda a, b, n, s: tuple(x - 0.3 for x in _bootstrap(a, b, n, s)),
               "does not contain")
    fails_with(check_paired_bootstrap, lambda a, b, n, s: 0.3, "two numbers")
