"""Direct Preference Optimization: the Bradley–Terry loss on an implicit reward.

The KL-regularised objective max_π E[r] − β KL(π ‖ π_ref) is maximised by
π*(y|x) = π_ref(y|x) exp(r(x, y)/β) / Z(x). Solved for the reward,

    r(x, y) = β log(π*(y|x) / π_ref(y|x)) + β log Z(x).

DPO (Rafailov et al., 2023) makes the policy π_θ play π* and calls
β log(π_θ / π_ref) its *implicit reward*. Put into the Bradley–Terry loss, the
intractable β log Z(x) cancels, since both responses answer the same prompt:

    L_DPO = −log σ( β [log π_θ(y_w|x)/π_ref(y_w|x) − log π_θ(y_l|x)/π_ref(y_l|x)] ).

Training is then a classification loss on preference pairs, with no reward
model and no sampling. This module holds the loss from scratch, on
sequence log-probabilities (sums over each response's tokens, as
:func:`rlhf_course.sampling.completion_logprobs` computes them); TRL's
``DPOTrainer`` computes the same quantity (``loss_type="sigmoid"``), and the
tests check that the two agree.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def dpo_loss(
    policy_chosen_logps: torch.Tensor,
    policy_rejected_logps: torch.Tensor,
    ref_chosen_logps: torch.Tensor,
    ref_rejected_logps: torch.Tensor,
    beta: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The DPO (sigmoid) loss of a batch of preference pairs, with the implicit rewards.

    Args:
        policy_chosen_logps, policy_rejected_logps: log π_θ(y|x) of the chosen
            and rejected responses, summed over each response's tokens,
            shape ``(batch,)``.
        ref_chosen_logps, ref_rejected_logps: the same under the frozen
            reference π_ref.
        beta: the KL strength β of the objective DPO solves; larger β keeps
            the policy closer to the reference.

    Returns:
        ``(loss, chosen_rewards, rejected_rewards)``: the mean over the batch
        of −log σ(β (Δ_chosen − Δ_rejected)), with Δ = log π_θ − log π_ref, and
        the implicit rewards β Δ of each response (detached; handy for
        logging, e.g. the fraction of pairs with chosen > rejected).

    ``logsigmoid`` keeps the loss finite for large negative margins, where
    ``log(sigmoid(·))`` would underflow to −inf.
    """
    chosen_logratios = policy_chosen_logps - ref_chosen_logps
    rejected_logratios = policy_rejected_logps - ref_rejected_logps
    margin = beta * (chosen_logratios - rejected_logratios)
    loss = -F.logsigmoid(margin).mean()
    chosen_rewards = beta * chosen_logratios.detach()
    rejected_rewards = beta * rejected_logratios.detach()
    return loss, chosen_rewards, rejected_rewards
