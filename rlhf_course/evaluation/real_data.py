"""Evaluation on real data, where there is no gold reward.

The toy world scores every answer with its gold reward; a hub dataset has none.
On real data a stage is measured the way practitioners measure it:

- a reward model by its accuracy on held-out pairs (:func:`pair_accuracy`: the
  share of pairs whose chosen response it scores higher; the labels are the
  only truth there is);
- a policy (:func:`judge_policy`) by the reward model's mean score of its
  answers to held-out prompts, its win rate against a reference policy's
  answers to the same prompts under a judge (:class:`~rlhf_course.core.judges.RewardJudge`
  over the reward model by default: any :class:`~rlhf_course.core.judges.PairwiseJudge`
  works), and a few samples to read.

Both are proxies: a policy optimised against the same reward model is judged by
its own optimiser, so read the win rate next to the samples (the Over-optimization
chapter says why).
"""

from __future__ import annotations

import numpy as np
import torch

from rlhf_course.core.judges import PairwiseJudge, RewardJudge, win_rate_against
from rlhf_course.core.profiles import Profile
from rlhf_course.core.sampling import generate
from rlhf_course.preference_data.data import field_text


def pair_accuracy(reward_fn, rows: list[dict]) -> dict[str, float]:
    """Share of ``rows`` whose chosen response ``reward_fn`` scores above the rejected one, and the mean margin.

    Ties count as wrong (a reward model that cannot tell two answers apart has not ranked them).
    """
    if not rows:
        raise ValueError("pair_accuracy needs at least one held-out pair; the evaluation split is empty.")
    prompts = [row["prompt"] for row in rows]
    chosen = torch.as_tensor(reward_fn(prompts, [field_text(row["chosen"]) for row in rows])).float()
    rejected = torch.as_tensor(reward_fn(prompts, [field_text(row["rejected"]) for row in rows])).float()
    return {"rm_accuracy_heldout": float((chosen > rejected).float().mean()),
            "rm_margin_heldout": float((chosen - rejected).mean()), "heldout_pairs": len(rows)}


def judge_policy(policy, tokenizer, prompts: list, reward_fn, profile: Profile, reference_responses: list[str],
                 *, judge: PairwiseJudge | None = None, seed: int = 0, n_samples: int = 3) -> dict:
    """Sample ``policy`` on held-out ``prompts`` and measure it without gold.

    Returns ``{"rm_score", "win_rate_vs_reference", "judge", "n_prompts", "samples"}``:
    the reward model's mean score of the answers, the share of prompts where the
    answer beats ``reference_responses[i]`` under ``judge`` (ties half; order
    shuffled by ``seed``), the judge's name, and the first ``n_samples`` prompts
    with both answers. Sampling does not move the caller's random state.
    """
    if len(reference_responses) != len(prompts):
        raise ValueError(f"{len(prompts)} prompts but {len(reference_responses)} reference responses.")
    judge = judge or RewardJudge(reward_fn)
    with torch.random.fork_rng():
        responses = generate(policy, tokenizer, list(prompts), max_new_tokens=profile.max_new_tokens,
                             batch_size=profile.eval_batch_size, seed=seed)
    scores = np.asarray(torch.as_tensor(reward_fn(list(prompts), responses)).float().cpu(), dtype=float)
    return {"rm_score": float(scores.mean()),
            "win_rate_vs_reference": win_rate_against(judge, list(prompts), responses, reference_responses, seed),
            "judge": type(judge).__name__, "n_prompts": len(prompts),
            "samples": [{"prompt": field_text(p) if isinstance(p, list) else p, "response": r, "reference": ref}
                        for p, r, ref in list(zip(prompts, responses, reference_responses))[:n_samples]]}
