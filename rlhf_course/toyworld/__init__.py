"""The toy world: prompts, a hidden gold reward, and simulated annotators.

Real preference data has no ground truth; this world does. Learners may read
every file here. Trained models never see the gold reward: they learn from
demonstrations and from annotators' noisy labels, and the gold reward measures
how well they did.

- :mod:`.prompts`     four task families and disjoint splits
- :mod:`.gold`        the gold reward and its named attributes
- :mod:`.responses`   ideal and flawed responses, demonstrations, pretraining text
- :mod:`.annotators`  Bradley–Terry annotators with weights and biases
- :mod:`.training`    the prompts each training stage draws, for a profile and a seed
"""

from .annotators import Annotator, default_annotators, label_pair, make_preferences
from .gold import (GOLD_MAX, GOLD_WEIGHTS, STOCK_PHRASE, gold_attributes, gold_reward, gold_rewards,
                   strip_padding, verify, words)
from .prompts import FAMILIES, SPLITS, Prompt, all_prompts, make_prompts
from . import training
from .responses import (IDEAL, Style, ideal_response, make_demonstrations, pretraining_corpus,
                        random_style, render, sample_response)

__all__ = [
    "Annotator", "default_annotators", "label_pair", "make_preferences",
    "GOLD_MAX", "GOLD_WEIGHTS", "STOCK_PHRASE", "gold_attributes", "gold_reward", "gold_rewards", "strip_padding",
    "verify", "words", "FAMILIES", "SPLITS", "Prompt", "all_prompts", "make_prompts",
    "IDEAL", "Style", "ideal_response", "make_demonstrations", "pretraining_corpus",
    "random_style", "render", "sample_response", "training",
]
