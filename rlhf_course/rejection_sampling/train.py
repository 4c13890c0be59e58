"""Rejection sampling: best-of-n at inference time, and fine-tuning on the best samples.

Best-of-n draws n responses from a policy and keeps the one the reward model
scores highest. It moves the policy by selection alone, so it is the
simplest way to spend a reward model, and a strong baseline for RL.
Rejection-sampling fine-tuning (expert iteration, RAFT) makes the selection
permanent: sample, keep the best, run the instruction-tuning stage on the
kept responses, and repeat from the tuned policy.

How far best-of-n moves from the policy it samples is measurable: the
best-of-n distribution is known in closed form
(``rlhf_course.optimization_rl.best_of_n_policy``), and its KL to the sampling
policy is at most log n − (n − 1)/n (Beirami et al., 2024), with equality
only in the limit where sampled responses never repeat.

Both take their prompts, reward function and (for fine-tuning) the
fine-tuning stage as arguments; a gold reward is recorded only through the
``gold_fn`` hook a caller passes (the toy world's ``rlhf_course.toyworld.gold_rewards``).
"""

from __future__ import annotations

import dataclasses
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from rlhf_course.core.checkpoints import finished_round, record_round, round_key
from rlhf_course.core.distributed import is_main_process
from rlhf_course.core.models import load_policy
from rlhf_course.core.profiles import Profile
from rlhf_course.core.runs import model_settings
from rlhf_course.core.rollout import GoldFunction, RewardFunction, check_rounds, prompt_text, scored_samples
from rlhf_course.rejection_sampling.selection import select_best, select_random_k, select_top_k

# A fine-tuning stage: (policy, tokenizer, prompt/completion rows, profile, output_dir=, seed=, progress=) -> a
# result with the tuned ``model``; the course passes ``rlhf_course.instruction_tuning.train_sft``.
FineTune = Callable[..., Any]


# ----------------------------------------------------------------------------- best-of-n with a language model


@dataclass
class BestOfN:
    """n candidates per prompt, their proxy and gold rewards, and the ones best-of-n keeps."""

    prompts: list[Any]
    n: int
    candidates: list[str]       # prompt i's candidates at positions i*n … i*n+n−1
    proxy: torch.Tensor         # (prompts, n) reward-model scores
    gold: torch.Tensor | None   # (prompts, n) gold rewards; None when no gold function was given
    chosen: torch.Tensor        # (prompts,) index of the kept candidate

    @property
    def responses(self) -> list[str]:
        """The kept response of each prompt."""
        return [self.candidates[i * self.n + j] for i, j in enumerate(self.chosen.tolist())]

    @property
    def gold_rewards(self) -> np.ndarray:
        """Gold reward of each kept response."""
        if self.gold is None:
            raise ValueError("This best-of-n pool has no gold rewards; pass gold_fn to best_of_n to record them.")
        return self.gold[torch.arange(len(self.prompts)), self.chosen].numpy()

    @property
    def proxy_rewards(self) -> np.ndarray:
        """Proxy (reward-model) score of each kept response."""
        return self.proxy[torch.arange(len(self.prompts)), self.chosen].numpy()

    def candidates_of(self, i: int) -> list[str]:
        return self.candidates[i * self.n:(i + 1) * self.n]


def best_of_n(
    policy: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    reward_fn: RewardFunction,
    prompts: Sequence[Any],
    n: int,
    profile: Profile,
    *,
    gold_fn: GoldFunction | None = None,
    seed: int = 0,
    temperature: float = 1.0,
    select=select_best,
    output_dir: str | Path | None = None,
) -> BestOfN:
    """Sample ``n`` responses per prompt, score them with ``reward_fn``, keep the best.

    ``prompts`` are strings or toy-world ``Prompt``s. ``select`` maps the
    ``(prompts, n)`` scores to the kept index per prompt; the lab passes the
    learner's own selection function here. ``gold_fn``, when given, scores
    every candidate for the pool's ``gold`` (measured, never used to select).
    With ``output_dir``, the samples are saved as they are drawn and an interrupted run resumes where it stopped
    (``core.rollout.scored_samples``).
    """
    prompts = list(prompts)
    candidates, proxy, gold = scored_samples(policy, tokenizer, prompts, n, reward_fn, profile, gold_fn=gold_fn,
                                             temperature=temperature, seed=seed, output_dir=output_dir)
    return BestOfN(prompts, n, candidates, proxy, gold, select(proxy))


@dataclass
class RejectionSamplingResult:
    """The policy after the last round, and per round: how many rows it trained on and their rewards."""

    model: PreTrainedModel
    rounds: list[dict] = field(default_factory=list)
    seconds: float = 0.0


def rejection_sampling_finetune(
    policy: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    reward_fn: RewardFunction,
    prompts: Sequence[Sequence[Any]],
    profile: Profile,
    finetune: FineTune,
    *,
    gold_fn: GoldFunction | None = None,
    keep: str = "top",
    min_reward: float | None = None,
    output_dir: str | Path = "runs/rs_ft",
    seed: int = 0,
    progress: bool = True,
) -> RejectionSamplingResult:
    """Rounds of: sample ``profile.rs.n`` responses per prompt, keep ``profile.rs.keep_k`` of them, fine-tune on those.

    ``prompts`` holds one list of training prompts per round (on the toy world,
    ``rlhf_course.toyworld.training.rejection_sampling_prompts``), so there are
    ``len(prompts)`` rounds, each on fresh prompts and starting from the
    previous round's policy. ``keep="top"`` keeps the reward model's
    favourites (rejection sampling); ``keep="random"`` keeps random ones, a
    control that trains on the same amount of the policy's own text without
    any selection. ``finetune`` is the fine-tuning stage, run with
    ``profile.rs``'s learning rate and epochs (the course passes
    :func:`rlhf_course.instruction_tuning.train_sft`). ``gold_fn``, when given,
    records the gold reward of the kept and of all sampled responses.
    ``min_reward`` drops kept responses scored below it, so with a verifier's
    0/1 reward only verified answers are trained on: expert iteration, or STaR
    without its rationalisation step. ``policy`` is trained in place.

    Round r's model is saved under ``output_dir/round<r>/final`` (by
    ``finetune``) and the round recorded in ``round<r>/round.json``. Started
    again with the same ``output_dir``, a round that an earlier run finished on
    the same rows with the same settings is not trained again (its model is
    read back), and an interrupted round's fine-tuning resumes from its last
    checkpoint (every ``profile.rs.checkpoint_steps`` steps). Each round
    reseeds its sampling, so the result is the same as an uninterrupted run's.
    """
    if keep not in ("top", "random"):
        raise ValueError(f"keep must be 'top' or 'random'; got {keep!r}.")
    check_rounds(prompts, "rejection_sampling_finetune")
    settings, start = profile.rs, time.perf_counter()
    sft_profile = profile.replace(sft=dataclasses.replace(
        profile.sft, epochs=settings.epochs, learning_rate=settings.learning_rate,
        checkpoint_steps=settings.checkpoint_steps))
    history = []
    for r, batch in enumerate(prompts):
        folder = Path(output_dir) / f"round{r + 1}"
        pool = best_of_n(policy, tokenizer, reward_fn, batch, settings.n, profile, gold_fn=gold_fn,
                         seed=seed * 1000 + r, output_dir=folder / "samples")
        picked = select_top_k(pool.proxy, settings.keep_k) if keep == "top" \
            else select_random_k(pool.proxy, settings.keep_k, seed=seed * 1000 + r)
        rows = [{"prompt": prompt_text(p), "completion": pool.candidates_of(i)[j]}
                for i, p in enumerate(batch) for j in picked[i].tolist()
                if min_reward is None or pool.proxy[i, j] >= min_reward]
        if not rows:
            raise ValueError(f"Round {r + 1} kept no responses: none scored min_reward={min_reward} or more. "
                             "Lower min_reward or sample more (profile.rs.n).")
        random.Random(seed + r).shuffle(rows)
        key = round_key(rows, model_settings(sft_profile.sft), seed + r, getattr(finetune, "__qualname__", ""))
        done = finished_round(folder, key)
        if done is not None:  # an earlier run trained this round on these very rows: take its model
            policy = load_policy(folder / "final", profile)
            history.append(done)
            if is_main_process():
                print(f"rejection sampling: round {r + 1} was finished in {folder}; taking its model.", flush=True)
            continue
        result = finetune(policy, tokenizer, rows, sft_profile, output_dir=folder,
                          seed=seed + r, progress=progress)
        policy = result.model
        golds = {} if pool.gold is None else {"kept_gold": pool.gold.gather(1, picked).mean().item(),
                                              "pool_gold": pool.gold.mean().item()}
        history.append({"round": r + 1, "rows": len(rows), "kept_proxy": pool.proxy.gather(1, picked).mean().item(),
                        "kept_gold": None, "pool_gold": None, **golds})
        if is_main_process():
            record_round(folder, key, history[-1])
    return RejectionSamplingResult(policy, history, time.perf_counter() - start)
