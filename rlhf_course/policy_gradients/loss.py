"""Policy gradients for RLHF: REINFORCE with a baseline, RLOO and GRPO.

The bandit view of RLHF: a prompt x is the state, a whole response y is the
action, and the reward r(x, y) arrives at the end. The policy-gradient
theorem says

    ∇ E_{y~π_θ}[r(x, y)] = E_{y~π_θ}[(r(x, y) − b(x)) ∇ log π_θ(y | x)]

for any baseline b that does not depend on y. The methods here differ only
in the baseline they subtract, which is what :func:`reinforce_advantages`,
:func:`rloo_advantages` and :func:`grpo_advantages` compute. One training
step is then:

1. :func:`rlhf_course.core.rollout.rollout`: sample k responses for each of a batch of prompts and
   score them with the reward function (the learned reward model, or a
   verifier);
2. subtract β times the sampled KL to the reference from each reward (a
   sequence-level KL penalty, the k1 estimate of log π_θ/π_ref);
3. turn rewards into advantages and take a gradient step on
   :func:`sequence_loss`.

How the per-token terms become one number is a choice the field argues
about: :func:`per_token_policy_loss` gives the table of per-token losses,
:func:`aggregate` averages it in one of four ways (token mean, mean per
sequence, a constant divisor, a plain sum) with the help of
:func:`masked_mean` and :func:`masked_normalize`, and
:func:`microbatch_weight` says how to weight micro-batches so that
accumulating gradients gives the whole batch's step in every mode.
:func:`token_entropy` measures how much the policy still explores.

This module holds the advantages and the losses; the loop,
:func:`rlhf_course.policy_gradients.train.train_policy_gradient`, and TRL's
GRPO and RLOO are in :mod:`rlhf_course.policy_gradients.train`. The rollout is
in :mod:`rlhf_course.core.rollout`, which PPO (its own chapter) shares.
"""

from __future__ import annotations

import warnings

import torch


# ----------------------------------------------------------------------------- advantages


def _grouped(rewards: torch.Tensor) -> torch.Tensor:
    """Check that rewards are a ``(prompts, k)`` table with k >= 2."""
    if rewards.dim() != 2 or rewards.shape[1] < 2:
        raise ValueError(f"rewards must have shape (prompts, k) with k >= 2 samples per prompt; "
                         f"got shape {tuple(rewards.shape)}.")
    return rewards.float()


def reinforce_advantages(rewards: torch.Tensor, baseline: float | torch.Tensor = 0.0) -> torch.Tensor:
    """REINFORCE's advantage: reward minus a baseline that ignores the sampled response.

    The baseline is usually a running mean of past rewards; any value that does
    not depend on the response keeps the gradient unbiased and, chosen well,
    makes it far less noisy.
    """
    return rewards.float() - baseline


def rloo_advantages(rewards: torch.Tensor) -> torch.Tensor:
    """RLOO: each of the k responses to a prompt is baselined by the mean of the other k − 1.

    ``rewards`` has shape ``(prompts, k)``. The baseline of response i never
    sees r_i, so it is unbiased; algebraically A_i = k/(k−1) · (r_i − mean r).
    """
    rewards = _grouped(rewards)
    k = rewards.shape[1]
    others = (rewards.sum(dim=1, keepdim=True) - rewards) / (k - 1)
    return rewards - others


def grpo_advantages(rewards: torch.Tensor, scale: bool = True, eps: float = 1e-4) -> torch.Tensor:
    """GRPO: reward minus the group mean, divided by the group's standard deviation.

    ``rewards`` has shape ``(prompts, k)``. With ``scale=False`` this is Dr.
    GRPO's advantage (no division: prompts the policy finds easy or hopeless,
    whose rewards barely vary, are not blown up). The standard deviation is the
    sample one (k − 1 in the denominator), as TRL computes it.
    """
    rewards = _grouped(rewards)
    centred = rewards - rewards.mean(dim=1, keepdim=True)
    return centred / (rewards.std(dim=1, keepdim=True) + eps) if scale else centred


def sequence_loss(
    token_logps: torch.Tensor, advantages: torch.Tensor, mask: torch.Tensor, level: str = "constant"
) -> torch.Tensor:
    """The REINFORCE surrogate −A_i · log π_θ(y_i|x_i) over a batch of N responses, as one number.

    ``token_logps`` and ``mask`` have shape ``(N, length)``; ``advantages`` has
    one value per response, shape ``(N,)``. Two of the aggregations of
    :func:`aggregate`:

    - ``"constant"`` (the default): the sum over each response's tokens,
      divided by a constant, here the number of responses N (Dr. GRPO's
      normaliser with L = 1). A response's log-probability is the sum of its
      tokens', as in the policy-gradient theorem, so this is the unbiased
      gradient up to a fixed scale;
    - ``"token"``: the token mean over the batch, divided by the number of real
      tokens in it (DAPO's choice, TRL's default ``loss_type="dapo"``, and the
      mean of ``rlhf_course.ppo.policy_gradient_loss``). That count changes
      with the lengths sampled in each batch.

    ``"sequence"`` is the old name of ``"constant"``; it still works, with a
    DeprecationWarning. It never meant GRPO's mean per sequence (that is
    ``aggregate(..., mode="sequence")``).
    """
    if level == "sequence":
        warnings.warn('sequence_loss(level="sequence") is now level="constant" (the sum over tokens divided by '
                      'the number of responses, not a mean per sequence); the old name will go.',
                      DeprecationWarning, stacklevel=2)
        level = "constant"
    if level not in ("constant", "token"):
        raise ValueError(f"level must be 'constant' (sum over tokens / number of responses) or 'token' (token mean); "
                         f"got {level!r}.")
    per_token = per_token_policy_loss(token_logps, advantages)
    return aggregate(per_token, mask, level, constant=1.0 if level == "constant" else None)


# ----------------------------------------------------------------------------- per-token losses and their aggregation


AGGREGATIONS = ("token", "sequence", "constant", "sum")


def per_token_policy_loss(token_logps: torch.Tensor, advantages: torch.Tensor) -> torch.Tensor:
    """The policy-gradient loss of every token, ℓ_{i,t} = −A_{i,t} · log π_θ(y_{i,t} | x_i, y_{i,<t}).

    ``token_logps`` has shape ``(N, T)``; ``advantages`` is one value per
    response, shape ``(N,)`` (broadcast over its tokens, as in REINFORCE, RLOO
    and GRPO), or one per token, ``(N, T)`` (as after GAE in PPO). The
    advantages are detached: they weight the gradient, they are not optimised.
    The result is not yet masked or averaged; :func:`aggregate` does that.

    On the first step after sampling, PPO's and GRPO's clipped per-token term
    −min(ρ A, clip(ρ, 1 − ε, 1 + ε) A) has ρ = 1 and the same gradient as this
    one; ``rlhf_course.ppo.clipped_policy_loss`` computes it, as a token mean.
    """
    if token_logps.dim() != 2:
        raise ValueError(f"token_logps must have shape (responses, tokens); got {tuple(token_logps.shape)}.")
    if advantages.shape == token_logps.shape[:1]:
        advantages = advantages[:, None]
    elif advantages.shape != token_logps.shape:
        raise ValueError(f"advantages must have one value per response, shape ({token_logps.shape[0]},), or one per "
                         f"token, shape {tuple(token_logps.shape)}; got {tuple(advantages.shape)}.")
    return -advantages.detach() * token_logps


def _float_mask(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``mask`` as ``values``' dtype, after checking that the two have the same shape."""
    if mask.shape != values.shape:
        raise ValueError(f"mask must have the shape of the values, {tuple(values.shape)}; got {tuple(mask.shape)}. "
                         f"Pass the completion mask of the same rows (1 on response tokens, 0 on prompt and padding).")
    return mask.to(values.dtype)


def masked_mean(values: torch.Tensor, mask: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    """The mean of ``values`` over the entries where ``mask`` is 1: Σ v·m / Σ m, over all entries or along ``dim``.

    Where the mask has no 1 at all (``dim=None``), or a slice along ``dim`` has
    none (an empty response, a row of padding), the mean is **0**, not NaN: the
    denominator is clamped to at least 1 and the numerator is 0. So an empty
    response contributes nothing to the loss and receives no gradient, while
    0/0 = NaN would turn every gradient of the batch into NaN. (TRL clamps in
    the same way.) Callers that average the row means over the batch still
    count such a row in the number of rows.
    """
    mask = _float_mask(values, mask)
    if dim is None:
        return (values * mask).sum() / mask.sum().clamp(min=1)
    return (values * mask).sum(dim=dim) / mask.sum(dim=dim).clamp(min=1)


def masked_normalize(values: torch.Tensor, mask: torch.Tensor, constant: float,
                     dim: int | None = None) -> torch.Tensor:
    """The sum of ``values`` over the entries where ``mask`` is 1, divided by a fixed ``constant``: Σ v·m / C.

    Unlike :func:`masked_mean`, the divisor does not depend on how many
    entries are real, so a row's total weight grows with its length (Dr.
    GRPO's normaliser, with C the maximum completion length). An all-zero
    mask gives 0.
    """
    if not constant > 0:
        raise ValueError(f"constant must be a positive number (e.g. the maximum completion length); got {constant!r}.")
    mask = _float_mask(values, mask)
    summed = (values * mask).sum() if dim is None else (values * mask).sum(dim=dim)
    return summed / constant


def aggregate(per_token_loss: torch.Tensor, mask: torch.Tensor, mode: str,
              constant: float | None = None) -> torch.Tensor:
    """One number from a ``(N, T)`` table of per-token losses ℓ_{i,t} and its mask m_{i,t}.

    With |y_i| = Σ_t m_{i,t} the length of response i:

    - ``"token"``: Σ_i Σ_t m ℓ / Σ_i |y_i|, the token mean over the batch. Every
      token weighs the same (DAPO; TRL's default ``loss_type="dapo"``).
    - ``"sequence"``: (1/N) Σ_i (Σ_t m ℓ / |y_i|), the mean per response, then
      over responses (the original PPO and GRPO; TRL's ``"grpo"``). Every
      response weighs the same, so a token of a long response weighs less.
    - ``"constant"``: (1/N) Σ_i Σ_t m ℓ / L = Σ m ℓ / (N·L), with L = ``constant``
      fixed in advance (Dr. GRPO and TRL's ``"dr_grpo"`` use the maximum
      completion length). The sum over a response's tokens is its
      log-probability's term, so this is the unbiased estimator up to a fixed scale.
    - ``"sum"``: Σ_i Σ_t m ℓ, no normalisation (the scale then grows with the batch).

    A response with no real tokens contributes 0 in every mode (see
    :func:`masked_mean`); in ``"sequence"`` and ``"constant"`` it still counts in N.
    ``constant`` is required by ``"constant"`` and refused by the others.
    """
    if mode not in AGGREGATIONS:
        raise ValueError(f"mode must be one of {', '.join(repr(m) for m in AGGREGATIONS)}; got {mode!r}.")
    if mode == "constant" and constant is None:
        raise ValueError("mode='constant' needs constant=, the fixed divisor L of each response's sum; Dr. GRPO and "
                         "TRL use the maximum completion length.")
    if mode != "constant" and constant is not None:
        raise ValueError(f"constant= is used only by mode='constant'; mode={mode!r} takes none.")
    if per_token_loss.dim() != 2 or per_token_loss.shape[0] == 0:
        raise ValueError(f"per_token_loss must have shape (responses, tokens) with at least one response; "
                         f"got {tuple(per_token_loss.shape)}.")
    if mode == "token":
        return masked_mean(per_token_loss, mask)
    if mode == "sequence":
        return masked_mean(per_token_loss, mask, dim=-1).mean()
    if mode == "constant":
        return masked_normalize(per_token_loss, mask, constant, dim=-1).mean()
    return (per_token_loss * _float_mask(per_token_loss, mask)).sum()


def microbatch_weight(mask: torch.Tensor, rows: slice, mode: str) -> float:
    """The weight of the micro-batch ``rows`` so that weighted micro-batch losses add up to the batch's loss.

    A micro-batch's :func:`aggregate` divides by *its own* normaliser; the
    batch's divides by the batch's. The weight is the micro-batch's share of
    the batch's normaliser: its share of the **real tokens** for ``"token"``,
    its share of the **rows** for ``"sequence"`` and ``"constant"``, and 1 for
    ``"sum"``. Then Σ_parts weight · aggregate(part) = aggregate(batch), and so
    are the gradients.

    The classic bug is to weight token means by their share of the rows (or
    to average them): micro-batches whose responses are longer than average
    then weigh too little, and the result is no longer the batch's token mean.
    ``mask`` is the whole batch's mask.
    """
    if mode not in AGGREGATIONS:
        raise ValueError(f"mode must be one of {', '.join(repr(m) for m in AGGREGATIONS)}; got {mode!r}.")
    if mode == "sum":
        return 1.0
    if mode == "token":
        return (mask[rows].sum() / mask.sum().clamp(min=1)).item()
    return (rows.stop - rows.start) / mask.shape[0]


def token_entropy(logits: torch.Tensor) -> torch.Tensor:
    """The entropy of the next-token distribution at every position, H = −Σ_v p_v log p_v with p = softmax(logits).

    ``logits`` has shape ``(..., vocabulary)``; the result has shape ``(...)``,
    in nats, in float32 at least. It is computed from ``log_softmax`` (which subtracts the largest
    logit before exponentiating), so large logits do not overflow, and a
    logit of −∞ (a token ruled out) contributes 0 rather than 0 · ∞ = NaN.
    Entropy falling towards 0 means the policy has stopped exploring (DAPO's
    clip-higher is a remedy); TRL logs it as ``entropy``.
    """
    logps = torch.log_softmax(logits.to(torch.promote_types(logits.dtype, torch.float32)), dim=-1)
    probs = logps.exp()
    return -(probs * torch.where(probs > 0, logps, torch.zeros_like(logps))).sum(dim=-1)
