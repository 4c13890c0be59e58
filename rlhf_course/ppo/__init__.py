"""The code of the PPO chapter (``book/ppo.md``, ``labs/ppo.ipynb``).

- loss.py: token-level rewards, GAE, whitening, the clipped policy and value losses
- train.py: the PPO loop and its critic
- checks.py: the lab's exercise checks

The chapter's public names are importable from here::

    from rlhf_course import ppo
"""

from .loss import (PolicyLoss, ValueLoss, clipped_policy_loss, clipped_value_loss, generalized_advantage_estimation,
                   kl_penalised_rewards, missing_eos_penalty, policy_gradient_loss, should_stop_early, whiten)
from .train import PPOResult, token_values, train_ppo, value_model_from

__all__ = [
    "PolicyLoss",
    "ValueLoss",
    "clipped_policy_loss",
    "clipped_value_loss",
    "generalized_advantage_estimation",
    "kl_penalised_rewards",
    "missing_eos_penalty",
    "policy_gradient_loss",
    "should_stop_early",
    "whiten",
    "PPOResult",
    "token_values",
    "train_ppo",
    "value_model_from",
]
