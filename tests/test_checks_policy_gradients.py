"""The policy-gradient checks pass right answers and name the usual mistakes."""

from __future__ import annotations

from exercise_checks import fails_with, no_grade_log  # noqa: F401  (no_grade_log is an autouse fixture)

from rlhf_course.policy_gradients.checks import check_grpo_advantages, check_rloo_advantages

# --- RLOO -----------------------------------------------------------------------


def rloo(rewards):
    k = rewards.shape[1]
    return rewards - (rewards.sum(dim=1, keepdim=True) - rewards) / (k - 1)


def test_rloo_right_answers_pass(capsys):
    check_rloo_advantages(rloo)
    assert capsys.readouterr().out.startswith("✓ RLOO advantage:")
    k_over = lambda r: r.shape[1] / (r.shape[1] - 1) * (r - r.mean(dim=1, keepdim=True))
    check_rloo_advantages(k_over)


def test_rloo_stub_is_not_implemented_yet():
    def stub(rewards):
        raise NotImplementedError
    fails_with(check_rloo_advantages, stub, "not implemented yet")


def test_rloo_dividing_by_k_is_named():
    fails_with(check_rloo_advantages, lambda r: r - (r.sum(dim=1, keepdim=True) - r) / r.shape[1],
               "divided by k instead of k − 1", "(1, 0, 0, 1)")


def test_rloo_including_the_response_itself_is_named():
    fails_with(check_rloo_advantages, lambda r: r - r.mean(dim=1, keepdim=True), "includes r_i itself", "Dr. GRPO")


def test_rloo_sign_flip_is_named():
    fails_with(check_rloo_advantages, lambda r: -rloo(r), "sign is flipped")


def test_rloo_batch_baseline_is_named():
    message = fails_with(check_rloo_advantages, lambda r: r - (r.sum() - r) / (r.numel() - 1), "whole batch",
                         "same prompt")
    assert "three prompts" in message  # the single-prompt cases cannot tell; the first multi-prompt one does


def test_rloo_wrong_dimension_is_named():
    fails_with(check_rloo_advantages, lambda r: r - (r.sum(dim=0, keepdim=True) - r) / (r.shape[0] - 1), "dim=0")


def test_rloo_missing_keepdim_is_named():
    fails_with(check_rloo_advantages, lambda r: r - (r.sum(dim=1) - r) / (r.shape[1] - 1), "keepdim=True")


def test_rloo_one_value_per_prompt_is_caught():
    fails_with(check_rloo_advantages, lambda r: rloo(r).mean(dim=1), "shape (1, 4)", "one number per prompt")


def test_rloo_in_place_change_is_caught():
    def in_place(rewards):
        rewards -= (rewards.sum(dim=1, keepdim=True) - rewards) / (rewards.shape[1] - 1)
        return rewards
    fails_with(check_rloo_advantages, in_place, "in-place")


def test_rloo_returning_rewards_is_named():
    fails_with(check_rloo_advantages, lambda r: r.clone(), "unchanged")


# --- GRPO -----------------------------------------------------------------------


def grpo(rewards, eps=1e-4):
    return (rewards - rewards.mean(dim=1, keepdim=True)) / (rewards.std(dim=1, keepdim=True) + eps)


def test_grpo_right_answers_pass(capsys):
    check_grpo_advantages(grpo)
    out = capsys.readouterr().out
    assert out.startswith("✓ GRPO advantage:") and "same advantages as (1, 0, 0, 1)" in out
    check_grpo_advantages(lambda r: grpo(r, eps=1e-8))  # any small eps will do
    check_grpo_advantages(lambda r: (r - r.mean(dim=1, keepdim=True)) / r.std(dim=1, keepdim=True).clamp(min=1e-6))


def test_grpo_population_std_is_named():
    fails_with(check_grpo_advantages,
               lambda r: (r - r.mean(dim=1, keepdim=True)) / (r.std(dim=1, keepdim=True, unbiased=False) + 1e-4),
               "population standard deviation", "k − 1")


def test_grpo_missing_eps_is_named():
    fails_with(check_grpo_advantages, lambda r: (r - r.mean(dim=1, keepdim=True)) / r.std(dim=1, keepdim=True),
               "all equal", "eps", "NaN")


def test_grpo_batch_mean_is_named():
    fails_with(check_grpo_advantages, lambda r: (r - r.mean()) / (r.std(dim=1, keepdim=True) + 1e-4),
               "mean of the whole batch")


def test_grpo_batch_std_is_named():
    fails_with(check_grpo_advantages, lambda r: (r - r.mean(dim=1, keepdim=True)) / (r.std() + 1e-4),
               "standard deviation of the whole batch", "scale_rewards")


def test_grpo_batch_statistics_are_named():
    fails_with(check_grpo_advantages, lambda r: (r - r.mean()) / (r.std() + 1e-4), "whole batch's mean and std")


def test_grpo_no_division_is_named():
    fails_with(check_grpo_advantages, lambda r: r - r.mean(dim=1, keepdim=True), "Dr. GRPO")


def test_grpo_sign_flip_is_named():
    fails_with(check_grpo_advantages, lambda r: -grpo(r), "sign is flipped")


def test_grpo_variance_is_named():
    fails_with(check_grpo_advantages,
               lambda r: (r - r.mean(dim=1, keepdim=True)) / (r.var(dim=1, keepdim=True) + 1e-4), "variance")


def test_grpo_missing_keepdim_is_named():
    fails_with(check_grpo_advantages, lambda r: (r - r.mean(dim=1)) / (r.std(dim=1) + 1e-4), "keepdim=True")


def test_grpo_large_eps_is_caught():
    fails_with(check_grpo_advantages, lambda r: grpo(r, eps=1e-2), "eps ≈ 0.01", "too large")
    fails_with(check_grpo_advantages, lambda r: grpo(r, eps=1e-3), "(0.51, 0.49, 0.49, 0.51)", "eps")
    fails_with(check_grpo_advantages,
               lambda r: (r - r.mean(dim=1, keepdim=True)) / (r.var(dim=1, keepdim=True) + 1e-4).sqrt(),
               "(0.51, 0.49, 0.49, 0.51)", "square root")


def test_grpo_rloo_instead_is_named():
    fails_with(check_grpo_advantages, rloo, "leave-one-out")
