"""Which gradient does a KL estimator give when it is charged in the reward?

PPO-style RLHF subtracts β times a per-token KL estimate from the reward,
computed without gradient (``rlhf_course.ppo.kl_penalised_rewards``). The
policy gradient then sees the estimate only as a weight on the score, so the
penalty contributes β E_{y~π}[k(y) ∇log π(y)]. These tests compute that
expectation exactly, by enumeration over a small categorical policy, and
compare it with gradients of divergences taken by autograd:

- k1 = log π − log π_ref gives ∇KL(π ‖ π_ref): the regularised objective;
- k3 = (ω − 1) − log ω, ω = π_ref / π, gives ∇[KL(π ‖ π_ref) − KL(π_ref ‖ π)],
  which is not ∇KL(π ‖ π_ref), although k3 is an unbiased estimate of its value;
- k2 = ½ (log ω)² gives ∇E_π[k2] − ∇KL(π ‖ π_ref).

The pages that state this are book/ppo.md (the KL penalty in the reward) and
book/regularization.md (the table of where the KL goes).
"""

from __future__ import annotations

import torch

from rlhf_course.ppo import kl_penalised_rewards
from rlhf_course.regularization import kl_estimators

F64 = torch.float64

REF_LOGITS = torch.tensor([0.3, -1.2, 0.8, 0.0, -0.4, 1.1], dtype=F64)
POLICY_LOGITS = torch.tensor([1.5, -0.2, -0.9, 0.6, 0.1, -1.3], dtype=F64)  # far enough from the reference to matter


def _kl(p_log: torch.Tensor, q_log: torch.Tensor) -> torch.Tensor:
    """KL(p ‖ q) from log-probabilities, summed over the last dimension."""
    return (p_log.exp() * (p_log - q_log)).sum(-1)


def _grad(value: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    (g,) = torch.autograd.grad(value, theta)
    return g


def _score_gradient(logits: torch.Tensor, ref_log: torch.Tensor, estimator: str) -> torch.Tensor:
    """E_{y~π}[k(y) ∇log π(y)] exactly: the estimate is a constant weight, as a reward is."""
    theta = logits.clone().requires_grad_(True)
    logp = torch.log_softmax(theta, -1)
    weight = kl_estimators(logp, ref_log)[estimator].detach()
    surrogate = (logp.exp().detach() * weight * logp).sum()  # gradient: Σ_y π(y) k(y) ∇log π(y)
    return _grad(surrogate, theta)


def _divergence_gradients(logits: torch.Tensor, ref_log: torch.Tensor) -> dict[str, torch.Tensor]:
    out = {}
    for name, fn in {
        "reverse": lambda logp: _kl(logp, ref_log),  # KL(π ‖ π_ref), the objective's
        "forward": lambda logp: _kl(ref_log, logp),  # KL(π_ref ‖ π)
        "mean_k2": lambda logp: (logp.exp() * 0.5 * (logp - ref_log) ** 2).sum(),
    }.items():
        theta = logits.clone().requires_grad_(True)
        out[name] = _grad(fn(torch.log_softmax(theta, -1)), theta)
    return out


def test_k1_in_the_reward_gives_the_gradient_of_the_objectives_kl():
    ref_log = torch.log_softmax(REF_LOGITS, -1)
    grads = _divergence_gradients(POLICY_LOGITS, ref_log)
    torch.testing.assert_close(_score_gradient(POLICY_LOGITS, ref_log, "k1"), grads["reverse"])


def test_k3_in_the_reward_gives_the_gradient_of_a_difference_of_kls():
    ref_log = torch.log_softmax(REF_LOGITS, -1)
    grads = _divergence_gradients(POLICY_LOGITS, ref_log)
    g_k3 = _score_gradient(POLICY_LOGITS, ref_log, "k3")
    torch.testing.assert_close(g_k3, grads["reverse"] - grads["forward"])
    # ... which is not the gradient of KL(π ‖ π_ref): not even close here
    assert (g_k3 - grads["reverse"]).norm() > 0.5 * grads["reverse"].norm()


def test_k3_is_unbiased_in_value_but_not_in_gradient():
    """The same k3 samples average to the KL exactly; only their gradient is wrong."""
    ref_log = torch.log_softmax(REF_LOGITS, -1)
    logp = torch.log_softmax(POLICY_LOGITS, -1)
    k3 = kl_estimators(logp, ref_log)["k3"]
    torch.testing.assert_close((logp.exp() * k3).sum(), _kl(logp, ref_log))


def test_k2_in_the_reward_gives_neither():
    ref_log = torch.log_softmax(REF_LOGITS, -1)
    grads = _divergence_gradients(POLICY_LOGITS, ref_log)
    torch.testing.assert_close(_score_gradient(POLICY_LOGITS, ref_log, "k2"), grads["mean_k2"] - grads["reverse"])


def test_near_the_reference_k3_in_the_reward_barely_pulls_back():
    """The two KLs agree to second order at π = π_ref, so k3's pull is second order in the distance."""
    ref_log = torch.log_softmax(REF_LOGITS, -1)
    for step in (0.1, 0.01):
        logits = REF_LOGITS + step * (POLICY_LOGITS - REF_LOGITS)
        g_k1 = _score_gradient(logits, ref_log, "k1")
        g_k3 = _score_gradient(logits, ref_log, "k3")
        assert g_k3.norm() < 2 * step * g_k1.norm(), (step, g_k3.norm(), g_k1.norm())


def test_kl_penalised_rewards_carries_the_same_gradients():
    """The package's per-token rewards, one token per response, weighted by π: −β times the gradients above."""
    beta = 0.1
    ref_log = torch.log_softmax(REF_LOGITS, -1)
    grads = _divergence_gradients(POLICY_LOGITS, ref_log)
    expected = {"k1": -beta * grads["reverse"], "k3": -beta * (grads["reverse"] - grads["forward"])}
    for estimator, want in expected.items():
        theta = POLICY_LOGITS.clone().requires_grad_(True)
        logp = torch.log_softmax(theta, -1)
        scores = torch.zeros(6, dtype=F64)
        rewards = kl_penalised_rewards(scores, logp[:, None], ref_log[:, None], beta, estimator=estimator)
        assert not rewards.requires_grad  # rewards are data for the RL step
        surrogate = (logp.exp().detach() * rewards[:, 0] * logp).sum()
        torch.testing.assert_close(_grad(surrogate, theta), want)


def test_per_token_k3_over_two_tokens():
    """Over a response, per-token k3 rewards give ∇KL_seq(π ‖ π_ref) minus, at every state the policy
    visits (visit probabilities held fixed), the gradient of KL(π_ref(·|s) ‖ π(·|s)); k1 gives ∇KL_seq."""
    generator = torch.Generator().manual_seed(0)
    n = 4  # first token: n choices; second token: n choices given the first
    ref1 = torch.log_softmax(torch.randn(n, generator=generator, dtype=F64), -1)
    ref2 = torch.log_softmax(torch.randn(n, n, generator=generator, dtype=F64), -1)
    theta1 = torch.randn(n, generator=generator, dtype=F64).requires_grad_(True)
    theta2 = torch.randn(n, n, generator=generator, dtype=F64).requires_grad_(True)
    params = [theta1, theta2]

    def policy():
        return torch.log_softmax(theta1, -1), torch.log_softmax(theta2, -1)

    def score_gradient(estimator: str) -> list[torch.Tensor]:
        logp1, logp2 = policy()
        c1 = kl_estimators(logp1, ref1)[estimator].detach()  # reward of token 1, shape (n,)
        c2 = kl_estimators(logp2, ref2)[estimator].detach()  # reward of token 2 given token 1, shape (n, n)
        joint = (logp1[:, None] + logp2).exp().detach()  # π(a, b)
        # return of the whole response times the score of each token (reward-to-go has the same mean)
        surrogate = (joint * (c1[:, None] + c2) * (logp1[:, None] + logp2)).sum()
        return list(torch.autograd.grad(surrogate, params))

    logp1, logp2 = policy()
    kl_seq = _kl(logp1, ref1) + (logp1.exp() * _kl(logp2, ref2)).sum()
    grad_kl_seq = torch.autograd.grad(kl_seq, params)
    logp1, logp2 = policy()
    forward_at_visited = _kl(ref1, logp1) + (logp1.exp().detach() * _kl(ref2, logp2)).sum()
    grad_forward = torch.autograd.grad(forward_at_visited, params)

    for got, want in zip(score_gradient("k1"), grad_kl_seq):
        torch.testing.assert_close(got, want)
    for got, want, off in zip(score_gradient("k3"), grad_kl_seq, grad_forward):
        torch.testing.assert_close(got, want - off)
