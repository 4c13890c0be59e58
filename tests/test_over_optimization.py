"""The Over-optimization chapter's code: the scaling-law fits, the proxies, the recorded RL run."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from rlhf_course.over_optimization import (combine_scores, ensemble_reward, evaluation_steps, fit_best_of_n_law,
                                           fit_law, fit_rl_law, gold_plus_feature, law_curve, noisy_gold,
                                           peak_distance, standardize)
from rlhf_course.toyworld import STOCK_PHRASE, gold_reward, ideal_response, make_prompts

D = np.linspace(0.1, 3.0, 15)


# ----------------------------------------------------------------------------- fitting the laws


def test_best_of_n_fit_recovers_known_coefficients_exactly():
    fit = fit_best_of_n_law(D, D * (0.8 - 0.25 * D))
    assert fit.alpha == pytest.approx(0.8, abs=1e-10) and fit.beta == pytest.approx(0.25, abs=1e-10)
    assert fit.r2 == pytest.approx(1.0, abs=1e-12)
    assert fit.peak_d == pytest.approx(0.8 / 0.5)  # alpha / (2 beta), by hand: 1.6
    assert fit.peak_kl == pytest.approx(2.56) and fit.peak_reward == pytest.approx(1.6 * (0.8 - 0.4))


def test_rl_fit_recovers_known_coefficients_exactly():
    fit = fit_rl_law(D, D * (1.2 - 0.6 * np.log(D)))
    assert fit.alpha == pytest.approx(1.2, abs=1e-10) and fit.beta == pytest.approx(0.6, abs=1e-10)
    assert fit.r2 == pytest.approx(1.0, abs=1e-12)
    assert fit.peak_d == pytest.approx(math.e)  # log d* = alpha / beta - 1 = 1
    # the peak is a maximum of the fitted curve: neighbours are lower
    around = law_curve(fit, [fit.peak_d * 0.9, fit.peak_d, fit.peak_d * 1.1])
    assert around[1] > around[0] and around[1] > around[2]


@pytest.mark.parametrize("form, alpha, beta", [("best_of_n", 0.6, 0.15), ("rl", 0.9, 0.4)])
def test_fits_with_small_noise_stay_close(form, alpha, beta):
    rng = np.random.default_rng(0)
    d = np.linspace(0.2, 3.0, 40)
    clean = d * (alpha - beta * (d if form == "best_of_n" else np.log(d)))
    fit = fit_law(form, d, clean + rng.normal(0, 0.01, d.size))
    assert abs(fit.alpha - alpha) < 0.03 and abs(fit.beta - beta) < 0.03
    assert fit.r2 > 0.98
    assert fit.peak_d == pytest.approx(peak_distance(form, alpha, beta), rel=0.1)


def test_curve_passes_through_zero_and_a_rising_fit_has_no_peak():
    fit = fit_best_of_n_law(D, 0.5 * D + 0.05 * D**2)  # gold still accelerating: beta < 0
    assert fit.beta < 0 and math.isinf(fit.peak_d) and math.isinf(fit.peak_reward)
    assert law_curve(fit_rl_law(D, D * (1 - 0.3 * np.log(D))), [0.0])[0] == 0.0
    assert peak_distance("rl", 1.0, 0.0) == math.inf


def test_a_constant_reward_gives_a_poor_r2():
    fit = fit_best_of_n_law(D, np.r_[np.zeros(7), np.ones(8)])  # a step, not a parabola through 0
    assert fit.r2 < 0.95


def test_malformed_input_is_refused_with_a_reason():
    with pytest.raises(ValueError, match="at least 3 points"):
        fit_best_of_n_law([0.0, 1.0, 2.0], [0.0, 0.5, 0.8])  # d = 0 is dropped: two points left
    with pytest.raises(ValueError, match="same length"):
        fit_best_of_n_law([1.0, 2.0, 3.0], [0.1, 0.2])
    with pytest.raises(ValueError, match="log d"):
        fit_rl_law([0.0, 1.0, 2.0, 3.0], [0.0, 0.5, 0.7, 0.8])
    with pytest.raises(ValueError, match="negative"):
        fit_best_of_n_law([-1.0, 1.0, 2.0, 3.0], [0.0, 0.5, 0.7, 0.8])
    with pytest.raises(ValueError, match="finite"):
        fit_rl_law([1.0, 2.0, float("nan")], [0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match="form"):
        fit_law("ppo", D, D)
    with pytest.raises(ValueError, match="form must be one of"):
        fit_law("ppo", [0.0, 1.0, 2.0], [0.0, 0.1, 0.2])  # the form is named before the points are counted
    with pytest.raises(ValueError, match="form must be one of"):
        peak_distance("ppo", 1.0, 0.0)


def test_a_curve_that_falls_from_the_start_peaks_at_zero():
    fit = fit_best_of_n_law(D, -0.2 * D - 0.1 * D**2)  # alpha < 0: every step away from the start loses gold
    assert fit.alpha == pytest.approx(-0.2) and fit.beta == pytest.approx(0.1)
    assert fit.peak_d == 0.0 and fit.peak_reward == 0.0


def test_evaluation_steps_include_both_ends_and_are_denser_early():
    steps = evaluation_steps(100, 5)
    assert steps == [0, 6, 25, 56, 100]
    with pytest.raises(ValueError):
        evaluation_steps(0, 5)


# ----------------------------------------------------------------------------- proxies and ensembles


def test_noisy_gold_is_a_fixed_function_with_the_asked_spread():
    prompts = make_prompts("test", 50, seed=0)
    texts, answers = [p.text for p in prompts], [ideal_response(p) for p in prompts]
    proxy = noisy_gold(prompts, noise=0.5, seed=3)
    first, again = proxy(texts, answers), proxy(texts, answers)
    assert torch.equal(first, again), "the same answer must get the same score"
    gold = torch.tensor([gold_reward(p, a) for p, a in zip(prompts, answers)])
    assert 0.3 < float((first - gold).std()) < 0.7
    assert torch.allclose(noisy_gold(prompts, 0.0)(texts, answers), gold.float(), atol=1e-6)
    with pytest.raises(ValueError, match="negative"):
        noisy_gold(prompts, -1.0)
    with pytest.raises(KeyError, match="not among the prompts"):
        proxy(["an unknown prompt"], ["x"])


def test_gold_plus_feature_pays_for_the_phrase_that_gold_charges_for():
    prompt = make_prompts("test", 1, seed=0)[0]
    plain, padded = ideal_response(prompt), f"{ideal_response(prompt)} {STOCK_PHRASE} {STOCK_PHRASE}"
    proxy = gold_plus_feature([prompt], lambda r: r.count(STOCK_PHRASE), weight=1.0)
    scores = proxy([prompt.text] * 2, [plain, padded])
    assert gold_reward(prompt, padded) < gold_reward(prompt, plain)  # gold charges for the second phrase
    assert scores[1] > scores[0]  # the proxy pays for both


def test_combine_scores_by_hand():
    scores = torch.tensor([[1.0, 0.0, 2.0], [3.0, 0.0, -2.0]])
    assert torch.equal(combine_scores(scores, "mean"), torch.tensor([2.0, 0.0, 0.0]))
    assert torch.equal(combine_scores(scores, "min"), torch.tensor([1.0, 0.0, -2.0]))
    # mean - lam * population variance: variances 1, 0, 4
    assert torch.allclose(combine_scores(scores, "uncertainty", lam=0.5), torch.tensor([1.5, 0.0, -2.0]))
    with pytest.raises(ValueError, match="how"):
        combine_scores(scores, "median")
    with pytest.raises(ValueError, match="two members"):
        combine_scores(scores[:1], "uncertainty")
    with pytest.raises(ValueError, match="members, N"):
        combine_scores(torch.ones(3), "mean")


def test_ensemble_standardizes_members_on_the_calibration_answers():
    shifted = lambda texts, responses: torch.tensor([100.0 + len(r) for r in responses])  # noqa: E731
    scaled = lambda texts, responses: torch.tensor([-3.0 * len(r) for r in responses])  # noqa: E731
    answers = ["a", "abc", "abcdef"]
    ens = ensemble_reward([shifted, scaled], "mean", calibration=(["p"] * 3, answers))
    # standardised, the two members are exact opposites: their mean is 0 everywhere
    assert torch.allclose(ens(["p"] * 3, answers), torch.zeros(3), atol=1e-6)
    z = standardize(torch.tensor([[1.0, 2.0, 3.0]]))
    assert torch.allclose(z, torch.tensor([[-1.0, 0.0, 1.0]]))
    with pytest.raises(ValueError, match="at least one member"):
        ensemble_reward([])


# ----------------------------------------------------------------------------- the recorded RL run


@pytest.mark.slow
def test_recording_a_run_does_not_change_it(tiny_policy):
    """The record's sampling runs under a forked random state: the trained weights are bit-for-bit the same."""
    from rlhf_course.core.models import load_policy
    from rlhf_course.core.profiles import apply_overrides, get_profile
    from rlhf_course.over_optimization import policy_recorder
    from rlhf_course.policy_gradients import train_policy_gradient

    path, tokenizer = tiny_policy
    profile = apply_overrides(get_profile("tiny"), ["rl.steps=3", "rl.prompts_per_step=4", "rl.beta=0.0",
                                                    "n_eval_prompts=8"])
    short = lambda texts, responses: torch.tensor([-float(len(r.split())) for r in responses])  # noqa: E731
    reference = load_policy(path, profile)
    train_prompts = make_prompts("train", 12, seed=0)
    plain = train_policy_gradient(load_policy(path, profile), reference, tokenizer, short, profile,
                                  prompts=train_prompts, progress=False)
    prompts = make_prompts("test", 8, seed=0)
    on_step, record = policy_recorder(reference, tokenizer, prompts, short, profile, [0, 2, 3])
    recorded = train_policy_gradient(load_policy(path, profile), reference, tokenizer, short, profile,
                                     prompts=train_prompts, progress=False, on_step=on_step)
    for a, b in zip(plain.model.parameters(), recorded.model.parameters()):
        assert torch.equal(a, b)
    assert [row["step"] for row in record] == [0, 2, 3]
    assert abs(record[0]["kl"]) < 1e-4 and record[0]["d"] < 1e-2  # step 0 is the reference itself
    assert {"gold", "proxy", "kl", "gold_correct", "length"} <= set(record[-1])
