"""The code of the What Are Preferences chapter (``book/what_are_preferences.md``, ``labs/what_are_preferences.ipynb``).

- preference_models.py: Bradley–Terry and Elo models of pairwise preferences, fitted and compared
- checks.py: the lab's exercise checks

The chapter's public names are importable from here::

    from rlhf_course import what_are_preferences
"""

from .preference_models import (Comparisons, ELO_SCALE, as_comparisons, best_ordering_accuracy,
                                bradley_terry_log_likelihood, bradley_terry_probability, condorcet_example,
                                distinct_responses, elo_ratings, elo_to_log_strength, fit_bradley_terry, kendall_tau,
                                log_sigmoid, log_strength_to_elo, mle_exists, preference_shares, toy_comparisons,
                                win_matrix)

__all__ = [
    "Comparisons",
    "ELO_SCALE",
    "as_comparisons",
    "best_ordering_accuracy",
    "bradley_terry_log_likelihood",
    "bradley_terry_probability",
    "condorcet_example",
    "distinct_responses",
    "elo_ratings",
    "elo_to_log_strength",
    "fit_bradley_terry",
    "kendall_tau",
    "log_sigmoid",
    "log_strength_to_elo",
    "mle_exists",
    "preference_shares",
    "toy_comparisons",
    "win_matrix",
]
