"""Estimating KL(π_θ ‖ π_ref) from samples: the k1, k2 and k3 estimators.

RLHF keeps the policy π_θ close to a reference π_ref with a KL penalty. For a
language model the KL cannot be summed over every possible response, so it is
estimated on responses (or tokens) sampled from the policy itself. Given a
sample y ~ π_θ, write the log-ratio

    log ω = log π_ref(y) − log π_θ(y)      (ω = π_ref(y) / π_θ(y)).

Because E_{y~π_θ}[ω] = Σ_y π_ref(y) = 1, three simple functions of log ω have
expectations at or near KL(π_θ ‖ π_ref) = E_{y~π_θ}[−log ω]:

========  ==========================  ======================================
name      per-sample value            expectation under y ~ π_θ
========  ==========================  ======================================
``k1``    −log ω                      exactly the KL (unbiased); single
                                      samples can be negative; high variance
``k2``    ½ (log ω)²                  *not* the KL (biased): a different
                                      divergence that matches the KL to
                                      second order when π_θ ≈ π_ref; always
                                      ≥ 0, low variance
``k3``    (ω − 1) − log ω             exactly the KL (unbiased, since the
                                      added ω − 1 has mean 0); always ≥ 0
                                      because log ω ≤ ω − 1; low variance
                                      when π_θ ≈ π_ref
========  ==========================  ======================================

The names follow John Schulman's note "Approximating KL Divergence" (2020).
``k1`` summed over a response's tokens is the sequence-level estimate that
:func:`rlhf_course.core.evaluation.kl_to_reference` reports and that the classic
PPO-based RLHF subtracts from the reward; GRPO puts ``k3`` per token into its
loss. All three are *value* estimators: differentiating them as losses gives
gradients that are not, in general, gradients of the KL, which is a separate
story told in the policy-gradient chapters.
"""

from __future__ import annotations

import torch

ESTIMATORS = ("k1", "k2", "k3")


def kl_estimators(logp_policy: torch.Tensor, logp_ref: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per-sample k1, k2 and k3 estimates of KL(π_θ ‖ π_ref).

    Args:
        logp_policy: log π_θ of samples drawn *from the policy* (per token or
            per sequence, any shape).
        logp_ref: log π_ref of the same samples, same shape.

    Returns:
        ``{"k1": ..., "k2": ..., "k3": ...}``, each a tensor of the input's
        shape. Average over samples to estimate the KL; ``k1`` and ``k3`` are
        unbiased, ``k2`` is biased but never negative, and ``k3`` is never
        negative either (see the module docstring for the trade-offs).

    The estimators assume the samples come from π_θ; on samples from any
    other distribution (π_ref, an older policy) they estimate something else.
    Gradients flow through both inputs.
    """
    if logp_policy.shape != logp_ref.shape:
        raise ValueError(
            f"logp_policy and logp_ref must have the same shape (one entry per sample), "
            f"got {tuple(logp_policy.shape)} and {tuple(logp_ref.shape)}."
        )
    log_ratio = logp_ref - logp_policy  # log ω = log π_ref − log π_θ
    return {
        "k1": -log_ratio,
        "k2": 0.5 * log_ratio**2,
        # expm1(x) = e^x − 1, accurate when x is near 0, which is the usual case
        "k3": torch.expm1(log_ratio) - log_ratio,
    }
