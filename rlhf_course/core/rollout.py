"""Rollouts: what every RL stage (REINFORCE, RLOO, GRPO, PPO) does before its gradient step.

:func:`rollout` samples k responses for each of a batch of prompts, scores them
with a reward function and records the policy's and the reference's per-token
log-probabilities. :func:`micro_batches` splits a batch so its gradient fits in
memory. A reward function (:data:`RewardFunction`) scores responses to prompts;
a gold function (:data:`GoldFunction`) is the hook through which a caller that
knows the truth (the toy world) has a trainer log it; :class:`PolicyGradientResult`
is what an RL stage returns.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from rlhf_course.core.profiles import Profile
from rlhf_course.core.sampling import generate, pack, token_logprobs
from rlhf_course.core.vllm_generation import sample_rollouts


# A reward function scores responses to prompts (plain texts, no chat template): the
# learned reward model (see ``reward_modeling.reward_function``) or a verifier.
RewardFunction = Callable[[list[str], list[str]], torch.Tensor]

# A gold function scores each response to the prompt beside it (the prompts as the caller
# passed them, e.g. toy-world ``Prompt``s): what a trainer logs as "gold_reward", never optimises.
# The toy world's is ``rlhf_course.toyworld.gold_rewards``; a hub dataset has none.
GoldFunction = Callable[[list[Any], list[str]], Sequence[float]]


def prompt_text(prompt: Any) -> str | list[dict]:
    """A prompt as the sampler and the reward function take it.

    A plain string stays as it is, and so does a conversation: a list of
    ``{"role", "content"}`` messages, as a hub dataset's prompt often is
    (``core.sampling.chat_prompt`` renders either). Any other object gives its
    ``text`` (a toy-world ``Prompt``).
    """
    return prompt if isinstance(prompt, (str, list)) else prompt.text


def check_prompts(prompts: Sequence[Any], needed: int, what: str) -> None:
    """Raise a clear error when a trainer is given fewer prompts than its settings consume."""
    if len(prompts) < needed:
        raise ValueError(f"{what} needs {needed} training prompts; got {len(prompts)}. Pass more prompts "
                         "(on the toy world: rlhf_course.toyworld.training) or take fewer steps.")


def check_rounds(prompts: Sequence[Sequence[Any]], what: str) -> None:
    """Raise a clear error unless ``prompts`` holds one non-empty list of prompts per round (at least one round)."""
    flat = [batch for batch in prompts if isinstance(batch, str) or hasattr(batch, "text")]
    if flat or not prompts or any(len(batch) == 0 for batch in prompts):
        got = "a flat list of prompts" if flat else f"rounds of sizes {[len(batch) for batch in prompts]}"
        raise ValueError(f"{what} takes one non-empty list of prompts per round, e.g. [round1, round2]; got {got}. "
                         "On the toy world, rlhf_course.toyworld.training gives them.")


def mean_gold(gold_fn: GoldFunction | None, prompts: list[Any], responses: list[str]) -> float | None:
    """Mean of ``gold_fn`` over the responses, for a trainer's history; ``None`` without a gold function."""
    return None if gold_fn is None else np.asarray(gold_fn(prompts, responses), dtype=float).mean()


# ----------------------------------------------------------------------------- rollouts


@dataclass
class Rollout:
    """k sampled responses for each of a batch of prompts, scored and ready for a gradient step.

    Rows are grouped by prompt: rows ``i*k … i*k+k−1`` answer ``prompts[i]``.
    ``batch`` holds the sampled token ids (``pack``); ``ref_logps`` are the
    reference's per-token log-probabilities of them, ``old_logps`` the
    sampling policy's (both detached; ``old_logps`` is ``None`` until the
    caller sets it when :func:`rollout` was told ``policy_logps=False``).
    """

    prompts: list[Any]
    k: int
    responses: list[str]
    finished: torch.Tensor
    batch: dict[str, torch.Tensor]
    old_logps: torch.Tensor | None
    ref_logps: torch.Tensor
    rewards: torch.Tensor

    @property
    def kl(self) -> torch.Tensor:
        """Per-response k1 estimate of KL(π‖π_ref): Σ_t log π − log π_ref over the sampled tokens."""
        return (self.old_logps - self.ref_logps).sum(dim=1)

    @property
    def response_prompts(self) -> list[Any]:
        """The prompt of every response, in the responses' order (for a gold function)."""
        return [p for p in self.prompts for _ in range(self.k)]


@torch.no_grad()
def rollout(
    policy: PreTrainedModel,
    reference: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompts: list[Any],
    reward_fn: RewardFunction,
    profile: Profile,
    k: int,
    temperature: float = 1.0,
    policy_logps: bool = True,
) -> Rollout:
    """Sample ``k`` responses per prompt, score them, and compute policy and reference log-probs.

    ``prompts`` are strings or objects with a ``text`` (toy-world ``Prompt``s). With
    ``profile.rl.use_vllm`` the responses are sampled by vLLM when it is installed.
    With ``policy_logps=False`` the policy's log-probs are left to the caller
    (``old_logps`` is ``None`` until it sets them): a trainer whose gradient
    pass covers the whole batch at once gets the same numbers from that pass,
    one forward pass sooner (see ``policy_gradients.train_policy_gradient``).
    """
    texts = [prompt_text(p) for p in prompts]
    samples = sample_rollouts(policy, tokenizer, texts, profile, n=k, temperature=temperature,
                              batch_size=len(texts) * k)  # model.generate unless profile.rl.use_vllm
    batch = {key: value.to(policy.device) for key, value in
             pack(samples.prompt_ids, samples.completion_ids, tokenizer.pad_token_id).items()}
    policy.eval()
    size = profile.rl.micro_batch_size
    old_logps = torch.cat([token_logprobs(policy, part) for _, part in micro_batches(batch, size)]) \
        if policy_logps else None
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
    resumed_from: str | None = None  # the checkpoint an interrupted run continued from (core.checkpoints)


def scored_samples(policy: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, prompts: Sequence[Any], n: int,
                   reward_fn: RewardFunction, profile: Profile, *, gold_fn: GoldFunction | None = None,
                   temperature: float = 1.0, seed: int = 0,
                   output_dir: str | Path | None = None) -> tuple[list[str], torch.Tensor, torch.Tensor | None]:
    """Sample ``n`` responses per prompt and score each with ``reward_fn`` (and ``gold_fn``, when given).

    The first half of best-of-n and of filtered distillation: returns the
    candidates (prompt i's at ``i*n … i*n+n−1``), their ``(prompts, n)``
    rewards, and their ``(prompts, n)`` gold rewards or None. ``prompts`` are
    strings or toy-world ``Prompt``s; gold is measured, never used to select.

    With ``output_dir``, the samples so far are saved there after every chunk
    of prompts, and a run started again with the same folder resumes after the
    last saved chunk (:func:`_sampled_in_chunks`); the result is the same either
    way.
    """
    prompts, texts = list(prompts), [prompt_text(p) for p in prompts]
    if output_dir is None:
        candidates = generate(policy, tokenizer, texts, n=n, max_new_tokens=profile.max_new_tokens,
                              temperature=temperature, batch_size=max(profile.eval_batch_size, n), seed=seed)
    else:
        candidates = _sampled_in_chunks(policy, tokenizer, texts, n, profile, temperature, seed, Path(output_dir))
    scores = reward_fn([t for t in texts for _ in range(n)], candidates).float().view(len(texts), n)
    gold = None if gold_fn is None else torch.tensor(
        gold_fn([p for p in prompts for _ in range(n)], candidates), dtype=torch.float).view(len(texts), n)
    return candidates, scores, gold


def _sampled_in_chunks(policy: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, texts: list[str], n: int,
                       profile: Profile, temperature: float, seed: int, output_dir: Path) -> list[str]:
    """:func:`scored_samples`' sampling, saved after every chunk of ``max(eval_batch_size, n)`` prompts, and resumed.

    A chunk of that many prompts is a whole number of the sampler's batches,
    and the random state runs on from one chunk to the next (and is saved with
    the samples), so the chunks draw exactly what one call draws. Only the
    responses are saved, under a key of the prompts, the settings and the
    policy's weights (another policy samples afresh); they are scored after
    sampling, by whatever reward function this run has.
    """
    from rlhf_course.core.checkpoints import load_samples, model_fingerprint, save_samples
    from rlhf_course.core.runs import display_path, settings_digest

    chunk = max(profile.eval_batch_size, n)
    key = settings_digest({"prompts": texts, "n": n, "temperature": temperature, "seed": seed,
                           "max_new_tokens": profile.max_new_tokens, "policy": model_fingerprint(policy)})
    saved = load_samples(output_dir, key)
    if saved is None:
        torch.manual_seed(seed)
        saved = {"done": 0, "candidates": []}
    else:
        print(f"sampling: resuming after prompt {saved['done']} of {len(texts)} ({display_path(output_dir)}).",
              flush=True)
    for start in range(saved["done"], len(texts), chunk):
        saved["candidates"] += generate(policy, tokenizer, texts[start:start + chunk], n=n,
                                        max_new_tokens=profile.max_new_tokens, temperature=temperature,
                                        batch_size=chunk, seed=None)
        saved["done"] = min(start + chunk, len(texts))
        save_samples(output_dir, key, saved["done"], {"candidates": saved["candidates"]})
    return saved["candidates"]
