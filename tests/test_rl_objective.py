"""The KL-regularised objective: its exact optimum, policy gradient reaching it, and the exercise check."""

from __future__ import annotations

import math

import pytest
import torch

from rlhf_course import toyworld
from rlhf_course.optimization_rl.checks import check_optimal_policy
from rlhf_course.teaching import checking as checks
from rlhf_course.teaching.checking import ExerciseError
from rlhf_course.optimization_rl import (best_of_n_policy, beta_sweep, expected_reward, kl_divergence, log_partition,
                                         optimal_policy, optimal_value, policy_gradient, regularised_objective,
                                         response_space)

# π_ref = (1/2, 1/4, 1/4), r = (0, log 2, log 4), β = 1: the tilted weights are (1/2, 1/2, 1), so Z = 2
# and π* = (1/4, 1/4, 1/2).
HAND_REF = [0.5, 0.25, 0.25]
HAND_REWARDS = [0.0, math.log(2), math.log(4)]


@pytest.fixture(autouse=True)
def no_grade_log(monkeypatch):
    monkeypatch.delenv(checks.GRADES_ENV, raising=False)


@pytest.fixture(scope="module")
def space():
    prompt = toyworld.make_prompts("test", 1, seed=0, families=("transform",))[0]
    return response_space(prompt, n_responses=30, n_samples=4000, seed=0)


# ----------------------------------------------------------------------------- the exact optimum


def test_optimal_policy_matches_the_hand_computed_example():
    policy = optimal_policy(HAND_REF, HAND_REWARDS, beta=1.0)
    assert torch.allclose(policy, torch.tensor([0.25, 0.25, 0.5], dtype=torch.float64), atol=1e-12)
    assert log_partition(HAND_REF, HAND_REWARDS, 1.0) == pytest.approx(math.log(2))
    # Its value: E[r] = 1.25 log 2, KL = 0.25 log 2, so J = log 2 = β log Z.
    assert regularised_objective(policy, HAND_REF, HAND_REWARDS, 1.0) == pytest.approx(math.log(2))


@pytest.mark.parametrize("beta", [0.01, 0.3, 1.0, 7.0, 1e4])
def test_optimal_policy_is_a_distribution_whose_value_is_beta_log_z(space, beta):
    policy = optimal_policy(space.ref_probs, space.rewards, beta)
    assert policy.sum().item() == pytest.approx(1.0, abs=1e-12)
    assert (policy >= 0).all()
    value = regularised_objective(policy, space.ref_probs, space.rewards, beta)
    assert value == pytest.approx(optimal_value(space.ref_probs, space.rewards, beta), rel=1e-9, abs=1e-9)


def test_optimum_beats_every_other_policy(space):
    """J(π*) is the maximum; indeed J(π) = β log Z − β KL(π ‖ π*) for every π."""
    beta = 0.5
    ref, r = space.ref_probs, space.rewards
    best = regularised_objective(optimal_policy(ref, r, beta), ref, r, beta)
    gen = torch.Generator().manual_seed(0)
    for _ in range(200):
        weights = -torch.log(torch.rand(len(ref), generator=gen, dtype=torch.float64))  # uniform on the simplex
        other = weights / weights.sum()
        value = regularised_objective(other, ref, r, beta)
        assert value < best
        gap = beta * kl_divergence(other, optimal_policy(ref, r, beta))
        assert best - value == pytest.approx(gap, rel=1e-8)
    for n in (2, 4, 16):  # best-of-n is a policy too, so it cannot beat π*
        assert regularised_objective(best_of_n_policy(ref, r, n), ref, r, beta) < best


def test_reward_and_kl_fall_as_beta_grows(space):
    sweep = beta_sweep(space.ref_probs, space.rewards, [0.02, 0.05, 0.1, 0.3, 1.0, 3.0, 10.0, 100.0])
    assert all(a > b for a, b in zip(sweep.reward, sweep.reward[1:]))
    assert all(a > b for a, b in zip(sweep.kl, sweep.kl[1:]))
    assert sweep.reward[0] > expected_reward(space.ref_probs, space.rewards) + 1.0


def test_limits_argmax_and_reference(space):
    ref, r = space.ref_probs, space.rewards
    sharp = optimal_policy(ref, r, 1e-3)
    assert sharp[r == r.max()].sum().item() == pytest.approx(1.0, abs=1e-9)
    # Among tied best responses, π* keeps π_ref's proportions.
    best = r == r.max()
    assert torch.allclose(sharp[best], ref[best] / ref[best].sum(), atol=1e-9)
    assert torch.allclose(optimal_policy(ref, r, 1e6), ref, atol=1e-5)


def test_huge_rewards_and_tiny_beta_stay_finite():
    policy = optimal_policy([0.2, 0.3, 0.5], [1000.0, 990.0, 0.0], 0.01)
    assert torch.isfinite(policy).all()
    assert policy[0].item() == pytest.approx(1.0)
    assert math.isfinite(log_partition([0.2, 0.3, 0.5], [1000.0, 990.0, 0.0], 0.01))


def test_responses_the_reference_never_writes_stay_at_zero():
    policy = optimal_policy([0.0, 0.5, 0.5], [100.0, 0.0, 1.0], 0.1)
    assert policy[0].item() == 0.0 and policy.sum().item() == pytest.approx(1.0)


def test_kl_divergence():
    assert kl_divergence([0.5, 0.5], [0.5, 0.5]) == 0.0
    assert kl_divergence([1.0, 0.0], [0.5, 0.5]) == pytest.approx(math.log(2))
    assert kl_divergence([0.5, 0.5], [1.0, 0.0]) == math.inf
    assert kl_divergence([0.9, 0.1], [0.5, 0.5]) != pytest.approx(kl_divergence([0.5, 0.5], [0.9, 0.1]))


# ----------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("call, message", [
    (lambda: optimal_policy(HAND_REF, HAND_REWARDS, -1.0), "beta must be positive"),
    (lambda: optimal_policy(HAND_REF, HAND_REWARDS, 0.0), "argmax"),
    (lambda: optimal_policy(HAND_REF, HAND_REWARDS[:2], 1.0), "ref_probs has 3, rewards has 2"),
    (lambda: optimal_policy([0.5, 0.25, 0.2], HAND_REWARDS, 1.0), "sums to 0.95"),
    (lambda: optimal_policy([1.5, -0.25, -0.25], HAND_REWARDS, 1.0), "negative"),
    (lambda: optimal_policy([[0.5, 0.5]], [0.0, 1.0], 1.0), "1-D"),
    (lambda: optimal_policy(HAND_REF, [0.0, float("nan"), 1.0], 1.0), "NaN"),
    (lambda: kl_divergence([0.5, 0.5], [0.2, 0.3, 0.5]), "one entry per response"),
    (lambda: regularised_objective(HAND_REF, HAND_REF, HAND_REWARDS, -0.1), "beta must be positive"),
    (lambda: policy_gradient(HAND_REF, HAND_REWARDS, 0.0), "beta must be positive"),
    (lambda: best_of_n_policy(HAND_REF, HAND_REWARDS, 0), "positive integer"),
])
def test_bad_input_raises_a_clear_value_error(call, message):
    with pytest.raises(ValueError, match=message):
        call()


# ----------------------------------------------------------------------------- best-of-n


def test_best_of_n(space):
    ref, r = space.ref_probs, space.rewards
    assert torch.allclose(best_of_n_policy(ref, r, 1), ref)
    rewards, kls = [], []
    for n in (1, 2, 4, 8, 16, 64):
        policy = best_of_n_policy(ref, r, n)
        assert policy.sum().item() == pytest.approx(1.0)
        rewards.append(expected_reward(policy, r))
        kls.append(kl_divergence(policy, ref))
        assert kls[-1] <= math.log(n) - (n - 1) / n + 1e-9  # the known bound on best-of-n's KL
    assert all(a < b for a, b in zip(rewards, rewards[1:]))
    # Two responses, the better one with π_ref = 1/2: best of 2 picks it unless both draws miss it.
    assert torch.allclose(best_of_n_policy([0.5, 0.5], [1.0, 0.0], 2), torch.tensor([0.75, 0.25], dtype=torch.float64))


# ----------------------------------------------------------------------------- policy gradient


def test_policy_gradient_approaches_the_optimum(space):
    beta = 0.5
    run = policy_gradient(space.ref_probs, space.rewards, beta, steps=300, lr=0.1, samples_per_step=32, seed=0)
    assert len(run.steps) == len(run.objective) == len(run.kl_to_optimum) == 301
    assert run.kl[0] == pytest.approx(0.0, abs=1e-12)  # starts at the reference
    assert run.kl_to_optimum[-1] < 0.01 < run.kl_to_optimum[0]
    assert run.optimum - run.objective[-1] < 0.01 < run.optimum - run.objective[0]
    assert all(v <= run.optimum + 1e-9 for v in run.objective)
    assert run.reward[-1] > run.reward[0] + 0.5
    assert run.policy.sum().item() == pytest.approx(1.0)


def test_policy_gradient_is_reproducible(space):
    a = policy_gradient(space.ref_probs, space.rewards, 1.0, steps=20, seed=3)
    b = policy_gradient(space.ref_probs, space.rewards, 1.0, steps=20, seed=3)
    assert a.objective == b.objective


# ----------------------------------------------------------------------------- the toy-world response space


def test_response_space_is_a_small_problem_with_a_reference_distribution(space):
    assert len(space) == 30 == len(set(space.responses)) == len(space.ref_probs) == len(space.rewards)
    assert space.ref_probs.sum().item() == pytest.approx(1.0)
    assert (space.ref_probs > 0).all()
    assert all(a >= b for a, b in zip(space.rewards.tolist(), space.rewards.tolist()[1:]))
    assert space.rewards[0].item() == toyworld.GOLD_MAX
    for response, reward in zip(space.responses, space.rewards.tolist()):
        assert toyworld.gold_reward(space.prompt, response) == reward
    again = response_space(space.prompt, n_responses=30, n_samples=4000, seed=0)
    assert again.responses == space.responses and torch.equal(again.ref_probs, space.ref_probs)


# ----------------------------------------------------------------------------- the exercise check


def reference(ref_probs, rewards, beta):
    return torch.softmax(torch.log(ref_probs) + rewards / beta, dim=0)


def test_check_accepts_the_reference_and_the_package(capsys):
    check_optimal_policy(reference)
    assert capsys.readouterr().out.startswith("✓ The optimal KL-regularised policy:")
    check_optimal_policy(optimal_policy)


def test_check_accepts_a_numpy_answer():
    import numpy as np

    def with_numpy(ref_probs, rewards, beta):
        with np.errstate(divide="ignore"):
            logits = np.log(np.asarray(ref_probs)) + np.asarray(rewards) / beta
        weights = np.exp(logits - logits.max())
        return weights / weights.sum()

    check_optimal_policy(with_numpy)


def naive_exp(ref, r, b):
    weights = ref * torch.exp(r / b)  # exp(100000) = inf, and inf / inf = nan
    return weights / weights.sum()


def stub(ref, r, b):
    raise NotImplementedError("Exercise: fill in optimal_policy")


MISTAKES = {
    "no normalisation": (lambda ref, r, b: ref * torch.exp(r / b), ["sum to 2", "normalise"]),
    "r times beta": (lambda ref, r, b: reference(ref, r * b * b, b), ["multiply the reward by β", "β = 0.5"]),
    "no reference": (lambda ref, r, b: torch.softmax(r / b, dim=0), ["drop π_ref"]),
    "flipped sign": (lambda ref, r, b: reference(ref, -r, b), ["sign is flipped"]),
    "overflow": (naive_exp, ["rewards near 1000", "log-sum-exp", "overflows"]),
    "log-probabilities": (lambda ref, r, b: torch.log_softmax(torch.log(ref) + r / b, dim=0), ["log-probabilities"]),
    "wrong length": (lambda ref, r, b: torch.tensor([1.0]), ["expected 3 probabilities"]),
    "stub": (stub, ["not implemented yet"]),
}


@pytest.mark.parametrize("mistake", list(MISTAKES))
def test_check_names_the_mistake(mistake):
    fn, fragments = MISTAKES[mistake]
    with pytest.raises(ExerciseError) as info:
        check_optimal_policy(fn)
    for fragment in fragments:
        assert fragment in str(info.value), f"{fragment!r} not in {str(info.value)!r}"
