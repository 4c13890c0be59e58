"""The from-scratch direct-alignment losses: hand-computed values, and TRL's own losses on the same numbers.

TRL computes each loss inside a trainer method that also runs the model. The
helpers below (``_trl_*``) call those methods with stand-ins: a "model" that
returns crafted log-probabilities or logits, and the few trainer attributes the
method reads. The arithmetic that runs is TRL's; nothing is copied from it.
"""

from __future__ import annotations

import math
from collections import defaultdict
from functools import partial
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

from rlhf_course.direct_alignment import dpo_loss, ipo_loss, kto_loss, kto_reference_point, orpo_loss, simpo_loss


def _identity(x):  # one process: gathering across processes is a no-op
    return x


_ACCELERATOR = SimpleNamespace(device="cpu", gather_for_metrics=_identity, gather=_identity)


def _random_logps(n, generator, count=4):
    return [-20 * torch.rand(n, generator=generator, dtype=torch.float64) for _ in range(count)]


def _random_lengths(n, generator, high=12):
    return torch.randint(1, high + 1, (n,), generator=generator)


# ----------------------------------------------------------------------------- DPO


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


def _trl_dpo_loss(pc, pr, rc, rr, beta, loss_type="sigmoid", label_smoothing=0.0,
                  chosen_lengths=None, rejected_lengths=None):
    """TRL's ``DPOTrainer`` loss on given sequence log-probabilities (and response lengths).

    TRL 1.x computes the DPO-family losses inside ``DPOTrainer._compute_loss``,
    together with the model's forward pass. We call that method with stand-ins:
    a "model" whose per-token log-probabilities sum to the given sequence
    log-probabilities, precomputed reference log-probabilities, a completion
    mask with the given response lengths (IPO divides by them), and the few
    trainer attributes the method reads.
    """
    from trl import DPOTrainer

    batch = pc.shape[0]
    lengths = torch.cat([chosen_lengths, rejected_lengths]) if chosen_lengths is not None else torch.ones(2 * batch)
    width = int(lengths.max()) + 2  # one prompt token, the response, at least one padding position
    per_token = torch.zeros(2 * batch, width - 1, dtype=pc.dtype)
    per_token[:, 0] = torch.cat([pc, pr])  # TRL orders a batch as [chosen..., rejected...]
    zeros = torch.zeros(2 * batch, width - 1)
    outputs = SimpleNamespace(log_probs=per_token, entropy=zeros, mean_logits=zeros, is_top1=zeros.bool())

    trainer = SimpleNamespace(
        model=SimpleNamespace(training=True), accelerator=_ACCELERATOR,
        aux_loss_enabled=False, ld_alpha=None, precompute_ref_logps=True, f_divergence_type="reverse_kl",
        loss_types=[loss_type], loss_weights=[1.0], use_weighting=False, beta=beta, label_smoothing=label_smoothing,
        _metrics={"train": defaultdict(list)}, _total_train_tokens=0, _tp_size=1,
    )
    positions = torch.arange(width)
    completion_mask = ((positions >= 1) & (positions <= lengths[:, None])).long()  # token 0 is the prompt
    inputs = {"input_ids": torch.zeros(2 * batch, width, dtype=torch.long), "attention_mask": torch.ones_like(
        completion_mask), "completion_mask": completion_mask, "ref_chosen_logps": rc, "ref_rejected_logps": rr}
    loss = DPOTrainer._compute_loss(trainer, lambda **kwargs: outputs, inputs, False)
    return loss, trainer._metrics["train"]


@pytest.mark.parametrize("beta", [0.05, 0.1, 0.5])
def test_matches_trl_dpo_trainer(beta):
    generator = torch.Generator().manual_seed(0)
    pc, pr, rc, rr = _random_logps(8, generator)
    trl_loss, metrics = _trl_dpo_loss(pc, pr, rc, rr, beta)
    loss, chosen, rejected = dpo_loss(pc, pr, rc, rr, beta)
    assert abs(loss.item() - trl_loss.item()) < 1e-6
    assert chosen.mean().item() == pytest.approx(metrics["rewards/chosen"][-1], abs=1e-6)
    assert rejected.mean().item() == pytest.approx(metrics["rewards/rejected"][-1], abs=1e-6)
    assert (chosen > rejected).float().mean().item() == pytest.approx(metrics["rewards/accuracies"][-1])


# ----------------------------------------------------------------------------- conservative DPO


def test_label_smoothing_hand_computed():
    # margin h = 0.5 · ((-1 + 2) - (-3 + 2)) = 1; loss = -(1 - ε) log σ(1) - ε log σ(-1)
    eps = 0.2
    loss, chosen, rejected = dpo_loss(torch.tensor([-1.0]), torch.tensor([-3.0]), torch.tensor([-2.0]),
                                      torch.tensor([-2.0]), beta=0.5, label_smoothing=eps)
    expected = (1 - eps) * math.log1p(math.exp(-1.0)) + eps * math.log1p(math.exp(1.0))
    assert loss.item() == pytest.approx(expected)
    assert chosen.item() == pytest.approx(0.5) and rejected.item() == pytest.approx(-0.5)


@pytest.mark.parametrize("eps", [0.1, 0.3])
def test_label_smoothing_has_a_finite_optimal_margin(eps):
    # the smoothed loss is smallest at β h = log((1 - ε)/ε): there the gradient vanishes
    beta = 0.5
    delta_w = torch.tensor([math.log((1 - eps) / eps) / beta], dtype=torch.float64, requires_grad=True)
    zero = torch.zeros(1, dtype=torch.float64)
    loss, _, _ = dpo_loss(delta_w, zero, zero, zero, beta, label_smoothing=eps)
    loss.backward()
    assert abs(delta_w.grad.item()) < 1e-12
    wider = delta_w.detach() + 1.0  # widening the margin further now costs loss
    assert dpo_loss(wider, zero, zero, zero, beta, label_smoothing=eps)[0].item() > loss.item()


def _trl_conservative_sigmoid_losses(chosen_logratios, rejected_logratios, beta, eps):
    """TRL's label-smoothed sigmoid loss, per pair, from ``CPOTrainer.cpo_loss`` (``loss_type="sigmoid"``).

    CPO's loss is DPO's without the reference model. Given the log-ratios
    Δ = log π_θ − log π_ref in place of CPO's log-probabilities, it computes
    the conservative DPO loss and DPO's implicit rewards β Δ.
    """
    from trl.experimental.cpo import CPOTrainer

    trainer = SimpleNamespace(alpha=0.0, loss_type="sigmoid", beta=beta, label_smoothing=eps, accelerator=_ACCELERATOR)
    return CPOTrainer.cpo_loss(trainer, chosen_logratios, rejected_logratios)


@pytest.mark.parametrize("eps", [0.0, 0.1, 0.25, 0.4])
def test_label_smoothing_matches_trl(eps):
    generator = torch.Generator().manual_seed(1)
    pc, pr, rc, rr = _random_logps(8, generator)
    beta = 0.2
    loss, chosen, rejected = dpo_loss(pc, pr, rc, rr, beta, label_smoothing=eps)

    trl_losses, trl_chosen, trl_rejected = _trl_conservative_sigmoid_losses(pc - rc, pr - rr, beta, eps)
    assert abs(loss.item() - trl_losses.mean().item()) < 1e-6
    torch.testing.assert_close(chosen, trl_chosen)
    torch.testing.assert_close(rejected, trl_rejected)

    # DPOTrainer applies label smoothing with the sigmoid loss only in loss_type="aot", which sorts the
    # batch's margins first; on a batch of one pair, sorting does nothing and "aot" is conservative DPO
    per_pair = [_trl_dpo_loss(pc[i:i + 1], pr[i:i + 1], rc[i:i + 1], rr[i:i + 1], beta, "aot", eps)[0]
                for i in range(len(pc))]
    assert abs(loss.item() - torch.stack(per_pair).mean().item()) < 1e-6


# ----------------------------------------------------------------------------- IPO


def test_ipo_hand_computed():
    # Δ_w = 1, Δ_l = -1, so h = 2; β = 0.5 gives the target 1/(2β) = 1 and the loss (2 - 1)² = 1
    loss, chosen, rejected = ipo_loss(torch.tensor([-1.0]), torch.tensor([-3.0]), torch.tensor([-2.0]),
                                      torch.tensor([-2.0]), beta=0.5)
    assert loss.item() == pytest.approx(1.0)
    assert chosen.item() == pytest.approx(0.5) and rejected.item() == pytest.approx(-0.5)
    # per token: Δ_w / 4 - Δ_l / 2 = 0.75, so (0.75 - 1)² = 0.0625
    loss, _, _ = ipo_loss(torch.tensor([-1.0]), torch.tensor([-3.0]), torch.tensor([-2.0]), torch.tensor([-2.0]),
                          beta=0.5, chosen_lengths=torch.tensor([4]), rejected_lengths=torch.tensor([2]))
    assert loss.item() == pytest.approx(0.0625)


def test_ipo_penalises_overshooting_the_target():
    # unlike DPO, a gap wider than 1/(2β) is pushed back: the gradient on the chosen log-prob turns positive
    beta = 0.5
    policy_chosen = torch.tensor([3.0], requires_grad=True)  # h = 3 > 1/(2β) = 1
    zero = torch.zeros(1)
    ipo_loss(policy_chosen, zero, zero, zero, beta)[0].backward()
    assert policy_chosen.grad.item() > 0


@pytest.mark.parametrize("beta", [0.1, 0.5, 1.0])
def test_ipo_matches_trl_dpo_trainer(beta):
    generator = torch.Generator().manual_seed(2)
    pc, pr, rc, rr = _random_logps(8, generator)
    chosen_lengths, rejected_lengths = _random_lengths(8, generator), _random_lengths(8, generator)
    trl_loss, metrics = _trl_dpo_loss(pc, pr, rc, rr, beta, "ipo",
                                      chosen_lengths=chosen_lengths, rejected_lengths=rejected_lengths)
    loss, chosen, rejected = ipo_loss(pc, pr, rc, rr, beta, chosen_lengths, rejected_lengths)
    assert abs(loss.item() - trl_loss.item()) < 1e-5 * max(1.0, abs(trl_loss.item()))
    assert chosen.mean().item() == pytest.approx(metrics["rewards/chosen"][-1], abs=1e-6)
    assert rejected.mean().item() == pytest.approx(metrics["rewards/rejected"][-1], abs=1e-6)
    # and the per-token average matters: the paper's unnormalised loss is a different number here
    assert abs(ipo_loss(pc, pr, rc, rr, beta)[0].item() - trl_loss.item()) > 1e-3


# ----------------------------------------------------------------------------- KTO


def test_kto_hand_computed():
    # all log-ratios 0 and z_ref = 0: every response loses 1 - σ(0) = 1/2, times its weight
    zero1, zero3 = torch.zeros(1), torch.zeros(3)
    loss, desirable, undesirable = kto_loss(zero1, zero3, zero1, zero3, z_ref=0.0, beta=0.1,
                                            desirable_weight=2.0, undesirable_weight=1.0)
    assert loss.item() == pytest.approx((2 * 0.5 + 3 * 0.5) / 4)
    assert desirable.shape == (1,) and undesirable.shape == (3,)
    # a desirable response with r = 2 against z_ref = 1, β = 1: 1 - σ(1)
    loss, desirable, _ = kto_loss(torch.tensor([-1.0]), torch.zeros(0), torch.tensor([-3.0]), torch.zeros(0),
                                  z_ref=1.0, beta=1.0)
    assert loss.item() == pytest.approx(1 - 1 / (1 + math.exp(-1.0)))
    assert desirable.item() == pytest.approx(2.0)


def test_kto_reference_point_is_a_clipped_mean_without_gradient():
    policy = torch.tensor([-3.0, -5.0], requires_grad=True)
    assert kto_reference_point(policy, torch.tensor([-4.0, -5.0])).item() == pytest.approx(0.5)
    z = kto_reference_point(policy, torch.tensor([-2.0, -5.0]))  # mean log-ratio -0.5: clipped to 0
    assert z.item() == 0.0 and not z.requires_grad


def test_kto_gradients_and_constant_reference_point():
    good = torch.tensor([-5.0], requires_grad=True)
    bad = torch.tensor([-5.0], requires_grad=True)
    z_ref = torch.tensor(0.3, requires_grad=True)
    loss, _, _ = kto_loss(good, bad, torch.tensor([-5.0]), torch.tensor([-5.0]), z_ref, beta=0.1)
    loss.backward()
    assert good.grad.item() < 0 < bad.grad.item()  # descent raises the good response, lowers the bad one
    assert z_ref.grad is None  # the reference point is a constant


def _trl_kto_loss(policy_logps, ref_logps, labels, policy_kl_logps, ref_kl_logps, beta, desirable_weight,
                  undesirable_weight):
    """TRL's ``KTOTrainer._compute_loss`` on a batch of labelled responses and their mismatched KL pairs."""
    from trl import KTOTrainer

    n, width = policy_logps.shape[0], 3

    def per_token(sequence_logps):
        out = torch.zeros(n, width - 1, dtype=sequence_logps.dtype)
        out[:, 0] = sequence_logps
        return out

    zeros = torch.zeros(n, width - 1)
    ids, kl_ids, ones = (torch.full((n, width), v, dtype=torch.long) for v in (0, 1, 1))

    def model(**kwargs):  # the KL pairs are told apart by their token ids
        logps = policy_kl_logps if bool((kwargs["input_ids"] == 1).all()) else policy_logps
        return SimpleNamespace(log_probs=per_token(logps), entropy=zeros, mean_logits=zeros)

    trainer = SimpleNamespace(
        model=SimpleNamespace(training=True), accelerator=_ACCELERATOR, aux_loss_enabled=False,
        calculate_KL=True, precompute_ref_logps=True, loss_type="kto", beta=beta,
        desirable_weight=desirable_weight, undesirable_weight=undesirable_weight,
        _metrics={"train": defaultdict(list)}, _total_train_tokens=0, _tp_size=1,
    )
    trainer._compute_kl_logps = lambda model, batch: KTOTrainer._compute_kl_logps(trainer, model, batch)
    inputs = {"input_ids": ids, "attention_mask": ones, "completion_mask": ones, "KL_input_ids": kl_ids,
              "KL_attention_mask": ones, "KL_completion_mask": ones, "label": labels,
              "ref_logps": ref_logps, "ref_KL_logps": ref_kl_logps}
    loss = KTOTrainer._compute_loss(trainer, model, inputs, False)
    return loss, trainer._metrics["train"]


@pytest.mark.parametrize(
    ("labels", "kl_shift", "weights"),
    [
        ([1, 0, 1, 1, 0, 0, 1, 0], 0.7, (1.0, 1.0)),
        ([1, 0, 1, 1, 0, 1, 1, 1], -0.7, (1.0, 1.33)),  # negative KL estimate: clipped to 0
        ([1, 1, 1, 1], 0.2, (0.8, 1.0)),  # no undesirable responses in this batch
    ],
)
def test_kto_matches_trl_kto_trainer(labels, kl_shift, weights):
    generator = torch.Generator().manual_seed(3)
    n, beta = len(labels), 0.1
    policy, ref, ref_kl, noise = _random_logps(n, generator)
    policy_kl = ref_kl + kl_shift + (noise + 10) / 10  # mismatched pairs: mean log-ratio ≈ kl_shift
    labels = torch.tensor(labels, dtype=torch.bool)

    trl_loss, metrics = _trl_kto_loss(policy, ref, labels, policy_kl, ref_kl, beta, *weights)
    z_ref = kto_reference_point(policy_kl, ref_kl)
    loss, desirable, undesirable = kto_loss(policy[labels], policy[~labels], ref[labels], ref[~labels], z_ref,
                                            beta, *weights)
    assert abs(loss.item() - trl_loss.item()) < 1e-6
    assert z_ref.item() == pytest.approx(metrics["kl"][-1], abs=1e-6)
    assert (z_ref.item() == 0.0) == (kl_shift < 0)
    assert desirable.mean().item() == pytest.approx(metrics["rewards/chosen"][-1], abs=1e-6)
    if (~labels).any():
        assert undesirable.mean().item() == pytest.approx(metrics["rewards/rejected"][-1], abs=1e-6)


# ----------------------------------------------------------------------------- ORPO and SimPO


def _paired_batch(batch, width, vocab, generator):
    """Token ids of chosen and rejected sequences: one prompt token, a random-length response, right padding.

    Returns TRL's batch dictionary, the logits a stand-in model will return for
    the concatenated [chosen, rejected] sequences, and, computed here from those
    logits, each response's summed log-probability and length.
    """
    data, sums, lengths = {}, [], []
    logits = torch.randn(2 * batch, width, vocab, generator=generator, dtype=torch.float64)
    for k, kind in enumerate(("chosen", "rejected")):
        length = torch.randint(1, width, (batch,), generator=generator)  # response tokens at 1..length
        ids = torch.randint(1, vocab, (batch, width), generator=generator)
        positions = torch.arange(width)
        attention = (positions <= length[:, None]).long()
        ids = ids * attention  # padding id 0
        labels = ids.masked_fill((positions == 0) | (attention == 0), -100)
        data |= {f"{kind}_input_ids": ids, f"{kind}_attention_mask": attention, f"{kind}_labels": labels}
        token_logps = logits[k * batch:(k + 1) * batch, :-1].log_softmax(-1).gather(-1, ids[:, 1:, None])[..., 0]
        sums.append((token_logps * (labels[:, 1:] != -100)).sum(-1))
        lengths.append(length)
    return data, logits, sums, lengths


def _trl_paired_loss(trainer_cls, trainer, data, logits):
    """``get_batch_loss_metrics`` of TRL's ORPO or CPO trainer, with a stand-in model returning ``logits``."""
    trainer.is_encoder_decoder, trainer.aux_loss_enabled, trainer.accelerator = False, False, _ACCELERATOR
    trainer.concatenated_inputs = trainer_cls.concatenated_inputs  # static methods
    trainer.get_batch_logps = trainer_cls.get_batch_logps
    for method in ("concatenated_forward", "odds_ratio_loss", "cpo_loss"):  # bound to the stand-in
        if hasattr(trainer_cls, method):
            setattr(trainer, method, partial(getattr(trainer_cls, method), trainer))

    def model(input_ids, **kwargs):
        assert input_ids.shape == logits.shape[:2]
        return SimpleNamespace(logits=logits)

    return trainer_cls.get_batch_loss_metrics(trainer, model, data)


def test_orpo_hand_computed():
    # average log-probs log 0.5 (odds 1) and log 0.2 (odds 1/4): log odds ratio log 4, L_OR = log(1 + 1/4)
    chosen, rejected = torch.tensor([4 * math.log(0.5)]), torch.tensor([2 * math.log(0.2)])
    loss, chosen_rewards, rejected_rewards, nll, log_odds_ratio = orpo_loss(
        chosen, rejected, torch.tensor([4]), torch.tensor([2]), beta=0.5)
    assert log_odds_ratio.item() == pytest.approx(math.log(4))
    assert nll.item() == pytest.approx(math.log(2))  # -4 log 0.5 / 4 tokens
    assert loss.item() == pytest.approx(math.log(2) + 0.5 * math.log(1.25))
    assert chosen_rewards.item() == pytest.approx(0.5 * math.log(0.5))
    assert rejected_rewards.item() == pytest.approx(0.5 * math.log(0.2))


def test_orpo_gradients_and_near_certain_responses():
    chosen = torch.tensor([-6.0], requires_grad=True)
    rejected = torch.tensor([-6.0], requires_grad=True)
    loss, *_ = orpo_loss(chosen, rejected, torch.tensor([3]), torch.tensor([3]), beta=0.1)
    loss.backward()
    assert chosen.grad.item() < 0 < rejected.grad.item()
    # an average log-prob just below 0 (p close to 1) keeps the log odds finite
    _, _, _, _, log_odds_ratio = orpo_loss(torch.tensor([-1e-9]), torch.tensor([-1.0]), torch.tensor([1]),
                                           torch.tensor([1]), beta=0.1)
    assert math.isfinite(log_odds_ratio.item()) and log_odds_ratio.item() > 15


@pytest.mark.parametrize("beta", [0.1, 0.5])
def test_orpo_matches_trl_orpo_trainer(beta):
    from trl.experimental.orpo import ORPOTrainer

    generator = torch.Generator().manual_seed(4)
    data, logits, (chosen, rejected), (chosen_lengths, rejected_lengths) = _paired_batch(6, 9, 11, generator)
    trl_loss, metrics = _trl_paired_loss(ORPOTrainer, SimpleNamespace(beta=beta, padding_value=0), data, logits)
    # With a one-token prompt, TRL's NLL (over prompt and response tokens, each predicted from the ones
    # before it) covers the response tokens only, so it is the same quantity as ours
    loss, chosen_rewards, rejected_rewards, nll, log_odds_ratio = orpo_loss(
        chosen, rejected, chosen_lengths, rejected_lengths, beta)
    assert abs(loss.item() - trl_loss.item()) < 1e-5
    assert nll.item() == pytest.approx(metrics["nll_loss"], abs=1e-5)
    assert log_odds_ratio.mean().item() == pytest.approx(metrics["log_odds_chosen"], abs=1e-5)  # TRL's name
    assert F.logsigmoid(log_odds_ratio).mean().item() == pytest.approx(metrics["log_odds_ratio"], abs=1e-5)
    assert chosen_rewards.mean().item() == pytest.approx(metrics["rewards/chosen"], abs=1e-5)
    assert rejected_rewards.mean().item() == pytest.approx(metrics["rewards/rejected"], abs=1e-5)
    # sums in place of averages would be a different loss
    wrong, *_ = orpo_loss(chosen, rejected, torch.ones_like(chosen_lengths), torch.ones_like(rejected_lengths), beta)
    assert abs(wrong.item() - trl_loss.item()) > 1e-3


def test_simpo_hand_computed():
    # averages -2/4 = -0.5 and -3/2 = -1.5; β = 2, γ = 1: -log σ(2 (-0.5) - 2 (-1.5) - 1) = -log σ(1)
    loss, chosen, rejected = simpo_loss(torch.tensor([-2.0]), torch.tensor([-3.0]), torch.tensor([4]),
                                        torch.tensor([2]), beta=2.0, gamma=1.0)
    assert loss.item() == pytest.approx(math.log1p(math.exp(-1.0)))
    assert chosen.item() == pytest.approx(-1.0) and rejected.item() == pytest.approx(-3.0)


@pytest.mark.parametrize(("beta", "gamma"), [(2.0, 1.0), (2.5, 0.5), (10.0, 4.0)])
def test_simpo_matches_trl_cpo_trainer(beta, gamma):
    from trl.experimental.cpo import CPOTrainer

    generator = torch.Generator().manual_seed(5)
    data, logits, (chosen, rejected), (chosen_lengths, rejected_lengths) = _paired_batch(6, 9, 11, generator)
    # SimPO in TRL is CPOTrainer with loss_type="simpo"; cpo_alpha=0 drops CPO's extra NLL term (default 1.0)
    trainer = SimpleNamespace(beta=beta, simpo_gamma=gamma, loss_type="simpo", cpo_alpha=0.0, alpha=0.0,
                              label_smoothing=0.0, pad_token_id=0)
    trl_loss, metrics = _trl_paired_loss(CPOTrainer, trainer, data, logits)
    loss, chosen_rewards, rejected_rewards = simpo_loss(chosen, rejected, chosen_lengths, rejected_lengths, beta,
                                                        gamma)
    assert abs(loss.item() - trl_loss.item()) < 1e-5
    assert chosen_rewards.mean().item() == pytest.approx(metrics["rewards/chosen"], abs=1e-5)
    assert rejected_rewards.mean().item() == pytest.approx(metrics["rewards/rejected"], abs=1e-5)
    assert (chosen_rewards > rejected_rewards).float().mean().item() == pytest.approx(metrics["rewards/accuracies"])


# ----------------------------------------------------------------------------- bad input


_PAIR = torch.zeros(3)


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: dpo_loss(_PAIR, torch.zeros(4), _PAIR, _PAIR, 0.1),
         r"dpo_loss: policy_chosen_logps has shape \(3,\) but policy_rejected_logps has shape \(4,\)"),
        (lambda: dpo_loss(torch.zeros(3, 5), torch.zeros(3, 5), torch.zeros(3, 5), torch.zeros(3, 5), 0.1),
         r"policy_chosen_logps must have shape \(batch,\).*\(3, 5\)"),
        (lambda: dpo_loss(_PAIR, _PAIR, _PAIR, _PAIR, 0.0), r"dpo_loss: beta must be positive"),
        (lambda: dpo_loss(_PAIR, _PAIR, _PAIR, _PAIR, 0.1, label_smoothing=0.5), r"label_smoothing"),
        (lambda: ipo_loss(_PAIR, _PAIR, _PAIR, torch.zeros(2), 0.1),
         r"ipo_loss: policy_chosen_logps has shape \(3,\) but ref_rejected_logps has shape \(2,\)"),
        (lambda: ipo_loss(_PAIR, _PAIR, _PAIR, _PAIR, 0.1, chosen_lengths=torch.ones(3)),
         r"both chosen_lengths and rejected_lengths"),
        (lambda: ipo_loss(_PAIR, _PAIR, _PAIR, _PAIR, 0.1, torch.ones(3), torch.tensor([1, 0, 2])),
         r"rejected_lengths must be positive"),
        (lambda: kto_loss(_PAIR, torch.zeros(2), torch.zeros(2), torch.zeros(2), 0.0, 0.1),
         r"kto_loss: policy_desirable_logps has shape \(3,\) but ref_desirable_logps has shape \(2,\)"),
        (lambda: kto_loss(torch.zeros(0), torch.zeros(0), torch.zeros(0), torch.zeros(0), 0.0, 0.1),
         r"no responses"),
        (lambda: kto_reference_point(_PAIR, torch.zeros(4)), r"kto_reference_point: policy_mismatched_logps"),
        (lambda: orpo_loss(_PAIR, _PAIR, torch.ones(3), torch.ones(2)),
         r"orpo_loss: policy_chosen_logps has shape \(3,\) but rejected_lengths has shape \(2,\)"),
        (lambda: orpo_loss(_PAIR, _PAIR, torch.tensor([1, 0, 1]), torch.ones(3)), r"chosen_lengths must be positive"),
        (lambda: simpo_loss(_PAIR, torch.zeros(3, 2), torch.ones(3), torch.ones(3), 2.0, 1.0),
         r"simpo_loss: policy_rejected_logps must have shape \(batch,\)"),
        (lambda: simpo_loss(_PAIR, _PAIR, torch.ones(3), -torch.ones(3), 2.0, 1.0), r"rejected_lengths must be positive"),
    ],
)
def test_bad_input_gives_a_clear_error(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_a_list_instead_of_a_tensor_gives_a_type_error():
    with pytest.raises(TypeError, match=r"dpo_loss: ref_rejected_logps must be a torch.Tensor, got list"):
        dpo_loss(_PAIR, _PAIR, _PAIR, [0.0, 0.0, 0.0], 0.1)
