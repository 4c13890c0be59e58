"""rlhf-course plan: each memory term against numbers worked out by hand, sharding by the ZeRO paper's rules,
the recommendation, the command's output, and the estimate against the README's measured GPU footprint."""

from __future__ import annotations

import pytest

from rlhf_course.core.profiles import get_profile
from rlhf_course.tools import plan
from rlhf_course.tools.cli import main
from rlhf_course.tools.plan import GIB, ModelShape, Setup

BILLION = 10**9


def test_full_fine_tuning_in_mixed_precision_costs_16_bytes_a_parameter():
    """ZeRO paper, section 3.1: 2 (fp16 weights) + 2 (fp16 gradients) + 4 (fp32 master) + 4 + 4 (Adam) bytes."""
    n = BILLION
    total = (plan.weight_bytes(n, 2) + plan.gradient_bytes(n, 2) + plan.master_weight_bytes(n, 2)
             + plan.optimizer_bytes(n, "adamw"))
    assert total == 16 * n
    assert total / GIB == pytest.approx(14.90, abs=0.01)
    sharded = sum(plan.sharded(value, 8, "zero3", term) for value, term in (
        (plan.weight_bytes(n, 2), "weights"), (plan.gradient_bytes(n, 2), "gradients"),
        (plan.master_weight_bytes(n, 2), "master"), (plan.optimizer_bytes(n), "optimizer")))
    assert sharded == pytest.approx(16 * n / 8)  # ZeRO-3 over 8 GPUs: an eighth of everything


def test_each_zero_stage_shards_what_the_paper_says():
    n, gpus = BILLION, 4
    terms = {"weights": 2 * n, "gradients": 2 * n, "master": 4 * n, "optimizer": 8 * n}

    def per_gpu(stage):
        return sum(plan.sharded(v, gpus, stage, t) for t, v in terms.items()) / n

    assert per_gpu("none") == 16
    assert per_gpu("zero1") == pytest.approx(2 + 2 + 12 / 4)  # optimizer states (with master weights)
    assert per_gpu("zero2") == pytest.approx(2 + 14 / 4)  # and gradients
    assert per_gpu("zero3") == per_gpu("fsdp") == pytest.approx(16 / 4)  # and weights
    assert per_gpu("zero3_offload") == pytest.approx(2 / 4)  # only the gradients stay on the GPU
    with pytest.raises(ValueError, match="Unknown sharding 'zero4'"):
        plan.sharded(1.0, 2, "zero4", "weights")


def test_fp32_training_has_no_master_copy_and_8bit_adam_keeps_two_bytes():
    assert plan.master_weight_bytes(1000, 4) == 0 and plan.master_weight_bytes(1000, 2) == 4000
    assert plan.optimizer_bytes(1000, "adamw_8bit") == 2000 and plan.optimizer_bytes(1000, "adamw") == 8000
    with pytest.raises(ValueError, match="Unknown optimizer 'sgd'"):
        plan.optimizer_bytes(1, "sgd")


def test_activations_with_and_without_checkpointing():
    # 2 rows x 512 tokens x 2048 hidden x 34 bytes x 16 layers at 16-bit
    assert plan.activation_bytes(2, 512, 2048, 16, 2) == 2 * 512 * 2048 * 34 * 16 == 1_140_850_688
    # checkpointing: one layer's 34 bytes plus every layer's 2-byte input
    assert plan.activation_bytes(2, 512, 2048, 16, 2, checkpointing=True) == 2 * 512 * 2048 * (34 + 2 * 16)
    assert plan.activation_bytes(1, 1, 1, 1, 4) == 68  # fp32 doubles the 16-bit bytes


def test_logits_kv_cache_and_scoring_terms():
    assert plan.logits_bytes(4, 100, 1000, 2) == 4 * 100 * 1000 * (2 + 8)
    # Llama-3.2-1B: 16 layers, 8 KV heads of 64; 1024 tokens, 32 sequences, bf16: 2*16*8*64*1024*32*2 = 1 GiB
    assert plan.kv_cache_bytes(16, 8, 64, 1024, 32, 2) == GIB
    assert plan.forward_pass_bytes(2, 10, 8, 32, 4) == 2 * 10 * 2 * (32 + 8) * 4


LLAMA_1B = ModelShape(parameters=1_235_814_400, hidden=2048, layers=16, heads=32, kv_heads=8, head_dim=64,
                      intermediate=8192, vocab=128256, tied_embeddings=True)


def test_lora_parameters_by_hand():
    # Llama-3.2-1B, rank 16: q 2048->2048, k and v 2048->512, o 2048->2048, gate and up 2048->8192, down 8192->2048
    per_layer = 16 * ((2048 + 2048) + 2 * (2048 + 512) + (2048 + 2048) + 2 * (2048 + 8192) + (8192 + 2048))
    assert per_layer == 704_512
    assert plan.lora_parameters(LLAMA_1B, 16) == 16 * per_layer == 11_272_192


def test_shapes_come_from_configs_without_the_network():
    shape = plan.shape_of(plan.model_config("meta-llama/Llama-3.2-1B-Instruct"))
    assert shape == LLAMA_1B  # 1.24B parameters, as Meta's model card says
    big = plan.shape_of(plan.model_config("meta-llama/Llama-3.1-8B-Instruct"))
    assert 8.02e9 < big.parameters < 8.04e9 and not big.tied_embeddings  # "8B": 8.03B with its own LM head
    tiny = plan.shape_of(plan.model_config("tiny"))
    assert (tiny.hidden, tiny.layers, tiny.vocab) == (128, 4, 1024) and 0.5e6 < tiny.parameters < 2e6
    with pytest.raises(ValueError, match="Pass --model with a folder"):
        plan.model_config("no-such-org/no-such-model")


def test_lora_dpo_on_one_gpu_holds_two_frozen_copies_and_tiny_optimizer_states():
    profile = get_profile("multi-gpu").replace(lora=True)
    work = plan.workload(profile, "dpo")
    terms = plan.memory_terms(LLAMA_1B, work, Setup(lora=True, micro_batch=4, gradient_checkpointing=True),
                              "bfloat16", 16)
    adapters = plan.lora_parameters(LLAMA_1B, 16)
    assert terms["weights"] == 2 * LLAMA_1B.parameters + 4 * adapters
    assert terms["reference model"] == 2 * LLAMA_1B.parameters
    assert terms["optimizer states"] == 8 * adapters and terms["master weights"] == 0
    assert terms["reward model"] == 0 and terms["KV cache"] == 0
    # no generation, no scoring: the peak is everything held plus the training pass
    static = terms["weights"] + terms["gradients"] + terms["optimizer states"] + terms["reference model"]
    assert terms["total"] == static + terms["activations"] + terms["logits"]
    # 8 rows (4 pairs) of 768 tokens, checkpointed: one layer's 34 bytes + 16 layers' 2-byte inputs per hidden unit,
    # and one layer's fp32 LoRA inputs (5 x 2048 + 2048 + 8192 values a token)
    assert terms["activations"] == 8 * 768 * 2048 * (34 + 2 * 16) + 8 * 768 * 4 * (5 * 2048 + 2048 + 8192)


def test_recommendation_shards_a_full_fine_tune_only_as_far_as_needed():
    profile = get_profile("multi-gpu")
    work = plan.workload(profile, "sft")
    roomy, _ = plan.recommend(LLAMA_1B, profile, work, gpus=8, gpu_memory_gb=80)
    assert roomy == Setup(lora=False, sharding="none", gradient_checkpointing=True, micro_batch=8)
    tight, terms = plan.recommend(LLAMA_1B, profile, work, gpus=8, gpu_memory_gb=12)
    assert tight.sharding in ("zero2", "zero3", "fsdp") and not tight.lora
    assert terms["total"] <= 12 * GIB * plan.HEADROOM
    # the same 12 GiB without sharding: nothing but LoRA or offload fits one GPU
    alone, _ = plan.recommend(LLAMA_1B, profile, work, gpus=1, gpu_memory_gb=12)
    assert alone.lora or alone.sharding == "zero3_offload"
    assert plan.recommend(LLAMA_1B, profile, work, gpus=1, gpu_memory_gb=0.5) is None


def test_plan_command_prints_every_term_and_a_recommendation(capsys):
    assert main(["plan", "--profile", "multi-gpu", "--stage", "dpo", "--gpus", "8", "--gpu-memory-gb", "16"]) == 0
    out = capsys.readouterr().out
    for term in ("weights", "gradients", "optimizer states", "master weights", "activations", "logits",
                 "reference model", "reward model", "KV cache", "total"):
        assert f"| {term} |" in out, term
    assert "meta-llama/Llama-3.2-1B-Instruct (1.236B parameters)" in out
    assert "| master weights | 4.60 |" in out  # 1.236e9 x 4 bytes / 2^30
    assert "Recommended (cheapest that fits 90% of 16 GiB): full fine-tuning, ZeRO-" in out
    assert "accelerate launch --config_file configs/accelerate/zero" in out
    assert "T4 (Turing) has no bf16; train in fp16" in out
    with pytest.raises(SystemExit):
        main(["plan", "--profile", "multi-gpu", "--stage", "sft_everything"])
    assert main(["plan", "--stage", "sft", "--gpus", "0"]) == 2
    assert "--gpus must be at least 1" in capsys.readouterr().err
    assert main(["plan", "--stage", "sft", "--set", "sft.batch=4"]) == 2
    assert "unknown field 'batch'" in capsys.readouterr().err


# The README's footprint of colab-t4 (`rlhf-course footprint`, an H100 capped at 15 GB, a random-weight model of
# Qwen2.5-0.5B's shape, fp16, LoRA rank 16, the toy world's prompts): peak GiB per stage. The README does not record
# the sequence lengths; these are the toy world's as SmolLM2's tokenizer (the offline one) writes them with its chat
# template: SFT batches pad to about 55 tokens; RL prompts are about 37 tokens and a random model never stops before
# its 64 new tokens (101 in all); the "64-token prompts" rows are 64 + about 30 of template + 64 new tokens.
MEASURED = [("sft", 55, 1.5), ("rm", 55, 2.2), ("bon", 101, 3.0), ("rloo", 101, 6.1), ("rloo", 158, 8.4),
            ("grpo", 101, 4.7), ("grpo", 158, 5.6)]


@pytest.mark.parametrize("stage,seq_len,measured_gib", MEASURED)
def test_estimate_is_within_30_percent_of_the_measured_footprint(stage, seq_len, measured_gib):
    profile = get_profile("colab-t4")
    shape = plan.shape_of(plan.model_config(profile.model))
    work = plan.workload(profile, stage, seq_len)
    setup = Setup(lora=True, gradient_checkpointing=work.checkpointing, micro_batch=work.batch or 1)
    estimate = plan.memory_terms(shape, work, setup, profile.dtype, profile.lora_rank)["total"] / GIB
    assert abs(estimate / measured_gib - 1) <= 0.30, (stage, seq_len, estimate, measured_gib)


def test_documented_plan_commands_run(capsys):
    """Every `rlhf-course plan ...` line of configs/accelerate/README.md (and of the README's scaling section) runs."""
    import shlex
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    texts = [(root / "configs" / "accelerate" / "README.md").read_text()]
    readme = (root / "README.md").read_text()
    if "## Scaling a stage up" in readme:
        texts.append(readme.split("## Scaling a stage up", 1)[1].split("\n## ", 1)[0])
    lines = [line.strip() for text in texts for line in text.splitlines() if line.strip().startswith("rlhf-course plan")]
    assert lines, "configs/accelerate/README.md should show how to run rlhf-course plan"
    for line in lines:
        assert main(shlex.split(line)[1:]) == 0, line
        assert "Recommended" in capsys.readouterr().out, line
