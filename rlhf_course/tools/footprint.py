"""Footprint: wall time and peak GPU memory of each lab stage, under a memory cap.

A lab must fit the GPU it is written for (``colab-t4``: one T4, 15 GB, fp16).
This module runs the real stage functions the labs call (SFT, reward model,
best-of-n, RLOO from scratch, GRPO with TRL) with the profile's batch shapes
but only a few optimizer steps each, on a GPU whose allocator is capped at the
target card's memory, and returns one row per stage:

    rlhf-course footprint --profile colab-t4 --memory-cap-gb 15

Each row says how many steps ran, how long they took, an extrapolation to the
full stage (``overhead + seconds_per_step × full_steps``), the peak memory
PyTorch allocated (and reserved), and whether the stage finished. A stage that
fails is recorded with its error; the others still run.

The extrapolation assumes the cost of a step does not change over a run. The
first step carries one-off costs (kernel selection, allocator growth), so the
full-stage figures err on the long side.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import math
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from rlhf_course.core.profiles import Profile, apply_overrides, get_profile

GIB = 2**30

# Qwen2.5-0.5B-Instruct's architecture (its config.json), so that a model with
# random weights and the same shapes can stand in for it where the hub is out of reach.
QWEN25_05B_SHAPE = dict(
    hidden_size=896, intermediate_size=4864, num_hidden_layers=24, num_attention_heads=14,
    num_key_value_heads=2, vocab_size=151936, max_position_embeddings=32768, rope_theta=1_000_000.0,
    tie_word_embeddings=True, rms_norm_eps=1e-6, hidden_act="silu",
)


@dataclass
class StageRow:
    """One measured stage."""

    stage: str
    steps: int = 0                 # optimizer steps (or generation batches) measured
    full_steps: int = 0            # steps of the full stage the profile describes
    seconds: float = 0.0           # wall time of the measured run, loading included
    full_seconds: float | None = None  # extrapolated wall time of the full stage
    peak_gb: float | None = None   # torch.cuda.max_memory_allocated, GiB
    reserved_gb: float | None = None  # torch.cuda.max_memory_reserved, GiB (what the card must hold)
    ok: bool = False
    error: str | None = None
    notes: dict = field(default_factory=dict)


@dataclass
class Measured:
    """What a stage function reports back: steps run, steps of the full stage, seconds spent in steps."""

    steps: int
    full_steps: int
    step_seconds: float
    notes: dict = field(default_factory=dict)


def cap_memory(cap_gb: float | None) -> None:
    """Let PyTorch's allocator use at most ``cap_gb`` GiB of GPU 0 (call before anything allocates)."""
    if cap_gb is None or not torch.cuda.is_available():
        return
    total = torch.cuda.get_device_properties(0).total_memory
    torch.cuda.set_per_process_memory_fraction(min(1.0, cap_gb * GIB / total), 0)


def _free() -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def measure(name: str, stage: Callable[[], Measured]) -> StageRow:
    """Run ``stage`` once; record its wall time, peak GPU memory and outcome (exceptions are caught)."""
    row = StageRow(name)
    _free()
    on_gpu = torch.cuda.is_available()
    if on_gpu:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    try:
        result = stage()
        if on_gpu:
            torch.cuda.synchronize()
        row.seconds = time.perf_counter() - start
        row.steps, row.full_steps, row.notes = result.steps, result.full_steps, result.notes
        if result.steps:
            overhead = max(0.0, row.seconds - result.step_seconds)
            row.full_seconds = overhead + result.step_seconds / result.steps * result.full_steps
        row.ok = True
    except Exception as err:  # noqa: BLE001 - one failing stage must not hide the others
        row.seconds = time.perf_counter() - start
        row.error = f"{type(err).__name__}: {str(err).strip().splitlines()[0] if str(err).strip() else ''}"[:400]
        row.notes["traceback"] = traceback.format_exc(limit=-6)[-3000:]
    if on_gpu:
        row.peak_gb = torch.cuda.max_memory_allocated() / GIB
        row.reserved_gb = torch.cuda.max_memory_reserved() / GIB
    _free()
    return row


def _finite(values: list) -> bool:
    return all(v is not None and math.isfinite(v) for v in values)


def _trainer_seconds(log_history: list[dict]) -> float:
    return next((e["train_runtime"] for e in reversed(log_history) if "train_runtime" in e), 0.0)


def long_rows(rows: list[dict], tokenizer, prompt_tokens: int, completion_tokens: int, keys=("completion",)) -> list[dict]:
    """Rows whose prompt and responses are stretched to about the profile's caps (worst-case sequence length).

    Toy-world prompts are a few words; hub datasets fill the caps. Each prompt
    (and each field in ``keys``) is repeated until it has at least the given
    number of tokens, so that batches have the shapes of real data.
    """
    def stretch(text: str, tokens: int) -> str:
        out = text
        while len(tokenizer(out, add_special_tokens=False)["input_ids"]) < tokens:
            out = out + " " + text
        return out

    return [{**r, "prompt": stretch(r["prompt"], prompt_tokens),
             **{k: stretch(r[k], completion_tokens) for k in keys}} for r in rows]


def save_random_model(path: str | Path, tokenizer_path: str | Path, dtype: torch.dtype = torch.float16,
                      shape: dict | None = None) -> Path:
    """A Qwen2 model with random weights and ``shape`` (default Qwen2.5-0.5B's), saved with a tokenizer.

    Memory and compute match the real model's; what it learns does not. Used to
    measure a profile where its hub model cannot be downloaded.
    """
    from transformers import AutoTokenizer, Qwen2Config, Qwen2ForCausalLM

    path = Path(path)
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_path)
    config = Qwen2Config(**(shape or QWEN25_05B_SHAPE), pad_token_id=tokenizer.pad_token_id,
                         eos_token_id=tokenizer.eos_token_id, bos_token_id=None)
    torch.manual_seed(0)
    with torch.device("cuda" if torch.cuda.is_available() else "cpu"):
        model = Qwen2ForCausalLM(config)
    model = model.to(dtype)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.save_pretrained(path, safe_serialization=True)
    tokenizer.save_pretrained(path)
    del model
    _free()
    return path


def run_footprint(profile: Profile, *, memory_cap_gb: float | None = 15.0, sft_steps: int = 8, rm_steps: int = 6,
                  best_of_n_prompts: int = 25, rl_steps: int = 4, stages: tuple[str, ...] | None = None,
                  output_dir: str | Path | None = None, seed: int = 0) -> list[StageRow]:
    """Measure each stage of ``profile`` on a few steps; see the module docstring.

    Stages run in order and each later one uses what the earlier saved (the SFT
    model, the reward model). ``stages`` picks a subset of
    ``load, sft, sft_max_length, reward_model, best_of_n, rl_gradients, rloo, grpo``.
    """
    from transformers import AutoTokenizer

    from rlhf_course.core.models import load_model
    from rlhf_course.policy_gradients.train import train_grpo, train_policy_gradient
    from rlhf_course.rejection_sampling.train import best_of_n
    from rlhf_course.reward_modeling.evaluation import load_reward_function
    from rlhf_course.reward_modeling.train import reward_model_from, train_reward_model
    from rlhf_course.preference_data.toy import toy_preferences
    from rlhf_course.instruction_tuning.data import load_demonstrations
    from rlhf_course.core.models import load_policy
    from rlhf_course.instruction_tuning.train import train_sft
    from rlhf_course.toyworld import gold_rewards, make_prompts, training

    cap_memory(memory_cap_gb)
    out = Path(output_dir or tempfile.mkdtemp(prefix=f"footprint-{profile.name}-"))
    sft_batch = profile.sft.batch_size * profile.sft.grad_accum
    rm_batch = profile.rm.batch_size * profile.rm.grad_accum
    short = profile.replace(
        sft=dataclasses.replace(profile.sft, n_demonstrations=sft_steps * sft_batch, dataset=None, checkpoint_steps=0),
        rm=dataclasses.replace(profile.rm, n_pairs=rm_steps * rm_batch, dataset=None, checkpoint_steps=0),
        rl=dataclasses.replace(profile.rl, steps=rl_steps),
    )
    paths = {"sft": out / "sft" / "final", "rm": out / "rm" / "final"}
    tokenizer = AutoTokenizer.from_pretrained(profile.model) if Path(profile.model).is_dir() else None

    def tok():
        return tokenizer or AutoTokenizer.from_pretrained(paths["sft"])

    def load() -> Measured:
        model, _ = load_model(profile, progress=False)
        notes = {"dtype": str(next(model.parameters()).dtype), "parameters": sum(p.numel() for p in model.parameters())}
        del model
        return Measured(0, 0, 0.0, notes)

    def sft(rows_of=None, name="sft") -> Measured:
        model, tokenizer_ = load_model(profile, progress=False)
        rows = load_demonstrations(short, seed)
        if rows_of:
            rows = rows_of(rows, tokenizer_)
        result = train_sft(model, tokenizer_, rows, short, output_dir=out / name, seed=seed, progress=False)
        losses = [loss for _, loss in result.losses]
        full = math.ceil(profile.sft.n_demonstrations * profile.sft.epochs / sft_batch)
        return Measured(result.log_history[-1]["step"], full, _trainer_seconds(result.log_history),
                        {"losses": losses, "finite_losses": _finite(losses)})

    def sft_max_length() -> Measured:
        stretch = lambda rows, t: long_rows(rows, t, profile.max_prompt_tokens, profile.max_new_tokens)  # noqa: E731
        return sft(stretch, "sft_max_length")

    def reward_model() -> Measured:
        model = reward_model_from(paths["sft"], profile)
        rows = toy_preferences(short, "train", seed=seed)
        result = train_reward_model(model, tok(), rows, short, output_dir=out / "rm", seed=seed, progress=False)
        losses = [loss for _, loss in result.losses]
        full = math.ceil(profile.rm.n_pairs * profile.rm.epochs / rm_batch)
        return Measured(result.log_history[-1]["step"], full, _trainer_seconds(result.log_history),
                        {"losses": losses, "finite_losses": _finite(losses),
                         "head_dtype": str(result.model.score.weight.dtype)})

    def best_of_n_stage() -> Measured:
        tokenizer_ = tok()
        policy = load_policy(paths["sft"], profile)
        reward_fn = load_reward_function(paths["rm"], tokenizer_, profile)
        n = profile.rl.best_of_n
        prompts = make_prompts("test", best_of_n_prompts, seed=seed)
        start = time.perf_counter()
        pool = best_of_n(policy, tokenizer_, reward_fn, prompts, n, profile, gold_fn=gold_rewards, seed=seed)
        seconds = time.perf_counter() - start
        per_batch = max(profile.eval_batch_size, n)
        return Measured(math.ceil(len(prompts) * n / per_batch), math.ceil(profile.n_eval_prompts * n / per_batch),
                        seconds, {"n": n, "generations": len(pool.candidates),
                                  "generations_per_second": len(pool.candidates) / seconds,
                                  "finite_rewards": bool(torch.isfinite(pool.proxy).all())})

    def rloo() -> Measured:
        tokenizer_ = tok()
        policy, reference = load_policy(paths["sft"], profile), load_policy(paths["sft"], profile)
        reward_fn = load_reward_function(paths["rm"], tokenizer_, profile)
        result = train_policy_gradient(policy, reference, tokenizer_, reward_fn, short, method="rloo", seed=seed,
                                       prompts=training.rl_prompts(short, seed), gold_fn=gold_rewards,
                                       progress=False)
        return _rl_measured(result.history, profile.rl.steps)

    def rl_gradients() -> Measured:
        """One micro-batch backward pass as train_policy_gradient takes it (fp16 base, LoRA, no loss
        scaling): do the adapters get finite, non-zero gradients, or do they underflow in fp16?"""
        from peft import get_peft_model

        from rlhf_course.core.training import lora_config
        from rlhf_course.core.rollout import micro_batches, rollout
        from rlhf_course.core.sampling import token_logprobs

        tokenizer_ = tok()
        policy, reference = load_policy(paths["sft"], profile), load_policy(paths["sft"], profile)
        reward_fn = load_reward_function(paths["rm"], tokenizer_, profile)
        policy = get_peft_model(policy, lora_config(profile))
        roll = rollout(policy, reference, tokenizer_, make_prompts("train", profile.rl.prompts_per_step, seed=seed),
                       reward_fn, profile, profile.rl.k)
        policy.train()
        _, part = next(micro_batches(roll.batch, profile.rl.micro_batch_size))
        logps = token_logprobs(policy, part)
        (-(logps * part["completion_mask"]).sum(dim=1).mean()).backward()
        grads = {n: p.grad for n, p in policy.named_parameters() if p.requires_grad}
        lora_b = [g for n, g in grads.items() if "lora_B" in n]
        return Measured(0, 0, 0.0, {
            "trainable_dtypes": sorted({str(p.dtype) for p in policy.parameters() if p.requires_grad}),
            "lora_B_with_grad": sum(g is not None for g in lora_b), "lora_B": len(lora_b),
            "lora_B_zero_grad_fraction": float(sum((g == 0).float().mean().item() for g in lora_b if g is not None)
                                               / max(1, len(lora_b))),
            "all_grads_finite": all(g is None or bool(torch.isfinite(g).all()) for g in grads.values()),
            "logps_finite": bool(torch.isfinite(logps).all())})

    def grpo() -> Measured:
        tokenizer_ = tok()
        reward_fn = load_reward_function(paths["rm"], tokenizer_, profile)
        result = train_grpo(paths["sft"], tokenizer_, reward_fn, short, output_dir=out / "grpo", seed=seed,
                            prompts=training.rl_prompts(short, seed), gold_fn=gold_rewards, progress=False)
        return _rl_measured(result.history, profile.rl.steps)

    plan = {"load": load, "sft": sft, "sft_max_length": sft_max_length, "reward_model": reward_model,
            "best_of_n": best_of_n_stage, "rl_gradients": rl_gradients, "rloo": rloo, "grpo": grpo}
    unknown = set(stages or ()) - set(plan)
    if unknown:
        raise ValueError(f"Unknown stages {sorted(unknown)}; choose from {', '.join(plan)}.")
    return [measure(name, fn) for name, fn in plan.items() if stages is None or name in stages]


def _rl_measured(history: list[dict], full_steps: int) -> Measured:
    """Steps and time per step of an RL run from its history (cumulative ``seconds`` per step).

    The time per step is taken between the first and the last logged step, so
    the one-off costs of the first step count as overhead, not per step.
    """
    losses = [h.get("loss") for h in history]
    notes = {"losses": losses, "finite_losses": _finite(losses),
             "kl": [h.get("kl") for h in history], "proxy_reward": [h.get("proxy_reward") for h in history]}
    steps = len(history)
    if steps >= 2 and history[-1].get("seconds") is not None and history[0].get("seconds") is not None:
        per_step = (history[-1]["seconds"] - history[0]["seconds"]) / (steps - 1)
        return Measured(steps, full_steps, per_step * steps, notes)
    return Measured(steps, full_steps, history[-1]["seconds"] if steps else 0.0, notes)


def markdown_table(rows: list[StageRow]) -> str:
    """The rows as a Markdown table."""
    lines = ["| stage | steps measured | seconds | full stage (extrapolated) s | peak GiB | reserved GiB | ok |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        fmt = lambda v, spec: "" if v is None else format(v, spec)  # noqa: E731
        lines.append(f"| {r.stage} | {r.steps}/{r.full_steps} | {r.seconds:.1f} | {fmt(r.full_seconds, '.0f')} | "
                     f"{fmt(r.peak_gb, '.2f')} | {fmt(r.reserved_gb, '.2f')} | {'ok' if r.ok else r.error} |")
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--profile", default="colab-t4")
    parser.add_argument("--memory-cap-gb", type=float, default=15.0, help="allocator cap in GiB (default: 15, a T4)")
    parser.add_argument("--model", default=None, help="a local model folder to use instead of the profile's model")
    parser.add_argument("--random-model", metavar="TOKENIZER_DIR", default=None,
                        help="build a random-weight model of Qwen2.5-0.5B's shape with this tokenizer and use it")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="profile overrides")
    parser.add_argument("--stages", nargs="*", default=None)
    parser.add_argument("--out", default=None, help="folder for footprint-<profile>.json and .md")


def run_from_args(args: argparse.Namespace) -> int:
    profile = apply_overrides(get_profile(args.profile), args.set)
    work = Path(tempfile.mkdtemp(prefix="footprint-"))
    cap_memory(args.memory_cap_gb)
    if args.random_model:
        profile = profile.replace(model=str(save_random_model(work / "random-model", args.random_model)))
    elif args.model:
        profile = profile.replace(model=args.model)
    rows = run_footprint(profile, memory_cap_gb=args.memory_cap_gb, stages=tuple(args.stages) if args.stages else None,
                         output_dir=work)
    table = markdown_table(rows)
    print(table)
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
        record = {"profile": dataclasses.asdict(profile), "memory_cap_gb": args.memory_cap_gb, "device": device,
                  "torch": torch.__version__, "rows": [dataclasses.asdict(r) for r in rows]}
        (out / f"footprint-{args.profile}.json").write_text(json.dumps(record, indent=1, default=str) + "\n")
        (out / f"footprint-{args.profile}.md").write_text(table + "\n")
    return 0 if all(r.ok for r in rows) else 1
