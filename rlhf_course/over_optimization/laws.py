"""The functional forms of Gao, Schulman and Hilton (2022), fitted by least squares.

Both laws give the gold reward gained over the starting policy as a function of
the distance travelled from it, measured as d = √KL(π ‖ π_ref):

- best-of-n:  R(d) = d (α − β d)
- RL:         R(d) = d (α − β log d)

For given d both are linear in (α, β): R = α·d − β·d² for best-of-n and
R = α·d − β·d·log d for RL, so ordinary least squares on the two columns
(no intercept: R(0) = 0) fits them exactly, with no optimiser and no new
dependency. The predicted peak is where dR/dd = 0:

- best-of-n:  α − 2βd = 0, so d* = α / (2β);
- RL:         α − β log d − β = 0, so log d* = α/β − 1.

With β ≤ 0 the fitted curve never turns down and the peak is infinite.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

FORMS = ("best_of_n", "rl")


@dataclass(frozen=True)
class LawFit:
    """A fitted law: its form, the coefficients, how well it fits, and the peak it predicts."""

    form: str       # "best_of_n" or "rl"
    alpha: float
    beta: float
    r2: float       # 1 − residual / total sum of squares, on the points fitted
    peak_d: float   # the d that maximises the fitted R(d); inf when β ≤ 0

    @property
    def peak_kl(self) -> float:
        """The KL at the predicted peak, d*²."""
        return self.peak_d ** 2

    @property
    def peak_reward(self) -> float:
        """The fitted R at its peak (inf when the curve never turns down)."""
        return float(law_curve(self, [self.peak_d])[0]) if math.isfinite(self.peak_d) else math.inf


def _design(form: str, d: np.ndarray) -> np.ndarray:
    """The two columns whose combination α·col₀ − β·col₁ is the law."""
    if form == "best_of_n":
        return np.stack([d, d * d], axis=1)
    if form == "rl":
        return np.stack([d, d * np.log(d)], axis=1)
    raise ValueError(f"form must be one of {FORMS}; got {form!r}.")


def law_curve(fit: LawFit, d) -> np.ndarray:
    """The fitted R(d) at the distances ``d`` (array-like, d ≥ 0; R(0) = 0 for both forms)."""
    d = np.asarray(d, dtype=float)
    if fit.form == "rl":
        safe = np.where(d > 0, d, 1.0)
        return np.where(d > 0, d * (fit.alpha - fit.beta * np.log(safe)), 0.0)
    return d * (fit.alpha - fit.beta * d)


def peak_distance(form: str, alpha: float, beta: float) -> float:
    """The maximiser d* ≥ 0 of the law: α/(2β) for best-of-n, exp(α/β − 1) for RL; inf when β ≤ 0."""
    if form not in FORMS:
        raise ValueError(f"form must be one of {FORMS}; got {form!r}.")
    if beta <= 0:
        return math.inf
    if form == "best_of_n":
        return max(alpha / (2 * beta), 0.0)  # α ≤ 0: the curve falls from the start, so the peak is d = 0
    exponent = alpha / beta - 1  # the RL form
    return math.exp(exponent) if exponent < 700 else math.inf


def fit_law(form: str, d, reward) -> LawFit:
    """Fit R(d) of ``form`` to points (d_i, R_i) by least squares; R is the gold *gain* over the start (R(0) = 0).

    ``d`` is √KL of each point and ``reward`` its gold reward minus the
    starting policy's. Needs at least three points with d > 0 (two
    coefficients, and one more so that R² means something); the RL form also
    needs every d > 0, since it takes log d.
    """
    if form not in FORMS:
        raise ValueError(f"form must be one of {FORMS}; got {form!r}.")
    d, reward = np.asarray(d, dtype=float).ravel(), np.asarray(reward, dtype=float).ravel()
    if d.shape != reward.shape:
        raise ValueError(f"d and reward must have the same length; got {d.size} and {reward.size}.")
    if not (np.isfinite(d).all() and np.isfinite(reward).all()):
        raise ValueError("d and reward must be finite numbers; drop the points with NaN or inf first.")
    if (d < 0).any():
        raise ValueError(f"d = √KL cannot be negative; got min(d) = {d.min():g}. Pass the square root of the KL.")
    if form == "rl" and (d <= 0).any():
        raise ValueError("the RL form takes log d, so every d must be > 0; drop the starting point "
                         "(d = 0, where R = 0 by definition) before fitting.")
    keep = d > 0  # d = 0 (the start itself) adds no information: both forms pass through R(0) = 0
    if keep.sum() < 3:
        raise ValueError(f"fitting two coefficients needs at least 3 points with d > 0; got {int(keep.sum())}. "
                         "Measure the reward at more values of n (or more evaluation steps).")
    d, reward = d[keep], reward[keep]
    design = _design(form, d)
    (alpha, beta), *_ = np.linalg.lstsq(design * np.array([1.0, -1.0]), reward, rcond=None)
    alpha, beta = float(alpha), float(beta)
    predicted = design @ np.array([alpha, -beta])
    total = float(((reward - reward.mean()) ** 2).sum())
    r2 = 1.0 - float(((reward - predicted) ** 2).sum()) / total if total > 0 else float("nan")
    return LawFit(form, alpha, beta, r2, peak_distance(form, alpha, beta))


def fit_best_of_n_law(d, reward) -> LawFit:
    """R(d) = d(α − βd) by least squares (see :func:`fit_law`)."""
    return fit_law("best_of_n", d, reward)


def fit_rl_law(d, reward) -> LawFit:
    """R(d) = d(α − β log d) by least squares (see :func:`fit_law`)."""
    return fit_law("rl", d, reward)
