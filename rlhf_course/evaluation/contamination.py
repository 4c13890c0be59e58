"""Contamination: has the model seen the test? Two ways to tell.

1. **Perturbed siblings** (as GSM1k did for GSM8k, Zhang et al. 2024): rewrite
   each test prompt in the same template with other numbers or words. A model
   that learned the task does as well on the siblings; a model that memorised
   the test does better on the originals. The gap between the two accuracies
   is the measurement, and it needs no access to the training data.
2. **n-gram overlap** (as in the GPT-3 and GPT-4 reports): flag a test prompt
   when enough of its word n-grams occur in the training data. It needs the
   training data, and the choice of ``n`` matters: short n-grams match every
   prompt written in a shared template, long ones miss a light rewrite.

The toy world's templates also give prompt-format sensitivity for free: the
same task (:func:`with_template`) asked in each of its family's phrasings.

    >>> from rlhf_course.toyworld import make_prompts
    >>> prompt = make_prompts("test", 1, seed=0, families=("arithmetic",))[0]
    >>> sibling = perturbed_sibling(prompt, random.Random(0))
    >>> template_of(sibling) == template_of(prompt) and sibling.text != prompt.text
    True
"""

from __future__ import annotations

import random
from typing import Iterable, Sequence

import numpy as np

from rlhf_course.toyworld import Prompt, words
from rlhf_course.toyworld.prompts import CATEGORIES, MESSAGES, TEMPLATES, WORDS, transform_word

__all__ = ["ngram_overlap", "ngrams", "perturbed_sibling", "perturbed_siblings", "template_of", "with_template"]


def template_of(prompt: Prompt) -> str:
    """The template of the toy world that wrote ``prompt`` (e.g. ``"What is {a} {op} {b}?"``)."""
    for template in TEMPLATES.get(prompt.family, ()):
        if template.format(**prompt.spec) == prompt.text:
            return template
    raise ValueError(f"{prompt.text!r} was not written by any {prompt.family!r} template of the toy world; "
                     "perturbed siblings and rephrasings need a toy-world prompt.")


def _build(family: str, template: str, spec: dict) -> Prompt:
    """A toy-world prompt of ``family`` from a template and a spec, with its exact answer where it has one."""
    text = template.format(**spec)
    if family == "arithmetic":
        value = spec["a"] + spec["b"] if spec["op"] == "plus" else spec["a"] - spec["b"]
        answer: str | None = str(value)
    elif family == "transform":
        spec = {**spec, "kind": "upper" if "capital" in template else "repeat"}
        answer = transform_word(spec["word"], spec["kind"])
    else:
        answer = None
    return Prompt(f"{family}/{text}", family, text, dict(spec), answer)


def with_template(prompt: Prompt, template: str) -> Prompt:
    """The same task as ``prompt`` asked in another phrasing of its family."""
    if template not in TEMPLATES[prompt.family]:
        raise ValueError(f"{template!r} is not a {prompt.family!r} template; choose from {TEMPLATES[prompt.family]}.")
    if prompt.family == "transform" and ("capital" in template) != ("capital" in template_of(prompt)):
        raise ValueError("a transform prompt keeps its kind (capitals or repetition); pick a template of that kind.")
    return _build(prompt.family, template, prompt.spec)


def _other_spec(prompt: Prompt, rng: random.Random) -> dict:
    """The spec of ``prompt`` with its numbers or words changed (never the same task)."""
    spec = prompt.spec
    while True:
        if prompt.family == "arithmetic":
            a, b = rng.randint(1, 9), rng.randint(1, 9)
            new = {"a": max(a, b), "b": min(a, b)} if spec["op"] == "minus" else {"a": a, "b": b}
            new["op"] = spec["op"]
        elif prompt.family == "listing":
            new = {"n": rng.choice((2, 3, 4, 5)), "category": rng.choice(sorted(CATEGORIES))}
        elif prompt.family == "transform":
            new = {**spec, "word": rng.choice(WORDS)}
        else:
            new = {**spec, "message": rng.choice(sorted(MESSAGES))}
        if any(new[k] != spec.get(k) for k in new):
            return new


def perturbed_sibling(prompt: Prompt, rng: random.Random, exclude: Iterable[str] = ()) -> Prompt:
    """A prompt in the same template as ``prompt`` with other numbers or words, not among ``exclude`` (ids).

    Arithmetic gets other operands (the same operation, never a negative
    result), listing another count or category, transform another word, tone
    another message in the same tone.
    """
    template, banned = template_of(prompt), set(exclude) | {prompt.id}
    for _ in range(1000):
        sibling = _build(prompt.family, template, _other_spec(prompt, rng))
        if sibling.id not in banned:
            return sibling
    raise ValueError(f"no sibling of {prompt.text!r} outside the {len(banned)} excluded prompts; exclude fewer.")


def perturbed_siblings(prompts: Sequence[Prompt], seed: int = 0, exclude: Iterable[str] = ()) -> list[Prompt]:
    """One sibling per prompt (see :func:`perturbed_sibling`), none of them one of ``prompts`` or ``exclude``.

    Siblings of different prompts may coincide; they are fresh prompts of the
    same difficulty, so accuracy on them estimates accuracy on unseen tasks.
    """
    rng = random.Random(f"siblings/{seed}")
    banned = set(exclude) | {p.id for p in prompts}
    return [perturbed_sibling(p, rng, banned) for p in prompts]


def ngrams(text: str, n: int) -> set[tuple[str, ...]]:
    """The lower-cased word n-grams of ``text``; a text shorter than ``n`` words is one n-gram of itself."""
    if n < 1:
        raise ValueError(f"n must be a positive number of words; got {n}.")
    tokens = [w.lower() for w in words(text)]
    if len(tokens) < n:
        return {tuple(tokens)} if tokens else set()
    return {tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1)}


def ngram_overlap(test_texts: Sequence[str], train_texts: Sequence[str], n: int = 8) -> np.ndarray:
    """For each test text, the share of its word n-grams that occur anywhere in ``train_texts``.

    A test text shorter than ``n`` words is looked up whole, as a run of words
    anywhere in the training texts.

    1 means every n-gram of the test text was seen in training, 0 none. A test
    text is usually flagged as contaminated above a threshold (the GPT-3
    report flagged any shared 13-gram; prompts of a few words need a
    smaller ``n``, with the risk that short n-grams match innocent prompts
    that share a template).
    """
    if isinstance(test_texts, str) or isinstance(train_texts, str):
        raise ValueError("ngram_overlap takes lists of texts; wrap a single text in a list.")
    seen: dict[int, set[tuple[str, ...]]] = {}  # the training n-grams of each length needed
    out = []
    for text in test_texts:
        grams = ngrams(text, n)
        if not grams:
            out.append(0.0)
            continue
        length = len(next(iter(grams)))  # n, or the whole text when it is shorter
        if length not in seen:
            seen[length] = set().union(*(ngrams(t, length) for t in train_texts)) if train_texts else set()
        out.append(len(grams & seen[length]) / len(grams))
    return np.array(out)
