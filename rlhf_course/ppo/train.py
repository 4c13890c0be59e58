"""PPO's training loop, and its critic.

:func:`train_ppo` is the loop of the PPO chapter: a rollout
(:func:`rlhf_course.core.rollout.rollout`, the same as REINFORCE and RLOO),
token-level rewards and advantages, then several epochs of the clipped losses
of :mod:`rlhf_course.ppo.loss` on the policy and the critic
(:func:`value_model_from`, :func:`token_values`).
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from rlhf_course.core.checkpoints import due, last_loop_checkpoint, load_checkpoint, save_checkpoint, say_resumed
from rlhf_course.core.distributed import all_mean, average_gradients, join_process_group
from rlhf_course.core.models import device, quiet_libraries
from rlhf_course.core.profiles import Profile
from rlhf_course.core.rollout import (GoldFunction, PolicyGradientResult, RewardFunction, check_prompts, mean_gold,
                                      rollout)
from rlhf_course.core.sampling import token_logprobs
from rlhf_course.core.training import lora_config
from rlhf_course.ppo.loss import (clipped_policy_loss, clipped_value_loss, generalized_advantage_estimation,
                                  kl_penalised_rewards, missing_eos_penalty, should_stop_early, whiten)


# ----------------------------------------------------------------------------- the critic


def value_model_from(path: str | Path, profile: Profile) -> PreTrainedModel:
    """A critic warm-started from a saved model, usually the reward model (InstructGPT's choice).

    The checkpoint is loaded as a one-output sequence-classification model:
    the reward model's own head, or a fresh head on a policy checkpoint.
    :func:`token_values` reads that head at every position.
    """
    import warnings

    from transformers import AutoModelForSequenceClassification

    quiet_libraries()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        critic = AutoModelForSequenceClassification.from_pretrained(path, num_labels=1, dtype=torch.float32,
                                                                    trust_remote_code=False)
    if critic.config.pad_token_id is None:
        critic.config.pad_token_id = critic.config.eos_token_id
    return critic.to(device())


def token_values(critic: PreTrainedModel, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """V_t = V(x, y_<t) for every position of a packed batch, 0 outside the completion.

    A sequence-classification model applies its ``score`` head to the hidden
    state of every position and keeps the last; here all of them are kept. The
    state before token t ends with token t − 1, so position t takes the head's
    output at t − 1, the same alignment as :func:`rlhf_course.core.sampling.token_logprobs`.
    """
    body = getattr(critic, critic.base_model_prefix)
    hidden = body(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
    values = critic.score(hidden).squeeze(-1).float()
    return torch.nn.functional.pad(values[:, :-1], (1, 0)) * batch["completion_mask"]


# ----------------------------------------------------------------------------- training


@dataclass
class PPOResult(PolicyGradientResult):
    """A trained policy, its critic, and one row of measurements per step."""

    critic: PreTrainedModel | None = None


def train_ppo(
    policy: PreTrainedModel,
    reference: PreTrainedModel,
    critic: PreTrainedModel | str | Path,
    tokenizer: PreTrainedTokenizerBase,
    reward_fn: RewardFunction,
    profile: Profile,
    *,
    prompts: Sequence[Any],
    gold_fn: GoldFunction | None = None,
    seed: int = 0,
    progress: bool = True,
    output_dir: str | Path | None = None,
) -> PPOResult:
    """Train ``policy`` (in place) with PPO against ``reward_fn``, with a separate critic.

    ``critic`` is a one-output sequence-classification model or the path of
    one, usually the reward model (``<run>/rm/final``), loaded with
    :func:`value_model_from`. Each step, with ``rl = profile.rl`` and
    ``ppo = profile.ppo``:

    1. for ``ppo.steps`` (else ``rl.steps``) steps, roll out ``rl.k`` responses
       to each of the next ``rl.prompts_per_step`` of ``prompts`` (strings or
       toy-world ``Prompt``s; :func:`rlhf_course.core.rollout.rollout`), record the
       critic's values; penalise responses without EOS;
    2. per-token rewards with the KL penalty β (``ppo.beta``, else ``rl.beta``; ``ppo.kl_estimator``),
       GAE advantages and returns (``ppo.gamma``, ``ppo.lam``), whitened advantages;
    3. ``ppo.epochs`` passes of ``ppo.minibatches`` minibatches, each a step on
       −L^CLIP + c_V L^V, stopping early once the approximate KL to π_old
       exceeds ``ppo.max_approx_kl``.

    Dropout stays off throughout (``eval()``): with dropout, the first ratio
    would not be 1. On LoRA profiles both models train adapters (the critic's
    head fully) and the policy's are merged back at the end. Under
    ``torchrun``/``accelerate launch``, each rank rolls out its share of the
    prompts and gradients are averaged across ranks, so all ranks keep the same weights.
    ``gold_fn``, when given, scores each response for the history's
    ``gold_reward`` (logged, never optimised).
    ``output_dir``, when given, is where policy, critic and optimizer are
    checkpointed every ``rl.checkpoint_steps`` steps (:mod:`rlhf_course.core.checkpoints`);
    started again with the same folder, the run resumes from the last one
    (``resumed_from`` of the result).
    """
    rl, ppo = profile.rl, profile.ppo
    start = time.perf_counter()
    rank, world = join_process_group()
    if rl.prompts_per_step % world:
        raise ValueError(f"rl.prompts_per_step ({rl.prompts_per_step}) must be divisible by the {world} processes.")
    torch.manual_seed(seed)  # the same on every rank: the same LoRA initialisation
    critic = value_model_from(critic, profile) if isinstance(critic, (str, Path)) else critic
    value_model = critic
    if profile.lora:
        from peft import LoraConfig, get_peft_model

        policy = get_peft_model(policy, lora_config(profile))
        critic = get_peft_model(critic, LoraConfig(r=profile.lora_rank, lora_alpha=2 * profile.lora_rank,
                                                   lora_dropout=0.0, target_modules="all-linear", task_type="SEQ_CLS"))
        value_model = critic.get_base_model()  # the same modules, adapters inside: token_values reads them
    parameters = [p for model in (policy, critic) for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(parameters, lr=ppo.learning_rate, weight_decay=0.0)
    for model in (policy, critic, reference):
        model.eval()
    steps, beta = ppo.steps or rl.steps, rl.beta if ppo.beta is None else ppo.beta
    check_prompts(prompts, steps * rl.prompts_per_step, f"PPO ({steps} steps of {rl.prompts_per_step} prompts)")
    per_rank = rl.prompts_per_step // world
    history, first, models = [], 0, {"policy": policy, "critic": critic}
    run_settings = {**dataclasses.asdict(rl), **dataclasses.asdict(ppo), "checkpoint_steps": None, "steps": steps,
                    "beta": beta, "seed": seed, "lora": profile.lora, "world": world}
    resumed = last_loop_checkpoint(output_dir)
    if resumed is not None:
        state = load_checkpoint(resumed, models, optimizer, settings=run_settings)
        first, history = state.step, state.history
        start -= history[-1]["seconds"] if history else 0.0
        say_resumed("ppo", resumed, first, steps)
    for step in tqdm(range(first, steps), desc="ppo", disable=not progress or rank > 0, initial=first, total=steps):
        first = step * rl.prompts_per_step + rank * per_rank
        roll = rollout(policy, reference, tokenizer, list(prompts[first:first + per_rank]), reward_fn, profile, rl.k)
        mask = roll.batch["completion_mask"].float()
        with torch.no_grad():
            old_values = token_values(value_model, roll.batch)
        scores = missing_eos_penalty(roll.rewards, roll.finished, ppo.missing_eos_penalty)
        rewards = kl_penalised_rewards(scores, roll.old_logps, roll.ref_logps, beta, mask, ppo.kl_estimator)
        advantages, returns = generalized_advantage_estimation(rewards, old_values, ppo.gamma, ppo.lam, mask)
        advantages = whiten(advantages, mask)

        stats, stopped = [], False
        size = math.ceil(len(roll.responses) / ppo.minibatches)
        for _ in range(ppo.epochs):
            for rows in torch.randperm(len(roll.responses)).split(size):
                minibatch = {key: value[rows] for key, value in roll.batch.items()}
                policy_loss = clipped_policy_loss(token_logprobs(policy, minibatch), roll.old_logps[rows],
                                                  advantages[rows], mask[rows], ppo.clip)
                if should_stop_early(all_mean(policy_loss.approx_kl), ppo.max_approx_kl):
                    stopped = True
                    break
                value_loss = clipped_value_loss(token_values(value_model, minibatch), old_values[rows],
                                                returns[rows], mask[rows], ppo.value_clip)
                loss = policy_loss.loss + ppo.vf_coef * value_loss.loss
                optimizer.zero_grad()
                loss.backward()
                average_gradients(parameters)
                torch.nn.utils.clip_grad_norm_(parameters, 1.0)
                optimizer.step()
                stats.append((loss.item(), policy_loss.clip_fraction, policy_loss.approx_kl, value_loss.loss.item(),
                              value_loss.clip_fraction))
            if stopped:
                break
        means = [sum(column) / len(column) for column in zip(*stats)] if stats else [float("nan")] * 5
        tokens = mask.sum().clamp(min=1)
        gold = mean_gold(gold_fn, roll.response_prompts, roll.responses)
        history.append({
            "step": step + 1, "proxy_reward": all_mean(roll.rewards.mean()), "gold_reward": _all_mean_or_none(gold),
            "kl": all_mean(roll.kl.mean()), "loss": all_mean(means[0]), "clip_fraction": all_mean(means[1]),
            "approx_kl": all_mean(means[2]), "value_loss": all_mean(means[3]),
            "value_clip_fraction": all_mean(means[4]),
            # −log π of the sampled tokens, averaged: a Monte Carlo estimate of the entropy per token
            "entropy": all_mean(-(roll.old_logps * mask).sum() / tokens),
            "length": all_mean(mask.sum(1).mean()), "finished": all_mean(roll.finished.float().mean()),
            "updates": len(stats), "seconds": time.perf_counter() - start,
        })
        if output_dir is not None and due(step + 1, rl.checkpoint_steps):
            save_checkpoint(output_dir, step + 1, models, optimizer, history, settings=run_settings)
    if profile.lora:
        policy, critic = policy.merge_and_unload(), critic.merge_and_unload()
    policy.eval()
    return PPOResult(policy, history, time.perf_counter() - start, critic=critic,
                     resumed_from=None if resumed is None else str(resumed))


def _all_mean_or_none(value: float | None) -> float | None:
    """The mean over ranks of a logged value, or ``None`` when it was not measured (no gold function)."""
    return None if value is None else all_mean(value)
