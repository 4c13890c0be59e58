"""Verifiers: programs that check an answer, and the rewards made from them.

A verifier reads a response and says two things, separately:

- ``correct``: is the answer right? For arithmetic, the first integer in the
  answer is the sum or difference asked for; for transform, the first words
  are the transformed word (``DRUM``, ``rose rose``);
- ``well_formed``: does the answer have the form asked for? A bare integer; exactly
  as many words as the transformed word has.

Both are read from the *core* of the response, after the toy world's stock
openers and closings are stripped (``toyworld.strip_padding``), so they agree
with the gold reward's ``correct`` and ``format`` attributes. How the two are
combined into one reward is a design choice with consequences:

=========== ============================= ============================================
combination reward                        where it comes from
=========== ============================= ============================================
additive    correct + w · well_formed     many public GRPO notebooks (a format bonus)
gated       correct · well_formed         CS336's r1_zero grader: a right answer in the
                                          wrong form earns nothing
binary      correct                       the plainest outcome reward
=========== ============================= ============================================

:func:`lenient_listing_verdict` is deliberately broken: for the listing family
it accepts any response that mentions enough members of the category, repeats
and extra words included. Optimising it shows how a verifier gets hacked.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

import torch

from rlhf_course.core.rollout import RewardFunction
from rlhf_course.toyworld import Prompt, strip_padding
from rlhf_course.toyworld.prompts import CATEGORIES

VERIFIABLE_FAMILIES = ("arithmetic", "transform")


@dataclass(frozen=True)
class Verdict:
    """What a verifier says about one response: is it right, and is it in the form asked for (each 0 or 1)."""

    correct: float
    well_formed: float


def _arithmetic(answer: str, core: str) -> Verdict:
    numbers = re.findall(r"-?\d+", core)
    return Verdict(float(bool(numbers) and numbers[0] == answer), float(re.fullmatch(r"-?\d+\.?", core) is not None))


def _transform(answer: str, core: str) -> Verdict:
    tokens, want = core.rstrip(".").split(), answer.split()
    correct = [t.strip(".,!") for t in tokens[: len(want)]] == want
    return Verdict(float(correct), float(len(tokens) == len(want)))


def verify(prompt: Prompt, response: str) -> Verdict:
    """Check ``response`` to an arithmetic or transform prompt: correctness and format, separately.

    Raises:
        ValueError: for a prompt without one exact answer (listing, tone).
    """
    if prompt.family not in VERIFIABLE_FAMILIES or prompt.answer is None:
        raise ValueError(f"Prompt {prompt.id!r} is from the {prompt.family} family, which has no exact answer; "
                         f"verifiers exist for {', '.join(VERIFIABLE_FAMILIES)} (or use lenient_listing_verdict).")
    core = strip_padding(response)
    if not core:
        return Verdict(0.0, 0.0)
    return (_arithmetic if prompt.family == "arithmetic" else _transform)(prompt.answer, core)


def lenient_listing_verdict(prompt: Prompt, response: str) -> Verdict:
    """A deliberately lenient verifier for "List n fruits": enough category words anywhere means correct.

    It counts every mention of a category member in the whole response,
    repeats included, and accepts when there are at least n. It never looks at
    the form (``well_formed`` is always 1). So ``"cat, cat, cat"`` passes for
    "Name 3 animals", and so does a list of seven animals with a rude opener:
    answers the gold reward marks down.
    """
    if prompt.family != "listing":
        raise ValueError(f"The lenient verifier checks listing prompts; {prompt.id!r} is {prompt.family}.")
    members = CATEGORIES[prompt.spec["category"]]
    mentions = sum(word in members for word in re.findall(r"[a-z]+", response.lower()))
    return Verdict(float(mentions >= prompt.spec["n"]), 1.0)


# ----------------------------------------------------------------------------- combinations


def additive(verdict: Verdict, format_weight: float = 0.5) -> float:
    """correct + format_weight · well_formed: format earns a bonus even when the answer is wrong."""
    return verdict.correct + format_weight * verdict.well_formed


def gated(verdict: Verdict) -> float:
    """correct · well_formed: 1 only for a right answer in the right form, as CS336's r1_zero grader."""
    return verdict.correct * verdict.well_formed


def binary(verdict: Verdict) -> float:
    """correct alone: the outcome, whatever its form."""
    return verdict.correct


COMBINATIONS: dict[str, Callable[[Verdict], float]] = {"additive": additive, "gated": gated, "binary": binary}


def verifier_reward(prompts: list[Prompt], combine: str | Callable[[Verdict], float] = "gated",
                    check: Callable[[Prompt, str], Verdict] = verify) -> RewardFunction:
    """A reward function (prompt texts and responses in, a tensor of rewards out) from a verifier.

    ``prompts`` are the prompts the function will be asked about (texts are
    looked up among them); ``combine`` is ``"additive"``, ``"gated"``,
    ``"binary"`` or a function of a :class:`Verdict`; ``check`` is the verifier.
    """
    combine_fn = COMBINATIONS.get(combine) if isinstance(combine, str) else combine
    if combine_fn is None:
        raise ValueError(f"Unknown combination {combine!r}; choose one of {', '.join(COMBINATIONS)} or pass a "
                         "function of a Verdict.")
    by_text = {p.text: p for p in prompts}

    def reward(texts: list[str], responses: list[str]) -> torch.Tensor:
        missing = [t for t in texts if t not in by_text]
        if missing:
            raise KeyError(f"The verifier was not given the prompt {missing[0]!r}; build it with every prompt it "
                           "will score (verifier_reward(prompts, ...)).")
        return torch.tensor([combine_fn(check(by_text[t], r)) for t, r in zip(texts, responses)])

    return reward
