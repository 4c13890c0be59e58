"""Per-token policy losses and how they are averaged (rlhf_course.policy_gradients.loss, issue 19).

Hand-computed examples for every function, masks with empty rows, micro-batch
accumulation against the full batch in every mode, and agreement with the
aggregations of TRL's ``GRPOTrainer`` (TRL 1.16).
"""

import math

import pytest
import torch

from rlhf_course.policy_gradients import (AGGREGATIONS, accumulate_gradients, aggregate, masked_mean,
                                          masked_normalize, microbatch_weight, per_token_policy_loss, token_entropy)

VALUES = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
MASK = torch.tensor([[1, 1, 0], [1, 0, 0]])
# With an empty response in the middle.
VALUES_EMPTY = torch.tensor([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]])
MASK_EMPTY = torch.tensor([[1, 1], [0, 0], [1, 0]])


# ----------------------------------------------------------------------------- hand-computed examples


def test_per_token_policy_loss_is_minus_advantage_times_logp():
    logps = torch.tensor([[-1.0, -2.0], [-0.5, -1.0]], requires_grad=True)
    advantages = torch.tensor([2.0, -1.0], requires_grad=True)
    loss = per_token_policy_loss(logps, advantages)
    assert torch.equal(loss, torch.tensor([[2.0, 4.0], [-0.5, -1.0]]))
    loss.sum().backward()
    assert torch.equal(logps.grad, torch.tensor([[-2.0, -2.0], [1.0, 1.0]]))
    assert advantages.grad is None  # advantages are constants of the step
    per_token = torch.tensor([[1.0, 0.0], [0.0, 3.0]])  # one advantage per token, as after GAE
    assert torch.equal(per_token_policy_loss(logps.detach(), per_token), torch.tensor([[1.0, 0.0], [0.0, 3.0]]))


def test_masked_mean_by_hand():
    assert masked_mean(VALUES, MASK).item() == pytest.approx(7 / 3)  # (1 + 2 + 4) / 3
    assert masked_mean(VALUES, MASK, dim=-1).tolist() == pytest.approx([1.5, 4.0])
    # Column 2 has no real entry: its mean is 0, not NaN.
    assert masked_mean(VALUES, MASK, dim=0).tolist() == pytest.approx([2.5, 2.0, 0.0])
    assert masked_mean(VALUES, MASK.bool()).item() == pytest.approx(7 / 3)  # bool masks work too


def test_masked_normalize_divides_by_the_constant_not_the_count():
    assert masked_normalize(VALUES, MASK, 4.0).item() == pytest.approx(7 / 4)
    assert masked_normalize(VALUES, MASK, 4.0, dim=-1).tolist() == pytest.approx([0.75, 1.0])
    assert masked_normalize(VALUES, MASK, 1.0, dim=0).tolist() == pytest.approx([5.0, 2.0, 0.0])


@pytest.mark.parametrize("mode, constant, expected", [
    ("token", None, 7 / 3),           # (1 + 2 + 4) / 3 tokens
    ("sequence", None, 2.75),         # (1.5 + 4) / 2 responses
    ("constant", 4.0, 0.875),         # (3/4 + 4/4) / 2
    ("sum", None, 7.0),
])
def test_aggregate_by_hand(mode, constant, expected):
    assert aggregate(VALUES, MASK, mode, constant).item() == pytest.approx(expected)


@pytest.mark.parametrize("mode, constant, expected", [
    ("token", None, 8 / 3),           # (1 + 2 + 5) / 3 tokens; the empty row adds nothing
    ("sequence", None, 6.5 / 3),      # (1.5 + 0 + 5) / 3: the empty row counts as a response with mean 0
    ("constant", 2.0, 4 / 3),         # (3/2 + 0 + 5/2) / 3
    ("sum", None, 8.0),
])
def test_aggregate_with_an_empty_response(mode, constant, expected):
    values = VALUES_EMPTY.clone().requires_grad_()
    loss = aggregate(values, MASK_EMPTY, mode, constant)
    assert loss.item() == pytest.approx(expected)
    loss.backward()
    assert torch.isfinite(values.grad).all()
    assert values.grad[1].abs().sum() == 0  # the empty response gets no gradient


def test_all_zero_mask_gives_zero_and_finite_gradients():
    values = torch.tensor([[1.0, -2.0], [3.0, 4.0]], requires_grad=True)
    empty = torch.zeros(2, 2)
    assert masked_mean(values, empty).item() == 0.0
    assert masked_mean(values, empty, dim=-1).tolist() == [0.0, 0.0]
    for mode in AGGREGATIONS:
        loss = aggregate(values, empty, mode, 3.0 if mode == "constant" else None)
        assert loss.item() == 0.0
        (grad,) = torch.autograd.grad(loss, values)
        assert torch.equal(grad, torch.zeros(2, 2))


def test_gradient_weights_of_each_mode_by_hand():
    """The weight each mode puts on every real token: the table of the chapter."""
    logps = torch.zeros(2, 3, requires_grad=True)
    mask = torch.tensor([[1, 0, 0], [1, 1, 1]])  # lengths 1 and 3
    advantages = torch.tensor([1.0, 1.0])
    expected = {"token": [1 / 4, 1 / 4], "sequence": [1 / 2, 1 / 6], "constant": [1 / 6, 1 / 6], "sum": [1.0, 1.0]}
    for mode, (short, long) in expected.items():
        loss = aggregate(per_token_policy_loss(logps, advantages), mask, mode, 3.0 if mode == "constant" else None)
        (grad,) = torch.autograd.grad(loss, logps)
        assert grad.flatten().tolist() == pytest.approx([-short, 0.0, 0.0, -long, -long, -long])


def test_token_entropy_by_hand():
    assert token_entropy(torch.zeros(4)).item() == pytest.approx(math.log(4))
    p = torch.tensor([0.25, 0.75], dtype=torch.float64)  # float64 keeps log p exact after a shift of 1000
    h = 0.25 * math.log(4) + 0.75 * math.log(4 / 3)  # 0.5623...
    assert token_entropy(p.log()).item() == pytest.approx(h, abs=1e-6)
    assert token_entropy(p.log() + 1000.0).item() == pytest.approx(h, abs=1e-6)  # shifting logits changes nothing
    assert token_entropy(torch.tensor([1000.0, 0.0])).item() == pytest.approx(0.0, abs=1e-6)  # no overflow
    assert token_entropy(torch.tensor([0.0, -math.inf, 0.0])).item() == pytest.approx(math.log(2))  # no NaN
    assert token_entropy(torch.zeros(2, 3, 5)).shape == (2, 3)


def test_token_entropy_agrees_with_trl():
    from trl.trainer.utils import entropy_from_logits

    logits = torch.randn(3, 4, 11, generator=torch.Generator().manual_seed(0)) * 3
    torch.testing.assert_close(token_entropy(logits), entropy_from_logits(logits))


# ----------------------------------------------------------------------------- bad input


def test_bad_input_is_refused_with_a_clear_message():
    with pytest.raises(ValueError, match="mask must have the shape"):
        masked_mean(VALUES, MASK[:, :2])
    with pytest.raises(ValueError, match="mask must have the shape"):
        aggregate(VALUES, MASK.T, "token")
    with pytest.raises(ValueError, match=r"'token', 'sequence', 'constant', 'sum'.*'dapo'"):
        aggregate(VALUES, MASK, "dapo")
    with pytest.raises(ValueError, match="needs constant="):
        aggregate(VALUES, MASK, "constant")
    with pytest.raises(ValueError, match="takes none"):
        aggregate(VALUES, MASK, "token", constant=4.0)
    with pytest.raises(ValueError, match="positive"):
        masked_normalize(VALUES, MASK, 0.0)
    with pytest.raises(ValueError, match="responses, tokens"):
        aggregate(VALUES[0], MASK[0], "token")
    with pytest.raises(ValueError, match="one value per response"):
        per_token_policy_loss(VALUES, torch.ones(3))
    with pytest.raises(ValueError, match="must be one of"):
        microbatch_weight(MASK, slice(0, 1), "mean")


# ----------------------------------------------------------------------------- micro-batches


def test_microbatch_weights_by_hand():
    mask = torch.tensor([[1, 0, 0], [1, 1, 1], [1, 1, 0]])  # lengths 1, 3, 2: 6 tokens
    first, rest = slice(0, 1), slice(1, 3)
    assert (microbatch_weight(mask, first, "token"), microbatch_weight(mask, rest, "token")) == pytest.approx((1 / 6, 5 / 6))
    for mode in ("sequence", "constant"):
        assert (microbatch_weight(mask, first, mode), microbatch_weight(mask, rest, mode)) == pytest.approx((1 / 3, 2 / 3))
    assert microbatch_weight(mask, rest, "sum") == 1.0


def test_averaging_token_means_over_microbatches_is_the_classic_bug():
    """Rows of 1 and 3 tokens in two micro-batches: the batch's token mean is 6 / 4, not the mean of 6 and 0."""
    values = torch.tensor([[6.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    mask = torch.tensor([[1, 0, 0], [1, 1, 1]])
    parts = [slice(0, 1), slice(1, 2)]
    means = [aggregate(values[rows], mask[rows], "token").item() for rows in parts]
    assert sum(means) / 2 == pytest.approx(3.0)  # wrong
    weighted = sum(microbatch_weight(mask, rows, "token") * m for rows, m in zip(parts, means))
    assert weighted == pytest.approx(1.5)  # the batch's token mean, (6 + 0 + 0 + 0) / 4


def _toy_batch(seed: int = 0):
    """Seven responses of different lengths (one empty) and a tiny 'policy': log-probs from one weight vector."""
    g = torch.Generator().manual_seed(seed)
    lengths = torch.tensor([1, 5, 2, 0, 4, 3, 5])
    mask = (torch.arange(5)[None, :] < lengths[:, None]).long()
    batch = {"input_ids": torch.zeros(7, 5, dtype=torch.long), "features": torch.randn(7, 5, 3, generator=g),
             "completion_mask": mask}
    advantages = torch.randn(7, generator=g)
    weight = torch.randn(3, generator=g).requires_grad_()
    return batch, advantages, weight


def _logps(weight, features):
    return -torch.nn.functional.softplus(features @ weight)  # a log-probability: always <= 0


@pytest.mark.parametrize("mode", AGGREGATIONS)
@pytest.mark.parametrize("micro_batch_size", [1, 3, 4])
def test_accumulating_microbatches_gives_the_full_batch_gradient(mode, micro_batch_size):
    batch, advantages, weight = _toy_batch()
    constant = 5.0 if mode == "constant" else None
    full = aggregate(per_token_policy_loss(_logps(weight, batch["features"]), advantages), batch["completion_mask"],
                     mode, constant)
    (full_grad,) = torch.autograd.grad(full, weight)

    loss = accumulate_gradients(batch, lambda rows, part: per_token_policy_loss(
        _logps(weight, part["features"]), advantages[rows]), mode, micro_batch_size, constant=5.0)
    torch.testing.assert_close(weight.grad, full_grad)
    assert loss.item() == pytest.approx(full.item(), rel=1e-6)


def test_weighting_token_means_by_row_share_gives_another_gradient():
    """What the micro-batch weights prevent: a token mean per part, weighted by the part's rows."""
    batch, advantages, weight = _toy_batch()
    mask = batch["completion_mask"]
    per_token = per_token_policy_loss(_logps(weight, batch["features"]), advantages)
    (full_grad,) = torch.autograd.grad(aggregate(per_token, mask, "token"), weight, retain_graph=True)
    naive = sum((rows.stop - rows.start) / 7 * aggregate(per_token[rows], mask[rows], "token")
                for rows in (slice(0, 3), slice(3, 6), slice(6, 7)))
    (naive_grad,) = torch.autograd.grad(naive, weight)
    assert (naive_grad - full_grad).abs().max() > 1e-2


def test_default_step_is_the_old_sequence_loss_bit_for_bit():
    """train_policy_gradient's default ("constant", L = 1) takes exactly the step of the loss it used before."""
    batch, advantages, weight = _toy_batch(1)
    mask = batch["completion_mask"]
    for rows in (slice(0, 3), slice(3, 6), slice(6, 7)):  # the old loop, written out: row share x sequence sums
        logps = _logps(weight, batch["features"][rows])
        share = (rows.stop - rows.start) / 7
        (share * (-advantages[rows][:, None] * logps * mask[rows]).sum(dim=1).mean()).backward()
    old = weight.grad.clone()
    weight.grad = None
    accumulate_gradients(batch, lambda rows, part: per_token_policy_loss(
        _logps(weight, part["features"]), advantages[rows]), "constant", 3)
    assert torch.equal(weight.grad, old)


# ----------------------------------------------------------------------------- agreement with TRL


def _trl_batch(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    per_token_loss = torch.randn(8, 6, generator=g)
    lengths = torch.tensor([6, 1, 0, 3, 5, 2, 6, 4])
    mask = (torch.arange(6)[None, :] < lengths[:, None]).int()  # TRL's completion_mask is int
    return per_token_loss, mask


def test_aggregate_reproduces_trl_grpo_loss_types():
    """TRL 1.16, trl/trainer/grpo_trainer.py, GRPOTrainer._compute_loss, lines 3153-3174 (one process, no accumulation).

    grpo (3153-3157):    ((per_token_loss * mask).sum(-1) / mask.sum(-1).clamp(min=1.0)).mean()
    bnpo (3158-3162):    (per_token_loss * mask).sum() / mask.sum().clamp(min=1.0)
    dr_grpo (3163-3167): (per_token_loss * mask).sum() / (per_token_loss.size(0) * self.max_completion_length)
    dapo (3168-3174):    (per_token_loss * mask).sum() / num_items_in_batch.clamp(min=1.0), where
                         num_items_in_batch = loss_mask.sum() over the whole generation batch (line 2498)
    """
    per_token_loss, mask = _trl_batch()
    max_completion_length = 6
    trl = {
        "grpo": ((per_token_loss * mask).sum(-1) / mask.sum(-1).clamp(min=1.0)).mean(),
        "bnpo": (per_token_loss * mask).sum() / mask.sum().clamp(min=1.0),
        "dr_grpo": (per_token_loss * mask).sum() / (per_token_loss.size(0) * max_completion_length),
        "dapo": (per_token_loss * mask).sum() / mask.sum().clamp(min=1.0),
    }
    ours = {"grpo": aggregate(per_token_loss, mask, "sequence"), "bnpo": aggregate(per_token_loss, mask, "token"),
            "dr_grpo": aggregate(per_token_loss, mask, "constant", constant=max_completion_length),
            "dapo": aggregate(per_token_loss, mask, "token")}
    for name in trl:
        torch.testing.assert_close(ours[name], trl[name], msg=name)
    assert not torch.isclose(ours["grpo"], ours["dapo"])  # the batch's lengths differ, so the modes do too


def test_trl_dapo_over_microbatches_is_our_accumulated_token_mean_and_bnpo_is_not():
    """With gradient accumulation TRL's "dapo" divides every micro-batch by the whole batch's token count
    (num_items_in_batch, line 2498, used at 3168-3174), as our micro-batch weights do; "bnpo" takes each
    micro-batch's own token mean and divides by the number of accumulation steps (3158-3162): the mean of
    token means, which differs when micro-batches hold different numbers of tokens."""
    per_token_loss, mask = _trl_batch(1)
    parts = [slice(0, 4), slice(4, 8)]  # 10 and 17 tokens
    num_items_in_batch = mask.sum()
    trl_dapo = sum((per_token_loss[r] * mask[r]).sum() / num_items_in_batch.clamp(min=1.0) for r in parts)
    trl_bnpo = sum((per_token_loss[r] * mask[r]).sum() / mask[r].sum().clamp(min=1.0) / len(parts) for r in parts)
    ours = sum(microbatch_weight(mask, r, "token") * aggregate(per_token_loss[r], mask[r], "token") for r in parts)
    torch.testing.assert_close(ours, trl_dapo)
    torch.testing.assert_close(ours, aggregate(per_token_loss, mask, "token"))
    assert not torch.isclose(trl_bnpo, trl_dapo)


def test_per_token_loss_has_trl_gradient_on_policy():
    """On the first step after sampling TRL's per-token loss is −min(ρA, clip(ρ)A) with ρ = exp(logp − logp.detach())
    = 1 (lines 3112-3120); its gradient is −A ∇log π, the gradient of per_token_policy_loss."""
    g = torch.Generator().manual_seed(2)
    logps = (-torch.rand(4, 5, generator=g)).requires_grad_()
    advantages = torch.randn(4, generator=g)
    ratio = torch.exp(logps - logps.detach())
    trl_loss = -torch.min(ratio * advantages[:, None], torch.clamp(ratio, 0.8, 1.2) * advantages[:, None])
    (trl_grad,) = torch.autograd.grad(trl_loss.sum(), logps)
    (our_grad,) = torch.autograd.grad(per_token_policy_loss(logps, advantages).sum(), logps)
    torch.testing.assert_close(our_grad, trl_grad)
