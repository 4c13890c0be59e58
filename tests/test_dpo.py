"""The from-scratch DPO loss: hand-computed values, and TRL's own sigmoid loss on the same numbers."""

from __future__ import annotations

import math
from collections import defaultdict
from types import SimpleNamespace

import pytest
import torch

from rlhf_course.dpo import dpo_loss


def test_equal_log_ratios_give_log_two():
    zeros = torch.zeros(4)
    loss, chosen, rejected = dpo_loss(zeros - 3, zeros - 5, zeros - 3, zeros - 5, beta=0.1)
    assert loss.item() == pytest.approx(math.log(2))
    assert torch.all(chosen == 0) and torch.all(rejected == 0)


def test_hand_computed_pair():
    # chosen: log π = -1, log π_ref = -2, so Δ_w = 1; rejected: -3 vs -2, so Δ_l = -1
    loss, chosen, rejected = dpo_loss(torch.tensor([-1.0]), torch.tensor([-3.0]), torch.tensor([-2.0]),
                                      torch.tensor([-2.0]), beta=0.5)
    assert loss.item() == pytest.approx(math.log1p(math.exp(-1.0)))  # -log σ(0.5 · 2)
    assert chosen.item() == pytest.approx(0.5) and rejected.item() == pytest.approx(-0.5)


def test_gradient_raises_chosen_and_lowers_rejected():
    policy_chosen = torch.tensor([-4.0], requires_grad=True)
    policy_rejected = torch.tensor([-4.0], requires_grad=True)
    loss, _, _ = dpo_loss(policy_chosen, policy_rejected, torch.tensor([-4.0]), torch.tensor([-4.0]), beta=0.1)
    loss.backward()
    assert policy_chosen.grad.item() < 0 < policy_rejected.grad.item()  # descent raises chosen, lowers rejected


def test_large_margins_stay_finite():
    loss, _, _ = dpo_loss(torch.tensor([-1000.0]), torch.tensor([0.0]), torch.tensor([0.0]), torch.tensor([0.0]), 1.0)
    assert math.isfinite(loss.item()) and loss.item() == pytest.approx(1000.0)


def _trl_sigmoid_loss(pc, pr, rc, rr, beta):
    """TRL's DPOTrainer loss (loss_type="sigmoid") on given sequence log-probabilities.

    TRL 1.x computes the DPO loss inside ``DPOTrainer._compute_loss``, together
    with the model's forward pass. We call that method with stand-ins: a
    "model" whose per-token log-probabilities sum to the given sequence
    log-probabilities, precomputed reference log-probabilities, and the few
    trainer attributes the method reads. The arithmetic that runs is TRL's.
    """
    from trl import DPOTrainer

    batch, length = pc.shape[0], 3
    per_token = torch.zeros(2 * batch, length - 1, dtype=pc.dtype)
    per_token[:, 0] = torch.cat([pc, pr])  # TRL orders a batch as [chosen..., rejected...]
    zeros = torch.zeros(2 * batch, length - 1)
    outputs = SimpleNamespace(log_probs=per_token, entropy=zeros, mean_logits=zeros, is_top1=zeros.bool())

    def identity(x):  # one process: gathering across processes is a no-op
        return x

    trainer = SimpleNamespace(
        model=SimpleNamespace(training=True),
        accelerator=SimpleNamespace(device="cpu", gather_for_metrics=identity, gather=identity),
        aux_loss_enabled=False, ld_alpha=None, precompute_ref_logps=True, f_divergence_type="reverse_kl",
        loss_types=["sigmoid"], loss_weights=[1.0], use_weighting=False, beta=beta,
        _metrics={"train": defaultdict(list)}, _total_train_tokens=0, _tp_size=1,
    )
    ones = torch.ones(2 * batch, length, dtype=torch.long)
    inputs = {"input_ids": 0 * ones, "attention_mask": ones, "completion_mask": ones,
              "ref_chosen_logps": rc, "ref_rejected_logps": rr}
    loss = DPOTrainer._compute_loss(trainer, lambda **kwargs: outputs, inputs, False)
    return loss, trainer._metrics["train"]


@pytest.mark.parametrize("beta", [0.05, 0.1, 0.5])
def test_matches_trl_dpo_trainer(beta):
    generator = torch.Generator().manual_seed(0)
    pc, pr, rc, rr = (-20 * torch.rand(8, generator=generator, dtype=torch.float64) for _ in range(4))
    trl_loss, metrics = _trl_sigmoid_loss(pc, pr, rc, rr, beta)
    loss, chosen, rejected = dpo_loss(pc, pr, rc, rr, beta)
    assert abs(loss.item() - trl_loss.item()) < 1e-6
    assert chosen.mean().item() == pytest.approx(metrics["rewards/chosen"][-1], abs=1e-6)
    assert rejected.mean().item() == pytest.approx(metrics["rewards/rejected"][-1], abs=1e-6)
    assert (chosen > rejected).float().mean().item() == pytest.approx(metrics["rewards/accuracies"][-1])
