"""Toy-world preference rows: prompts, two responses, and a simulated annotator's label.

The rows every preference stage of the course reads when it trains on the toy
world: the reward model (:func:`toy_preferences`) and the offline direct
methods (:func:`toy_pairs`). They are in TRL's standard format, with metadata
(the gold margin, the annotator) that lets a lab measure what real data hides.
"""


from __future__ import annotations

from rlhf_course.core.profiles import Profile
from rlhf_course.toyworld import Annotator, default_annotators, make_preferences, make_prompts


# ----------------------------------------------------------------------------- data


def toy_preferences(
    profile: Profile, split: str = "train", n: int | None = None, seed: int = 0,
    annotators: list[Annotator] | None = None,
) -> list[dict]:
    """Toy-world preference pairs labelled by the simulated annotators (TRL standard format + metadata)."""
    n = n or (profile.rm.n_pairs if split == "train" else profile.rm.n_eval_pairs)
    annotators = annotators or default_annotators(profile.rm.annotator_temperature)
    return make_preferences(make_prompts(split, n, seed=seed), annotators, seed=seed)


def toy_pairs(profile, seed: int = 0, n: int | None = None) -> list[dict]:
    """The offline preference pairs of the direct-alignment stages: ``profile.dpo.n_pairs`` toy-world pairs.

    They are drawn like the reward model's training data (the same prompts,
    response generator and simulated annotators), just fewer of them.
    """

    return toy_preferences(profile, "train", n=n or profile.dpo.n_pairs, seed=seed)
