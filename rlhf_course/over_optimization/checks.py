"""Exercise check of the Over-optimization lab: fitting the best-of-n law by least squares.

The learner writes ``fit(d, gain) -> (alpha, beta)`` for R(d) = d(α − βd). The
check tries data made from known coefficients, exact and noisy, and names the
usual mistakes: a sign flip on β, an intercept (R(0) must be 0), α and β
swapped, a fit in KL instead of d.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from rlhf_course.teaching.checking import ExerciseError, call_learner, exercise


def _pair(got: Any, label: str) -> tuple[float, float]:
    """The learner's (alpha, beta) as two floats, or a clear error naming what came back instead."""
    if hasattr(got, "alpha") and hasattr(got, "beta"):
        got = (got.alpha, got.beta)
    try:
        alpha, beta = (float(np.asarray(x).item()) for x in got)
    except (TypeError, ValueError) as err:
        raise ExerciseError(f"on {label}, your function should return two numbers (alpha, beta); got "
                            f"{type(got).__name__} {got!r:.80}.") from err
    if not (np.isfinite(alpha) and np.isfinite(beta)):
        raise ExerciseError(f"on {label}, got alpha = {alpha}, beta = {beta}: not finite numbers.")
    return alpha, beta


def _least_squares(d: np.ndarray, gain: np.ndarray, columns: Callable[[np.ndarray], list[np.ndarray]]) -> np.ndarray:
    return np.linalg.lstsq(np.stack(columns(d), axis=1), gain, rcond=None)[0]


def _diagnose(d: np.ndarray, gain: np.ndarray, alpha: float, beta: float, want: tuple[float, float]) -> str:
    """A hint naming the mistake whose answer the learner's matches, or a general one."""
    close = lambda a, b: abs(a[0] - b[0]) < 1e-3 and abs(a[1] - b[1]) < 1e-3  # noqa: E731
    got = (alpha, beta)
    if close(got, (want[0], -want[1])):
        return "β has the wrong sign: the law is R = α·d − β·d², so β is minus the coefficient of d²."
    if close(got, (want[1], want[0])):
        return "α and β are swapped: return (alpha, beta), alpha first."
    c0, c1, c2 = _least_squares(d, gain, lambda x: [np.ones_like(x), x, x * x])
    if close(got, (c1, -c2)) or close(got, (c1, c2)):
        return ("this is a fit with an intercept (like np.polyfit(d, gain, 2)): the law passes through R(0) = 0, "
                "so fit only the two columns d and d², with no constant column.")
    k1, k2 = _least_squares(d, gain, lambda x: [x * x, x ** 4])
    if close(got, (k1, -k2)) or close(got, (k1, k2)):
        return "you fitted in KL = d² instead of d: the law is written in d = √KL, which the function receives."
    return ("solve min over (α, β) of Σ (gain_i − α·d_i + β·d_i²)²: np.linalg.lstsq on the columns [d, −d²] "
            "(or [d, d²], then β = −coefficient).")


@exercise("Fitting the best-of-n law")
def check_fit_best_of_n(fn: Callable[[np.ndarray, np.ndarray], Any]) -> str:
    """Check ``fn(d, gain) -> (alpha, beta)``: the least-squares fit of gain = d(α − βd).

    ``d`` and ``gain`` are 1-D NumPy arrays of the same length (d > 0). An
    object with ``alpha`` and ``beta`` attributes is accepted too.
    """
    rng = np.random.default_rng(0)
    d = np.sqrt(np.log(2.0 ** np.arange(1, 9)) - (2.0 ** np.arange(1, 9) - 1) / 2.0 ** np.arange(1, 9))
    wide = np.linspace(0.2, 3.0, 12)
    cases = [
        ("exact data, α = 0.8, β = 0.25 (peak at d = 1.6)", d, d * (0.8 - 0.25 * d)),
        ("exact data, α = 1.5, β = 0.1 (peak beyond the data)", wide, wide * (1.5 - 0.1 * wide)),
        ("noisy data, α = 0.6, β = 0.3", wide, wide * (0.6 - 0.3 * wide) + rng.normal(0, 0.05, wide.size)),
        ("noisy data shifted up by 0.2 (an intercept would absorb it)", wide,
         wide * (0.5 - 0.2 * wide) + 0.2 + rng.normal(0, 0.02, wide.size)),
    ]
    for label, x, gain in cases:
        want = tuple(_least_squares(x, gain, lambda v: [v, -v * v]))
        alpha, beta = _pair(call_learner(fn, x.copy(), gain.copy(), what="your fit"), label)
        if abs(alpha - want[0]) > 1e-4 or abs(beta - want[1]) > 1e-4:
            raise ExerciseError(f"on {label}: expected alpha = {want[0]:.4f}, beta = {want[1]:.4f}; got alpha = "
                                f"{alpha:.4f}, beta = {beta:.4f}. {_diagnose(x, gain, alpha, beta, want)}")
    return f"correct on {len(cases)} data sets, exact and noisy; the predicted peak is d* = α / (2β)"
