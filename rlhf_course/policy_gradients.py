"""Policy gradients for RLHF: REINFORCE with a baseline, RLOO and GRPO.

The bandit view of RLHF: a prompt x is the state, a whole response y is the
action, and the reward r(x, y) arrives at the end. The policy-gradient
theorem says

    ∇ E_{y~π_θ}[r(x, y)] = E_{y~π_θ}[(r(x, y) − b(x)) ∇ log π_θ(y | x)]

for any baseline b that does not depend on y. The methods here differ only
in the baseline they subtract, which is what :func:`reinforce_advantages`,
:func:`rloo_advantages` and :func:`grpo_advantages` compute. One training
step is then:

1. :func:`rollout`: sample k responses for each of a batch of prompts and
   score them with the reward function (the learned reward model, or a
   verifier);
2. subtract β times the sampled KL to the reference from each reward (a
   sequence-level KL penalty, the k1 estimate of log π_θ/π_ref);
3. turn rewards into advantages and take a gradient step on
   :func:`sequence_loss`.

:func:`train_policy_gradient` is that loop, from scratch, in one screen.
:func:`train_grpo` and :func:`train_trl_rloo` run TRL's ``GRPOTrainer`` and
``RLOOTrainer`` on the same prompts and reward, so the two can be compared.
PPO (its own chapter) reuses :func:`rollout`.
"""

from __future__ import annotations

import copy
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm
from transformers import PreTrainedModel, PreTrainedTokenizerBase, TrainerCallback

from .models import device, lora_config, quiet_libraries
from .profiles import Profile
from .sampling import pack, sample_completions, token_logprobs
from .toyworld import Prompt, gold_reward, make_prompts

# A reward function scores responses to prompts (plain texts, no chat template): the
# learned reward model (see ``reward_model.reward_function``) or a verifier.
RewardFunction = Callable[[list[str], list[str]], torch.Tensor]


# ----------------------------------------------------------------------------- advantages


def _grouped(rewards: torch.Tensor) -> torch.Tensor:
    """Check that rewards are a ``(prompts, k)`` table with k >= 2."""
    if rewards.dim() != 2 or rewards.shape[1] < 2:
        raise ValueError(f"rewards must have shape (prompts, k) with k >= 2 samples per prompt; "
                         f"got shape {tuple(rewards.shape)}.")
    return rewards.float()


def reinforce_advantages(rewards: torch.Tensor, baseline: float | torch.Tensor = 0.0) -> torch.Tensor:
    """REINFORCE's advantage: reward minus a baseline that ignores the sampled response.

    The baseline is usually a running mean of past rewards; any value that does
    not depend on the response keeps the gradient unbiased and, chosen well,
    makes it far less noisy.
    """
    return rewards.float() - baseline


def rloo_advantages(rewards: torch.Tensor) -> torch.Tensor:
    """RLOO: each of the k responses to a prompt is baselined by the mean of the other k − 1.

    ``rewards`` has shape ``(prompts, k)``. The baseline of response i never
    sees r_i, so it is unbiased; algebraically A_i = k/(k−1) · (r_i − mean r).
    """
    rewards = _grouped(rewards)
    k = rewards.shape[1]
    others = (rewards.sum(dim=1, keepdim=True) - rewards) / (k - 1)
    return rewards - others


def grpo_advantages(rewards: torch.Tensor, scale: bool = True, eps: float = 1e-4) -> torch.Tensor:
    """GRPO: reward minus the group mean, divided by the group's standard deviation.

    ``rewards`` has shape ``(prompts, k)``. With ``scale=False`` this is Dr.
    GRPO's advantage (no division: prompts the policy finds easy or hopeless,
    whose rewards barely vary, are not blown up). The standard deviation is the
    sample one (k − 1 in the denominator), as TRL computes it.
    """
    rewards = _grouped(rewards)
    centred = rewards - rewards.mean(dim=1, keepdim=True)
    return centred / (rewards.std(dim=1, keepdim=True) + eps) if scale else centred


def sequence_loss(
    token_logps: torch.Tensor, advantages: torch.Tensor, mask: torch.Tensor, level: str = "constant"
) -> torch.Tensor:
    """The REINFORCE surrogate −A_i · log π_θ(y_i|x_i) over a batch of N responses, as one number.

    ``token_logps`` and ``mask`` have shape ``(N, length)``; ``advantages`` has
    one value per response, shape ``(N,)``. Two of the aggregations of the
    Policy Gradients chapter:

    - ``"constant"`` (the default): the sum over each response's tokens,
      divided by a constant, here the number of responses N (Dr. GRPO's
      normaliser with L = 1). A response's log-probability is the sum of its
      tokens', as in the policy-gradient theorem, so this is the unbiased
      gradient up to a fixed scale;
    - ``"token"``: the token mean over the batch, divided by the number of real
      tokens in it (DAPO's choice, TRL's default ``loss_type="dapo"``, and the
      mean of ``rlhf_course.ppo.policy_gradient_loss``). That count changes
      with the lengths sampled in each batch.

    ``"sequence"`` is the old name of ``"constant"``; it still works, with a
    DeprecationWarning. It never meant GRPO's mean per sequence.
    """
    if level == "sequence":
        warnings.warn('sequence_loss(level="sequence") is now level="constant" (the sum over tokens divided by '
                      'the number of responses, not a mean per sequence); the old name will go.',
                      DeprecationWarning, stacklevel=2)
        level = "constant"
    if advantages.shape != token_logps.shape[:1]:
        raise ValueError(f"advantages must have one value per response, shape ({token_logps.shape[0]},); "
                         f"got {tuple(advantages.shape)}.")
    per_token = -advantages.detach()[:, None] * token_logps * mask
    if level == "constant":
        return per_token.sum(dim=1).mean()
    if level == "token":
        return per_token.sum() / mask.sum().clamp(min=1)
    raise ValueError(f"level must be 'constant' (sum over tokens / number of responses) or 'token' (token mean); "
                     f"got {level!r}.")


# ----------------------------------------------------------------------------- rollouts


@dataclass
class Rollout:
    """k sampled responses for each of a batch of prompts, scored and ready for a gradient step.

    Rows are grouped by prompt: rows ``i*k … i*k+k−1`` answer ``prompts[i]``.
    ``batch`` holds the sampled token ids (``pack``); ``ref_logps`` are the
    reference's per-token log-probabilities of them, ``old_logps`` the
    sampling policy's (both detached).
    """

    prompts: list[Prompt]
    k: int
    responses: list[str]
    finished: torch.Tensor
    batch: dict[str, torch.Tensor]
    old_logps: torch.Tensor
    ref_logps: torch.Tensor
    rewards: torch.Tensor

    @property
    def kl(self) -> torch.Tensor:
        """Per-response k1 estimate of KL(π‖π_ref): Σ_t log π − log π_ref over the sampled tokens."""
        return (self.old_logps - self.ref_logps).sum(dim=1)

    def gold(self) -> np.ndarray:
        """Gold reward of every response (the truth the policy never sees)."""
        prompts = [p for p in self.prompts for _ in range(self.k)]
        return np.array([gold_reward(p, r) for p, r in zip(prompts, self.responses)])


@torch.no_grad()
def rollout(
    policy: PreTrainedModel,
    reference: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompts: list[Prompt],
    reward_fn: RewardFunction,
    profile: Profile,
    k: int,
    temperature: float = 1.0,
) -> Rollout:
    """Sample ``k`` responses per prompt, score them, and compute policy and reference log-probs."""
    texts = [p.text for p in prompts]
    samples = sample_completions(policy, tokenizer, texts, n=k, max_new_tokens=profile.max_new_tokens,
                                 temperature=temperature, batch_size=len(texts) * k)
    batch = {key: value.to(policy.device) for key, value in
             pack(samples.prompt_ids, samples.completion_ids, tokenizer.pad_token_id).items()}
    policy.eval()
    size = profile.rl.micro_batch_size
    old_logps = torch.cat([token_logprobs(policy, part) for _, part in micro_batches(batch, size)])
    ref_logps = torch.cat([token_logprobs(reference, part) for _, part in micro_batches(batch, size)])
    rewards = reward_fn([t for t in texts for _ in range(k)], samples.texts).float().to(policy.device)
    return Rollout(prompts, k, samples.texts, torch.tensor(samples.finished), batch, old_logps, ref_logps, rewards)


def micro_batches(batch: dict[str, torch.Tensor], size: int):
    """Split a batch into consecutive parts of ``size`` rows (one part when ``size`` is 0).

    Yields ``(rows, part)``: the slice of rows a part holds and the part.
    A loss averaged over rows is the sum of the parts' losses, each weighted
    by its share of the rows, so accumulating gradients over micro-batches
    takes the same step as the whole batch in a fraction of the memory (the
    logits of a 150k-token vocabulary over 64 responses do not fit a T4 at once).
    """
    total = len(batch["input_ids"])
    size = size if 0 < size < total else total
    for start in range(0, total, size):
        rows = slice(start, min(start + size, total))
        yield rows, {key: value[rows] for key, value in batch.items()}


# ----------------------------------------------------------------------------- training from scratch


@dataclass
class PolicyGradientResult:
    """A trained policy and one row of measurements per step (proxy, gold, KL, loss)."""

    model: PreTrainedModel
    history: list[dict] = field(default_factory=list)
    seconds: float = 0.0


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
) -> PolicyGradientResult:
    """Train ``policy`` (in place) by REINFORCE with a running-mean baseline or by RLOO.

    Each step samples ``profile.rl.k`` responses for ``profile.rl.prompts_per_step``
    training prompts, subtracts ``profile.rl.beta`` × the sampled KL to
    ``reference`` from each reward, and takes one Adam step on
    :func:`sequence_loss`. Every step is on-policy, so no importance ratio is
    needed (that is what PPO adds).
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
    from .sft import trainer_arguments

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

    from .sft import fit

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
