"""The RLVR stage: reinforcement learning against a verifier, with no reward model.

:func:`train_rlvr` is the course's RLOO (:func:`rlhf_course.policy_gradients.train.train_policy_gradient`)
run on the prompts it is given, with a verifier's reward and, as is common for
RLVR, no KL penalty (``beta=0``). Gold is logged by the trainer, never
optimised. With ``evaluate`` and ``eval_every`` it also measures the policy
every few steps (held-out accuracy, say), which is how "steps to a target
accuracy" is read off. :func:`train_rlvr_grpo` is the same stage through TRL's
``GRPOTrainer`` (:func:`rlhf_course.policy_gradients.train.train_grpo`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from transformers import PreTrainedModel, PreTrainedTokenizerBase

from rlhf_course.core.profiles import Profile
from rlhf_course.core.rollout import GoldFunction, PolicyGradientResult, RewardFunction
from rlhf_course.policy_gradients.train import train_grpo, train_policy_gradient
from rlhf_course.toyworld import Prompt


@dataclass
class RLVRResult(PolicyGradientResult):
    """A policy trained against a verifier, its per-step history, and ``curve``: (step, measure) every few steps."""

    curve: list[tuple[int, float]] = field(default_factory=list)


def rlvr_profile(profile: Profile, *, steps: int | None = None, beta: float = 0.0,
                 prompts_per_step: int | None = None, k: int | None = None) -> Profile:
    """``profile`` with the KL penalty set to ``beta`` (0: none) and ``rl``'s steps, prompts per step and group size
    ``k`` replaced where given."""
    rl = profile.rl
    rl = dataclasses.replace(rl, beta=beta, grpo_beta=beta, steps=steps or rl.steps,
                             prompts_per_step=prompts_per_step or rl.prompts_per_step, k=k or rl.k)
    return profile.replace(rl=rl)


def _measured(reward_fn: RewardFunction, policy: PreTrainedModel, evaluate: Callable[[PreTrainedModel], float],
              every: int, curve: list[tuple[int, float]]) -> RewardFunction:
    """``reward_fn`` that also records ``evaluate(policy)`` before every ``every``-th step's update.

    The trainer calls the reward once per step, after sampling and before the
    gradient step, so call ``s`` (from 0) sees the policy after ``s`` updates.
    """
    calls = [0]

    def reward(texts: list[str], responses: list[str]):
        if calls[0] % every == 0:
            curve.append((calls[0], evaluate(policy)))
        calls[0] += 1
        return reward_fn(texts, responses)

    return reward


def _cycled(prompts: list[Prompt], profile: Profile) -> list[Prompt]:
    """``prompts`` repeated in order until there is one for every slot of ``steps × prompts_per_step``."""
    if not prompts:
        raise ValueError("prompts is empty; pass the training prompts of the RLVR run.")
    needed = profile.rl.steps * profile.rl.prompts_per_step
    return [prompts[i % len(prompts)] for i in range(needed)]


def train_rlvr(policy: PreTrainedModel, reference: PreTrainedModel, tokenizer: PreTrainedTokenizerBase,
               prompts: list[Prompt], reward_fn: RewardFunction, profile: Profile, *, steps: int | None = None,
               beta: float = 0.0, aggregation: str = "constant", gold_fn: GoldFunction | None = None, seed: int = 0,
               evaluate: Callable[[PreTrainedModel], float] | None = None, eval_every: int = 0,
               progress: bool = True, output_dir: str | Path | None = None) -> RLVRResult:
    """RLOO on ``prompts`` with a verifier's ``reward_fn`` and KL penalty ``beta`` (0 by default); ``policy`` trains in place.

    ``steps`` (default ``profile.rl.steps``) steps of ``profile.rl.prompts_per_step``
    prompts × ``profile.rl.k`` samples; prompts are taken in order and
    cycled (a filtered pool may be smaller than a run). ``aggregation`` is how
    per-token losses are summed (see :func:`rlhf_course.policy_gradients.loss.aggregate`);
    ``gold_fn`` is logged, never optimised. With ``evaluate`` and
    ``eval_every > 0``, ``evaluate(policy)`` is recorded every ``eval_every``
    steps and after the last (``curve``). ``output_dir``, when given, is where
    the run checkpoints every ``profile.rl.checkpoint_steps`` steps and resumes
    from (see :func:`~rlhf_course.policy_gradients.train.train_policy_gradient`).
    """
    if profile.lora and evaluate is not None:
        raise ValueError("evaluate during training needs the policy trained in place; it is not with LoRA. "
                         "Evaluate the returned model instead.")
    settings = rlvr_profile(profile, steps=steps, beta=beta)
    curve: list[tuple[int, float]] = []
    if evaluate is not None and eval_every > 0:
        reward_fn = _measured(reward_fn, policy, evaluate, eval_every, curve)
    result = train_policy_gradient(policy, reference, tokenizer, reward_fn, settings, prompts=_cycled(prompts, settings),
                                   gold_fn=gold_fn, method="rloo", seed=seed, progress=progress,
                                   aggregation=aggregation, output_dir=output_dir)
    if curve:
        curve.append((settings.rl.steps, evaluate(result.model)))
    return RLVRResult(result.model, result.history, result.seconds, result.resumed_from, curve=curve)


def train_rlvr_grpo(policy_path: str | Path, tokenizer: PreTrainedTokenizerBase, prompts: list[Prompt],
                    reward_fn: RewardFunction, profile: Profile, *, steps: int | None = None, beta: float = 0.0,
                    gold_fn: GoldFunction | None = None, output_dir: str | Path = "runs/rlvr_grpo", seed: int = 0,
                    progress: bool = True) -> PolicyGradientResult:
    """The same stage through TRL's ``GRPOTrainer`` (group-normalised advantages), KL weight ``beta`` (0 by default)."""
    settings = rlvr_profile(profile, steps=steps, beta=beta)
    return train_grpo(policy_path, tokenizer, reward_fn, settings, prompts=_cycled(prompts, settings), gold_fn=gold_fn,
                      output_dir=output_dir, seed=seed, progress=progress)
