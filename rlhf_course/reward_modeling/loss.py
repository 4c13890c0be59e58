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

    The two reward tensors must have the same shape, one reward per pair: a
    reward head's ``(batch, 1)`` output against a ``(batch,)`` tensor would
    otherwise broadcast to a ``(batch, batch)`` table of every chosen against
    every rejected response, a silently wrong loss.
    """
    if chosen_rewards.shape != rejected_rewards.shape:
        raise ValueError(f"bradley_terry_loss: chosen_rewards has shape {tuple(chosen_rewards.shape)} and "
                         f"rejected_rewards {tuple(rejected_rewards.shape)}; give one reward per pair in each, "
                         "the same shape (squeeze a reward head's (batch, 1) output to (batch,)).")
    if chosen_rewards.numel() == 0:
        raise ValueError("bradley_terry_loss: the batch is empty; give at least one pair.")
    gap = chosen_rewards - rejected_rewards
    if margin is not None:
        margin = torch.as_tensor(margin, dtype=gap.dtype, device=gap.device)
        if torch.broadcast_shapes(gap.shape, margin.shape) != gap.shape:
            raise ValueError(f"bradley_terry_loss: margin has shape {tuple(margin.shape)}; give one number, or one "
                             f"per pair (shape {tuple(gap.shape)}).")
        gap = gap - margin
    return -F.logsigmoid(gap).mean()
