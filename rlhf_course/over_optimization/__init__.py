"""The code of the Over-optimization chapter (``book/over_optimization.md``, ``labs/over_optimization.ipynb``).

- laws.py: Gao et al.'s best-of-n and RL laws in d = √KL, fitted by least squares, with their peaks
- proxies.py: proxy rewards to over-optimise (gold plus noise, gold plus a feature) and reward-model ensembles
- record.py: the hook that records gold, proxy and KL along an RL run
- checks.py: the lab's exercise check

The RL run with its record and the small reward models of the data sweep are
trained (once, cached) by :func:`rlhf_course.shared_models.recorded_policy` and
:func:`rlhf_course.shared_models.small_reward_model`. The chapter's public
names are importable from here::

    from rlhf_course import over_optimization
"""

from .laws import FORMS, LawFit, fit_best_of_n_law, fit_law, fit_rl_law, law_curve, peak_distance
from .proxies import ENSEMBLE_RULES, combine_scores, ensemble_reward, gold_plus_feature, noisy_gold, standardize
from .record import RecordedRun, describe_answers, evaluation_steps, policy_recorder

__all__ = [
    "FORMS", "LawFit", "fit_best_of_n_law", "fit_law", "fit_rl_law", "law_curve", "peak_distance",
    "ENSEMBLE_RULES", "combine_scores", "ensemble_reward", "gold_plus_feature", "noisy_gold", "standardize",
    "RecordedRun", "describe_answers", "evaluation_steps", "policy_recorder",
]
