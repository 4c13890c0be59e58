"""Exercise checks of the Regularization lab: the three KL estimators.

Each check calls the learner's function on cases with known answers and raises
:class:`rlhf_course.teaching.checking.ExerciseError` with a hint naming the likely
mistake when it is wrong (the machinery is in :mod:`rlhf_course.teaching.checking`).
"""

from __future__ import annotations

import math
from typing import Any, Callable

import torch

from rlhf_course.teaching.checking import ExerciseError, call_learner, exercise, expect_tensor, mismatch, show


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
            raise ExerciseError(mismatch(f"on {label}, {name} should have shape {tuple(logp_policy.shape)}",
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
    from rlhf_course.regularization.loss import kl_estimators

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
        raise ExerciseError(f"on {label}, your {name} is {show(got)}; expected {show(expected)}. {hint}")
    policy = torch.tensor([0.40, 0.25, 0.15, 0.12, 0.08], dtype=torch.float64)
    ref = torch.tensor([0.10, 0.20, 0.30, 0.25, 0.15], dtype=torch.float64)
    exact = float((policy * (policy.log() - ref.log())).sum())
    means = {name: float((policy * value).sum()) for name, value in
             _learner_estimates(fn, policy.log(), ref.log(), "a five-outcome distribution").items()}
    return (f"correct on {len(cases)} hand-made cases; on a five-outcome distribution with KL {exact:.4f}, the exact "
            f"means are k1 {means['k1']:.4f}, k3 {means['k3']:.4f} (unbiased) and k2 {means['k2']:.4f} (biased)")
