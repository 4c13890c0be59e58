"""The Style chapter's package: features, variants, the length-controlled regression, the ledger and the check."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from rlhf_course import style
from rlhf_course.evaluation import ScoreJudge
from rlhf_course.style import checks
from rlhf_course.teaching.checking import ExerciseError
from rlhf_course.toyworld import gold_reward, make_prompts


def test_features_count_words_phrase_and_padding():
    table = style.style_features(["Sure. 12 I hope this helps!", "red, blue"])
    assert table["words"].tolist() == [6, 2]
    assert table["phrase"].tolist() == [1.0, 0.0]
    assert table["padding"].tolist() == [5, 0]


def test_variants_keep_substance_and_pad_the_verbose_one():
    assert style.concise("Sure. 12 Let me know if you need more. I hope this helps!") == "12"
    assert style.verbose("Okay, here it is: 12") == "Sure. 12 Let me know if you need more. I hope this helps!"
    assert style.concise("Ugh, fine. 12") == "Ugh, fine. 12"  # rudeness is a flaw, not padding
    for prompt in make_prompts("test", 40, seed=0):
        answer = prompt.answer if prompt.answer else "red, blue"
        padded, short = style.verbose(answer), style.concise(answer)
        assert style.n_words(padded) > style.n_words(short)
        assert gold_reward(prompt, padded) <= gold_reward(prompt, short)  # gold never rewards the padding


def test_regression_recovers_known_coefficients():
    gen = torch.Generator().manual_seed(0)
    n, theta, phi = 20000, torch.tensor([0.7, -0.4]), torch.tensor([1.5, -0.8])
    x = torch.randn(n, 2, generator=gen, dtype=torch.float64)
    index = torch.randint(0, 2, (n,), generator=gen)
    y = torch.bernoulli(torch.sigmoid(theta.double()[index] + x @ phi.double()), generator=gen)
    got_theta, got_phi = style.fit_style_regression(y, x, index, n_models=2)
    assert torch.allclose(got_theta, theta.double(), atol=0.08)
    assert torch.allclose(got_phi, phi.double(), atol=0.08)


def test_length_controlled_win_rate_removes_a_known_length_effect():
    outcomes, diff = checks.synthetic_comparisons(theta=0.0, phi=2.0, shift=4.0, seed=3)
    assert outcomes.mean() > 0.6  # the raw win rate is inflated by length
    assert abs(style.length_controlled_win_rate(outcomes, diff) - 0.5) < 0.03


def test_controlled_equals_raw_when_lengths_are_equal():
    prompts = make_prompts("test", 6, seed=0)
    baseline = ["red, blue", "12", "SUN", "Great news! Your order will arrive soon.", "cat", "7"]
    responses = {"same length": ["red, pink", "13", "SUN", "Great news! Your order will arrive later.", "dog", "8"],
                 "longer": [r + " I hope this helps!" for r in baseline]}
    outcomes = {"same length": torch.tensor([1.0, 0.0, 0.5, 1.0, 1.0, 0.0]),
                "longer": torch.tensor([1.0, 1.0, 1.0, 0.0, 1.0, 1.0])}
    assert len(prompts) == len(baseline)
    table, fit = style.controlled_win_rates(outcomes, responses, baseline)
    assert table.loc["same length", "raw"] == pytest.approx(0.5833, abs=1e-3)
    assert table.loc["same length", "controlled"] == pytest.approx(table.loc["same length", "raw"], abs=2e-3)
    assert style.length_controlled_win_rate(outcomes["same length"], torch.zeros(6)) == pytest.approx(0.5833, abs=2e-3)


def test_malformed_input_errors_say_what_is_wrong():
    with pytest.raises(ValueError, match="in \\[0, 1\\]"):
        style.fit_style_regression(torch.tensor([1.0, -1.0]), torch.zeros(2, 1))
    with pytest.raises(ValueError, match="shape"):
        style.fit_style_regression(torch.tensor([1.0, 0.0]), torch.zeros(3, 1))
    with pytest.raises(ValueError, match="finite"):
        style.fit_style_regression(torch.tensor([1.0, math.nan]), torch.zeros(2, 1))
    with pytest.raises(ValueError, match="non-empty"):
        style.fit_style_regression(torch.tensor([]), torch.zeros(0, 1))
    with pytest.raises(ValueError, match="paired"):
        style.style_differences(["a"], ["a", "b"])
    with pytest.raises(ValueError, match="unknown style feature"):
        style.style_differences(["a"], ["b"], ("markdown",))
    with pytest.raises(ValueError, match="same"):
        style.controlled_win_rates({"a": torch.ones(1)}, {"b": ["x"]}, ["y"])


def test_outcomes_map_verdicts_to_wins_losses_and_ties():
    judge = ScoreJudge(lambda prompts, responses: [float(len(r)) for r in responses])
    assert style.outcomes(judge, ["p"] * 3, ["aa", "a", "a"], ["a", "aa", "b"]).tolist() == [1.0, 0.0, 0.5]
    with pytest.raises(ValueError, match="paired"):
        style.outcomes(judge, ["p"], ["a", "b"], ["c"])


def test_ledger_splits_a_known_score_exactly():
    prompts = make_prompts("test", 60, seed=0)
    rng = np.random.default_rng(0)
    responses = {"base": [style.concise(p.answer or "red, blue") for p in prompts]}
    responses["padded"] = [style.verbose(r) if rng.random() < 0.7 else r for r in responses["base"]]
    responses["wrong"] = ["0" if rng.random() < 0.5 else r for r in responses["base"]]
    # a judge that scores gold plus 0.2 a word: its gain is gold's gain plus 0.2 × the extra words
    scores = {n: np.array([gold_reward(p, r) + 0.2 * style.n_words(r) for p, r in zip(prompts, rs)])
              for n, rs in responses.items()}
    table, beta = style.style_ledger(prompts, responses, scores, "base")
    assert beta["words"] == pytest.approx(0.2, abs=1e-6)
    assert table["unexplained"].abs().max() < 1e-6
    extra = np.mean([style.n_words(r) for r in responses["padded"]]) - np.mean([style.n_words(r) for r in responses["base"]])
    assert table.loc["padded", "style"] == pytest.approx(0.2 * extra, abs=1e-6)
    assert table.loc["padded", "substance"] == pytest.approx(table.loc["padded", "gold_gain"], abs=1e-6)


def reference_solution(outcomes, length_diff):
    return style.length_controlled_win_rate(outcomes, length_diff)


def test_check_accepts_the_reference_and_diagnoses_mistakes():
    checks.check_length_controlled_win_rate(reference_solution)
    with pytest.raises(ExerciseError, match="raw win rate, the mean"):
        checks.check_length_controlled_win_rate(lambda y, d: float(y.mean()))
    with pytest.raises(ExerciseError, match="sign"):
        checks.check_length_controlled_win_rate(lambda y, d: 1 - reference_solution(y, d))
    with pytest.raises(ExerciseError, match="divide by 1"):
        checks.check_length_controlled_win_rate(
            lambda y, d: style.length_controlled_win_rate(y, d) if d.std() > 0 else float("nan"))
    with pytest.raises(ExerciseError, match="not implemented"):
        checks.check_length_controlled_win_rate(lambda y, d: (_ for _ in ()).throw(NotImplementedError))
