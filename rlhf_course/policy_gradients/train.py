"""Policy-gradient training: REINFORCE, RLOO and GRPO from scratch, and TRL's GRPO and RLOO.

:func:`train_policy_gradient` is the loop of the Policy Gradients chapter, in one
screen: a :func:`rlhf_course.core.rollout.rollout`, a sequence-level KL penalty,
advantages (:mod:`rlhf_course.policy_gradients.loss`) and a gradient step on
:func:`~rlhf_course.policy_gradients.loss.sequence_loss`. :func:`train_grpo` and
:func:`train_trl_rloo` run TRL's ``GRPOTrainer`` and ``RLOOTrainer`` on the same
prompts and reward, so the two can be compared.
"""

from __future__ import annotations

import copy
import time
import warnings
from pathlib import Path
from typing import Callable

import torch
from tqdm.auto import tqdm
from transformers import PreTrainedModel, PreTrainedTokenizerBase, TrainerCallback

from rlhf_course.core.models import device, quiet_libraries
from rlhf_course.core.profiles import Profile
from rlhf_course.core.rollout import PolicyGradientResult, RewardFunction, micro_batches, rollout
from rlhf_course.core.sampling import token_logprobs
from rlhf_course.core.training import lora_config
from rlhf_course.policy_gradients.loss import reinforce_advantages, rloo_advantages, sequence_loss
from rlhf_course.toyworld import Prompt, gold_reward, make_prompts


def train_policy_gradient(
    policy: PreTrainedModel,
    reference: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    reward_fn: RewardFunction,
    profile: Profile,
    *,
    method: str = "rloo",
    seed: int = 0,
    progress: bool = True,
    on_step: Callable[[int, PreTrainedModel], None] | None = None,
) -> PolicyGradientResult:
    """Train ``policy`` (in place) by REINFORCE with a running-mean baseline or by RLOO.

    Each step samples ``profile.rl.k`` responses for ``profile.rl.prompts_per_step``
    training prompts, subtracts ``profile.rl.beta`` × the sampled KL to
    ``reference`` from each reward, and takes one Adam step on
    :func:`sequence_loss`. Every step is on-policy, so no importance ratio is
    needed (that is what PPO adds). ``on_step(step, policy)``, if given, is
    called before the first step (step 0) and after every step: a hook to
    measure the policy along the way (it must leave the random state as it
    found it, as :func:`rlhf_course.core.evaluation.sample_policy` does, so
    that measuring never changes training).
    """
    if method not in ("reinforce", "rloo"):
        raise ValueError(f"method must be 'reinforce' or 'rloo'; got {method!r}. GRPO runs with train_grpo.")
    settings, start = profile.rl, time.perf_counter()
    torch.manual_seed(seed)
    if profile.lora:  # train adapters only; merged back at the end so the next stage gets a plain model
        from peft import get_peft_model

        policy = get_peft_model(policy, lora_config(profile))
    prompts = make_prompts("train", settings.steps * settings.prompts_per_step, seed=seed)
    trainable = [p for p in policy.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=settings.learning_rate, weight_decay=0.0)
    reference.eval()
    baseline, history = None, []
    if on_step is not None:
        on_step(0, policy)
    for step in tqdm(range(settings.steps), desc=method, disable=not progress):
        batch_prompts = prompts[step * settings.prompts_per_step:(step + 1) * settings.prompts_per_step]
        roll = rollout(policy, reference, tokenizer, batch_prompts, reward_fn, profile, settings.k)
        shaped = roll.rewards - settings.beta * roll.kl
        if method == "rloo":
            advantages = rloo_advantages(shaped.view(-1, settings.k)).flatten()
        else:
            baseline = shaped.mean() if baseline is None else 0.9 * baseline + 0.1 * shaped.mean()
            advantages = reinforce_advantages(shaped, baseline)
        policy.train()
        optimizer.zero_grad()
        loss = 0.0
        n_rows = len(advantages)
        for rows, part in micro_batches(roll.batch, settings.micro_batch_size):
            share = (rows.stop - rows.start) / n_rows
            part_loss = share * sequence_loss(token_logprobs(policy, part), advantages[rows], part["completion_mask"])
            part_loss.backward()  # gradients accumulate over micro-batches
            loss += part_loss.detach()
        torch.nn.utils.clip_grad_norm_(trainable, 1.0)
        optimizer.step()
        history.append({"step": step + 1, "proxy_reward": roll.rewards.mean().item(), "gold_reward": roll.gold().mean(),
                        "kl": roll.kl.mean().item(), "loss": loss.item(), "seconds": time.perf_counter() - start})
        if on_step is not None:
            on_step(step + 1, policy)
    policy = policy.merge_and_unload() if profile.lora else policy
    policy.eval()
    return PolicyGradientResult(policy, history, time.perf_counter() - start)


# ----------------------------------------------------------------------------- TRL-backed: GRPO and RLOO


def _trl_reward(reward_fn: RewardFunction):
    """A TRL reward function (conversational prompts and completions in, list of floats out) from ours."""

    def reward(prompts, completions, **kwargs) -> list[float]:
        texts = [p[-1]["content"] if isinstance(p, list) else p for p in prompts]
        answers = [c[-1]["content"] if isinstance(c, list) else c for c in completions]
        return reward_fn(texts, [a.strip() for a in answers]).tolist()

    reward.__name__ = "reward_model"
    return reward


def _trl_gold(prompts: list[Prompt]):
    """The gold reward as a TRL reward function; given weight 0, so it is logged, never optimised."""
    by_text = {p.text: p for p in prompts}

    def gold(prompts, completions, **kwargs) -> list[float]:
        texts = [p[-1]["content"] if isinstance(p, list) else p for p in prompts]
        answers = [c[-1]["content"] if isinstance(c, list) else c for c in completions]
        return [gold_reward(by_text[t], a.strip()) for t, a in zip(texts, answers)]

    return gold


def trl_rl_arguments(profile: Profile, output_dir: str | Path, seed: int = 0, progress: bool = True) -> dict:
    """GRPOConfig/RLOOConfig arguments from ``profile.rl``: the same prompts, samples and KL as from scratch.

    One optimizer step per rollout batch of ``prompts_per_step × k`` responses,
    one pass over it (so TRL's clipping never binds and the update is the
    plain policy gradient), sampled at temperature 1 with no top-k or top-p.
    """
    from rlhf_course.core.training import trainer_arguments

    settings = profile.rl
    args = trainer_arguments(profile, profile.sft, output_dir, seed, progress)
    for name in ("max_length", "num_train_epochs", "warmup_steps"):
        args.pop(name)
    args.update(max_steps=settings.steps, learning_rate=settings.learning_rate, lr_scheduler_type="constant",
                per_device_train_batch_size=settings.prompts_per_step * settings.k, gradient_accumulation_steps=1,
                num_generations=settings.k, max_completion_length=profile.max_new_tokens, beta=settings.beta,
                temperature=1.0, top_k=0, top_p=1.0, num_iterations=1, save_strategy="no", logging_steps=1,
                max_grad_norm=1.0)
    return args


def _trl_prompts(profile: Profile, seed: int) -> list[Prompt]:
    return make_prompts("train", profile.rl.steps * profile.rl.prompts_per_step, seed=seed)


def _run_trl(trainer_cls, config_cls, policy_path: str | Path, tokenizer, reward_fn: RewardFunction,
             profile: Profile, extra: dict, output_dir, seed: int, progress: bool) -> PolicyGradientResult:
    from datasets import Dataset
    from transformers import AutoModelForCausalLM

    from rlhf_course.core.training import fit

    start = time.perf_counter()
    quiet_libraries()
    prompts = _trl_prompts(profile, seed)
    dataset = Dataset.from_list([{"prompt": [{"role": "user", "content": p.text}]} for p in prompts])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        config = config_cls(**{**trl_rl_arguments(profile, output_dir, seed, progress),
                               "reward_weights": [1.0, 0.0], **extra})
        policy = AutoModelForCausalLM.from_pretrained(policy_path, dtype=torch.float32, trust_remote_code=False)
        trainer = trainer_cls(model=policy.to(device()), reward_funcs=[_trl_reward(reward_fn), _trl_gold(prompts)],
                              args=config, train_dataset=dataset, processing_class=_left_padded(tokenizer),
                              peft_config=lora_config(profile) if profile.lora else None)
        trainer.add_callback(_ElapsedTime(start))
        trained, _ = fit(trainer, tokenizer, output_dir, profile.lora, progress)
    history = [{"step": e["step"], "proxy_reward": e.get("rewards/reward_model/mean"),
                "gold_reward": e.get("rewards/gold/mean"), "kl": _sequence_kl(e), "kl_per_token": e.get("kl"),
                "length": e.get("completions/mean_length"), "loss": e.get("loss"), "seconds": e.get("seconds")}
               for e in trainer.state.log_history if "reward" in e]
    return PolicyGradientResult(trained, history, time.perf_counter() - start)


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
               profile: Profile, *, output_dir: str | Path = "runs/grpo", seed: int = 0,
               progress: bool = True) -> PolicyGradientResult:
    """GRPO with TRL's ``GRPOTrainer``, from the model saved at ``policy_path`` (the SFT model).

    The KL to the reference (the same saved model) is TRL's k3 term in the loss,
    weighted by ``profile.rl.grpo_beta`` (the advantages it sits next to are
    normalised to unit scale, so its units differ from ``beta``, which is
    subtracted from raw rewards); advantages are group-normalised
    (:func:`grpo_advantages`) and averaged per token (``loss_type="dapo"``).
    """
    from trl import GRPOConfig, GRPOTrainer

    return _run_trl(GRPOTrainer, GRPOConfig, policy_path, tokenizer, reward_fn, profile,
                    {"scale_rewards": "group", "loss_type": "dapo", "beta": profile.rl.grpo_beta}, output_dir, seed, progress)


def train_trl_rloo(policy_path: str | Path, tokenizer: PreTrainedTokenizerBase, reward_fn: RewardFunction,
                   profile: Profile, *, output_dir: str | Path = "runs/trl_rloo", seed: int = 0,
                   progress: bool = True) -> PolicyGradientResult:
    """RLOO with TRL's ``RLOOTrainer``, from the model saved at ``policy_path``.

    As in :func:`train_policy_gradient` with ``method="rloo"``, the KL penalty
    (``profile.rl.beta``) is subtracted from each reward and advantages are
    leave-one-out; TRL does not normalise them here (``normalize_advantages=False``).
    """
    from trl import RLOOConfig, RLOOTrainer

    return _run_trl(RLOOTrainer, RLOOConfig, policy_path, tokenizer, reward_fn, profile,
                    {"normalize_advantages": False}, output_dir, seed, progress)
