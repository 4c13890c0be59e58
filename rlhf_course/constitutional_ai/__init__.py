"""The code of the Constitutional AI chapter (``book/constitutional_ai.md``, ``labs/constitutional_ai.ipynb``).

- constitution.py: the principles, each standing for a gold attribute; the seed labels of the tiny AI judge;
  relabelling pairs with a judge (RLAIF's data); the toy world's critique-and-revise
- feedback.py: AI labels against gold (errors by attribute, both orders of a pairwise judge)
- checks.py: the lab's exercise checks

The judges themselves (pairwise, log-prob, reward, the win-rate callback) are in
:mod:`rlhf_course.core.judges`, which the Evaluation chapter shares.
"""

from .constitution import (CONSTITUTION, Principle, ai_feedback, ai_labelled, deciding_attribute, principle_label, prompted_judge,
                           reward_model_judge, revise, seed_labels, without)
from .feedback import annotator_flip_rate, attribute_means, judge_flip_rate, error_by_attribute, gold_verdicts, order_report, pairwise_judge_rows

__all__ = ["CONSTITUTION", "Principle", "ai_feedback", "ai_labelled", "deciding_attribute", "principle_label", "prompted_judge",
           "reward_model_judge", "revise", "seed_labels", "without", "annotator_flip_rate", "attribute_means", "judge_flip_rate", "error_by_attribute",
           "gold_verdicts", "order_report", "pairwise_judge_rows"]
