"""Exercise checks of the PPO lab: GAE and the clipped policy loss.

Each check calls the learner's function on cases with known answers and raises
:class:`rlhf_course.teaching.checking.ExerciseError` with a hint naming the likely
mistake when it is wrong (the machinery is in :mod:`rlhf_course.teaching.checking`).
"""

from __future__ import annotations

from typing import Any, Callable

import torch

from rlhf_course.teaching.checking import (ExerciseError, as_float, call_learner, exercise, expect_close,
                                           expect_tensor, near, show)


def _gae_cases() -> list[tuple[str, torch.Tensor, torch.Tensor, float, float]]:
    """(label, rewards, values, gamma, lam); every row is a whole response (no padding)."""
    gen = torch.Generator().manual_seed(0)
    r, v = torch.randn(3, 5, generator=gen, dtype=torch.float64), torch.randn(3, 5, generator=gen, dtype=torch.float64)
    return [
        ("the chapter's example", torch.tensor([[0.0, 0.0, 1.0]]), torch.tensor([[0.5, 0.6, 0.7]]), 0.9, 0.5),
        ("γ = λ = 1 (reward-to-go minus the value)", r, v, 1.0, 1.0),
        ("λ = 0 (one-step residuals)", r, v, 0.95, 0.0),
        ("a batch with γ = 1, λ = 0.95", r, v, 1.0, 0.95),
        ("a batch with γ = 0.8, λ = 0.7", r, v, 0.8, 0.7),
    ]


def _gae_mistakes(r: torch.Tensor, v: torch.Tensor, gamma: float, lam: float) -> list[tuple[torch.Tensor, str]]:
    """(wrong advantages, hint) for the usual mistakes in GAE."""
    from rlhf_course.ppo.loss import generalized_advantage_estimation as gae

    def backward(delta: torch.Tensor, decay: float) -> torch.Tensor:
        out, running = torch.zeros_like(delta), torch.zeros_like(delta[:, 0])
        for t in reversed(range(delta.shape[1])):
            running = delta[:, t] + decay * running
            out[:, t] = running
        return out

    next_v = torch.cat([v[:, 1:], torch.zeros_like(v[:, :1])], dim=1)
    delta = r + gamma * next_v - v
    forward = torch.zeros_like(delta)
    running = torch.zeros_like(delta[:, 0])
    for t in range(delta.shape[1]):
        running = delta[:, t] + gamma * lam * running
        forward[:, t] = running
    last_bootstrap = r + gamma * torch.cat([v[:, 1:], v[:, -1:]], dim=1) - v
    return [
        (backward(r - v, gamma * lam), "Each residual must look one step ahead: δ_t = r_t + γ V_{t+1} − V_t "
                                       "(with V = 0 after the last token)."),
        (backward(delta, gamma), "The recursion decays by γλ, not γ alone: A_t = δ_t + γλ A_{t+1}."),
        (backward(delta, lam), "The recursion decays by γλ, not λ alone: A_t = δ_t + γλ A_{t+1}."),
        (forward, "The sum runs over the residuals *ahead* of t, so the loop goes backwards, from the last token "
                  "to the first."),
        (gae(r, v, gamma, lam)[1], "Those are the returns A_t + V_t (the critic's targets); return the advantages."),
        (backward(last_bootstrap, gamma * lam), "After the last token the episode is over: V_{T+1} = 0, not V_T."),
        (delta, "That is only the one-step residual δ_t; add γλ times the next advantage: A_t = δ_t + γλ A_{t+1}."),
    ]


@exercise("Generalized advantage estimation")
def check_gae(fn: Callable[..., Any]) -> str:
    """Check ``fn(rewards, values, gamma, lam) -> advantages`` on whole responses, shape ``(batch, T)``.

    The answer is ``rlhf_course.ppo.generalized_advantage_estimation``'s
    advantages: δ_t = r_t + γ V_{t+1} − V_t with V_{T+1} = 0, and
    A_t = δ_t + γλ A_{t+1}, computed backwards. The function may return the
    advantages alone or a tuple that starts with them. Cases: the chapter's
    three-token example, the limits λ = 1 (reward-to-go minus the value) and
    λ = 0 (one-step residuals), and random batches.
    """
    from rlhf_course.ppo.loss import generalized_advantage_estimation as gae

    for label, rewards, values, gamma, lam in _gae_cases():
        got = call_learner(fn, rewards.clone(), values.clone(), gamma, lam, what="your gae")
        got = got[0] if isinstance(got, (tuple, list)) else got
        got = expect_tensor("your advantages", got, "Return a tensor of the rewards' shape.")
        if tuple(got.shape) != tuple(rewards.shape):
            raise ExerciseError(f"on {label}, your advantages have shape {tuple(got.shape)}; expected "
                                f"{tuple(rewards.shape)}, one advantage per token.")
        expected = gae(rewards, values, gamma, lam)[0]
        got = got.detach().to(expected.dtype)
        if not torch.allclose(got, expected, atol=1e-5):
            hint = next((h for wrong, h in _gae_mistakes(rewards, values, gamma, lam)
                         if torch.allclose(got, wrong, atol=1e-5)),
                        "A_t = δ_t + γλ A_{t+1}, with δ_t = r_t + γ V_{t+1} − V_t and nothing after the last token.")
            raise ExerciseError(f"on {label} (γ = {gamma}, λ = {lam}), your advantages are {show(got)}; expected "
                                f"{show(expected)}. {hint}")
    return (f"equal to rlhf_course.ppo.generalized_advantage_estimation on {len(_gae_cases())} cases, "
            "including the λ = 0 and λ = 1 limits")


def _clip_cases() -> list[tuple[str, torch.Tensor, torch.Tensor, torch.Tensor, float]]:
    """(label, new_logps, old_logps, advantages, clip): the ratio on both sides of the clip, for both signs of A."""
    ratios = torch.tensor([[1.0, 1.1, 1.5, 0.5, 1.5, 0.5]], dtype=torch.float64)
    advantages = torch.tensor([[1.0, 2.0, 1.0, -1.0, -1.0, 1.0]], dtype=torch.float64)
    old = torch.full_like(ratios, -2.0)
    gen = torch.Generator().manual_seed(1)
    rand_old = -3 * torch.rand(4, 6, generator=gen, dtype=torch.float64)
    rand_new = rand_old + 0.6 * torch.randn(4, 6, generator=gen, dtype=torch.float64)
    return [
        ("six tokens, each case of the chapter's table", old + ratios.log(), old, advantages, 0.2),
        ("the same tokens with ε = 0.1", old + ratios.log(), old, advantages, 0.1),
        ("a random batch", rand_new, rand_old, torch.randn(4, 6, generator=gen, dtype=torch.float64), 0.2),
    ]


def _clip_mistakes(new, old, adv, clip) -> list[tuple[float, str]]:
    ratio = (new - old).exp()
    clipped = ratio.clamp(1 - clip, 1 + clip)
    return [
        ((-torch.maximum(ratio * adv, clipped * adv)).mean().item(),
         "Take the minimum of the two terms, min(r A, clip(r) A): the pessimistic one."),
        (torch.minimum(ratio * adv, clipped * adv).mean().item(),
         "The sign is missing: the loss is −mean(min(r A, clip(r) A)), the objective negated."),
        ((-(ratio * adv)).mean().item(), "There is no clipping: clip the ratio to [1 − ε, 1 + ε] and take the minimum "
                                         "with the unclipped term."),
        ((-(clipped * adv)).mean().item(), "Take the minimum of the clipped and the unclipped term, not the clipped "
                                           "term alone."),
        ((-torch.minimum((new - old) * adv, (new - old).clamp(1 - clip, 1 + clip) * adv)).mean().item(),
         "The ratio is π_θ/π_old = exp(log π_θ − log π_old), not the difference of the log-probabilities."),
        ((-torch.minimum(ratio * adv, clipped * adv)).sum().item(), "Average over the tokens instead of summing."),
        ((-torch.minimum(ratio * adv, ratio * adv.clamp(1 - clip, 1 + clip))).mean().item(),
         "Clip the ratio, not the advantage."),
    ]


@exercise("PPO clipped loss")
def check_clipped_policy_loss(fn: Callable[..., Any]) -> str:
    """Check ``fn(new_logps, old_logps, advantages, clip) -> loss``: −mean over tokens of min(r A, clip(r, 1±ε) A).

    Per-token tensors of shape ``(batch, T)``, all tokens real. The answer is
    ``rlhf_course.ppo.clipped_policy_loss``'s loss; a tuple that starts with the
    loss is accepted. The first case holds one token for each row of the
    chapter's table (ratio inside the clip; above 1 + ε with A > 0 and A < 0;
    below 1 − ε with both signs). Then the gradient: zero exactly on the tokens
    whose clipped term is used.
    """
    from rlhf_course.ppo.loss import clipped_policy_loss

    for label, new, old, adv, clip in _clip_cases():
        got = call_learner(fn, new.clone(), old.clone(), adv.clone(), clip, what="your clipped_policy_loss")
        got = got[0] if isinstance(got, (tuple, list)) else got
        got = expect_tensor("your loss", got, "Return a tensor built from torch operations.")
        if got.numel() != 1:
            raise ExerciseError(f"on {label}, your loss has shape {tuple(got.shape)}; expected one number, the mean "
                                "over tokens.")
        value = as_float("your loss", got)
        expected = clipped_policy_loss(new, old, adv, clip=clip).loss.item()
        if not near(value, expected):
            hint = next((h for v, h in _clip_mistakes(new, old, adv, clip) if near(value, v)),
                        "The loss is −mean(min(r A, clip(r, 1 − ε, 1 + ε) A)) with r = exp(log π_θ − log π_old).")
            raise ExerciseError(f"on {label}, your loss is {value:.5g}; expected {expected:.5g}. {hint}")
    _, new, old, adv, clip = _clip_cases()[0]
    new = new.clone().requires_grad_(True)
    loss = call_learner(fn, new, old.clone(), adv.clone(), clip, what="your clipped_policy_loss")
    loss = loss[0] if isinstance(loss, (tuple, list)) else loss
    if not getattr(loss, "requires_grad", False):
        raise ExerciseError("your loss carries no gradient: keep it a torch computation on new_logps "
                            "(no .item(), .detach() or torch.tensor(...)).")
    loss.backward()
    reference = new.detach().clone().requires_grad_(True)
    clipped_policy_loss(reference, old, adv, clip=clip).loss.backward()
    expect_close("d loss / d log π_θ", new.grad, reference.grad, atol=1e-6,
                 hint="Tokens whose clipped term is used (ratio past the clip in the direction A asks for) must get "
                      "zero gradient; the others r·A/N.")
    return ("equal to rlhf_course.ppo.clipped_policy_loss on every case of the chapter's table and a random batch, "
            "with zero gradient exactly where the clip binds")
