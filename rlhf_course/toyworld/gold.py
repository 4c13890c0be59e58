"""The gold reward: the hidden human of the toy world.

The gold reward is a deterministic function of a prompt and a response. It is
a weighted sum of four named attributes, each in [0, 1]:

=========== ====== ==============================================================
attribute   weight what it measures
=========== ====== ==============================================================
correct     2.0    the answer is right (the number, the items, the word, a
                   relevant reply)
format      1.0    the answer has the form asked for (a bare number, exactly n
                   comma-separated items, the word alone, a reply that opens in
                   some tone)
tone        1.0    no rude words; for the tone family, the requested tone
concise     0.5    no words beyond the ideal answer (1 minus extra words / 12;
                   one closing line at the end is not counted)
=========== ====== ==============================================================

so the gold reward lies in [0, 4.5]. Two things are deliberately *absent*: the
response's length and the stock phrase "I hope this helps!" earn nothing. One
closing line at the very end is free (a polite sign-off is not padding); every
other extra word, a second closing included, costs conciseness. Some simulated
annotators like length and the phrase anyway, which is how a learned reward
model can be fooled (see ``annotators.py``).

Learners may read this file; trained models never see it.
"""

from __future__ import annotations

import re

from .prompts import CATEGORIES, MESSAGES, Prompt

GOLD_WEIGHTS: dict[str, float] = {"correct": 2.0, "format": 1.0, "tone": 1.0, "concise": 0.5}
GOLD_MAX = sum(GOLD_WEIGHTS.values())

STOCK_PHRASE = "I hope this helps!"
CLOSINGS = (STOCK_PHRASE, "Let me know if you need more.")
NEUTRAL_PREFIXES = ("Sure.", "Okay, here it is:")
RUDE_PREFIXES = ("Ugh, fine.", "Obviously,", "Whatever.")
RUDE_MARKERS = ("ugh", "obviously", "whatever", "duh")
TONE_OPENERS: dict[str, str] = {
    "politely": "Thank you for writing.",
    "cheerfully": "Great news!",
    "calmly": "No need to worry.",
}
CONCISE_SCALE = 12  # extra words at which conciseness reaches 0

_WORD = re.compile(r"[A-Za-z0-9']+")


def words(text: str) -> list[str]:
    """The words of a text (letters, digits and apostrophes)."""
    return _WORD.findall(text)


def strip_padding(response: str) -> str:
    """Remove known prefixes and closings, leaving the core answer."""
    core = response.strip()
    changed = True
    while changed:
        changed = False
        for prefix in NEUTRAL_PREFIXES + RUDE_PREFIXES:
            if core.startswith(prefix):
                core, changed = core[len(prefix):].strip(), True
    for closing in CLOSINGS:
        core = core.replace(closing, " ")
    return " ".join(core.split())


def _arithmetic(prompt: Prompt, core: str) -> tuple[float, float]:
    numbers = re.findall(r"-?\d+", core)
    correct = float(bool(numbers) and numbers[0] == prompt.answer)
    well_formed = float(re.fullmatch(r"-?\d+\.?", core) is not None)
    return correct, well_formed


def _listing(prompt: Prompt, core: str) -> tuple[float, float]:
    n, members = prompt.spec["n"], CATEGORIES[prompt.spec["category"]]
    found: list[str] = []
    for w in words(core.lower()):
        if w in members and w not in found:
            found.append(w)
    correct = min(len(found), n) / n
    items = [item.strip().rstrip(".") for item in core.split(",")]
    well_formed = float(len(items) == n and all(re.fullmatch(r"[a-z]+", item) for item in items))
    return correct, well_formed


def _transform(prompt: Prompt, core: str) -> tuple[float, float]:
    tokens = core.rstrip(".").split()
    want = prompt.answer.split()
    correct = float([t.strip(".,!") for t in tokens[: len(want)]] == want)
    return correct, float(len(tokens) == len(want))


def _opener_tone(core: str) -> str | None:
    for tone, opener in TONE_OPENERS.items():
        if core.startswith(opener):
            return tone
    return None


def _tone(prompt: Prompt, core: str) -> tuple[float, float]:
    body = MESSAGES[prompt.spec["message"]]
    correct = float(body in core.lower())
    opener = _opener_tone(core)
    rest = core[len(TONE_OPENERS[opener]):].strip() if opener else core
    return correct, float(opener is not None and len(words(rest)) > 0)


_FAMILY_SCORERS = {"arithmetic": _arithmetic, "listing": _listing, "transform": _transform, "tone": _tone}


def tone_score(prompt: Prompt, response: str) -> float:
    """1 for a courteous reply (in the requested tone, for the tone family).

    Rude words give 0. For the tone family, opening in another tone gives 0.3
    and not opening in any tone 0.5.
    """
    if not response.strip() or any(w.lower() in RUDE_MARKERS for w in words(response)):
        return 0.0
    if prompt.family != "tone":
        return 1.0
    opener = _opener_tone(strip_padding(response))
    if opener is None:
        return 0.5
    return 1.0 if opener == prompt.spec["tone"] else 0.3


def ideal_length(prompt: Prompt) -> int:
    """Number of words of an ideal answer to ``prompt``."""
    if prompt.family == "listing":
        return prompt.spec["n"]
    if prompt.family == "tone":
        return len(words(TONE_OPENERS[prompt.spec["tone"]])) + len(words(MESSAGES[prompt.spec["message"]]))
    return len(prompt.answer.split())


def without_sign_off(response: str) -> str:
    """The response without one closing line at its very end (the free sign-off)."""
    text = response.rstrip()
    for closing in CLOSINGS:
        if text.endswith(closing):
            return text[: -len(closing)]
    return text


def gold_attributes(prompt: Prompt, response: str) -> dict[str, float]:
    """The four gold attributes of ``response``, each in [0, 1]."""
    core = strip_padding(response)
    correct, well_formed = _FAMILY_SCORERS[prompt.family](prompt, core) if core else (0.0, 0.0)
    extra = max(0, len(words(without_sign_off(response))) - ideal_length(prompt))
    return {
        "correct": correct,
        "format": well_formed,
        "tone": tone_score(prompt, response),
        "concise": max(0.0, 1.0 - extra / CONCISE_SCALE),
    }


def gold_reward(prompt: Prompt, response: str) -> float:
    """The hidden human's score of ``response``, in [0, GOLD_MAX] = [0, 4.5]."""
    attributes = gold_attributes(prompt, response)
    return sum(GOLD_WEIGHTS[k] * v for k, v in attributes.items())


def verify(prompt: Prompt, response: str) -> bool:
    """A verifiable reward: does the response contain the one exact answer?

    Only defined for verifiable prompts (arithmetic and transform).
    """
    if not prompt.verifiable:
        raise ValueError(f"Prompt {prompt.id!r} has no exact answer; use gold_reward instead.")
    return gold_attributes(prompt, response)["correct"] == 1.0


def gold_rewards(prompts: list[Prompt], responses: list[str]) -> list[float]:
    """:func:`gold_reward` of each response to the prompt beside it: the gold hook trainers log with.

    A trainer never computes the gold reward itself; the pipeline and the labs
    pass this function as its ``gold_fn``, and the trainer records the mean
    next to the proxy reward it optimises.
    """
    if len(prompts) != len(responses):
        raise ValueError(f"gold_rewards needs one prompt per response; got {len(prompts)} prompts "
                         f"and {len(responses)} responses.")
    return [gold_reward(p, r) for p, r in zip(prompts, responses)]
