"""A ledger of a policy's measured gain: how much is substance, how much is style.

A judge's score (the reward model's, or an annotator's utility) rises when a
policy improves. Regressing the score of every response on what the gold
reward values (its four attributes: correct, format, tone, concise) and on
style features the gold reward ignores (words, the stock phrase) splits each
policy's mean gain over a baseline into

    gain = Σ_attributes β_a Δmean(a)  +  β_words Δmean(words) + β_phrase Δmean(phrase)  +  unexplained
           \\_________ substance ______/   \\________________ style _________________/

with the coefficients β fitted once, by least squares, on the responses of
every policy together (so each policy is read with the same exchange rate).
It is an accounting identity for the linear fit, in the spirit of Singhal et
al. (2023), who asked how much of RLHF's reward gain length alone explains.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from rlhf_course.style.features import style_features
from rlhf_course.toyworld import GOLD_WEIGHTS, Prompt, gold_attributes

SUBSTANCE = tuple(GOLD_WEIGHTS)   # the gold attributes
STYLE = ("words", "phrase")       # what the gold reward ignores


def ledger_features(prompts: list[Prompt], responses: list[str]) -> pd.DataFrame:
    """Gold attributes and style features of each response (one row per response)."""
    if len(prompts) != len(responses):
        raise ValueError(f"prompts and responses must be paired; got {len(prompts)} and {len(responses)}.")
    attributes = pd.DataFrame([gold_attributes(p, r) for p, r in zip(prompts, responses)], columns=list(SUBSTANCE))
    return pd.concat([attributes, style_features(responses)[list(STYLE)]], axis=1)


def fit_score_model(features: pd.DataFrame, scores: np.ndarray) -> pd.Series:
    """Least-squares coefficients of ``scores ~ 1 + features`` (fitted in torch, float64)."""
    x = torch.tensor(features.to_numpy(dtype=float), dtype=torch.float64)
    x = torch.cat([torch.ones(len(x), 1, dtype=torch.float64), x], dim=1)
    y = torch.as_tensor(np.asarray(scores, dtype=float), dtype=torch.float64).unsqueeze(1)
    if x.shape[0] != y.shape[0] or x.shape[0] <= x.shape[1]:
        raise ValueError(f"need more scored responses ({y.shape[0]}) than coefficients ({x.shape[1]}), paired with "
                         "the features.")
    beta = torch.linalg.lstsq(x, y).solution.squeeze(1)
    return pd.Series(beta.numpy(), index=["intercept", *features.columns])


def style_ledger(prompts: list[Prompt], responses: dict[str, list[str]], scores: dict[str, np.ndarray],
                 baseline: str) -> tuple[pd.DataFrame, pd.Series]:
    """Each policy's mean score gain over ``baseline``, split into substance, style and unexplained.

    ``responses[name]`` and ``scores[name]`` are a policy's answers to
    ``prompts`` and the judge's score of each. Returns the ledger (one row per
    policy other than the baseline: ``gain``, ``substance``, ``style``,
    ``unexplained`` and ``gold_gain``, the gain in gold reward) and the fitted
    coefficients.
    """
    if baseline not in responses or set(responses) != set(scores):
        raise ValueError(f"responses and scores must name the same policies, the baseline {baseline!r} among them; "
                         f"got {sorted(responses)} and {sorted(scores)}.")
    features = {name: ledger_features(prompts, rs) for name, rs in responses.items()}
    beta = fit_score_model(pd.concat(features.values(), ignore_index=True),
                           np.concatenate([np.asarray(scores[n], dtype=float) for n in responses]))
    base_mean, base_score = features[baseline].mean(), float(np.mean(scores[baseline]))
    rows = {}
    for name in [n for n in responses if n != baseline]:
        delta = features[name].mean() - base_mean
        gain = float(np.mean(scores[name])) - base_score
        substance = float(sum(beta[a] * delta[a] for a in SUBSTANCE))
        style = float(sum(beta[s] * delta[s] for s in STYLE))
        gold_gain = float(sum(GOLD_WEIGHTS[a] * delta[a] for a in SUBSTANCE))
        rows[name] = {"gain": gain, "substance": substance, "style": style,
                      "unexplained": gain - substance - style, "gold_gain": gold_gain}
    return pd.DataFrame.from_dict(rows, orient="index"), beta
