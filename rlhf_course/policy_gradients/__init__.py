"""The code of the Policy Gradients chapter (``book/policy_gradients.md``, ``labs/policy_gradients.ipynb``).

- loss.py: REINFORCE, RLOO and GRPO advantages, per-token policy losses and how they are aggregated
  (token mean, mean per sequence, constant divisor, sum), masked means, micro-batch weights, token entropy
- train.py: the training loop from scratch with gradient accumulation, and TRL's GRPO and RLOO
- checks.py: the lab's exercise checks

The chapter's public names are importable from here::

    from rlhf_course import policy_gradients
"""

from .loss import (AGGREGATIONS, aggregate, grpo_advantages, masked_mean, masked_normalize, microbatch_weight,
                   per_token_policy_loss, reinforce_advantages, rloo_advantages, sequence_loss, token_entropy)
from .train import accumulate_gradients, train_grpo, train_policy_gradient, train_trl_rloo, trl_rl_arguments

__all__ = [
    "AGGREGATIONS",
    "accumulate_gradients",
    "aggregate",
    "masked_mean",
    "masked_normalize",
    "microbatch_weight",
    "per_token_policy_loss",
    "token_entropy",
    "grpo_advantages",
    "reinforce_advantages",
    "rloo_advantages",
    "sequence_loss",
    "train_grpo",
    "train_policy_gradient",
    "train_trl_rloo",
    "trl_rl_arguments",
]
