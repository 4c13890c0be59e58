"""Plan: estimate a stage's peak GPU memory per GPU, term by term, and pick settings that fit.

    rlhf-course plan --profile multi-gpu --stage dpo --gpus 8 --gpu-memory-gb 80

Each term is a small pure function of a model's shape and a stage's sizes, in
bytes, so that each can be checked by hand:

- **weights** of the trained model(s): parameters × bytes of the profile's dtype;
- **gradients**, **optimizer states** and **master weights** of what is
  trained: mixed-precision AdamW keeps 2 + 4 + 4 + 4 = 14 bytes per trained
  parameter beyond its 16-bit weight (16 in all: the accounting of the ZeRO
  paper, Rajbhandari et al. 2020, https://arxiv.org/abs/1910.02054); 8-bit
  Adam (Dettmers et al. 2022, https://arxiv.org/abs/2110.02861) keeps its two
  states in 1 byte each; with LoRA only the adapters (kept in fp32 by PEFT)
  have gradients and states;
- **activations** kept for the backward pass: per layer, batch × sequence ×
  hidden × 34 bytes at 16-bit (Korthikanti et al. 2022,
  https://arxiv.org/abs/2205.05198, with fused attention that stores no score
  matrix); with gradient checkpointing, one layer's worth plus each layer's
  16-bit input;
- **logits**: batch × sequence × vocabulary × (the 16-bit logits + their fp32
  log-softmax + its fp32 gradient), the term that dominates small models with
  large vocabularies;
- the **reference** and **reward** models: frozen, weights only;
- the **KV cache** of generation: 2 × layers × KV heads × head dim × sequence
  × batch × bytes.

Sharding divides what it shards by the number of GPUs N (the ZeRO paper's
stages): ZeRO-1 the optimizer states (and master weights), ZeRO-2 also the
gradients, ZeRO-3 and FSDP full-shard also the weights (frozen models
included); ZeRO-3 with CPU offload keeps weights, master weights and
optimizer states in host memory. The peak is the static terms plus the larger
of the training pass (activations and logits) and generation (the KV cache).
It is an estimate: allocator fragmentation, CUDA context (about 0.5 GiB) and
temporary buffers come on top, which is why a plan must fit with 10% to spare.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import math
from dataclasses import dataclass
from pathlib import Path

from rlhf_course.core.profiles import Profile, apply_overrides, get_profile

GIB = 2**30
DTYPE_BYTES = {"float32": 4, "float16": 2, "bfloat16": 2}
ACTIVATION_BYTES_16BIT = 34  # bytes per token per hidden unit per layer at 16-bit (Korthikanti et al. 2022)
ADAPTER_BYTES = 4  # PEFT keeps LoRA adapters in fp32 even on a 16-bit base model
REWARD_BATCH = 256  # rows rlhf_course.reward_modeling.reward_function scores at once
HEADROOM = 0.9  # a plan must fit in this fraction of the GPU's memory
SHARDINGS = ("none", "zero1", "zero2", "zero3", "fsdp", "zero3_offload")
OPTIMIZERS = ("adamw", "adamw_8bit")
STAGES = ("sft", "rm", "bon", "rs_ft", "reinforce", "rloo", "grpo", "ppo",
          "dpo", "ipo", "kto", "orpo", "simpo", "online_dpo")


@dataclass(frozen=True)
class ModelShape:
    """What memory depends on in a decoder-only transformer."""

    parameters: int
    hidden: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    intermediate: int
    vocab: int
    tied_embeddings: bool = True


@dataclass(frozen=True)
class Setup:
    """The settings a plan chooses."""

    lora: bool
    sharding: str = "none"
    gradient_checkpointing: bool = False
    micro_batch: int = 8
    optimizer: str = "adamw"


@dataclass(frozen=True)
class Workload:
    """What a stage holds in memory, in rows and tokens (a row is one sequence)."""

    stage: str
    trained_models: int  # 1, or 2 for PPO (policy and critic)
    reference: bool
    reward_model: bool
    train_rows_per_example: int  # 2 for pairs (chosen and rejected in one pass), else 1
    lm_logits: bool  # False for a reward model (one score per sequence)
    seq_len: int
    batch: int  # examples per optimizer step on one GPU (the profile's micro-batch)
    generation_rows: int = 0  # sequences generated at once (0: no generation)
    scoring_rows: int = 0  # sequences the frozen reward model scores in one batch
    checkpointing: bool = False  # what the course's trainer does on a GPU (TRL's default is on)
    trained_dtype: str | None = None  # dtype the trained model's weights are loaded in; None: the profile's
    reward_dtype: str = "float32"  # the course loads reward models in fp32 (rlhf_course.reward_modeling)


# ----------------------------------------------------------------------------- the terms (bytes)


def weight_bytes(parameters: int, dtype_bytes: int) -> int:
    """Weights of a model: parameters × bytes per parameter."""
    return parameters * dtype_bytes


def gradient_bytes(trained: int, dtype_bytes: int) -> int:
    """Gradients: one per trained parameter, in the dtype of what is trained."""
    return trained * dtype_bytes


def optimizer_bytes(trained: int, optimizer: str = "adamw") -> int:
    """Optimizer states: AdamW's two moments in fp32 (8 bytes a parameter); 8-bit Adam's in 1 byte each (2)."""
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"Unknown optimizer {optimizer!r}; choose one of {', '.join(OPTIMIZERS)}.")
    return trained * (8 if optimizer == "adamw" else 2)


def master_weight_bytes(trained: int, dtype_bytes: int) -> int:
    """fp32 master copy of weights trained in 16-bit mixed precision (4 bytes a parameter); none in fp32."""
    return trained * 4 if dtype_bytes < 4 else 0


def activation_bytes(rows: int, seq_len: int, hidden: int, layers: int, dtype_bytes: int,
                     checkpointing: bool = False) -> int:
    """Activations kept for the backward pass (Korthikanti et al. 2022: 34 bytes per token and hidden unit at 16-bit).

    With gradient checkpointing only each layer's input is kept (``dtype_bytes``
    per token and hidden unit) and one layer's activations are rebuilt at a time.
    """
    per_layer = rows * seq_len * hidden * ACTIVATION_BYTES_16BIT * dtype_bytes // 2
    if not checkpointing:
        return layers * per_layer
    return per_layer + layers * rows * seq_len * hidden * dtype_bytes


def lora_input_bytes(rows: int, seq_len: int, shape: ModelShape, checkpointing: bool = False) -> int:
    """fp32 copies of each adapted layer's input that PEFT's LoRA keeps for the adapters' gradients.

    Per token and layer: 4 bytes × (3 × hidden for q, k, v + heads × head dim for o
    + 2 × hidden for gate and up + intermediate for down); one layer's with checkpointing.
    """
    per_layer = rows * seq_len * 4 * (5 * shape.hidden + shape.heads * shape.head_dim + shape.intermediate)
    return per_layer if checkpointing else per_layer * shape.layers


def forward_pass_bytes(rows: int, seq_len: int, hidden: int, intermediate: int, dtype_bytes: int) -> int:
    """The widest moment of a no-grad forward pass (scoring with a frozen model): the MLP's gate and up
    projections and the residual stream with its normalised copy, rows × sequence × 2 × (intermediate + hidden)."""
    return rows * seq_len * 2 * (intermediate + hidden) * dtype_bytes


def logits_bytes(rows: int, seq_len: int, vocab: int, dtype_bytes: int) -> int:
    """Logits of a training pass: the logits in the compute dtype, their fp32 log-softmax and its fp32 gradient."""
    return rows * seq_len * vocab * (dtype_bytes + 8)


def kv_cache_bytes(layers: int, kv_heads: int, head_dim: int, seq_len: int, rows: int, dtype_bytes: int) -> int:
    """Generation's key-value cache: 2 (K and V) × layers × KV heads × head dim × sequence × rows × bytes."""
    return 2 * layers * kv_heads * head_dim * seq_len * rows * dtype_bytes


def lora_parameters(shape: ModelShape, rank: int) -> int:
    """Adapter parameters of LoRA rank ``rank`` on every linear layer of a Llama-style block (q, k, v, o, gate, up, down).

    An adapter on a ``d_in → d_out`` layer has ``rank × (d_in + d_out)`` parameters.
    """
    q_out, kv_out = shape.heads * shape.head_dim, shape.kv_heads * shape.head_dim
    per_layer = ((shape.hidden + q_out) + 2 * (shape.hidden + kv_out) + (q_out + shape.hidden)
                 + 2 * (shape.hidden + shape.intermediate) + (shape.intermediate + shape.hidden))
    return rank * per_layer * shape.layers


def reward_model_parameters(shape: ModelShape) -> int:
    """A reward model built from the policy: the same body, a one-output head instead of an untied LM head."""
    head = 0 if shape.tied_embeddings else shape.vocab * shape.hidden
    return shape.parameters - head + shape.hidden


def sharded(value: float, gpus: int, sharding: str, term: str) -> float:
    """What of ``term`` one GPU holds under ``sharding`` over ``gpus`` GPUs (ZeRO stages 1-3, FSDP, offload)."""
    if sharding not in SHARDINGS:
        raise ValueError(f"Unknown sharding {sharding!r}; choose one of {', '.join(SHARDINGS)}.")
    if sharding == "zero3_offload" and term in ("optimizer", "master", "weights", "frozen"):
        return 0.0  # waits in host memory; one layer at a time is fetched (counted in activations' slack)
    shards = {"none": (), "zero1": ("optimizer", "master"), "zero2": ("optimizer", "master", "gradients"),
              "zero3": ("optimizer", "master", "gradients", "weights", "frozen"),
              "fsdp": ("optimizer", "master", "gradients", "weights", "frozen"),
              "zero3_offload": ("gradients",)}[sharding]
    return value / gpus if term in shards else value


# ----------------------------------------------------------------------------- a stage's terms, a plan


def memory_terms(shape: ModelShape, work: Workload, setup: Setup, dtype: str, lora_rank: int,
                 gpus: int = 1) -> dict[str, float]:
    """Bytes per GPU of each term for ``work`` under ``setup``; see the module docstring. Adds ``total``."""
    size = DTYPE_BYTES[dtype]  # compute dtype: activations, logits, frozen policy copies, the KV cache
    stored = DTYPE_BYTES[work.trained_dtype or dtype]  # the trained model's weights as loaded
    reward_size = DTYPE_BYTES[work.reward_dtype]
    trained = work.trained_models * (lora_parameters(shape, lora_rank) if setup.lora else shape.parameters)
    trained_bytes = ADAPTER_BYTES if setup.lora else stored
    rows, seq, ckpt = setup.micro_batch * work.train_rows_per_example, work.seq_len, setup.gradient_checkpointing
    training = bool(work.trained_models)
    terms = {
        "weights": weight_bytes(shape.parameters * max(1, work.trained_models), stored)
        + (weight_bytes(trained, ADAPTER_BYTES) if setup.lora else 0),
        "gradients": gradient_bytes(trained, trained_bytes),
        "optimizer states": optimizer_bytes(trained, setup.optimizer),
        "master weights": 0 if setup.lora else master_weight_bytes(trained, stored),
        "activations": (activation_bytes(rows, seq, shape.hidden, shape.layers, size, ckpt)
                        + (lora_input_bytes(rows, seq, shape, ckpt) if setup.lora else 0)) if training else 0,
        "logits": logits_bytes(rows, seq, shape.vocab, size) if training and work.lm_logits else 0,
        "reference model": weight_bytes(shape.parameters, size) if work.reference else 0,
        "reward model": weight_bytes(reward_model_parameters(shape), reward_size) if work.reward_model else 0,
        "KV cache": kv_cache_bytes(shape.layers, shape.kv_heads, shape.head_dim, seq, work.generation_rows, size),
        "reward scoring": forward_pass_bytes(work.scoring_rows, seq, shape.hidden, shape.intermediate, reward_size),
    }
    if not training:  # generation only: the policy's weights in the compute dtype, nothing trained
        terms["weights"] = weight_bytes(shape.parameters, size)
        terms["gradients"] = terms["optimizer states"] = terms["master weights"] = 0
    kinds = {"weights": "weights", "gradients": "gradients", "optimizer states": "optimizer",
             "master weights": "master", "reference model": "frozen", "reward model": "frozen"}
    per_gpu = {name: sharded(value, gpus, setup.sharding, kinds.get(name, "")) for name, value in terms.items()}
    per_gpu["total"] = peak(per_gpu)
    return per_gpu


PHASES = {"training pass": ("activations", "logits"), "generation": ("KV cache",), "scoring": ("reward scoring",)}


def peak(per_gpu: dict[str, float]) -> float:
    """What is always held plus the largest of the phases that take turns (training pass, generation, scoring)."""
    moving = {name for names in PHASES.values() for name in names}
    static = sum(v for k, v in per_gpu.items() if k not in moving and k != "total")
    return static + max(sum(per_gpu[name] for name in names) for names in PHASES.values())


def workload(profile: Profile, stage: str, seq_len: int | None = None) -> Workload:
    """What ``stage`` of ``profile`` holds: which models, how many rows, how long; ``seq_len`` overrides the length.

    The length defaults to the profile's longest sequence (prompt cap + new tokens).
    The RL stages train in passes of ``rl.micro_batch_size`` rows (all rows when
    it is 0); for GRPO that stands in for TRL's own chunking of its batch, which
    is not modelled term by term (the estimate matched the measured colab-t4
    GRPO peak within 10%).
    """
    if stage not in STAGES:
        raise ValueError(f"Unknown stage {stage!r}; choose one of {', '.join(STAGES)}.")
    seq = seq_len or profile.max_prompt_tokens + profile.max_new_tokens
    rl_rows = profile.rl.prompts_per_step * profile.rl.k
    rl_micro = profile.rl.micro_batch_size or rl_rows
    score = lambda candidates: min(REWARD_BATCH, candidates)  # noqa: E731 - reward_function scores 256 at a time
    # TRL's trainers (SFT, reward, DPO family, GRPO) checkpoint gradients on a GPU; the course's own loops do not
    pairs = dict(trained_models=1, train_rows_per_example=2, lm_logits=True, seq_len=seq,
                 batch=profile.dpo.batch_size, checkpointing=True)
    table = {
        "sft": Workload(stage, 1, False, False, 1, True, seq, profile.sft.batch_size, checkpointing=True),
        "rm": Workload(stage, 1, False, False, 2, False, seq, profile.rm.batch_size, checkpointing=True,
                       trained_dtype="float32"),
        "bon": Workload(stage, 0, False, True, 1, True, seq, 0,
                        generation_rows=max(profile.eval_batch_size, profile.rl.best_of_n),
                        scoring_rows=score(profile.n_eval_prompts * profile.rl.best_of_n)),
        "rs_ft": Workload(stage, 1, False, True, 1, True, seq, profile.sft.batch_size, checkpointing=True,
                          generation_rows=max(profile.eval_batch_size, profile.rs.n),
                          scoring_rows=score(profile.rs.n_prompts * profile.rs.n)),
        "ppo": Workload(stage, 2, True, True, 1, True, seq, max(1, rl_rows // profile.ppo.minibatches),
                        generation_rows=rl_rows, scoring_rows=score(rl_rows)),
        "dpo": Workload(stage, reference=True, reward_model=False, **pairs),
        "ipo": Workload(stage, reference=True, reward_model=False, **pairs),
        "kto": Workload(stage, reference=True, reward_model=False, **pairs),
        "orpo": Workload(stage, reference=False, reward_model=False, **pairs),
        "simpo": Workload(stage, reference=False, reward_model=False, **pairs),
        "online_dpo": Workload(stage, reference=True, reward_model=True, **pairs,
                               generation_rows=profile.eval_batch_size,
                               scoring_rows=score(profile.dpo.online_prompts * profile.dpo.online_k)),
    }
    for name in ("reinforce", "rloo", "grpo"):
        table[name] = Workload(name, 1, True, True, 1, True, seq, rl_micro, generation_rows=rl_rows,
                               scoring_rows=score(rl_rows), checkpointing=name == "grpo")
    return table[stage]


def candidate_setups(profile: Profile, work: Workload, gpus: int) -> list[tuple[tuple, Setup]]:
    """Every setting a plan may pick, each with its cost key (smaller is cheaper: faster, or closer to the profile).

    Each change has a price, and the cheapest total wins: halving the
    micro-batch (more accumulation steps) 1 each time, ZeRO-2 1, ZeRO-3 or FSDP
    2 (more communication), gradient checkpointing 2 (a third more compute),
    8-bit Adam 3 (other numerics); CPU offload (much slower) only when none of
    these fits, and LoRA in place of the full fine-tuning the profile asks for
    only when nothing else does.
    """
    batches = sorted({work.batch} | {max(1, work.batch // 2**i) for i in range(1, 8)}, reverse=True) or [1]
    shardings = ["none", "zero3_offload"] if gpus == 1 else ["none", "zero2", "zero3", "fsdp", "zero3_offload"]
    shard_cost = {"none": 0, "zero2": 1, "zero3": 2, "fsdp": 2, "zero3_offload": 5}
    out = []
    checkpointing = (True,) if work.checkpointing else (False, True)  # TRL's stages always checkpoint on a GPU
    for lora, sharding, ckpt, opt, mb in itertools.product((profile.lora, True), shardings, checkpointing,
                                                           OPTIMIZERS, batches):
        if not work.trained_models and (opt != "adamw" or sharding != "none" or lora != profile.lora):
            continue
        halvings = round(math.log2(work.batch / mb)) if work.batch else 0
        turned_on = ckpt and not work.checkpointing
        cost = (lora != profile.lora, sharding == "zero3_offload",
                shard_cost[sharding] + turned_on * 2 + (opt != "adamw") * 3 + halvings, halvings)
        out.append((cost, Setup(lora, sharding, ckpt, mb or 1, opt)))
    return sorted(out, key=lambda item: item[0])


def recommend(shape: ModelShape, profile: Profile, work: Workload, gpus: int,
              gpu_memory_gb: float) -> tuple[Setup, dict[str, float]] | None:
    """The cheapest setup (see :func:`candidate_setups`) whose total fits ``HEADROOM`` of the GPU; None if none fits."""
    budget = gpu_memory_gb * GIB * HEADROOM
    for _, setup in candidate_setups(profile, work, gpus):
        terms = memory_terms(shape, work, setup, profile.dtype, profile.lora_rank, gpus)
        if terms["total"] <= budget:
            return setup, terms
    return None


# ----------------------------------------------------------------------------- model shapes without a download


# Written down from each model's config.json, so that a plan needs no network.
KNOWN_SHAPES = {
    "Qwen/Qwen2.5-0.5B-Instruct": dict(model_type="qwen2", hidden_size=896, intermediate_size=4864,
                                       num_hidden_layers=24, num_attention_heads=14, num_key_value_heads=2,
                                       vocab_size=151936, tie_word_embeddings=True),
    "HuggingFaceTB/SmolLM2-135M-Instruct": dict(model_type="llama", hidden_size=576, intermediate_size=1536,
                                                num_hidden_layers=30, num_attention_heads=9, num_key_value_heads=3,
                                                vocab_size=49152, tie_word_embeddings=True),
    "meta-llama/Llama-3.2-1B-Instruct": dict(model_type="llama", hidden_size=2048, intermediate_size=8192,
                                             num_hidden_layers=16, num_attention_heads=32, num_key_value_heads=8,
                                             vocab_size=128256, tie_word_embeddings=True, head_dim=64),
    "meta-llama/Llama-3.1-8B-Instruct": dict(model_type="llama", hidden_size=4096, intermediate_size=14336,
                                             num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=8,
                                             vocab_size=128256, tie_word_embeddings=False),
}


def model_config(model: str):
    """A transformers config for ``model``: ``tiny``, a local folder, the offline hub cache, or :data:`KNOWN_SHAPES`."""
    from transformers import AutoConfig, LlamaConfig

    if model == "tiny":
        from rlhf_course.core.models import TinySpec

        spec = TinySpec()
        return LlamaConfig(vocab_size=spec.vocab_size, hidden_size=spec.hidden_size,
                           intermediate_size=spec.intermediate_size, num_hidden_layers=spec.num_layers,
                           num_attention_heads=spec.num_heads, num_key_value_heads=spec.num_heads,
                           tie_word_embeddings=True)
    if Path(model).is_dir():
        return AutoConfig.from_pretrained(model, trust_remote_code=False)
    try:
        return AutoConfig.from_pretrained(model, local_files_only=True, trust_remote_code=False)
    except (OSError, ValueError):
        if model not in KNOWN_SHAPES:
            raise ValueError(f"No configuration for {model!r} offline: it is not a local folder, not in the "
                             "Hugging Face cache and not one of the course's models. Pass --model with a folder "
                             "that holds its config.json.") from None
        fields = dict(KNOWN_SHAPES[model])
        return AutoConfig.for_model(fields.pop("model_type"), **fields)


def shape_of(config) -> ModelShape:
    """The shape of a config; parameters are counted on PyTorch's meta device (no memory, no weights)."""
    import torch
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    heads = config.num_attention_heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
    return ModelShape(parameters=sum(p.numel() for p in model.parameters()), hidden=config.hidden_size,
                      layers=config.num_hidden_layers, heads=heads,
                      kv_heads=getattr(config, "num_key_value_heads", None) or heads, head_dim=head_dim,
                      intermediate=config.intermediate_size, vocab=config.vocab_size,
                      tied_embeddings=bool(getattr(config, "tie_word_embeddings", False)))


# ----------------------------------------------------------------------------- the command


SECTIONS = {"sft": "sft", "rs_ft": "sft", "rm": "rm", "dpo": "dpo", "ipo": "dpo", "kto": "dpo", "orpo": "dpo",
            "simpo": "dpo", "online_dpo": "dpo"}


def how_to_apply(setup: Setup, work: Workload, profile: Profile, gpus: int) -> str:
    """The ``--set`` overrides and the launch config that give ``setup`` (what the course cannot set, said so)."""
    sets = [] if setup.lora == profile.lora else [f"lora={str(setup.lora).lower()}"]
    section = SECTIONS.get(work.stage)
    if work.batch and setup.micro_batch != work.batch:
        if section:
            accum = getattr(profile, section).grad_accum * work.batch // setup.micro_batch
            sets += [f"{section}.batch_size={setup.micro_batch}", f"{section}.grad_accum={accum}"]
        elif work.stage != "ppo":
            sets.append(f"rl.micro_batch_size={setup.micro_batch}")
        else:
            sets.append(f"ppo.minibatches={profile.ppo.minibatches * work.batch // setup.micro_batch}")
    config = "ddp" if setup.sharding == "none" else setup.sharding
    parts = [" ".join(f"--set {item}" for item in sets) or "no --set overrides"]
    if gpus > 1 or setup.sharding != "none":
        parts.append(f"accelerate launch --config_file configs/accelerate/{config}.yaml --num_processes {gpus}")
    if setup.gradient_checkpointing and not work.checkpointing:
        parts.append("gradient checkpointing on: model.gradient_checkpointing_enable() before the stage "
                     "(the course's own loops leave it off)")
    if setup.optimizer == "adamw_8bit":
        parts.append("8-bit Adam: TrainingArguments optim='adamw_bnb_8bit' (pip install bitsandbytes)")
    return "; ".join(parts)


def setup_text(setup: Setup, work: Workload) -> str:
    if not work.trained_models:
        return "nothing trained: sampling and reward scoring only"
    accumulate = max(1, work.batch // setup.micro_batch) if work.batch else 1
    sharding = {"none": "no sharding", "zero1": "ZeRO-1",
                "zero2": "ZeRO-2 (configs/accelerate/zero2.yaml)", "zero3": "ZeRO-3 (configs/accelerate/zero3.yaml)",
                "fsdp": "FSDP2 full-shard (configs/accelerate/fsdp2.yaml)",
                "zero3_offload": "ZeRO-3 with CPU offload (configs/accelerate/zero3_offload.yaml)"}[setup.sharding]
    return (f"{'LoRA' if setup.lora else 'full fine-tuning'}, {sharding}, gradient checkpointing "
            f"{'on' if setup.gradient_checkpointing else 'off'}, micro-batch {setup.micro_batch}"
            f"{f' x {accumulate} accumulation steps' if accumulate > 1 else ''}, "
            f"{'8-bit Adam (bitsandbytes)' if setup.optimizer == 'adamw_8bit' else 'AdamW'}")


def report(profile: Profile, stage: str, shape: ModelShape, gpus: int, gpu_memory_gb: float,
           seq_len: int | None = None) -> str:
    """The table of terms for the profile's own settings, then the recommendation, as text."""
    work = workload(profile, stage, seq_len)
    current = Setup(profile.lora, "none", work.checkpointing, work.batch or 1, "adamw")
    terms = memory_terms(shape, work, current, profile.dtype, profile.lora_rank, gpus)
    lines = [f"Memory plan: profile {profile.name}, stage {stage}, {profile.model} "
             f"({shape.parameters / 1e9:.3f}B parameters), {profile.dtype}, {gpus} GPU(s) of {gpu_memory_gb:g} GiB",
             f"sequence length {work.seq_len}, "
             + (f"micro-batch {work.batch} ({work.batch * work.train_rows_per_example} rows a pass), "
                if work.trained_models else "no training pass, ")
             + f"generation rows {work.generation_rows}, reward-scoring rows {work.scoring_rows}",
             "", f"As the profile asks ({setup_text(current, work)}):", "",
             "| term | GiB per GPU |", "|---|---|"]
    lines += [f"| {name} | {value / GIB:.2f} |" for name, value in terms.items()]
    fit = recommend(shape, profile, work, gpus, gpu_memory_gb)
    lines.append("")
    if fit is None:
        lines.append(f"Nothing fits {HEADROOM:.0%} of {gpu_memory_gb:g} GiB: use more GPUs, shorter sequences "
                     "(--set max_prompt_tokens=...), or a smaller model.")
    else:
        setup, fitted = fit
        lines.append(f"Recommended (cheapest that fits {HEADROOM:.0%} of {gpu_memory_gb:g} GiB): "
                     f"{setup_text(setup, work)}: {fitted['total'] / GIB:.2f} GiB per GPU.")
        lines.append(f"How: {how_to_apply(setup, work, profile, gpus)}.")
    lines.append("Precision: a T4 (Turing) has no bf16; train in fp16 there (the colab-t4 profile does). "
                 "Ampere and newer (A100, H100, L4): bf16.")
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--profile", default="multi-gpu")
    parser.add_argument("--stage", required=True, choices=STAGES)
    parser.add_argument("--gpus", type=int, default=1, help="GPUs the stage is launched on (default: 1)")
    parser.add_argument("--gpu-memory-gb", type=float, default=80.0, help="memory of one GPU in GiB (default: 80)")
    parser.add_argument("--seq-len", type=int, default=None, help="tokens per sequence (default: prompt cap + new tokens)")
    parser.add_argument("--model", default=None, help="a local model folder to plan for instead of the profile's model")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="profile overrides")


def run_from_args(args: argparse.Namespace) -> int:
    import sys

    try:
        if args.gpus < 1 or args.gpu_memory_gb <= 0:
            raise ValueError(f"--gpus must be at least 1 and --gpu-memory-gb positive (got {args.gpus} and "
                             f"{args.gpu_memory_gb:g}).")
        profile = apply_overrides(get_profile(args.profile), args.set)
        if args.model:
            profile = dataclasses.replace(profile, model=args.model)
        shape = shape_of(model_config(profile.model))
    except ValueError as err:
        print(f"rlhf-course plan: {err}", file=sys.stderr)
        return 2
    print(report(profile, args.stage, shape, args.gpus, args.gpu_memory_gb, args.seq_len))
    return 0
