"""The code of the Direct Alignment chapter (``book/direct_alignment.md``, ``labs/direct_alignment.ipynb``).

- loss.py: the DPO, IPO, KTO, ORPO and SimPO losses on sequence log-probabilities
- train.py: the same methods with TRL's trainers
- online.py: online (iterative) DPO
- inspection.py: TRL's DPO loss on a batch, and DPO's implicit reward as a reward function
- checks.py: the lab's exercise checks

The chapter's public names are importable from here::

    from rlhf_course import direct_alignment
"""

from .inspection import implicit_reward_function, trl_loss_on_batch
from .loss import dpo_loss, ipo_loss, kto_loss, kto_reference_point, orpo_loss, simpo_loss
from .online import on_policy_pairs, online_dpo
from .train import (DirectAlignmentResult, direct_arguments, preference_dataset, train_dpo, train_ipo, train_kto,
                    train_orpo, train_simpo)

__all__ = [
    "implicit_reward_function",
    "trl_loss_on_batch",
    "dpo_loss",
    "ipo_loss",
    "kto_loss",
    "kto_reference_point",
    "orpo_loss",
    "simpo_loss",
    "on_policy_pairs",
    "online_dpo",
    "DirectAlignmentResult",
    "direct_arguments",
    "preference_dataset",
    "train_dpo",
    "train_ipo",
    "train_kto",
    "train_orpo",
    "train_simpo",
]
