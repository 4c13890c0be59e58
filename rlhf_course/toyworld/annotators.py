"""Simulated annotators: the gold reward turned into noisy preference labels.

An annotator has a utility: the gold attributes with its own weights, plus
biases for things the gold reward does not value (length, the stock phrase).
Shown two responses, it prefers A with the Bradley–Terry probability

    P(A > B) = sigmoid((u(A) - u(B)) / temperature)

so temperature 0 is a perfectly consistent annotator and a large temperature
a coin flip. Several annotators with different weights disagree with each
other; biased ones make spurious features correlate with preference.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field

from .gold import GOLD_WEIGHTS, STOCK_PHRASE, gold_attributes, gold_reward, words
from .prompts import Prompt
from .responses import sample_response


@dataclass(frozen=True)
class Annotator:
    """A simulated person who labels preferences.

    Attributes:
        name: identifier stored with every label.
        weights: weight of each gold attribute in this annotator's utility.
        length_bias: utility added per word of the response.
        phrase_bias: utility added when the response contains the stock phrase.
        temperature: Bradley–Terry noise; 0 means always pick the higher utility.
    """

    name: str
    weights: dict[str, float] = field(default_factory=lambda: dict(GOLD_WEIGHTS))
    length_bias: float = 0.0
    phrase_bias: float = 0.0
    temperature: float = 0.5

    def __post_init__(self) -> None:
        if self.temperature < 0 or math.isnan(self.temperature):
            raise ValueError(f"Annotator {self.name!r}: temperature must be >= 0; got {self.temperature}.")
        unknown = set(self.weights) - set(GOLD_WEIGHTS)
        if unknown:
            raise ValueError(f"Annotator {self.name!r}: unknown attribute {sorted(unknown)[0]!r}; "
                             f"use {', '.join(GOLD_WEIGHTS)}.")

    def utility(self, prompt: Prompt, response: str) -> float:
        """How much this annotator likes ``response``."""
        attributes = gold_attributes(prompt, response)
        u = sum(self.weights.get(k, 0.0) * v for k, v in attributes.items())
        u += self.length_bias * len(words(response))
        u += self.phrase_bias * (STOCK_PHRASE in response)
        return u

    def prob_prefers_first(self, prompt: Prompt, a: str, b: str) -> float:
        """Bradley–Terry probability that this annotator prefers ``a`` to ``b``."""
        diff = self.utility(prompt, a) - self.utility(prompt, b)
        if self.temperature == 0:
            return 1.0 if diff > 0 else 0.0 if diff < 0 else 0.5
        return 1.0 / (1.0 + math.exp(-diff / self.temperature))


def default_annotators(temperature: float = 0.5) -> list[Annotator]:
    """The course's annotator pool: one careful person and three who value other things.

    ``careful`` weighs the gold attributes exactly; ``hasty`` weighs them
    differently, caring more about form than correctness; ``verbose_fan`` and
    ``phrase_fan`` use the gold weights but like long answers and the stock
    phrase. Only ``careful`` has the gold reward's utility; the two fans make
    length and the phrase correlate with preference.
    """
    return [
        Annotator("careful", temperature=temperature),
        Annotator("hasty", weights={"correct": 1.0, "format": 2.0, "tone": 0.5, "concise": 0.5},
                  temperature=temperature),
        Annotator("verbose_fan", length_bias=0.15, temperature=temperature),
        Annotator("phrase_fan", phrase_bias=1.5, temperature=temperature),
    ]


def label_pair(annotator: Annotator, prompt: Prompt, a: str, b: str, rng: random.Random) -> dict:
    """One preference label: the annotator picks between ``a`` and ``b``.

    Returns a row with ``chosen``, ``rejected`` and metadata: the annotator, the
    probability it had of choosing ``a``, the gold rewards and whether the
    label agrees with the gold reward.
    """
    p = annotator.prob_prefers_first(prompt, a, b)
    chosen, rejected = (a, b) if rng.random() < p else (b, a)
    gold_chosen, gold_rejected = gold_reward(prompt, chosen), gold_reward(prompt, rejected)
    return {
        "chosen": chosen,
        "rejected": rejected,
        "annotator": annotator.name,
        "label_prob": p if chosen == a else 1 - p,
        "gold_chosen": gold_chosen,
        "gold_rejected": gold_rejected,
        "gold_margin": gold_chosen - gold_rejected,
        "agrees_with_gold": gold_chosen > gold_rejected,
    }


def make_preferences(
    prompts: list[Prompt],
    annotators: list[Annotator] | None = None,
    pairs_per_prompt: int = 1,
    seed: int = 0,
    conversational: bool = False,
    responses: dict[str, list[str]] | None = None,
) -> list[dict]:
    """A preference dataset in TRL's format (prompt/chosen/rejected), with metadata.

    Each prompt gets ``pairs_per_prompt`` pairs of different responses, each
    labelled by an annotator drawn at random from ``annotators``. Responses are
    sampled from the toy world's mixed-quality generator unless ``responses``
    maps a prompt id to candidate texts (for instance a policy's samples).
    Pairs whose responses are identical are skipped: they carry no preference.

    With ``conversational=True`` the fields are message lists
    (``[{"role": "user", "content": ...}]``), TRL's conversational format.
    """
    annotators = annotators or default_annotators()
    if not annotators:
        raise ValueError("annotators is empty; pass at least one Annotator.")
    if pairs_per_prompt < 1:
        raise ValueError(f"pairs_per_prompt must be >= 1; got {pairs_per_prompt}.")
    rng = random.Random(f"preferences/{seed}")
    rows = []
    for prompt in prompts:
        for _ in range(pairs_per_prompt):
            if responses is not None:
                a, b = rng.sample(responses[prompt.id], 2)
            else:
                a, b = sample_response(prompt, rng), sample_response(prompt, rng)
            if a == b:
                continue
            row = label_pair(rng.choice(annotators), prompt, a, b, rng)
            row.update(prompt=prompt.text, prompt_id=prompt.id, family=prompt.family)
            if conversational:
                row["prompt"] = [{"role": "user", "content": prompt.text}]
                row["chosen"] = [{"role": "assistant", "content": row["chosen"]}]
                row["rejected"] = [{"role": "assistant", "content": row["rejected"]}]
            rows.append(row)
    return rows
