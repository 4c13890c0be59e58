"""Reward modelling: the from-scratch loss equals TRL's, and the model learns the truth."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rlhf_course import checks, models
from rlhf_course import reward_model as rm
from rlhf_course.profiles import apply_overrides, get_profile


@pytest.fixture(scope="module")
def tiny_rm(tmp_path_factory):
    """A reward model initialised from the tiny base model (untrained head)."""
    path = tmp_path_factory.mktemp("base")
    model, tokenizer = models.load_model("tiny", progress=False)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return rm.reward_model_from(path, get_profile("tiny")), tokenizer


def test_bradley_terry_loss_values():
    zeros = torch.zeros(3)
    assert rm.bradley_terry_loss(zeros, zeros).item() == pytest.approx(np.log(2))
    assert rm.bradley_terry_loss(torch.tensor([100.0]), torch.tensor([-100.0])).item() == pytest.approx(0, abs=1e-6)
    assert torch.isfinite(rm.bradley_terry_loss(torch.tensor([-100.0]), torch.tensor([100.0])))
    # the margin moves the point where the loss is log 2
    assert rm.bradley_terry_loss(torch.ones(2), zeros[:2], margin=1.0).item() == pytest.approx(np.log(2))


def test_from_scratch_loss_equals_trl_reward_trainer_loss(tiny_rm):
    model, tokenizer = tiny_rm
    rows = rm.toy_preferences(get_profile("tiny"), "train", n=8, seed=3)
    trl_loss, chosen, rejected = rm.trl_loss_on_batch(model, tokenizer, rows, get_profile("tiny"))
    ours = rm.bradley_terry_loss(chosen, rejected)
    assert abs(ours.item() - trl_loss.item()) < 1e-6


def test_scoring_matches_what_trl_scores(tiny_rm):
    """`score` formats prompt + response + EOS exactly as RewardTrainer does."""
    model, tokenizer = tiny_rm
    rows = rm.toy_preferences(get_profile("tiny"), "train", n=6, seed=4)
    _, chosen, _ = rm.trl_loss_on_batch(model, tokenizer, rows, get_profile("tiny"))
    ours = rm.score(model, tokenizer, [r["prompt"] for r in rows], [r["chosen"] for r in rows])
    torch.testing.assert_close(ours, chosen.float().cpu(), atol=1e-5, rtol=1e-5)


def test_check_compares_the_learner_loss_with_trl(tiny_rm):
    model, tokenizer = tiny_rm
    batch = rm.trl_loss_on_batch(model, tokenizer, rm.toy_preferences(get_profile("tiny"), "train", n=8),
                                 get_profile("tiny"))
    checks.check_bradley_terry_loss(rm.bradley_terry_loss, trl_batch=batch)
    with pytest.raises(checks.ExerciseError):
        checks.check_bradley_terry_loss(lambda c, r: torch.nn.functional.logsigmoid(c - r).mean(), trl_batch=batch)


def test_calibration_curve_bins_cover_every_decided_pair():
    report = rm.RewardModelReport(0, 0, 0, 0, 0, chosen_rewards=np.array([2.0, 0.0, -1.0, 0.5]),
                                  rejected_rewards=np.zeros(4), gold_margins=np.array([1.0, 0.0, -1.0, 2.0]))
    curve = rm.calibration_curve(report, bins=4)
    assert sum(b["pairs"] for b in curve) == 3
    assert all(0 <= b["predicted"] <= 1 and 0 <= b["observed"] <= 1 for b in curve)


@pytest.mark.slow
def test_pipeline_rm_stage_trains_and_reports(tmp_path):
    """The rm stage runs end to end and learns something (its accuracy target is
    tracked in the Reward Modeling issue: at least 0.75 against gold on tiny)."""
    from rlhf_course.pipeline import run_pipeline

    profile = apply_overrides(get_profile("tiny"), ["rm.n_pairs=1500", "rm.epochs=1", "sft.epochs=2"])
    results = run_pipeline(profile, tmp_path, stages="sft,rm", seed=0, progress=False)
    entry = results["stages"]["rm"]
    assert entry["rm_accuracy_gold"] > 0.55, entry
    assert {"rm_accuracy_labels", "rm_length_corr", "seconds"} <= set(entry)
    assert (tmp_path / "rm" / "final" / "model.safetensors").exists()
    assert "| rm |" in (tmp_path / "results.md").read_text()


def test_profiles_carry_reward_model_sizes():
    profile = apply_overrides(get_profile("tiny"), ["rm.n_pairs=10"])
    assert profile.rm.n_pairs == 10 and get_profile("smol").rm.n_pairs < get_profile("tiny").rm.n_pairs
