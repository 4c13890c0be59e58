"""Exercise checks of the Direct Alignment lab: the DPO loss and the β sweep.

Each check calls the learner's function on cases with known answers and raises
:class:`rlhf_course.teaching.checking.ExerciseError` with a hint naming the likely
mistake when it is wrong (the machinery is in :mod:`rlhf_course.teaching.checking`).
"""

from __future__ import annotations

import math
from typing import Any, Callable, Sequence

import torch

from rlhf_course.teaching.checking import (ExerciseError, as_float, call_learner, exercise, expect_close,
                                           expect_tensor, near)


def _dpo_cases() -> list[tuple[str, tuple[torch.Tensor, ...], float]]:
    """(label, (policy_chosen, policy_rejected, ref_chosen, ref_rejected), beta): sequence log-probs, by hand."""
    gen = torch.Generator().manual_seed(0)
    random = tuple(-30 * torch.rand(8, generator=gen, dtype=torch.float64) for _ in range(4))
    return [
        ("the policy equal to the reference", (torch.tensor([-5.0, -9.0]), torch.tensor([-7.0, -3.0]),
                                              torch.tensor([-5.0, -9.0]), torch.tensor([-7.0, -3.0])), 0.1),
        ("a random batch", random, 0.1),
        ("a random batch with beta = 0.5", random, 0.5),
        ("the policy preferring the rejected responses", (torch.tensor([-12.0, -8.0, -20.0]),
                                                         torch.tensor([-4.0, -6.0, -10.0]),
                                                         torch.tensor([-10.0, -8.0, -15.0]),
                                                         torch.tensor([-10.0, -8.0, -15.0])), 0.2),
        ("huge margins", (torch.tensor([-900.0, -10.0]), torch.tensor([-10.0, -900.0]),
                          torch.tensor([-10.0, -10.0]), torch.tensor([-10.0, -10.0])), 1.0),
    ]


def _dpo_mistakes(pc, pr, rc, rr, beta: float) -> list[tuple[float, str]]:
    """(value a typical wrong DPO loss gives, hint) on one batch."""
    F = torch.nn.functional
    h = beta * ((pc - rc) - (pr - rr))
    return [
        ((-F.logsigmoid(-h)).mean().item(), "Chosen and rejected are swapped: the margin is β[(log π_θ(y_w) − log "
                                            "π_ref(y_w)) − (log π_θ(y_l) − log π_ref(y_l))], winner first."),
        (F.logsigmoid(h).mean().item(), "The sign is missing: the loss is −log σ(margin), never negative."),
        ((-F.logsigmoid(h / beta)).mean().item(), "β is missing: the margin is β times the difference of the two "
                                                  "log-ratios."),
        ((-F.logsigmoid(h * beta)).mean().item(), "β appears twice, or is squared: multiply the difference of the "
                                                  "log-ratios by β once."),
        ((-F.logsigmoid(beta * (pc - pr))).mean().item(), "The reference is missing: each response's implicit reward "
                                                          "is β(log π_θ − log π_ref), a log-ratio, not a log-prob."),
        ((-F.logsigmoid(beta * ((pc + rc) - (pr + rr)))).mean().item(),
         "The reference log-probs are added: the implicit reward is β(log π_θ − log π_ref), a difference."),
        ((-F.logsigmoid(h)).sum().item(), "You summed over the batch: take the mean."),
        ((1 - torch.sigmoid(h)).mean().item(), "The log is missing: −log σ(margin), not 1 − σ(margin)."),
        ((-torch.sigmoid(h)).mean().item(), "The log is missing: the loss is −log σ(margin)."),
    ]


@exercise("DPO loss")
def check_dpo_loss(fn: Callable[..., Any], trl_batch: dict | None = None) -> str:
    """Check ``fn(policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps, beta) -> loss``.

    The answer is −log σ(β[(log π_θ(y_w) − log π_ref(y_w)) − (log π_θ(y_l) − log
    π_ref(y_l))]) averaged over the batch, as ``rlhf_course.direct_alignment.dpo_loss``
    computes it (tested equal to TRL's ``DPOTrainer``). The function may return
    the loss alone or a tuple that starts with it. The cases: a policy equal to
    its reference (loss log 2), random batches at two β, a policy that prefers
    the rejected responses, and margins so large that ``log(sigmoid(x))``
    underflows. The gradient must reach the policy's log-probabilities. With
    ``trl_batch`` (from ``direct_alignment.trl_loss_on_batch``: TRL's loss and
    the sequence log-probabilities of a real batch) the loss must also equal
    TRL's to 1e-5.
    """
    from rlhf_course.direct_alignment.loss import dpo_loss

    def learner_loss(args, beta, label):
        got = call_learner(fn, *[a.clone() for a in args], beta, what="your dpo_loss")
        got = got[0] if isinstance(got, (tuple, list)) else got
        expect_tensor("the loss", got, "Build it from torch operations on the log-probability tensors.")
        if got.dim() == 1:
            raise ExerciseError(f"on {label}, your loss has shape {tuple(got.shape)}, one value per pair; expected a "
                                "single number. Take the mean over the batch.")
        return got, as_float("the loss", got)

    cases = _dpo_cases()
    for label, args, beta in cases:
        _, value = learner_loss(args, beta, label)
        expected = dpo_loss(*[a.double() for a in args], beta)[0].item()
        if not math.isfinite(value):
            raise ExerciseError(f"on {label}, your loss is {value}; expected {expected:.4g}. log(sigmoid(x)) "
                                "underflows to −inf for very negative x: use torch.nn.functional.logsigmoid.")
        if not near(value, expected):
            hint = next((h for v, h in _dpo_mistakes(*[a.double() for a in args], beta) if near(value, v)),
                        "The loss is −log σ(β[(log π_θ(y_w) − log π_ref(y_w)) − (log π_θ(y_l) − log π_ref(y_l))]), "
                        "averaged over the batch.")
            equal = " (log 2 ≈ 0.693: the margin is 0)" if label.startswith("the policy equal") else ""
            raise ExerciseError(f"on {label} (β = {beta}), your loss is {value:.5g}; expected {expected:.5g}{equal}. "
                                f"{hint}")

    pc, pr = torch.tensor([-4.0, -6.0], requires_grad=True), torch.tensor([-5.0, -3.0], requires_grad=True)
    rc, rr = torch.tensor([-4.5, -6.0], requires_grad=True), torch.tensor([-4.0, -4.0], requires_grad=True)
    loss, _ = learner_loss((pc, pr, rc, rr), 0.5, "a batch that needs gradients")
    if not loss.requires_grad:
        raise ExerciseError("your loss carries no gradient, so the policy could not learn from it. Did you call "
                            ".item() or .detach(), or build a new tensor with torch.tensor(...)?")
    loss.backward()
    expected = torch.tensor([-4.0, -6.0], requires_grad=True)
    dpo_loss(expected, pr.detach(), rc.detach(), rr.detach(), 0.5)[0].backward()
    expect_close("d loss / d log π_θ(y_w)", pc.grad, expected.grad, atol=1e-5,
                 hint="The gradient should raise the chosen log-probabilities, weighted by σ(−margin).")
    note = f"correct on {len(cases)} batches (log 2 when the policy is the reference; huge margins stay finite)"
    if trl_batch is not None:
        args = [trl_batch[k] for k in ("policy_chosen_logps", "policy_rejected_logps",
                                       "ref_chosen_logps", "ref_rejected_logps")]
        _, value = learner_loss(args, trl_batch["beta"], "a real batch")
        if abs(value - trl_batch["loss"]) > 1e-5:
            raise ExerciseError(f"on a real batch of {len(args[0])} pairs your loss is {value:.6f} but TRL's "
                                f"DPOTrainer computed {trl_batch['loss']:.6f}.")
        note += f", and equal to TRL's DPOTrainer loss ({trl_batch['loss']:.4f}) on a real batch"
    return note


@exercise("β sweep")
def check_beta_sweep(results: Sequence[dict]) -> str:
    """Check a sweep of DPO's β: rows ``{"beta", "gold", "kl"}``, one per trained policy.

    Expects at least three distinct β spanning a factor of ten, finite
    numbers, and the signature of the KL term: the KL to the reference, measured
    on each policy's own samples, is smaller at the largest β than at the
    smallest, and falls with β overall (rank correlation at most −0.5; a
    middle point may wobble, since each run is one noisy training).
    """
    rows = list(results) if not isinstance(results, dict) else [results]
    if len(rows) < 3:
        raise ExerciseError(f"your sweep has {len(rows)} row(s); train and measure at least 3 values of β.")
    for i, row in enumerate(rows):
        if not isinstance(row, dict) or not {"beta", "gold", "kl"} <= set(row):
            raise ExerciseError(f"row {i} of your sweep is {row!r}; each row must be a dict with keys 'beta', "
                                "'gold' (mean gold reward of the samples) and 'kl' (KL to the SFT model).")
    betas = [as_float(f"row {i}'s beta", r["beta"]) for i, r in enumerate(rows)]
    kls = [as_float(f"row {i}'s kl", r["kl"]) for i, r in enumerate(rows)]
    golds = [as_float(f"row {i}'s gold", r["gold"]) for i, r in enumerate(rows)]
    if not all(math.isfinite(v) for v in betas + kls + golds):
        raise ExerciseError("your sweep holds a NaN or infinite number; check the training runs that produced it.")
    if len(set(betas)) < 3 or min(betas) <= 0 or max(betas) / min(betas) < 10:
        raise ExerciseError(f"your β values {sorted(betas)} should be at least 3 distinct positive numbers spanning a "
                            "factor of ten or more (e.g. 0.03, 0.3, 1), so that the KL has room to change.")
    if min(kls) < -0.1:
        raise ExerciseError(f"a KL of {min(kls):.3f} is negative beyond sampling noise. Measure it on the trained "
                            "policy's own samples, with the SFT model as the reference: "
                            "kl_to_reference(policy, sft, tokenizer, samples, batch_size).")
    order = sorted(range(len(rows)), key=lambda i: betas[i])
    ranks_beta = {i: r for r, i in enumerate(order)}
    ranks_kl = {i: r for r, i in enumerate(sorted(range(len(rows)), key=lambda i: kls[i]))}
    n = len(rows)
    rho = 1 - 6 * sum((ranks_beta[i] - ranks_kl[i]) ** 2 for i in range(n)) / (n * (n * n - 1))
    smallest, largest = order[0], order[-1]
    if not kls[largest] < kls[smallest] or rho > -0.5:
        raise ExerciseError(
            f"the KL does not fall as β grows: β {[round(betas[i], 4) for i in order]} gave KL "
            f"{[round(kls[i], 3) for i in order]}. A larger β should hold the policy closer to the SFT model. Did each "
            "run pass its own beta to dpo.train_dpo, and did you measure the model that run trained?")
    return (f"KL to the SFT model falls from {kls[smallest]:.2f} at β = {betas[smallest]:g} to {kls[largest]:.2f} at "
            f"β = {betas[largest]:g}, with gold reward {golds[smallest]:.2f} and {golds[largest]:.2f}")
