"""Measuring a policy with a verifier: accuracy, pass@k, format and length on held-out prompts.

RLVR is judged by what the verifier can check, on prompts it never trained
on: pass@1 (the share of single samples that are right) and pass@k (the chance
that at least one of k samples is right, :func:`rlhf_course.core.evaluation.pass_at_k`).
Comparing the two is how one asks whether RL taught the policy new answers or
made it pick the ones it could already find more often (Yue et al., 2025).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from rlhf_course.core.evaluation import mean_pass_at_k
from rlhf_course.core.profiles import Profile
from rlhf_course.core.sampling import generate
from rlhf_course.reasoning.verifiers import Verdict, verify
from rlhf_course.toyworld import GOLD_WEIGHTS, Prompt, gold_attributes, words


def correct_table(policy: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, prompts: list[Prompt], n: int,
                  profile: Profile, *, seed: int = 0, check: Callable[[Prompt, str], Verdict] = verify,
                  ) -> tuple[np.ndarray, list[str]]:
    """Sample ``n`` responses per prompt at temperature 1 and verify them.

    Returns the ``(prompts, n)`` table of correctness (0 or 1) and the
    responses (prompt ``i``'s at ``i*n … i*n+n−1``). Sampling runs under a
    forked random state, so measuring never changes what trains next.
    """
    with torch.random.fork_rng():
        responses = generate(policy, tokenizer, [p.text for p in prompts], n=n, max_new_tokens=profile.max_new_tokens,
                             batch_size=max(profile.eval_batch_size, n), seed=seed)
    table = np.array([check(p, responses[i * n + j]).correct for i, p in enumerate(prompts) for j in range(n)])
    return table.reshape(len(prompts), n), responses


def measure(policy: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, prompts: list[Prompt], n: int,
            profile: Profile, *, ks: tuple[int, ...] = (1,), seed: int = 0,
            check: Callable[[Prompt, str], Verdict] = verify) -> dict[str, float]:
    """Sample ``n`` responses per prompt and measure them.

    Returns pass@k for each k in ``ks`` by the verifier ``check``, its format
    rate, the gold reward's ``correct`` and ``format`` attributes and its mean,
    and the mean response length in words: one row of a comparison table.
    """
    table, responses = correct_table(policy, tokenizer, prompts, n, profile, seed=seed, check=check)
    pairs = [(p, responses[i * n + j]) for i, p in enumerate(prompts) for j in range(n)]
    gold = [gold_attributes(p, r) for p, r in pairs]
    out = {f"pass@{k}": mean_pass_at_k(table, k) for k in ks}
    out.update({"format": float(np.mean([check(p, r).well_formed for p, r in pairs])),
                "gold_correct": float(np.mean([g["correct"] for g in gold])),
                "gold_format": float(np.mean([g["format"] for g in gold])),
                "gold": float(np.mean([sum(GOLD_WEIGHTS[a] * g[a] for a in GOLD_WEIGHTS) for g in gold])),
                "length": float(np.mean([len(words(r)) for _, r in pairs]))})
    return out
