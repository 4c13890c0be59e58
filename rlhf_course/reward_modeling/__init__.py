"""The code of the Reward Modeling chapter (``book/reward_modeling.md``, ``labs/reward_modeling.ipynb``).

- loss.py: the Bradley–Terry loss
- train.py: training a reward model with TRL's RewardTrainer
- evaluation.py: scoring, and measuring a reward model against gold
- outcome.py: outcome reward models, trained on a checker's labels
- checks.py: the lab's exercise checks

The chapter's public names are importable from here::

    from rlhf_course import reward_modeling
"""

from .evaluation import (RewardModelReport, auc, calibration_curve, evaluate_reward_model, evaluate_rewards,
                         load_reward_function, load_reward_model, reward_function, score)
from .loss import bradley_terry_loss
from .outcome import outcome_reward_model_from, train_outcome_reward_model, verifiable_examples
from .train import (RewardModelResult, head_and_body_groups, reward_config, reward_model_from, reward_trainer,
                    train_reward_model, trl_loss_on_batch)

__all__ = [
    "RewardModelReport",
    "auc",
    "calibration_curve",
    "evaluate_reward_model",
    "evaluate_rewards",
    "load_reward_function",
    "load_reward_model",
    "reward_function",
    "score",
    "bradley_terry_loss",
    "outcome_reward_model_from",
    "train_outcome_reward_model",
    "verifiable_examples",
    "RewardModelResult",
    "head_and_body_groups",
    "reward_config",
    "reward_model_from",
    "reward_trainer",
    "train_reward_model",
    "trl_loss_on_batch",
]
