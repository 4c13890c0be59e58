"""The reward model's loss: Bradley–Terry on the rewards of the chosen and rejected responses.

Under the Bradley–Terry model, P(y_w ≻ y_l | x) = σ(r(x, y_w) − r(x, y_l)); the
reward model is trained to maximise the likelihood of the annotators' labels,
so its loss is the mean of −log σ(r_w − r_l) over the pairs.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


# ----------------------------------------------------------------------------- the loss


def bradley_terry_loss(
    chosen_rewards: torch.Tensor, rejected_rewards: torch.Tensor, margin: torch.Tensor | float | None = None
) -> torch.Tensor:
    """Mean of −log σ(r_chosen − r_rejected − margin) over the batch.

    This is the negative log-likelihood of the labels under the Bradley–Terry
    model. ``margin`` (Llama 2's variant) asks the reward gap to exceed a
    per-pair margin before the loss lets go. ``logsigmoid`` keeps it finite
    for large gaps, where ``log(sigmoid(x))`` would underflow to −inf.
    """
    gap = chosen_rewards - rejected_rewards
    if margin is not None:
        gap = gap - margin
    return -F.logsigmoid(gap).mean()
