"""The code of the Synthetic Data chapter (``book/synthetic_data.md``, ``labs/synthetic_data.ipynb``).

- prompts.py: prompts a model writes after the pre-query template (Magpie), and what they are worth
- filtering.py: a teacher's k answers per prompt, filtered by a verifier and best-of-k by a reward model
- diversity.py: distinct answers, n-grams and item sets, which fall when a model trains on itself
- train.py: distillation and generations of self-training, with or without the original data
- checks.py: the lab's exercise checks

The chapter's public names are importable from here::

    from rlhf_course import synthetic_data
"""

from .diversity import distinct_answers, distinct_item_sets, distinct_ngrams, diversity_report, item_set
from .filtering import FilteredAnswers, best_verified, filtered_answers, verifier_mask
from .prompts import PromptReport, assess_prompts, pre_query_template, synthesize_prompts
from .train import MODES, SelfTrainingResult, distill, generation_rows, self_training

__all__ = [
    "distinct_answers", "distinct_item_sets", "distinct_ngrams", "diversity_report", "item_set",
    "FilteredAnswers", "best_verified", "filtered_answers", "verifier_mask",
    "PromptReport", "assess_prompts", "pre_query_template", "synthesize_prompts",
    "MODES", "SelfTrainingResult", "distill", "generation_rows", "self_training",
]
