"""The code of the Policy Gradients chapter (``book/policy_gradients.md``, ``labs/policy_gradients.ipynb``).

- loss.py: REINFORCE, RLOO and GRPO advantages, and the sequence-level policy-gradient loss
- train.py: the training loop from scratch, and TRL's GRPO and RLOO
- checks.py: the lab's exercise checks

The chapter's public names are importable from here::

    from rlhf_course import policy_gradients
"""

from .loss import grpo_advantages, reinforce_advantages, rloo_advantages, sequence_loss
from .train import train_grpo, train_policy_gradient, train_trl_rloo, trl_rl_arguments

__all__ = [
    "grpo_advantages",
    "reinforce_advantages",
    "rloo_advantages",
    "sequence_loss",
    "train_grpo",
    "train_policy_gradient",
    "train_trl_rloo",
    "trl_rl_arguments",
]
