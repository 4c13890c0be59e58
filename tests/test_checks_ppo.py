"""The PPO exercise checks (GAE, the clipped loss) pass right answers and name the typical mistakes."""

from __future__ import annotations

import pytest
import torch
from exercise_checks import fails_with, no_grade_log  # noqa: F401  (no_grade_log is an autouse fixture)

from rlhf_course.ppo import clipped_policy_loss, generalized_advantage_estimation
from rlhf_course.ppo.checks import check_clipped_policy_loss, check_gae


def gae_loop(rewards, values, gamma, lam, decay=None, bootstrap=True, backwards=True):
    """A plain GAE with switches for the usual mistakes."""
    decay = gamma * lam if decay is None else decay
    T = rewards.shape[1]
    next_values = torch.cat([values[:, 1:], torch.zeros_like(values[:, :1])], dim=1)
    deltas = rewards + (gamma * next_values if bootstrap else 0) - values
    out, running = torch.zeros_like(rewards), torch.zeros_like(rewards[:, 0])
    for t in (reversed(range(T)) if backwards else range(T)):
        running = deltas[:, t] + decay * running
        out[:, t] = running
    return out


def test_gae_passes_the_package_and_a_plain_loop(capsys):
    check_gae(generalized_advantage_estimation)  # returns (advantages, returns)
    check_gae(gae_loop)
    assert capsys.readouterr().out.startswith("✓ Generalized advantage estimation:")


@pytest.mark.parametrize("wrong, fragments", [
    (lambda r, v, g, lam: gae_loop(r, v, g, lam, bootstrap=False), ["one step ahead", "V_{t+1}"]),
    (lambda r, v, g, lam: gae_loop(r, v, g, lam, decay=g), ["γλ, not γ alone"]),
    (lambda r, v, g, lam: gae_loop(r, v, g, lam, backwards=False), ["backwards"]),
    (lambda r, v, g, lam: generalized_advantage_estimation(r, v, g, lam)[1], ["returns"]),
    (lambda r, v, g, lam: r[:, :2], ["shape"]),
])
def test_gae_names_the_mistake(wrong, fragments):
    fails_with(check_gae, wrong, *fragments)


def plain_clip(new, old, adv, clip):
    ratio = (new - old).exp()
    return -torch.minimum(ratio * adv, ratio.clamp(1 - clip, 1 + clip) * adv).mean()


def test_clip_passes_the_package_and_a_plain_loss(capsys):
    check_clipped_policy_loss(lambda n, o, a, c: clipped_policy_loss(n, o, a, clip=c))  # a PolicyLoss tuple
    check_clipped_policy_loss(plain_clip)
    assert capsys.readouterr().out.startswith("✓ PPO clipped loss:")


@pytest.mark.parametrize("wrong, fragments", [
    (lambda n, o, a, c: -torch.maximum((n - o).exp() * a, (n - o).exp().clamp(1 - c, 1 + c) * a).mean(), ["minimum"]),
    (lambda n, o, a, c: -plain_clip(n, o, a, c), ["sign"]),
    (lambda n, o, a, c: -((n - o).exp() * a).mean(), ["no clipping"]),
    (lambda n, o, a, c: -torch.minimum((n - o) * a, (n - o).clamp(1 - c, 1 + c) * a).mean(), ["exp(log π_θ − log π_old)"]),
    (lambda n, o, a, c: plain_clip(n, o, a, c) * n.numel(), ["Average"]),
    (lambda n, o, a, c: torch.tensor(plain_clip(n, o, a, c).item()), ["no gradient"]),
])
def test_clip_names_the_mistake(wrong, fragments):
    fails_with(check_clipped_policy_loss, wrong, *fragments)
