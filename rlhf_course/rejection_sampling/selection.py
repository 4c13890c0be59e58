"""Choosing among samples: the best of n, the top k, a random k, and what best-of-n costs in KL.

Pure functions on scores and counts, no model: the selection rules of
rejection sampling, the analytic bound log n − (n − 1)/n on KL(best-of-n ‖ π)
and its estimate from samples, and the curve of expected best-of-n reward.
"""

from __future__ import annotations

import math
from math import comb

import numpy as np
import torch

from rlhf_course.optimization_rl.objective import best_of_n_policy, kl_divergence


# ----------------------------------------------------------------------------- selection and its KL


def select_best(scores: torch.Tensor) -> torch.Tensor:
    """Index of the highest-scoring of the n candidates of each prompt; ``scores`` has shape ``(prompts, n)``.

    Ties go to the first candidate, a fixed rule like any implementation's.
    """
    if scores.dim() != 2:
        raise ValueError(f"scores must have shape (prompts, n); got {tuple(scores.shape)}.")
    return scores.argmax(dim=1)


def best_of_n_kl_bound(n: int) -> float:
    """log n − (n − 1)/n: the KL of best-of-n when no two samples are ever the same response.

    For any policy this is an upper bound on KL(π_bon ‖ π) (Beirami et al., 2024).
    """
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive integer; got {n!r}.")
    return math.log(n) - (n - 1) / n


def best_of_n_kl(ref_probs: object, rewards: object, n: int) -> float:
    """KL(π_bon ‖ π_ref) exactly, on a finite list of responses with their probabilities and rewards."""
    return kl_divergence(best_of_n_policy(ref_probs, rewards, n), ref_probs)


def estimate_best_of_n_kl(responses: list[list[str]], scores: torch.Tensor, n: int) -> float:
    """Plug-in estimate of KL(π_bon ‖ π) from many samples of π per prompt, averaged over prompts.

    ``responses[i]`` are M samples for prompt i and ``scores[i]`` their rewards.
    The samples' empirical distribution stands in for π (repeated responses
    count as one response with a larger probability) and the best-of-n KL is
    computed exactly on it. With M much larger than n the estimate settles;
    it always stays below the bound, as the exact value does.
    """
    kls = []
    for texts, row in zip(responses, scores.tolist(), strict=True):
        counts: dict[str, int] = {}
        reward: dict[str, float] = {}
        for text, value in zip(texts, row, strict=True):
            counts[text] = counts.get(text, 0) + 1
            reward[text] = value
        keys = list(counts)
        probs = torch.tensor([counts[k] for k in keys], dtype=torch.float64) / len(texts)
        kls.append(best_of_n_kl(probs, [reward[k] for k in keys], n))
    return float(np.mean(kls))


def best_of_n_curve(proxy: torch.Tensor, gold: torch.Tensor, ns: list[int]) -> dict[str, list[float]]:
    """Expected proxy and gold reward of best-of-n for each n, from one pool of M samples per prompt.

    Instead of drawing fresh subsets, average over *all* n-subsets of the pool:
    the sample ranked j-th lowest by the proxy is the best of a random
    n-subset with probability C(j−1, n−1)/C(M, n). ``proxy`` and ``gold``
    have shape ``(prompts, M)``.
    """
    m = proxy.shape[1]
    order = proxy.argsort(dim=1)
    proxy_sorted, gold_sorted = proxy.gather(1, order).double(), gold.gather(1, order).double()
    out: dict[str, list[float]] = {"n": list(ns), "proxy": [], "gold": []}
    for n in ns:
        if not 1 <= n <= m:
            raise ValueError(f"n must be between 1 and the pool size {m}; got {n}.")
        weights = torch.tensor([comb(j, n - 1) for j in range(m)], dtype=torch.float64) / comb(m, n)
        out["proxy"].append(float((proxy_sorted @ weights).mean()))
        out["gold"].append(float((gold_sorted @ weights).mean()))
    return out


# ----------------------------------------------------------------------------- rejection-sampling fine-tuning


def select_top_k(scores: torch.Tensor, k: int) -> torch.Tensor:
    """Indices of the k highest-scoring candidates of each prompt, shape ``(prompts, k)``."""
    return scores.topk(k, dim=1).indices


def select_random_k(scores: torch.Tensor, k: int, seed: int = 0) -> torch.Tensor:
    """k candidates per prompt chosen at random, ignoring the scores: the matched control for top-k."""
    generator = torch.Generator().manual_seed(seed)
    return torch.stack([torch.randperm(scores.shape[1], generator=generator)[:k] for _ in range(scores.shape[0])])
