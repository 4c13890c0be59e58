"""How varied a model's answers are: the first thing to go when a model trains on its own outputs.

Three measures, each a share in [0, 1] where higher means more varied:

- **distinct answers**: per prompt, the number of different responses among
  its samples divided by the number of samples, averaged over prompts;
- **distinct n-grams** ("distinct-n", Li et al., 2016): different n-grams over
  all responses divided by all n-grams;
- **distinct item sets** (the listing family of the toy world): per prompt,
  the number of different *sets* of listed items among its samples divided by
  the number of samples. "cat, dog" and "dog, cat" are one set: this counts
  what the model knows it may list, not how it orders it.
"""

from __future__ import annotations

from collections import defaultdict

from rlhf_course.toyworld.gold import strip_padding, words
from rlhf_course.toyworld.prompts import CATEGORIES


def _by_prompt(prompt_ids: list[str], values: list) -> dict[str, list]:
    groups: dict[str, list] = defaultdict(list)
    for key, value in zip(prompt_ids, values, strict=True):
        groups[key].append(value)
    return groups


def distinct_answers(prompt_ids: list[str], responses: list[str]) -> float:
    """Mean over prompts of (different responses / samples) for that prompt."""
    groups = _by_prompt(prompt_ids, responses)
    if not groups:
        raise ValueError("No responses to measure.")
    return sum(len(set(g)) / len(g) for g in groups.values()) / len(groups)


def distinct_ngrams(responses: list[str], n: int = 2) -> float:
    """Different word n-grams over all ``responses`` divided by all their n-grams (distinct-n)."""
    grams = [tuple(ws[i:i + n]) for r in responses for ws in [words(r.lower())] for i in range(len(ws) - n + 1)]
    return len(set(grams)) / len(grams) if grams else 0.0


def item_set(category: str, response: str) -> frozenset[str]:
    """The members of ``category`` that a listing response names, as a set (order and repeats ignored)."""
    members = CATEGORIES[category]
    return frozenset(w for w in words(strip_padding(response).lower()) if w in members)


def distinct_item_sets(prompts: list, responses: list[str]) -> float:
    """Mean over listing prompts of (different item sets / samples); ``prompts`` are toy-world Prompts."""
    pairs = [(p.id, item_set(p.spec["category"], r)) for p, r in zip(prompts, responses, strict=True)
             if p.family == "listing"]
    if not pairs:
        raise ValueError("No listing prompts among the prompts; distinct item sets are measured on listing.")
    ids, sets = zip(*pairs)
    return distinct_answers(list(ids), [tuple(sorted(s)) for s in sets])


def diversity_report(model, tokenizer, prompts: list, profile, *, samples: int = 8, seed: int = 0,
                     gold_fn=None) -> dict[str, float]:
    """Sample ``samples`` answers per prompt (temperature 1) and measure them.

    Returns the three diversity measures (``distinct_answers``,
    ``distinct_2grams``, ``distinct_item_sets``, the last on the listing
    prompts among ``prompts``) and, with a ``gold_fn`` (the toy world's
    ``gold_rewards``), the mean ``gold`` reward of the answers.
    Sampling runs under a forked random state, so measuring changes nothing
    that follows.
    """
    import numpy as np
    import torch

    from rlhf_course.core.sampling import generate

    with torch.random.fork_rng():
        answers = generate(model, tokenizer, [p.text for p in prompts], n=samples,
                           max_new_tokens=profile.max_new_tokens, temperature=1.0,
                           batch_size=max(profile.eval_batch_size, samples), seed=seed)
    repeated = [p for p in prompts for _ in range(samples)]
    report = {"distinct_answers": distinct_answers([p.id for p in repeated], answers),
              "distinct_2grams": distinct_ngrams(answers, 2),
              "distinct_item_sets": distinct_item_sets(repeated, answers)}
    if gold_fn is not None:
        report["gold"] = float(np.mean(gold_fn(repeated, answers)))
    return report
