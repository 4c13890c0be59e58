"""The code of the Style chapter (``book/style.md``, ``labs/style.ipynb``).

- features.py: length, stock phrase and padding of a response; style covariates of a comparison
- variants.py: verbose and concise variants of a response (same substance, more or less padding)
- judges.py: gold, a length-loving annotator and the reward model as judges (the evaluation harness's judges)
- length_control.py: the length-controlled (style-controlled) win-rate regression, fitted in torch
- leaderboard.py: raw, length-controlled and gold win rates side by side; the pipeline's rows
- ledger.py: a policy's gain split into substance (gold attributes) and style (length, stock phrase)
- checks.py: the lab's exercise check

The chapter's public names are importable from here::

    from rlhf_course import style
"""

from .features import STYLE_FEATURES, length_differences, length_reward, n_words, padding_words, style_differences, style_features
from .judges import gold_judge, gold_scores, length_loving_judge, outcomes, reward_model_scores
from .ledger import fit_score_model, ledger_features, style_ledger
from .leaderboard import pipeline_style_rows, style_leaderboard
from .length_control import (StyleFit, controlled_win_rates, fit_style_regression, gameability,
                             length_controlled_win_rate)
from .variants import concise, make_variants, verbose

__all__ = [
    "STYLE_FEATURES", "length_differences", "length_reward", "n_words", "padding_words", "style_differences", "style_features",
    "gold_judge", "gold_scores", "length_loving_judge", "outcomes",
    "reward_model_scores", "StyleFit", "controlled_win_rates", "fit_style_regression", "gameability",
    "length_controlled_win_rate", "pipeline_style_rows", "style_leaderboard", "fit_score_model", "ledger_features", "style_ledger", "concise", "make_variants", "verbose",
]
