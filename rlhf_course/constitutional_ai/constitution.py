"""A constitution for the toy world: principles, the AI judge they make, and critique-and-revise.

Constitutional AI (Bai et al. 2022) uses a short list of written principles
twice: to *revise* responses (the revised response is better training data
than the original) and to *judge* pairs (a feedback model labels which
response follows the principles better, replacing human labels). In the toy
world each principle names one gold attribute (``toyworld.gold``), so every AI
label and every revision can be checked against the truth.

On ``tiny`` the AI judge is a small reward model trained, with the course's
reward-model trainer, on a few seed labels per principle: for each principle,
pairs that differ in its attribute, labelled by that attribute alone. Pooled,
they teach one judge the whole constitution, imperfectly (few labels, and the
principles' weights come out of the seed counts, not from gold). On ``smol``
and larger the judge is the instruct model prompted with the principles
(:func:`prompted_judge`). Removing a principle removes its seed labels: the
judge, and any policy trained on its labels, stops caring about that attribute.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from rlhf_course.core.judges import DEFAULT_PRINCIPLE, LogProbJudge, RewardJudge
from rlhf_course.toyworld import Prompt, gold_attributes, ideal_response, make_prompts, sample_response, words
from rlhf_course.toyworld.gold import CLOSINGS, NEUTRAL_PREFIXES, RUDE_MARKERS, RUDE_PREFIXES, TONE_OPENERS


@dataclass(frozen=True)
class Principle:
    """One rule of the constitution: its text, as a judge reads it, and the gold attribute it stands for."""

    name: str
    text: str
    attribute: str


CONSTITUTION: tuple[Principle, ...] = (
    Principle("correct", "Choose the response that answers the question correctly.", "correct"),
    Principle("format", "Choose the response that gives the answer in exactly the form asked for.", "format"),
    Principle("tone", "Choose the response that is courteous, never rude, in the tone requested.", "tone"),
    Principle("concise", "Choose the response without words beyond the answer.", "concise"),
)


def without(constitution: tuple[Principle, ...], name: str) -> tuple[Principle, ...]:
    """The constitution with the principle called ``name`` removed."""
    names = [p.name for p in constitution]
    if name not in names:
        raise ValueError(f"No principle called {name!r}; the constitution has {', '.join(names)}.")
    return tuple(p for p in constitution if p.name != name)


def principle_label(principle: Principle, prompt: Prompt, a: str, b: str) -> int:
    """0 if ``a`` follows the principle better by gold, 1 if ``b`` does, -1 if they are equal on it."""
    x, y = gold_attributes(prompt, a)[principle.attribute], gold_attributes(prompt, b)[principle.attribute]
    return -1 if x == y else 0 if x > y else 1


# ----------------------------------------------------------------------------- the AI judge on tiny


def seed_labels(constitution: tuple[Principle, ...], n_per_principle: int, seed: int = 0) -> list[dict]:
    """A few labelled pairs per principle: the seed the tiny AI judge is trained on.

    For each principle, training prompts with two sampled responses that differ
    in the principle's attribute, chosen by that attribute alone (the other
    attributes vary at random). Rows are in TRL's format plus ``principle``.
    """
    rng = random.Random(f"constitution/{seed}")
    prompts = make_prompts("train", 4 * n_per_principle * max(1, len(constitution)), seed=seed + 1000)
    rows, k = [], 0
    for principle in constitution:
        made = 0
        while made < n_per_principle:
            prompt, k = prompts[k % len(prompts)], k + 1
            a, b = sample_response(prompt, rng), sample_response(prompt, rng)
            label = principle_label(principle, prompt, a, b)
            if label < 0:
                continue
            chosen, rejected = (a, b) if label == 0 else (b, a)
            rows.append({"prompt": prompt.text, "chosen": chosen, "rejected": rejected, "principle": principle.name})
            made += 1
    rng.shuffle(rows)
    return rows


def reward_model_judge(reward_fn) -> RewardJudge:
    """The AI judge from a reward model's function ``(prompt texts, responses) -> rewards``."""
    return RewardJudge(reward_fn, text_prompts=True)


def prompted_judge(model, tokenizer, constitution: tuple[Principle, ...] = CONSTITUTION) -> LogProbJudge:
    """The AI judge of ``smol`` and larger: the instruct model reading the principles, answering A or B."""
    principle = " ".join(p.text for p in constitution) or DEFAULT_PRINCIPLE
    return LogProbJudge(model, tokenizer, principle=principle)


def ai_labelled(rows: list[dict], prompts: list[Prompt], verdicts: list[int]) -> list[dict]:
    """``rows`` (prompt/chosen/rejected) relabelled by a judge's ``verdicts`` on ``[chosen, rejected]``.

    Verdict 0 keeps the pair, 1 swaps chosen and rejected, -1 (a tie) drops it.
    The gold margin is recomputed for the new order.
    """
    from rlhf_course.toyworld import gold_reward

    out = []
    for row, prompt, v in zip(rows, prompts, verdicts, strict=True):
        if v < 0:
            continue
        chosen, rejected = (row["chosen"], row["rejected"]) if v == 0 else (row["rejected"], row["chosen"])
        margin = gold_reward(prompt, chosen) - gold_reward(prompt, rejected)
        out.append({**row, "chosen": chosen, "rejected": rejected, "gold_margin": margin,
                    "agrees_with_gold": margin > 0, "annotator": "ai_judge"})
    return out


def ai_feedback(judge, rows: list[dict], prompts: list[Prompt], seed: int = 0) -> tuple[list[dict], list[int]]:
    """RLAIF's data: ``rows`` relabelled by ``judge`` (ties dropped), and the judge's raw verdicts.

    The judge reads each pair as ``[chosen, rejected]`` in a random order
    (``shuffle_order``), so a judge that favours a position cannot pass it on
    to the labels. Verdicts are 0 (keep), 1 (swap) or -1 (tie), as in
    :func:`ai_labelled`.
    """
    verdicts = judge.judge(prompts, [[row["chosen"], row["rejected"]] for row in rows], seed=seed)
    return ai_labelled(rows, prompts, verdicts), verdicts


def deciding_attribute(prompt: Prompt, a: str, b: str) -> str | None:
    """The gold attribute that contributes most to the gold difference of a pair (None when none differs)."""
    from rlhf_course.toyworld import GOLD_WEIGHTS

    x, y = gold_attributes(prompt, a), gold_attributes(prompt, b)
    gaps = {k: GOLD_WEIGHTS[k] * abs(x[k] - y[k]) for k in x}
    best = max(gaps, key=gaps.get)
    return best if gaps[best] > 0 else None


# ----------------------------------------------------------------------------- critique and revise


def _split_padding(response: str) -> tuple[str, str, str]:
    """(prefix, core, closings) of a toy-world response."""
    core, prefix = response.strip(), []
    changed = True
    while changed:
        changed = False
        for p in NEUTRAL_PREFIXES + RUDE_PREFIXES:
            if core.startswith(p):
                prefix.append(p)
                core, changed = core[len(p):].strip(), True
    closings = []
    changed = True
    while changed:
        changed = False
        for c in CLOSINGS:
            if core.endswith(c):
                closings.insert(0, c)
                core, changed = core[: -len(c)].strip(), True
    return " ".join(prefix), core, " ".join(closings)


def _join(*parts: str) -> str:
    return " ".join(p for p in parts if p)


def _fix_format(prompt: Prompt, core: str) -> str:
    if prompt.family == "arithmetic":
        import re

        numbers = re.findall(r"-?\d+", core)
        return numbers[0] if numbers else core
    if prompt.family == "transform":
        return core[len("The word is "):].rstrip(".") if core.startswith("The word is ") else core
    if prompt.family == "listing":
        items = [w for w in words(core.lower()) if w != "and"][: prompt.spec["n"]]
        return ", ".join(items) if len(items) == prompt.spec["n"] else core
    if not any(core.startswith(o) for o in TONE_OPENERS.values()):
        return _join(TONE_OPENERS[prompt.spec["tone"]], core)
    return core


def _fix_tone(prompt: Prompt, prefix: str, core: str) -> tuple[str, str]:
    prefix = " ".join(p for p in NEUTRAL_PREFIXES if p in prefix)
    core = " ".join(w for w in core.split() if w.strip(",.!").lower() not in RUDE_MARKERS)
    if prompt.family == "tone":
        wanted = TONE_OPENERS[prompt.spec["tone"]]
        for opener in TONE_OPENERS.values():
            if core.startswith(opener):
                core = core[len(opener):].strip()
        core = _join(wanted, core)
    return prefix, core


def revise(prompt: Prompt, response: str, principle: Principle) -> str:
    """The response rewritten to follow ``principle``: the toy world's rule-based critique-and-revise.

    A real revision asks the model to critique its answer against the
    principle, then to rewrite it; here the rewrite is a rule that fixes the
    attribute the principle names and leaves the rest alone: ``correct`` puts
    in the right answer, ``format`` puts the answer in the asked-for form,
    ``tone`` removes rude words and opens in the requested tone, ``concise``
    drops prefixes and closings. The critique is the principle's gold
    attribute: a response that already scores 1 on it comes back unchanged.
    """
    if gold_attributes(prompt, response).get(principle.attribute, 0.0) >= 1.0:
        return response
    prefix, core, closings = _split_padding(response)
    if principle.attribute == "correct":
        core = ideal_response(prompt, random.Random(response))
    elif principle.attribute == "format":
        core = _fix_format(prompt, core)
    elif principle.attribute == "tone":
        prefix, core = _fix_tone(prompt, prefix, core)
    elif principle.attribute == "concise":
        prefix, closings = "", ""
    else:
        raise ValueError(f"Principle {principle.name!r} names attribute {principle.attribute!r}, which has no "
                         "revision rule; use correct, format, tone or concise.")
    return _join(prefix, core, closings)
