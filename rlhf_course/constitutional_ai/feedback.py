"""AI feedback measured against gold: where a judge's labels go wrong, and how a policy changed.

The toy world knows the truth, so an AI label can be graded like an
annotator's. :func:`error_by_attribute` splits the disagreements with gold by
the attribute that decides each pair: errors spread evenly over attributes
look like noise, errors piled on one attribute are a bias.
:func:`pairwise_judge_rows` turns seed labels into the prompt–completion rows
that teach a small language model to answer "A" or "B" (the tiny profile's
stand-in for a prompted judge), and :func:`order_report` reads one judge's
probabilities in both orders into its position consistency, its raw agreement
and its swap-averaged agreement.
"""

from __future__ import annotations

import random

import numpy as np
import pandas as pd

from rlhf_course.core.judges import LogProbJudge, PairwiseJudge, agreement, verdict
from rlhf_course.toyworld import GOLD_WEIGHTS, Prompt, gold_attributes

from .constitution import deciding_attribute

TINY_JUDGE_PRINCIPLE = "Follow the constitution."


def gold_verdicts(prompts: list[Prompt], pairs: list[list[str]]) -> list[int]:
    """0 or 1 for the completion with the higher gold reward, -1 for equal gold."""
    from rlhf_course.toyworld import gold_reward

    out = []
    for p, (a, b) in zip(prompts, pairs, strict=True):
        x, y = gold_reward(p, a), gold_reward(p, b)
        out.append(-1 if x == y else 0 if x > y else 1)
    return out


def error_by_attribute(prompts: list[Prompt], pairs: list[list[str]], labels: dict[str, list[int]]) -> pd.DataFrame:
    """Disagreement with gold of each label source, by the attribute that decides the pair.

    ``labels`` maps a source name (e.g. "AI judge", "annotators") to verdicts
    on ``pairs``. Rows: attributes (and "all"); columns: the number of pairs
    and each source's error rate (ties count half).
    """
    gold = gold_verdicts(prompts, pairs)
    deciding = [deciding_attribute(p, a, b) for p, (a, b) in zip(prompts, pairs)]
    rows = []
    for attribute in list(GOLD_WEIGHTS) + ["all"]:
        idx = [i for i, d in enumerate(deciding) if d is not None and (attribute == "all" or d == attribute)]
        row = {"attribute": attribute, "pairs": len(idx)}
        for name, verdicts in labels.items():
            row[name] = 1 - agreement([verdicts[i] for i in idx], [gold[i] for i in idx]) if idx else float("nan")
        rows.append(row)
    return pd.DataFrame(rows).set_index("attribute")


def pairwise_judge_rows(seed_rows: list[dict], seed: int = 0) -> list[dict]:
    """Seed labels as judge prompts with the answer "A" or "B" (the better response in a random position)."""
    rng = random.Random(f"judge-rows/{seed}")
    template = LogProbJudge(None, None, principle=TINY_JUDGE_PRINCIPLE)
    rows = []
    for r in seed_rows:
        first = rng.random() < 0.5
        a, b = (r["chosen"], r["rejected"]) if first else (r["rejected"], r["chosen"])
        rows.append({"prompt": template.judge_prompt(r["prompt"], a, b), "completion": "A" if first else "B"})
    return rows


def order_report(judge: PairwiseJudge, prompts: list, pairs: list[list[str]]) -> dict[str, float]:
    """A judge shown every pair in both orders: consistency, first-position rate, and agreement with gold.

    ``raw_agreement`` is the expected agreement of the judge's verdict when
    each pair is shown once, in a random order (as :meth:`PairwiseJudge.judge`
    with ``shuffle_order`` does): the mean of the two orders' agreements, which
    leaves out the coin flips; ``swap_agreement`` averages the two orders'
    probabilities first.
    """
    forward = judge.prob_first(prompts, pairs)
    backward = judge.prob_first(prompts, [[b, a] for a, b in pairs])
    p0_fwd, p0_bwd = np.array(forward), 1 - np.array(backward)  # P(completion 0 wins), each order
    gold = gold_verdicts(prompts, pairs)
    fwd_v = [verdict(p) for p in p0_fwd]
    bwd_v = [verdict(p) for p in p0_bwd]
    consistent = [a == b and a >= 0 for a, b in zip(fwd_v, bwd_v)]
    first = (np.sum(np.array(forward) > 0.5) + np.sum(np.array(backward) > 0.5)) / (2 * len(pairs))
    return {"consistency": float(np.mean(consistent)), "first_rate": float(first),
            "raw_agreement": (agreement(fwd_v, gold) + agreement(bwd_v, gold)) / 2,
            "swap_agreement": agreement([verdict(p) for p in (p0_fwd + p0_bwd) / 2], gold)}


def annotator_flip_rate(rows: list[dict]) -> float:
    """How often the annotators would label the same pairs the other way if asked again: noise, measured.

    An annotator chose with probability ``label_prob`` (Bradley–Terry), so two
    independent labels of a pair disagree with probability 2p(1 - p).
    """
    p = np.array([r["label_prob"] for r in rows], dtype=float)
    return float(np.mean(2 * p * (1 - p)))


def judge_flip_rate(judge: PairwiseJudge, prompts: list, pairs: list[list[str]], seed: int = 0) -> float:
    """Share of pairs a judge labels differently when asked twice (in fresh random orders)."""
    first = judge.judge(prompts, pairs, seed=seed)
    second = judge.judge(prompts, pairs, seed=seed + 1)
    return float(np.mean([a != b for a, b in zip(first, second)]))


def attribute_means(prompts: list[Prompt], responses: list[str]) -> dict[str, float]:
    """Mean of each gold attribute over a policy's responses."""
    table = [gold_attributes(p, r) for p, r in zip(prompts, responses)]
    return {k: float(np.mean([t[k] for t in table])) for k in GOLD_WEIGHTS}
