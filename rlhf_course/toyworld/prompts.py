"""Prompts of the toy world: four task families in plain English.

Every prompt is generated from a small, fixed vocabulary, so a model of a few
million parameters can learn the whole world in a minute, while SmolLM2 reads
the same prompts as ordinary English. Each family has a right answer that the
gold reward can check from the text of a response alone.

Splits are made once, from a fixed world seed, by shuffling the complete list
of distinct prompt texts and cutting it 80/10/10. A prompt text therefore
belongs to exactly one of ``train``, ``validation`` and ``test``; the ``seed``
argument of :func:`make_prompts` only chooses which prompts of a split are drawn.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, field
from functools import lru_cache

FAMILIES = ("arithmetic", "listing", "transform", "tone")
SPLITS = ("train", "validation", "test")
SPLIT_FRACTIONS = {"train": 0.8, "validation": 0.1, "test": 0.1}
WORLD_SEED = 1234  # fixes the split assignment; never change it

CATEGORIES: dict[str, tuple[str, ...]] = {
    "fruits": ("apple", "banana", "cherry", "grape", "lemon", "mango", "orange", "pear"),
    "colors": ("red", "blue", "green", "yellow", "purple", "black", "white", "pink"),
    "animals": ("cat", "dog", "horse", "mouse", "lion", "tiger", "sheep", "goat"),
    "tools": ("hammer", "saw", "drill", "wrench", "shovel", "rake", "axe", "chisel"),
    "drinks": ("water", "tea", "coffee", "milk", "juice", "soda", "cocoa", "cider"),
    "vehicles": ("car", "bus", "train", "bike", "truck", "boat", "plane", "van"),
}

WORDS = (
    "sun", "moon", "star", "tree", "rock", "bird", "fish", "road", "lamp", "desk",
    "book", "door", "rain", "snow", "wind", "fire", "leaf", "sand", "milk", "cake",
    "ship", "coin", "ring", "bell", "kite", "drum", "rose", "frog", "wolf", "bear",
)

TONES = ("politely", "cheerfully", "calmly")

# Each message has one relevant reply body; a reply that answers another
# message is off-topic.
MESSAGES: dict[str, str] = {
    "my order is late": "your order will arrive soon.",
    "thanks for the help": "it was a pleasure to help.",
    "can we meet tomorrow": "tomorrow works for me.",
    "the app keeps crashing": "please try updating the app.",
    "i lost my password": "you can reset it from the login page.",
    "is the shop open today": "the shop is open until six.",
    "i want a refund": "we will send your refund today.",
    "the food was cold": "we will make it right next time.",
}

_TEMPLATES: dict[str, tuple[str, ...]] = {
    "arithmetic": ("What is {a} {op} {b}?", "Compute {a} {op} {b}.", "Tell me {a} {op} {b}."),
    "listing": ("List {n} {category}.", "Name {n} {category}.", "Give me {n} {category}.",
                "Please list {n} {category}."),
    "transform": ("Write {word} in capital letters.", "Repeat {word} twice.",
                  "Write the word {word} in capital letters.", "Repeat the word {word} twice."),
    "tone": ("Reply {tone} to: {message}", "Answer {tone}: {message}",
             "Respond {tone} to: {message}", "Write back {tone}: {message}"),
}
#: The phrasings of each family, public for evaluation (perturbed siblings, prompt-format sensitivity).
TEMPLATES = _TEMPLATES


@dataclass(frozen=True)
class Prompt:
    """One task of the toy world.

    Attributes:
        id: stable identifier, e.g. ``"arithmetic/What is 3 plus 4?"``.
        family: one of :data:`FAMILIES`.
        text: the prompt as a user would type it.
        spec: the task's parameters (numbers, category, word, tone, message).
        answer: the exact answer for verifiable tasks (arithmetic, transform),
            otherwise ``None``.
    """

    id: str
    family: str
    text: str
    spec: dict = field(hash=False, compare=False)
    answer: str | None = None

    @property
    def verifiable(self) -> bool:
        """True when the task has one exact answer (the RLVR subset)."""
        return self.answer is not None


def _arithmetic() -> list[Prompt]:
    out = []
    for a in range(1, 10):
        for b in range(1, 10):
            for op, value in (("plus", a + b), ("minus", a - b)):
                if op == "minus" and b > a:
                    continue
                for t in _TEMPLATES["arithmetic"]:
                    text = t.format(a=a, op=op, b=b)
                    spec = {"a": a, "b": b, "op": op}
                    out.append(Prompt(f"arithmetic/{text}", "arithmetic", text, spec, str(value)))
    return out


def _listing() -> list[Prompt]:
    out = []
    for category in CATEGORIES:
        for n in (2, 3, 4, 5):
            for t in _TEMPLATES["listing"]:
                text = t.format(n=n, category=category)
                out.append(Prompt(f"listing/{text}", "listing", text, {"n": n, "category": category}))
    return out


def transform_word(word: str, kind: str) -> str:
    """Apply a transform: ``"upper"`` gives capitals, ``"repeat"`` says the word twice."""
    return word.upper() if kind == "upper" else f"{word} {word}"


def _transform() -> list[Prompt]:
    out = []
    for word in WORDS:
        for t in _TEMPLATES["transform"]:
            kind = "upper" if "capital" in t else "repeat"
            text = t.format(word=word)
            spec = {"word": word, "kind": kind}
            out.append(Prompt(f"transform/{text}", "transform", text, spec, transform_word(word, kind)))
    return out


def _tone() -> list[Prompt]:
    out = []
    for tone in TONES:
        for message in MESSAGES:
            for t in _TEMPLATES["tone"]:
                text = t.format(tone=tone, message=message)
                out.append(Prompt(f"tone/{text}", "tone", text, {"tone": tone, "message": message}))
    return out


@lru_cache(maxsize=1)
def all_prompts() -> dict[str, dict[str, list[Prompt]]]:
    """Every distinct prompt, by family and split (computed once)."""
    builders = {"arithmetic": _arithmetic, "listing": _listing, "transform": _transform, "tone": _tone}
    result: dict[str, dict[str, list[Prompt]]] = {}
    for family, build in builders.items():
        prompts = build()
        random.Random(f"{WORLD_SEED}/{family}").shuffle(prompts)
        n_train = round(len(prompts) * SPLIT_FRACTIONS["train"])
        n_val = round(len(prompts) * SPLIT_FRACTIONS["validation"])
        result[family] = {
            "train": prompts[:n_train],
            "validation": prompts[n_train:n_train + n_val],
            "test": prompts[n_train + n_val:],
        }
    return result


def make_prompts(
    split: str,
    n: int,
    seed: int = 0,
    families: tuple[str, ...] | list[str] = FAMILIES,
) -> list[Prompt]:
    """Draw ``n`` prompts of one split, spread evenly over ``families``.

    Prompts are drawn without replacement while a family's pool lasts, then
    with replacement (the test pool holds a few hundred distinct prompts).

    Raises:
        ValueError: for an unknown split or family, or ``n < 1``.
    """
    if split not in SPLITS:
        raise ValueError(f"Unknown split {split!r}; choose one of {', '.join(SPLITS)}.")
    unknown = [f for f in families if f not in FAMILIES]
    if unknown:
        raise ValueError(f"Unknown task family {unknown[0]!r}; choose from {', '.join(FAMILIES)}.")
    if not families:
        raise ValueError("families is empty; pass at least one of " + ", ".join(FAMILIES) + ".")
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"A split of size {n!r} was asked for; n must be a positive integer.")
    rng = random.Random(f"{seed}/{split}")
    pools = all_prompts()
    out: list[Prompt] = []
    for i, family in enumerate(families):
        k = n // len(families) + (1 if i < n % len(families) else 0)
        pool = pools[family][split]
        picked = rng.sample(pool, min(k, len(pool)))
        picked += [rng.choice(pool) for _ in range(k - len(picked))]
        out.extend(picked)
    rng.shuffle(out)
    return out


# --------------------------------------------------------------------------- reading a prompt back


def _template_pattern(template: str) -> re.Pattern:
    """A template such as ``"List {n} {category}."`` as a regular expression with one named group per slot."""
    parts = re.split(r"\{(\w+)\}", template)
    pattern = "".join(re.escape(part) if i % 2 == 0 else f"(?P<{part}>.+?)" for i, part in enumerate(parts))
    return re.compile(pattern)


@lru_cache(maxsize=1)
def _patterns() -> list[tuple[str, str, re.Pattern]]:
    return [(family, t, _template_pattern(t)) for family, ts in _TEMPLATES.items() for t in ts]


def _slots_valid(family: str, slots: dict[str, str]) -> bool:
    """True when every slot value belongs to the toy world's vocabulary for ``family``."""
    if family == "arithmetic":
        a, b = slots["a"], slots["b"]
        return (a in _DIGITS and b in _DIGITS and slots["op"] in ("plus", "minus")
                and not (slots["op"] == "minus" and int(b) > int(a)))
    if family == "listing":
        return slots["n"] in ("2", "3", "4", "5") and slots["category"] in CATEGORIES
    if family == "transform":
        return slots["word"] in WORDS
    return slots["tone"] in TONES and slots["message"] in MESSAGES


_DIGITS = tuple(str(d) for d in range(1, 10))


def parse_prompt(text: str) -> Prompt | None:
    """The toy-world task that ``text`` asks for, or ``None`` when it asks for none.

    A text is a task when it matches one of the world's templates exactly
    (surrounding white space aside) and every slot holds a value of the
    world's vocabulary: digits 1–9 with no negative difference, a count of
    2–5 items of a known category, a known word, tone and message. The
    result is the same :class:`Prompt` (id, spec, answer) that
    :func:`all_prompts` holds, whichever split it belongs to, so a model's
    synthetic prompt can be answered, scored by gold and checked for novelty.
    """
    text = text.strip()
    for family, _, pattern in _patterns():
        match = pattern.fullmatch(text)
        if match and _slots_valid(family, match.groupdict()):
            return _by_text().get(text)
    return None


@lru_cache(maxsize=1)
def _by_text() -> dict[str, Prompt]:
    return {p.text: p for family in all_prompts().values() for split in family.values() for p in split}


@lru_cache(maxsize=1)
def split_of() -> dict[str, str]:
    """The split (``train``, ``validation``, ``test``) of every prompt id of the world."""
    return {p.id: split for family in all_prompts().values() for split, ps in family.items() for p in ps}
