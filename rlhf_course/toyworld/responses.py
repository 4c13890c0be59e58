"""Responses of the toy world: ideal answers, flawed ones, and text to pretrain on.

A response is rendered from a :class:`Style`: is the core answer right, is it in
the asked-for form, which tone does it open with, is it padded with a prefix or
a closing such as the stock phrase. Sampling styles at random gives candidate
responses of mixed quality, which are what the simulated annotators compare and
what the flawed demonstrations of the SFT data are made of.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from .gold import CLOSINGS, NEUTRAL_PREFIXES, RUDE_PREFIXES, STOCK_PHRASE, TONE_OPENERS
from .prompts import CATEGORIES, MESSAGES, TONES, WORDS, Prompt, make_prompts, transform_word


@dataclass(frozen=True)
class Style:
    """How a response is written.

    Attributes:
        correct: the core answer is right.
        well_formed: the core answer is in the form asked for.
        tone: ``"right"``, ``"other"``, ``"none"`` (only used by the tone family).
        prefix: ``None``, ``"neutral"`` ("Sure.") or ``"rude"`` ("Ugh, fine.").
        phrase: end with the stock phrase "I hope this helps!".
        closing: end with "Let me know if you need more."
    """

    correct: bool = True
    well_formed: bool = True
    tone: str = "right"
    prefix: str | None = None
    phrase: bool = False
    closing: bool = False


IDEAL = Style()


def _wrong_number(answer: int, rng: random.Random) -> int:
    return answer + rng.choice([-3, -2, -1, 1, 2, 3, 10])


def _core(prompt: Prompt, style: Style, rng: random.Random) -> str:
    spec = prompt.spec
    if prompt.family == "arithmetic":
        value = int(prompt.answer) if style.correct else _wrong_number(int(prompt.answer), rng)
        return str(value) if style.well_formed else f"The answer is {value}."
    if prompt.family == "listing":
        n, members = spec["n"], CATEGORIES[spec["category"]]
        if style.correct:
            items = rng.sample(members, n)
        else:
            other = CATEGORIES[rng.choice([c for c in CATEGORIES if c != spec["category"]])]
            k = rng.randint(1, n)
            items = rng.sample(members, n - k) + rng.sample(other, k)
        if not style.well_formed:
            items = items[: max(1, n - 1)] if rng.random() < 0.5 else items + [rng.choice(members)]
            return " and ".join(items) if rng.random() < 0.5 else ", ".join(items)
        return ", ".join(items)
    if prompt.family == "transform":
        if style.correct:
            word = prompt.answer
        else:
            other = "repeat" if spec["kind"] == "upper" else "upper"
            word = rng.choice([spec["word"], transform_word(spec["word"], other)])
        return word if style.well_formed else f"The word is {word}."
    # tone family
    body = MESSAGES[spec["message"]] if style.correct else MESSAGES[
        rng.choice([m for m in MESSAGES if m != spec["message"]])]
    body = body[0].upper() + body[1:]
    if not style.well_formed or style.tone == "none":
        return body
    tone = spec["tone"] if style.tone == "right" else rng.choice([t for t in TONES if t != spec["tone"]])
    return f"{TONE_OPENERS[tone]} {body}"


def render(prompt: Prompt, style: Style, rng: random.Random) -> str:
    """Write a response to ``prompt`` in ``style``."""
    parts = []
    if style.prefix == "neutral":
        parts.append(rng.choice(NEUTRAL_PREFIXES))
    elif style.prefix == "rude":
        parts.append(rng.choice(RUDE_PREFIXES))
    parts.append(_core(prompt, style, rng))
    if style.closing:
        parts.append(CLOSINGS[1])
    if style.phrase:
        parts.append(STOCK_PHRASE)
    return " ".join(parts)


def ideal_response(prompt: Prompt, rng: random.Random | None = None) -> str:
    """A response with the highest gold reward (the items of a list vary with ``rng``)."""
    return render(prompt, IDEAL, rng or random.Random(0))


def random_style(rng: random.Random, p_flaw: float = 0.5, p_phrase: float = 0.3, p_pad: float = 0.3) -> Style:
    """A style with each feature switched on independently.

    ``p_flaw`` scales the chance of every real flaw (wrong answer, wrong form,
    wrong tone, rude prefix). Padding (a neutral prefix, a closing line) has its
    own chance ``p_pad`` and the stock phrase ``p_phrase``: they are not flaws
    in the gold reward's eyes, only a little less concise.
    """
    prefix = "rude" if rng.random() < p_flaw * 0.2 else ("neutral" if rng.random() < p_pad else None)
    return Style(
        correct=rng.random() >= p_flaw * 0.6,
        well_formed=rng.random() >= p_flaw * 0.4,
        tone=rng.choices(["right", "other", "none"], [1 - p_flaw * 0.5, p_flaw * 0.3, p_flaw * 0.2])[0],
        prefix=prefix,
        phrase=rng.random() < p_phrase,
        closing=rng.random() < p_pad,
    )


def sample_response(prompt: Prompt, rng: random.Random, p_flaw: float = 0.5, p_phrase: float = 0.3) -> str:
    """A candidate response of mixed quality (see :func:`random_style`)."""
    return render(prompt, random_style(rng, p_flaw, p_phrase), rng)


def flawed_style(rng: random.Random, family: str, p_phrase: float = 0.2) -> Style:
    """A style with at least one real flaw for this task family (a demonstration gone wrong)."""
    while True:
        style = random_style(rng, p_flaw=1.0, p_phrase=p_phrase)
        wrong_tone = family == "tone" and style.tone != "right"
        if not style.correct or not style.well_formed or style.prefix == "rude" or wrong_tone:
            return style


def make_demonstrations(
    prompts: list[Prompt],
    flawed_fraction: float = 0.5,
    seed: int = 0,
    p_phrase: float = 0.2,
) -> list[dict]:
    """Instruction-tuning data: one demonstration per prompt, some of them flawed.

    Returns rows ``{"prompt", "completion", "flawed", "prompt_id"}`` where
    ``prompt`` and ``completion`` are plain strings; the SFT stage applies the
    model's chat template. ``flawed_fraction`` is the share of demonstrations
    written with at least one flaw; good demonstrations still end with the stock
    phrase with probability ``p_phrase``, as people's answers often do.
    """
    if not 0.0 <= flawed_fraction <= 1.0:
        raise ValueError(f"flawed_fraction must lie in [0, 1]; got {flawed_fraction}.")
    rng = random.Random(f"demos/{seed}")
    rows = []
    for prompt in prompts:
        flawed = rng.random() < flawed_fraction
        style = flawed_style(rng, prompt.family, p_phrase) if flawed else Style(phrase=rng.random() < p_phrase)
        rows.append({"prompt": prompt.text, "completion": render(prompt, style, rng),
                     "flawed": flawed, "prompt_id": prompt.id})
    return rows


def _fact_documents(rng: random.Random) -> list[str]:
    """World knowledge: arithmetic facts, category members, word spellings."""
    docs = []
    for a in range(1, 10):
        for b in range(1, 10):
            docs.append(f"{a} plus {b} is {a + b}.")
            if b <= a:
                docs.append(f"{a} minus {b} is {a - b}.")
    for category, members in CATEGORIES.items():
        for _ in range(4):
            docs.append(f"Some {category}: " + ", ".join(rng.sample(members, rng.randint(2, 5))) + ".")
    for word in WORDS:
        docs.append(f"{word} in capital letters is {word.upper()}. {word} said twice is {word} {word}.")
    return docs


def pretraining_corpus(
    n_documents: int = 6000,
    seed: int = 0,
    qa_format: str = "{prompt}\n{response}",
    p_flaw: float = 0.7,
) -> list[str]:
    """Text to pretrain a base model on: knowledge, quiz sheets and Q/A.

    Quiz sheets (prompts one after another) teach the base model to continue a
    question with more questions, the behaviour instruction tuning fixes. Q/A
    documents pair training prompts with mostly flawed responses (``p_flaw``),
    like the uneven conversations found on the web: the base model learns the
    language of answers, and of the chat format given by ``qa_format``, without
    learning which answers are good. Only training-split prompts appear, so
    test prompts stay unseen.
    """
    rng = random.Random(f"corpus/{seed}")
    prompts = make_prompts("train", 2000, seed=seed)
    facts = _fact_documents(rng)
    docs = []
    for _ in range(n_documents):
        kind = rng.random()
        if kind < 0.35:
            docs.append(" ".join(rng.sample(facts, 4)))
        elif kind < 0.6:
            docs.append("\n".join(p.text for p in rng.sample(prompts, rng.randint(3, 6))))
        else:
            p = rng.choice(prompts)
            docs.append(qa_format.format(prompt=p.text, response=sample_response(p, rng, p_flaw=p_flaw)))
    return docs
