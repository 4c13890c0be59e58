"""Policy-gradient training: REINFORCE, RLOO and GRPO from scratch, and TRL's GRPO and RLOO.

:func:`train_policy_gradient` is the loop of the Policy Gradients chapter, in one
screen: a :func:`rlhf_course.core.rollout.rollout`, a sequence-level KL penalty,
advantages (:mod:`rlhf_course.policy_gradients.loss`) and a gradient step on
the per-token loss, aggregated as the chapter discusses and accumulated over
micro-batches by :func:`accumulate_gradients`. :func:`train_grpo` and
:func:`train_trl_rloo` run TRL's ``GRPOTrainer`` and ``RLOOTrainer`` on the same
prompts and reward, so the two can be compared.

Every trainer here takes its training prompts and its reward function as
arguments (on the toy world, ``rlhf_course.toyworld.training.rl_prompts``), and
logs a gold reward only through the ``gold_fn`` hook its caller passes.
"""

from __future__ import annotations

import copy
import dataclasses
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm
from transformers import PreTrainedModel, PreTrainedTokenizerBase, TrainerCallback

from rlhf_course.core.checkpoints import due, last_loop_checkpoint, load_checkpoint, save_checkpoint, say_resumed
from rlhf_course.core.models import device, quiet_libraries
from rlhf_course.core.profiles import Profile
from rlhf_course.core.rollout import (GoldFunction, PolicyGradientResult, RewardFunction, check_prompts, mean_gold,
                                      micro_batches, prompt_text, rollout)
from rlhf_course.core.sampling import token_logprobs
from rlhf_course.core.training import lora_config
from rlhf_course.core.vllm_generation import trl_vllm_arguments
from rlhf_course.policy_gradients.loss import (AGGREGATIONS, aggregate, microbatch_weight, per_token_policy_loss,
                                               reinforce_advantages, rloo_advantages)


def train_policy_gradient(
    policy: PreTrainedModel,
    reference: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    reward_fn: RewardFunction,
    profile: Profile,
    *,
    prompts: Sequence[Any],
    gold_fn: GoldFunction | None = None,
    method: str = "rloo",
    seed: int = 0,
    progress: bool = True,
    aggregation: str = "constant",
    on_step: Callable[[int, PreTrainedModel], None] | None = None,
    output_dir: str | Path | None = None,
) -> PolicyGradientResult:
    """Train ``policy`` (in place) by REINFORCE with a running-mean baseline or by RLOO.

    Each of ``profile.rl.steps`` steps samples ``profile.rl.k`` responses for the
    next ``profile.rl.prompts_per_step`` of ``prompts`` (strings or toy-world
    ``Prompt``s), subtracts ``profile.rl.beta`` × the sampled KL to
    ``reference`` from each reward, and takes one Adam step on
    the per-token loss, aggregated by ``aggregation`` and accumulated over
    micro-batches (:func:`accumulate_gradients`). Every step is on-policy, so
    no importance ratio is needed (that is what PPO adds).

    ``aggregation`` is a mode of :func:`~rlhf_course.policy_gradients.loss.aggregate`.
    The default, ``"constant"`` with L = 1, is the sum over each response's
    tokens averaged over the responses: the textbook estimator, and the loss
    this loop has always used. (Dr. GRPO and TRL divide by the maximum length
    as well; under Adam a fixed scale barely matters, except through the
    gradient clipping at norm 1.) ``"token"`` and ``"sequence"`` weight lengths
    differently; see the chapter.
    ``gold_fn``, when given, scores each response for the history's
    ``gold_reward`` (logged, never optimised).
    ``on_step(step, policy)``, if given, is called before the first step (step 0)
    and after every step: a hook to measure the policy along the way (it must
    leave the random state as it found it, as
    :func:`rlhf_course.core.evaluation.sample_policy` does, so that measuring
    never changes training).
    ``output_dir``, when given, is where the loop saves a checkpoint every
    ``profile.rl.checkpoint_steps`` steps (:mod:`rlhf_course.core.checkpoints`)
    and, started again with the same folder, resumes from the last one
    (``resumed_from`` of the result), ending where an uninterrupted run ends.
    """
    if method not in ("reinforce", "rloo"):
        raise ValueError(f"method must be 'reinforce' or 'rloo'; got {method!r}. GRPO runs with train_grpo.")
    if aggregation not in AGGREGATIONS:
        raise ValueError(f"aggregation must be one of {AGGREGATIONS}; got {aggregation!r}.")
    settings, start = profile.rl, time.perf_counter()
    check_prompts(prompts, settings.steps * settings.prompts_per_step, f"{method} ({settings.steps} steps of "
                  f"{settings.prompts_per_step} prompts)")
    torch.manual_seed(seed)
    if profile.lora:  # train adapters only; merged back at the end so the next stage gets a plain model
        from peft import get_peft_model

        policy = get_peft_model(policy, lora_config(profile))
    trainable = [p for p in policy.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=settings.learning_rate, weight_decay=0.0)
    reference.eval()
    baseline, history, first = None, [], 0
    run_settings = {**dataclasses.asdict(settings), "checkpoint_steps": None, "method": method,
                    "aggregation": aggregation, "seed": seed, "lora": profile.lora}
    resumed = last_loop_checkpoint(output_dir)
    if resumed is not None:
        state = load_checkpoint(resumed, {"policy": policy}, optimizer, settings=run_settings)
        first, history, baseline = state.step, state.history, state.extra.get("baseline")
        start -= history[-1]["seconds"] if history else 0.0
        say_resumed(method, resumed, first, settings.steps)
    if on_step is not None:
        on_step(first, policy)
    # One micro-batch: the forward pass with gradients gives the sampling policy's log-probs for the KL too
    # (the same numbers, as no dropout is active), so the rollout skips its own pass over the policy.
    one_pass = not 0 < settings.micro_batch_size < settings.prompts_per_step * settings.k
    for step in tqdm(range(first, settings.steps), desc=method, disable=not progress,
                     initial=first, total=settings.steps):
        batch_prompts = list(prompts[step * settings.prompts_per_step:(step + 1) * settings.prompts_per_step])
        roll = rollout(policy, reference, tokenizer, batch_prompts, reward_fn, profile, settings.k,
                       policy_logps=not one_pass)
        policy.train()
        if one_pass:
            logps = token_logprobs(policy, roll.batch)
            roll.old_logps = logps.detach()
        shaped = roll.rewards - settings.beta * roll.kl
        if method == "rloo":
            advantages = rloo_advantages(shaped.view(-1, settings.k)).flatten()
        else:
            baseline = shaped.mean() if baseline is None else 0.9 * baseline + 0.1 * shaped.mean()
            advantages = reinforce_advantages(shaped, baseline)
        optimizer.zero_grad()
        loss = accumulate_gradients(roll.batch, lambda rows, part: per_token_policy_loss(
            logps if one_pass else token_logprobs(policy, part), advantages[rows]), aggregation,
            settings.micro_batch_size)
        torch.nn.utils.clip_grad_norm_(trainable, 1.0)
        optimizer.step()
        gold = mean_gold(gold_fn, roll.response_prompts, roll.responses)
        history.append({"step": step + 1, "proxy_reward": roll.rewards.mean().item(), "gold_reward": gold,
                        "kl": roll.kl.mean().item(), "loss": loss.item(), "seconds": time.perf_counter() - start,
                        "length": roll.batch["completion_mask"].sum(dim=1).float().mean().item()})
        if on_step is not None:
            on_step(step + 1, policy)
        if output_dir is not None and due(step + 1, settings.checkpoint_steps):
            save_checkpoint(output_dir, step + 1, {"policy": policy}, optimizer, history, settings=run_settings,
                            extra={"baseline": baseline})
    policy = policy.merge_and_unload() if profile.lora else policy
    policy.eval()
    return PolicyGradientResult(policy, history, time.perf_counter() - start,
                                resumed_from=None if resumed is None else str(resumed))


def accumulate_gradients(
    batch: dict[str, torch.Tensor],
    per_token_loss: Callable[[slice, dict[str, torch.Tensor]], torch.Tensor],
    aggregation: str,
    micro_batch_size: int,
    constant: float = 1.0,
) -> torch.Tensor:
    """Backpropagate the batch's aggregated loss one micro-batch at a time; return the loss (detached).

    ``per_token_loss(rows, part)`` gives the per-token losses of the rows
    ``rows`` of ``batch`` (e.g. :func:`per_token_policy_loss`); each part is
    aggregated over ``part["completion_mask"]`` and weighted by
    :func:`microbatch_weight`, its share of the *whole batch's* normaliser
    (tokens for ``"token"``, rows for ``"sequence"`` and ``"constant"``), so the
    accumulated gradient is the full batch's in every mode, whatever the
    lengths in each part. ``constant`` is L of ``"constant"`` only.
    """
    mask, loss = batch["completion_mask"], 0.0
    for rows, part in micro_batches(batch, micro_batch_size):
        part_loss = microbatch_weight(mask, rows, aggregation) * aggregate(
            per_token_loss(rows, part), part["completion_mask"], aggregation,
            constant if aggregation == "constant" else None)
        part_loss.backward()  # gradients accumulate over micro-batches
        loss += part_loss.detach()
    return loss


# ----------------------------------------------------------------------------- TRL-backed: GRPO and RLOO


def _trl_reward(reward_fn: RewardFunction):
    """A TRL reward function (conversational prompts and completions in, list of floats out) from ours."""

    def reward(prompts, completions, **kwargs) -> list[float]:
        # a single user turn as its text (as the reward model was trained); a longer conversation as it is
        texts = [(p[-1]["content"] if len(p) == 1 else p) if isinstance(p, list) else p for p in prompts]
        answers = [c[-1]["content"] if isinstance(c, list) else c for c in completions]
        return reward_fn(texts, [a.strip() for a in answers]).tolist()

    reward.__name__ = "reward_model"
    return reward


def _trl_gold(gold_fn: GoldFunction, prompts: Sequence[Any]):
    """The caller's gold function as a TRL reward function; given weight 0, so it is logged, never optimised.

    TRL hands it prompt texts; each is mapped back to the prompt the caller
    passed, which is what ``gold_fn`` scores.
    """
    by_text = {prompt_text(p): p for p in prompts}

    def gold(prompts, completions, **kwargs) -> list[float]:
        # a single user turn as its text (as the reward model was trained); a longer conversation as it is
        texts = [(p[-1]["content"] if len(p) == 1 else p) if isinstance(p, list) else p for p in prompts]
        answers = [c[-1]["content"] if isinstance(c, list) else c for c in completions]
        return list(gold_fn([by_text[t] for t in texts], [a.strip() for a in answers]))

    return gold


def trl_rl_arguments(profile: Profile, output_dir: str | Path, seed: int = 0, progress: bool = True) -> dict:
    """GRPOConfig/RLOOConfig arguments from ``profile.rl``: the same prompts, samples and KL as from scratch.

    One optimizer step per rollout batch of ``prompts_per_step × k`` responses,
    one pass over it (so TRL's clipping never binds and the update is the
    plain policy gradient), sampled at temperature 1 with no top-k or top-p.
    A checkpoint every ``rl.checkpoint_steps`` steps (none at 0), from which
    :func:`rlhf_course.core.training.fit` resumes.
    """
    from rlhf_course.core.training import trainer_arguments

    settings = profile.rl
    args = trainer_arguments(profile, profile.sft, output_dir, seed, progress)
    for name in ("max_length", "num_train_epochs", "warmup_steps"):
        args.pop(name)
    args.update(max_steps=settings.steps, learning_rate=settings.learning_rate, lr_scheduler_type="constant",
                per_device_train_batch_size=settings.prompts_per_step * settings.k, gradient_accumulation_steps=1,
                num_generations=settings.k, max_completion_length=profile.max_new_tokens, beta=settings.beta,
                temperature=1.0, top_k=0, top_p=1.0, num_iterations=1, logging_steps=1, max_grad_norm=1.0,
                save_strategy="steps" if settings.checkpoint_steps else "no", save_steps=settings.checkpoint_steps or 500)
    return args


def _run_trl(trainer_cls, config_cls, policy_path: str | Path, tokenizer, reward_fn: RewardFunction,
             profile: Profile, prompts: Sequence[Any], gold_fn: GoldFunction | None, extra: dict, output_dir,
             seed: int, progress: bool) -> PolicyGradientResult:
    from datasets import Dataset
    from transformers import AutoModelForCausalLM

    from rlhf_course.core.training import fit

    start = time.perf_counter()
    quiet_libraries()
    settings = profile.rl
    check_prompts(prompts, settings.steps * settings.prompts_per_step,
                  f"{trainer_cls.__name__} ({settings.steps} steps of {settings.prompts_per_step} prompts)")
    dataset = Dataset.from_list([{"prompt": p if isinstance(p, list) else [{"role": "user", "content": prompt_text(p)}]}
                                 for p in prompts])  # a list is a conversation already (a hub dataset's prompt)
    reward_funcs = [_trl_reward(reward_fn)] + ([] if gold_fn is None else [_trl_gold(gold_fn, prompts)])
    generation = trl_vllm_arguments(profile)  # before the warnings are silenced: its fallback note must show
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        config = config_cls(**{**trl_rl_arguments(profile, output_dir, seed, progress),
                               "reward_weights": [1.0, 0.0][:len(reward_funcs)], **extra, **generation})
        policy = AutoModelForCausalLM.from_pretrained(policy_path, dtype=torch.float32, trust_remote_code=False)
        trainer = trainer_cls(model=policy.to(device()), reward_funcs=reward_funcs,
                              args=config, train_dataset=dataset, processing_class=_left_padded(tokenizer),
                              peft_config=lora_config(profile) if profile.lora else None)
        trainer.add_callback(_ElapsedTime(start))
        trained, resumed = fit(trainer, tokenizer, output_dir, profile.lora, progress)
    history = [{"step": e["step"], "proxy_reward": e.get("rewards/reward_model/mean"),
                "gold_reward": e.get("rewards/gold/mean"), "kl": _sequence_kl(e), "kl_per_token": e.get("kl"),
                "length": e.get("completions/mean_length"), "loss": e.get("loss"), "seconds": e.get("seconds")}
               for e in trainer.state.log_history if "reward" in e]
    return PolicyGradientResult(trained, history, time.perf_counter() - start, resumed_from=resumed)


def _sequence_kl(log: dict) -> float | None:
    """TRL's logged KL per response, comparable with :func:`train_policy_gradient`'s.

    TRL logs the mean per *token* (k1 for RLOO, k3 for GRPO); times the mean
    completion length, that is the mean over responses of the summed tokens,
    the sequence-level KL estimate the from-scratch loop records.
    """
    if log.get("kl") is None or log.get("completions/mean_length") is None:
        return log.get("kl")
    return log["kl"] * log["completions/mean_length"]


class _ElapsedTime(TrainerCallback):
    """Stamps each TRL log entry with the seconds since ``start`` (for time-to-target benchmarks)."""

    def __init__(self, start: float) -> None:
        self.start = start

    def on_log(self, args, state, control, logs=None, **kwargs):
        if state.log_history:
            state.log_history[-1]["seconds"] = time.perf_counter() - self.start


def _left_padded(tokenizer: PreTrainedTokenizerBase) -> PreTrainedTokenizerBase:
    """A copy of the tokenizer that pads on the left, as TRL's online trainers require."""
    tokenizer = copy.deepcopy(tokenizer)
    tokenizer.padding_side = "left"
    return tokenizer


def train_grpo(policy_path: str | Path, tokenizer: PreTrainedTokenizerBase, reward_fn: RewardFunction,
               profile: Profile, *, prompts: Sequence[Any], gold_fn: GoldFunction | None = None,
               output_dir: str | Path = "runs/grpo", seed: int = 0, progress: bool = True) -> PolicyGradientResult:
    """GRPO with TRL's ``GRPOTrainer``, from the model saved at ``policy_path`` (the SFT model).

    Its dataset is ``prompts`` (TRL's sampler shuffles them), ``profile.rl.prompts_per_step``
    per step for ``profile.rl.steps`` steps; ``gold_fn``, when given, is logged
    as a zero-weight reward (``gold_reward`` in the history).

    The KL to the reference (the same saved model) is TRL's k3 term in the loss,
    weighted by ``profile.rl.grpo_beta`` (the advantages it sits next to are
    normalised to unit scale, so its units differ from ``beta``, which is
    subtracted from raw rewards); advantages are group-normalised
    (:func:`grpo_advantages`) and averaged per token (``loss_type="dapo"``).
    """
    from trl import GRPOConfig, GRPOTrainer

    return _run_trl(GRPOTrainer, GRPOConfig, policy_path, tokenizer, reward_fn, profile, prompts, gold_fn,
                    {"scale_rewards": "group", "loss_type": "dapo", "beta": profile.rl.grpo_beta}, output_dir, seed, progress)


def train_trl_rloo(policy_path: str | Path, tokenizer: PreTrainedTokenizerBase, reward_fn: RewardFunction,
                   profile: Profile, *, prompts: Sequence[Any], gold_fn: GoldFunction | None = None,
                   output_dir: str | Path = "runs/trl_rloo", seed: int = 0,
                   progress: bool = True) -> PolicyGradientResult:
    """RLOO with TRL's ``RLOOTrainer`` from the model saved at ``policy_path``, on ``prompts`` (as :func:`train_grpo`).

    As in :func:`train_policy_gradient` with ``method="rloo"``, the KL penalty
    (``profile.rl.beta``) is subtracted from each reward and advantages are
    leave-one-out; TRL does not normalise them here (``normalize_advantages=False``).
    """
    from trl import RLOOConfig, RLOOTrainer

    return _run_trl(RLOOTrainer, RLOOConfig, policy_path, tokenizer, reward_fn, profile, prompts, gold_fn,
                    {"normalize_advantages": False}, output_dir, seed, progress)
