"""Style features of a response: what a judge may like that the gold reward does not.

The toy world's gold reward ignores a response's length and the stock phrase
"I hope this helps!" (``rlhf_course.toyworld.gold``), yet some simulated
annotators reward both, and the reward model learned from them. These
functions measure the style of responses, so that style can be separated from
substance:

- :func:`style_features`: words, stock phrase, padding words per response;
- :func:`style_differences`: the covariates of a length-controlled (or
  style-controlled) win rate, one row per comparison of a response with a
  baseline response: ``tanh(Δwords / sd(Δwords))`` as in length-controlled
  AlpacaEval, and ``Δphrase`` for the stock phrase.
"""

from __future__ import annotations

import math

import pandas as pd
import torch

from rlhf_course.toyworld import STOCK_PHRASE, strip_padding, words

STYLE_FEATURES = ("length", "phrase")


def n_words(response: str) -> int:
    """Number of words of ``response`` (the toy world's notion of length)."""
    return len(words(response))


def padding_words(response: str) -> int:
    """Words of ``response`` that are padding: known prefixes and closing lines (``toyworld.strip_padding``)."""
    return n_words(response) - n_words(strip_padding(response))


def style_features(responses: list[str]) -> pd.DataFrame:
    """One row per response: ``words``, ``phrase`` (1 if it holds the stock phrase) and ``padding`` words."""
    return pd.DataFrame({"words": [n_words(r) for r in responses],
                         "phrase": [float(STOCK_PHRASE in r) for r in responses],
                         "padding": [padding_words(r) for r in responses]})


def _check_paired(responses: list[str], baseline: list[str]) -> None:
    if len(responses) != len(baseline) or not responses:
        raise ValueError(f"style_differences needs two paired, non-empty lists of responses (entry i of each answers "
                         f"the same prompt); got {len(responses)} and {len(baseline)}.")


def length_differences(responses: list[str], baseline: list[str]) -> torch.Tensor:
    """Words of ``responses[i]`` minus words of ``baseline[i]``, as a float64 tensor."""
    _check_paired(responses, baseline)
    return torch.tensor([n_words(a) - n_words(b) for a, b in zip(responses, baseline)], dtype=torch.float64)


def length_scale(length_diff: torch.Tensor) -> float:
    """The scale that standardises word-count differences: their standard deviation, or 1 if they are all equal."""
    sd = float(length_diff.double().std()) if length_diff.numel() > 1 else 0.0
    return sd if sd > 0 and math.isfinite(sd) else 1.0


def style_differences(responses: list[str], baseline: list[str], features: tuple[str, ...] = ("length",),
                      scale: float | None = None) -> torch.Tensor:
    """Covariates of each comparison of ``responses[i]`` with ``baseline[i]``, shape ``(n, len(features))``.

    ``"length"`` is ``tanh(Δ / scale)`` with Δ the difference in words and
    ``scale`` its standard deviation unless given (pass one scale for every
    policy compared with the same baseline, so their coefficients share units);
    the tanh bounds the effect of very long answers, as in length-controlled
    AlpacaEval. ``"phrase"`` is the difference of the stock-phrase indicators
    (−1, 0 or 1). A column is zero exactly when the two responses do not differ
    in that feature, which is what makes a controlled win rate the raw one
    when styles are equal.
    """
    _check_paired(responses, baseline)
    unknown = [f for f in features if f not in STYLE_FEATURES]
    if unknown:
        raise ValueError(f"unknown style feature {unknown[0]!r}; use one of {', '.join(STYLE_FEATURES)}.")
    mine, theirs = style_features(responses), style_features(baseline)
    delta = length_differences(responses, baseline)
    columns = []
    for feature in features:
        if feature == "length":
            columns.append(torch.tanh(delta / (scale if scale is not None else length_scale(delta))))
        else:
            columns.append(torch.tensor((mine["phrase"] - theirs["phrase"]).to_numpy(), dtype=torch.float64))
    return torch.stack(columns, dim=1) if columns else torch.zeros(len(responses), 0, dtype=torch.float64)


def length_reward(prompts: list[str], responses: list[str], cap: int = 24) -> torch.Tensor:
    """A reward that is length and nothing else: words of each response (at most ``cap``) divided by 4.

    The reward function of the Style lab's length-only policy: a caricature of
    a reward model that has learned only its annotators' taste for long
    answers. ``prompts`` are ignored (a reward function's signature).
    """
    return torch.tensor([min(n_words(r), cap) / 4 for r in responses], dtype=torch.float32)
