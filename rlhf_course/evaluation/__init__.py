"""The code of the Evaluation chapter (``book/evaluation.md``, ``labs/evaluation.ipynb``): the course's harness.

- metrics.py: exact match per family, pass@k, paired win rates and differences with bootstrap intervals, power
- leaderboard.py: judges, pairwise votes and Bradley–Terry leaderboards with intervals, rank agreement
- real_data.py: measuring without gold on a hub dataset: held-out pair accuracy, reward-model score, judge win rate
- contamination.py: perturbed siblings of toy-world prompts, rephrasings, n-gram overlap
- checks.py: the lab's exercise checks

(``rlhf_course.core.evaluation`` is the measurement every stage shares: sample a
policy, score it by gold, win rate against a reference. This package builds the
rest of an evaluation on it.) The chapter's public names are importable from here::

    from rlhf_course import evaluation
"""

from .contamination import ngram_overlap, ngrams, perturbed_sibling, perturbed_siblings, template_of, with_template
from .leaderboard import (AnnotatorJudge, agreement, PairwiseJudge, ScoreJudge, Votes, bradley_terry_from_counts, leaderboard,
                          pairwise_votes, rank_agreement, win_counts)
from .real_data import judge_policy, pair_accuracy
from .metrics import (AATest, Interval, aa_test, bootstrap_interval, exact_match, exact_match_by_family, mean_pass_at_k,
                      paired_bootstrap, paired_outcomes, paired_win_rate, pass_at_k, required_prompts,
                      simulated_power)

__all__ = [
    "ngram_overlap", "ngrams", "perturbed_sibling", "perturbed_siblings", "template_of", "with_template",
    "AnnotatorJudge", "agreement", "PairwiseJudge", "ScoreJudge", "Votes", "bradley_terry_from_counts", "leaderboard",
    "pairwise_votes", "rank_agreement", "win_counts",
    "AATest", "Interval", "aa_test", "bootstrap_interval", "exact_match", "exact_match_by_family", "mean_pass_at_k", "paired_bootstrap",
    "paired_outcomes", "paired_win_rate", "pass_at_k", "required_prompts", "simulated_power",
    "judge_policy", "pair_accuracy",
]
