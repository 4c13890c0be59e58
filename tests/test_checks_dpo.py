"""The DPO-loss check passes right answers (returned alone or with the rewards) and names the typical mistakes."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from exercise_checks import fails_with, no_grade_log  # noqa: F401  (no_grade_log is an autouse fixture)

from rlhf_course.direct_alignment import dpo_loss
from rlhf_course.direct_alignment.checks import check_dpo_loss


def margin(pc, pr, rc, rr, beta):
    return beta * ((pc - rc) - (pr - rr))


def test_passes_the_package_loss_and_a_plain_one(capsys):
    check_dpo_loss(dpo_loss)  # returns (loss, chosen_rewards, rejected_rewards)
    check_dpo_loss(lambda pc, pr, rc, rr, b: -F.logsigmoid(margin(pc, pr, rc, rr, b)).mean())
    assert capsys.readouterr().out.startswith("✓ DPO loss:")


@pytest.mark.parametrize("wrong, fragments", [
    (lambda pc, pr, rc, rr, b: -F.logsigmoid(-margin(pc, pr, rc, rr, b)).mean(), ["swapped"]),
    (lambda pc, pr, rc, rr, b: F.logsigmoid(margin(pc, pr, rc, rr, b)).mean(), ["sign"]),
    (lambda pc, pr, rc, rr, b: -F.logsigmoid(margin(pc, pr, rc, rr, b) / b).mean(), ["β is missing"]),
    (lambda pc, pr, rc, rr, b: -F.logsigmoid(b * (pc - pr)).mean(), ["reference is missing", "log 2"]),
    (lambda pc, pr, rc, rr, b: -F.logsigmoid(margin(pc, pr, rc, rr, b)).sum(), ["summed"]),
    (lambda pc, pr, rc, rr, b: (1 - torch.sigmoid(margin(pc, pr, rc, rr, b))).mean(), ["log is missing"]),
    (lambda pc, pr, rc, rr, b: -torch.log(torch.sigmoid(margin(pc, pr, rc, rr, b))).mean(), ["logsigmoid", "inf"]),
    (lambda pc, pr, rc, rr, b: -F.logsigmoid(margin(pc, pr, rc, rr, b)), ["one value per pair", "mean"]),
    (lambda pc, pr, rc, rr, b: torch.tensor(-F.logsigmoid(margin(pc, pr, rc, rr, b)).mean().item()), ["no gradient"]),
])
def test_names_the_mistake(wrong, fragments):
    fails_with(check_dpo_loss, wrong, *fragments)


def test_a_stub_is_reported_as_not_implemented():
    def stub(*args):
        raise NotImplementedError
    fails_with(check_dpo_loss, stub, "not implemented yet")


def test_a_real_batch_from_trl_must_match():
    batch = {"policy_chosen_logps": torch.tensor([-3.0, -4.0]), "policy_rejected_logps": torch.tensor([-5.0, -2.0]),
             "ref_chosen_logps": torch.tensor([-3.5, -4.0]), "ref_rejected_logps": torch.tensor([-4.5, -2.5]),
             "beta": 0.1}
    args = [batch[k] for k in ("policy_chosen_logps", "policy_rejected_logps", "ref_chosen_logps", "ref_rejected_logps")]
    batch["loss"] = dpo_loss(*args, 0.1)[0].item()
    check_dpo_loss(dpo_loss, trl_batch=batch)
    batch["loss"] += 0.01  # a loss TRL did not compute on these numbers
    with pytest.raises(AssertionError, match="TRL's DPOTrainer computed"):
        check_dpo_loss(dpo_loss, trl_batch=batch)


# --- the β sweep -------------------------------------------------------------------


def sweep(kls, betas=(0.03, 0.1, 0.3, 1.0)):
    return [{"beta": b, "gold": 3.4, "kl": k} for b, k in zip(betas, kls)]


def test_beta_sweep_passes_a_falling_kl_with_a_wobble(capsys):
    from rlhf_course.direct_alignment.checks import check_beta_sweep

    check_beta_sweep(sweep([3.0, 1.2, 1.4, 0.3]))
    assert "falls from 3.00 at β = 0.03 to 0.30 at β = 1" in capsys.readouterr().out


@pytest.mark.parametrize("results, fragments", [
    (sweep([3.0, 1.0]), ["2 row(s)", "at least 3"]),
    (sweep([3.0, 2.0, 1.0], betas=(0.1, 0.2, 0.3)), ["factor of ten"]),
    (sweep([0.3, 1.0, 2.0, 3.0]), ["does not fall", "own beta"]),
    (sweep([1.0, 0.5, -2.0, 0.1]), ["negative", "kl_to_reference"]),
    ([{"beta": 0.1, "gold": 3.0}] * 3, ["keys 'beta', 'gold'", "'kl'"]),
    (sweep([float("nan"), 1.0, 0.5, 0.1]), ["NaN"]),
])
def test_beta_sweep_names_the_problem(results, fragments):
    from rlhf_course.direct_alignment.checks import check_beta_sweep

    fails_with(check_beta_sweep, results, *fragments)
