r"""Length-controlled win rates: a logistic regression that separates a judge's taste for length from quality.

A judge compares a policy's response with a baseline's on the same prompt.
Let $y_i \in [0, 1]$ be the outcome of comparison $i$ (1: the policy's
response preferred, 0: the baseline's, ½: a tie), $m_i$ the policy and
$x_i$ its style covariates (``features.style_differences``; for length,
$x_i = \tanh(\Delta_i / s)$ with $\Delta_i$ the difference in words and
$s$ its standard deviation). The model is

$$P(y_i = 1) = \sigma\big(\theta_{m_i} + \phi^\top x_i\big),$$

fitted by maximum likelihood (binary cross-entropy with soft targets, a small
L2 penalty so that a policy that always wins keeps a finite $\theta$). The
**length-controlled win rate** of policy $m$ is the model's prediction with
the style term set to zero, $\sigma(\theta_m)$: the answer to "how often would
the judge prefer this policy if its answers were as long as the baseline's?"
(Dubois et al. 2024, length-controlled AlpacaEval). The coefficients $\phi$
are shared by every policy: they describe the judge, not the policy, as in the
style control of Chatbot Arena's Bradley–Terry leaderboard. AlpacaEval fits
one regression per policy and adds a per-prompt difficulty term; with one
baseline and few policies, sharing $\phi$ identifies it far better.

When a policy's answers have exactly the baseline's style ($x_i = 0$), the
gradient in $\theta_m$ vanishes at $\sigma(\theta_m) = \bar y$: the controlled
win rate is the raw one (up to the tiny penalty).
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
import torch

from rlhf_course.style.features import length_differences, length_scale, style_differences


@dataclass
class StyleFit:
    """A fitted style-controlled win-rate regression."""

    models: list[str]
    intercepts: torch.Tensor    # (models,) θ_m: each policy's logit at equal style
    coefficients: torch.Tensor  # (features,) φ: the judge's taste for each style feature
    features: tuple[str, ...]

    def controlled_win_rate(self, model: str) -> float:
        """σ(θ_model): the win rate predicted with every style difference set to zero."""
        return float(torch.sigmoid(self.intercepts[self.models.index(model)]))


def _check_inputs(outcomes: torch.Tensor, covariates: torch.Tensor, model_index: torch.Tensor, n_models: int) -> None:
    n = outcomes.shape[0] if outcomes.dim() == 1 else -1
    if n < 1:
        raise ValueError(f"outcomes must be a non-empty 1-D tensor (one outcome per comparison); got shape "
                         f"{tuple(outcomes.shape)}.")
    if covariates.dim() != 2 or covariates.shape[0] != n or model_index.shape != (n,):
        raise ValueError(f"covariates must have shape (n, features) and model_index shape (n,) for n = {n} outcomes; "
                         f"got {tuple(covariates.shape)} and {tuple(model_index.shape)}.")
    if not torch.isfinite(outcomes).all() or not torch.isfinite(covariates).all():
        raise ValueError("outcomes and covariates must be finite; drop or fix the NaN or infinite entries.")
    if (outcomes < 0).any() or (outcomes > 1).any():
        raise ValueError("outcomes must lie in [0, 1]: 1 when the policy's response is preferred, 0 when the "
                         "baseline's is, 0.5 for a tie (map a judge's -1, 'cannot decide', to 0.5).")
    if model_index.numel() and (model_index.min() < 0 or model_index.max() >= n_models):
        raise ValueError(f"model_index must lie in [0, {n_models}); got values from {int(model_index.min())} to "
                         f"{int(model_index.max())}.")


def fit_style_regression(outcomes: torch.Tensor, covariates: torch.Tensor, model_index: torch.Tensor | None = None,
                         n_models: int = 1, l2: float = 1e-4, max_iter: int = 200) -> tuple[torch.Tensor, torch.Tensor]:
    """Fit ``P(win) = σ(θ[model] + covariates · φ)`` by L-BFGS; returns ``(θ, φ)`` (float64).

    ``outcomes`` has shape ``(n,)`` with values in [0, 1]; ``covariates``
    ``(n, k)``; ``model_index`` ``(n,)`` says which of ``n_models`` policies
    made each comparison (all 0 if omitted). The loss is the mean binary
    cross-entropy plus ``l2/2`` times the squared norm of every parameter.
    """
    outcomes = torch.as_tensor(outcomes, dtype=torch.float64)
    covariates = torch.as_tensor(covariates, dtype=torch.float64)
    if model_index is None:
        model_index = torch.zeros(outcomes.shape[0] if outcomes.dim() == 1 else 0, dtype=torch.long)
    model_index = torch.as_tensor(model_index, dtype=torch.long)
    _check_inputs(outcomes, covariates, model_index, n_models)
    theta = torch.zeros(n_models, dtype=torch.float64, requires_grad=True)
    phi = torch.zeros(covariates.shape[1], dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([theta, phi], max_iter=max_iter, tolerance_grad=1e-10, tolerance_change=1e-12,
                                  line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        logits = theta[model_index] + covariates @ phi
        loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, outcomes)
        loss = loss + 0.5 * l2 * (theta.square().sum() + phi.square().sum())
        loss.backward()
        return loss

    optimizer.step(closure)
    return theta.detach(), phi.detach()


def length_controlled_win_rate(outcomes: torch.Tensor, length_diff: torch.Tensor, l2: float = 1e-4) -> float:
    """One policy's length-controlled win rate against a baseline, as in length-controlled AlpacaEval.

    ``outcomes[i]`` in [0, 1] is the judge's verdict on comparison i and
    ``length_diff[i]`` the policy's answer's length minus the baseline's
    (words or tokens). Fits ``σ(θ + φ tanh(Δ / sd(Δ)))`` and returns σ(θ).
    """
    length_diff = torch.as_tensor(length_diff, dtype=torch.float64)
    if length_diff.dim() != 1:
        raise ValueError(f"length_diff must be a 1-D tensor, one difference per comparison; got shape "
                         f"{tuple(length_diff.shape)}.")
    covariate = torch.tanh(length_diff / length_scale(length_diff)).unsqueeze(1)
    theta, _ = fit_style_regression(outcomes, covariate, l2=l2)
    return float(torch.sigmoid(theta[0]))


def controlled_win_rates(outcomes: dict[str, torch.Tensor], responses: dict[str, list[str]], baseline: list[str],
                         features: tuple[str, ...] = ("length",), l2: float = 1e-4) -> tuple[pd.DataFrame, StyleFit]:
    """Raw and style-controlled win rates of several policies against one baseline, from one joint fit.

    ``outcomes[name]`` holds the judge's verdicts on ``responses[name]``
    against ``baseline`` (paired: entry i of each answers the same prompt).
    The length scale is the standard deviation of every length difference
    together, so that one coefficient means the same for every policy.
    Returns a table (one row per policy: ``raw``, ``controlled``) and the fit.
    """
    if set(outcomes) != set(responses) or not outcomes:
        raise ValueError(f"outcomes and responses must name the same, non-empty set of policies; got "
                         f"{sorted(outcomes)} and {sorted(responses)}.")
    names = list(outcomes)
    scale = length_scale(torch.cat([length_differences(responses[n], baseline) for n in names]))
    covariates = torch.cat([style_differences(responses[n], baseline, features, scale=scale) for n in names])
    y = torch.cat([torch.as_tensor(outcomes[n], dtype=torch.float64) for n in names])
    index = torch.cat([torch.full((len(responses[n]),), i, dtype=torch.long) for i, n in enumerate(names)])
    theta, phi = fit_style_regression(y, covariates, index, len(names), l2=l2)
    fit = StyleFit(names, theta, phi, tuple(features))
    table = pd.DataFrame({"raw": [float(torch.as_tensor(outcomes[n], dtype=torch.float64).mean()) for n in names],
                          "controlled": [fit.controlled_win_rate(n) for n in names]}, index=names)
    return table, fit


def gameability(scores: pd.Series | dict[str, float], policies: list[str]) -> dict[str, float]:
    """How far each policy's score moves between its verbose and concise variants.

    ``scores`` maps ``"<policy>/verbose"`` and ``"<policy>/concise"`` to a
    win rate; the gameability of a policy is verbose minus concise (a judge
    that cannot be gamed by padding gives 0).
    """
    return {p: float(scores[f"{p}/verbose"]) - float(scores[f"{p}/concise"]) for p in policies}
