"""The KL estimators: k1 and k3 are unbiased, k2 is not, k3 is never negative."""

from __future__ import annotations

import math

import pytest
import torch

from rlhf_course.regularization import kl_estimators

# Two categorical distributions over five outcomes whose KL is easy to compute exactly.
POLICY = torch.tensor([0.40, 0.25, 0.15, 0.12, 0.08], dtype=torch.float64)
REF = torch.tensor([0.10, 0.20, 0.30, 0.25, 0.15], dtype=torch.float64)
EXACT_KL = float(torch.sum(POLICY * (POLICY.log() - REF.log())))


def test_estimators_on_one_hand_computed_sample():
    # log π_θ = log 0.5, log π_ref = log 0.25: log ρ = log(0.5) = -log 2, ρ = 0.5
    est = kl_estimators(torch.tensor([math.log(0.5)]), torch.tensor([math.log(0.25)]))
    assert est["k1"].item() == pytest.approx(math.log(2))
    assert est["k2"].item() == pytest.approx(0.5 * math.log(2) ** 2)
    assert est["k3"].item() == pytest.approx((0.5 - 1) + math.log(2))


def test_k1_and_k3_are_exactly_unbiased_and_k2_is_not():
    """Weight each outcome by its probability under the policy: the exact expectation."""
    est = kl_estimators(POLICY.log(), REF.log())
    assert torch.sum(POLICY * est["k1"]).item() == pytest.approx(EXACT_KL, rel=1e-12)
    assert torch.sum(POLICY * est["k3"]).item() == pytest.approx(EXACT_KL, rel=1e-12)
    k2_mean = torch.sum(POLICY * est["k2"]).item()
    assert abs(k2_mean - EXACT_KL) > 0.05 * EXACT_KL, "k2 is biased for distributions this far apart"


def test_sample_means_converge_to_the_kl():
    n = 200_000
    generator = torch.Generator().manual_seed(0)
    samples = torch.multinomial(POLICY, n, replacement=True, generator=generator)
    est = kl_estimators(POLICY.log()[samples], REF.log()[samples])
    for name in ("k1", "k3"):
        mean, stderr = est[name].mean().item(), est[name].std().item() / math.sqrt(n)
        assert abs(mean - EXACT_KL) < 4 * stderr, f"{name}: {mean:.4f} vs exact {EXACT_KL:.4f}"
    # k2 converges too, but to its own expectation, not to the KL
    k2_expected = torch.sum(POLICY * 0.5 * (REF.log() - POLICY.log()) ** 2).item()
    assert est["k2"].mean().item() == pytest.approx(k2_expected, rel=0.02)


def test_k1_can_be_negative_but_k2_and_k3_never_are():
    generator = torch.Generator().manual_seed(1)
    logp_policy = -5 * torch.rand(10_000, generator=generator)
    logp_ref = -5 * torch.rand(10_000, generator=generator)
    est = kl_estimators(logp_policy, logp_ref)
    assert (est["k1"] < 0).any()
    assert (est["k2"] >= 0).all() and (est["k3"] >= 0).all()


def test_k3_has_lower_variance_than_k1_when_the_distributions_are_close():
    close_ref = 0.9 * POLICY + 0.1 * REF
    est = kl_estimators(POLICY.log(), close_ref.log())
    variance = {name: torch.sum(POLICY * (est[name] - torch.sum(POLICY * est[name])) ** 2).item()
                for name in ("k1", "k3")}
    assert variance["k3"] < 0.1 * variance["k1"]


def test_identical_distributions_give_zero_and_gradients_flow():
    logp = torch.log(POLICY).clone().requires_grad_(True)
    est = kl_estimators(logp, logp.detach())
    for name in ("k1", "k2", "k3"):
        assert torch.all(est[name] == 0)
    est["k3"].sum().backward()
    assert logp.grad is not None


def test_shapes_must_match():
    with pytest.raises(ValueError, match="same shape"):
        kl_estimators(torch.zeros(3), torch.zeros(4))
