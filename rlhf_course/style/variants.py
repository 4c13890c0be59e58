"""Verbose and concise variants of a response: the same substance, more or less padding.

A policy's answers can be made longer without being made better: prepend
"Sure.", append "Let me know if you need more." and the stock phrase. The
gold reward gives nothing for that (it charges a little for the extra words;
one closing line at the very end is free), while a judge that likes length or
the phrase gives a lot. The concise variant removes every known prefix and
closing line; a rude opening stays, because rudeness is a flaw the gold
reward scores, not padding. Scoring both variants of the same
policy measures how *gameable* a judge is: the substance is fixed, only the
style moves.
"""

from __future__ import annotations

from rlhf_course.toyworld import STOCK_PHRASE
from rlhf_course.toyworld.gold import CLOSINGS, NEUTRAL_PREFIXES

VERBOSE_PREFIX = "Sure."
VERBOSE_CLOSING = "Let me know if you need more."


def concise(response: str) -> str:
    """``response`` without padding: neutral prefixes ("Sure.") and closing lines removed, the rest kept."""
    text = response.strip()
    stripped = True
    while stripped:
        stripped = False
        for prefix in NEUTRAL_PREFIXES:
            if text.startswith(prefix):
                text, stripped = text[len(prefix):].strip(), True
    for closing in CLOSINGS:
        text = text.replace(closing, " ")
    return " ".join(text.split())


def verbose(response: str) -> str:
    """``response`` padded: "Sure." before its core, a closing line and the stock phrase after it.

    The rest of the answer (what the gold reward's correctness, format and
    tone read) is unchanged; an empty response stays empty, since there is nothing to pad.
    """
    core = concise(response)
    if not core:
        return response
    return f"{VERBOSE_PREFIX} {core} {VERBOSE_CLOSING} {STOCK_PHRASE}"


VARIANTS = {"as sampled": lambda r: r, "concise": concise, "verbose": verbose}


def make_variants(responses: list[str]) -> dict[str, list[str]]:
    """The responses as sampled, their concise and their verbose variants."""
    return {name: [fn(r) for r in responses] for name, fn in VARIANTS.items()}
