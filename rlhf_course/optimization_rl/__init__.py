"""The code of the Optimization and RL chapter (``book/optimization_rl.md``, ``labs/optimization_rl.ipynb``).

- objective.py: the KL-regularised objective, its optimal policy, best-of-n and a toy policy gradient,
  on small discrete response spaces
- checks.py: the lab's exercise checks

The chapter's public names are importable from here::

    from rlhf_course import optimization_rl
"""

from .objective import (BetaSweep, PolicyGradientRun, ResponseSpace, best_of_n_policy, beta_sweep, expected_reward,
                        kl_divergence, log_partition, optimal_policy, optimal_value, policy_gradient,
                        regularised_objective, response_space)

__all__ = [
    "BetaSweep",
    "PolicyGradientRun",
    "ResponseSpace",
    "best_of_n_policy",
    "beta_sweep",
    "expected_reward",
    "kl_divergence",
    "log_partition",
    "optimal_policy",
    "optimal_value",
    "policy_gradient",
    "regularised_objective",
    "response_space",
]
