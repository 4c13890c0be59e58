"""Direct alignment: DPO and its relatives, as losses on sequence log-probabilities.

The KL-regularised objective max_π E[r] − β KL(π ‖ π_ref) is maximised by
π*(y|x) = π_ref(y|x) exp(r(x, y)/β) / Z(x). Solved for the reward,

    r(x, y) = β log(π*(y|x) / π_ref(y|x)) + β log Z(x).

DPO (Rafailov et al., 2023) makes the policy π_θ play π* and calls
β log(π_θ / π_ref) its *implicit reward*. Put into the Bradley–Terry loss, the
intractable β log Z(x) cancels, since both responses answer the same prompt:

    L_DPO = −log σ( β [log π_θ(y_w|x)/π_ref(y_w|x) − log π_θ(y_l|x)/π_ref(y_l|x)] ).

Training is then a classification loss on preference pairs, with no reward
model and no sampling. The other functions here change one ingredient each:

- :func:`dpo_loss` with ``label_smoothing`` (conservative DPO): admits that
  some labels are wrong, so the margin stops growing;
- :func:`ipo_loss`: a squared loss with a finite target margin, where the
  log-sigmoid's optimum is an infinitely wide margin;
- :func:`kto_loss`: no pairs at all, only responses marked good or bad,
  each compared with a reference point (:func:`kto_reference_point`);
- :func:`orpo_loss`: no reference model; SFT plus an odds-ratio penalty on
  average per-token log-probabilities, in a single stage;
- :func:`simpo_loss`: no reference model; the average per-token
  log-probability is the reward, and the winner must lead by a margin γ.

Every function takes *sequence* log-probabilities: sums over each response's
tokens (prompt excluded), as :func:`rlhf_course.core.sampling.completion_logprobs`
computes them, one value per response, shape ``(batch,)``. Those that need
per-token averages also take the response lengths, in tokens. Each returns the
loss (a scalar, averaged over the batch) and the rewards it implicitly assigns
to the two kinds of response, detached, for logging. The tests check each
against the corresponding TRL trainer on the same numbers.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


# ----------------------------------------------------------------------------- input checks


def _check_batch(fn: str, **tensors: torch.Tensor) -> None:
    """Raise an error naming the arguments unless all are 1-D tensors of one shape."""
    for name, value in tensors.items():
        if not isinstance(value, torch.Tensor):
            raise TypeError(f"{fn}: {name} must be a torch.Tensor, got {type(value).__name__}.")
        if value.dim() != 1:
            raise ValueError(
                f"{fn}: {name} must have shape (batch,), one value per response, got shape {tuple(value.shape)}. "
                "Log-probabilities are sums over each response's tokens "
                "(rlhf_course.core.sampling.completion_logprobs)."
            )
    (first_name, first), *others = tensors.items()
    for name, value in others:
        if value.shape != first.shape:
            raise ValueError(
                f"{fn}: {first_name} has shape {tuple(first.shape)} but {name} has shape {tuple(value.shape)}; "
                "they must match, one entry per example."
            )


def _check_lengths(fn: str, **lengths: torch.Tensor) -> None:
    for name, value in lengths.items():
        if value.numel() and bool((value <= 0).any()):
            raise ValueError(f"{fn}: {name} must be positive numbers of response tokens, got {value.tolist()}.")


def _check_positive(fn: str, name: str, value: float) -> None:
    if not value > 0:
        raise ValueError(f"{fn}: {name} must be positive, got {value}.")


def _log1mexp(a: torch.Tensor) -> torch.Tensor:
    """log(1 − e^a) for a ≤ 0, accurate at both ends.

    Near a = 0, e^a is close to 1 and 1 − e^a loses digits, so use
    log(−expm1(a)); for very negative a, e^a is tiny, so use log1p(−e^a).
    The switch at a = −log 2 is the usual one.
    """
    return torch.where(a < -math.log(2), torch.log1p(-torch.exp(a)), torch.log(-torch.expm1(a)))


# ----------------------------------------------------------------------------- DPO and conservative DPO


def dpo_loss(
    policy_chosen_logps: torch.Tensor,
    policy_rejected_logps: torch.Tensor,
    ref_chosen_logps: torch.Tensor,
    ref_rejected_logps: torch.Tensor,
    beta: float,
    label_smoothing: float = 0.0,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The DPO (sigmoid) loss of a batch of preference pairs, with the implicit rewards.

    With Δ = log π_θ(y|x) − log π_ref(y|x) and the margin h = β (Δ_w − Δ_l),

        L = −(1 − ε) log σ(h) − ε log σ(−h),

    averaged over the batch. With ε = 0 (the default) this is plain DPO.

    **Conservative DPO** (ε > 0; Mitchell, 2023). Preference labels are noisy:
    annotators disagree, and some pairs are simply mislabelled. Plain DPO
    treats every label as certain, and its loss keeps falling as h grows, so it
    keeps widening the margin of every pair, wrong ones included. If we believe
    that a fraction ε of the labels is flipped, the honest target for
    "y_w wins" is 1 − ε, not 1. The loss above is the cross-entropy against
    that softened target; it is smallest at h = log((1 − ε)/ε), a finite
    margin, so a pair that is already well separated stops pulling the policy
    away from the reference (and one pushed past it is pulled back).

    Args:
        policy_chosen_logps, policy_rejected_logps: log π_θ(y|x) of the chosen
            and rejected responses, summed over each response's tokens,
            shape ``(batch,)``.
        ref_chosen_logps, ref_rejected_logps: the same under the frozen
            reference π_ref.
        beta: the KL strength β of the objective DPO solves; larger β keeps
            the policy closer to the reference.
        label_smoothing: ε in [0, 0.5), the assumed share of flipped labels.

    Returns:
        ``(loss, chosen_rewards, rejected_rewards)``: the mean loss and the
        implicit rewards β Δ of each response (detached; handy for logging,
        e.g. the fraction of pairs with chosen > rejected).

    ``logsigmoid`` keeps the loss finite for large negative margins, where
    ``log(sigmoid(·))`` would underflow to −inf.
    """
    _check_batch("dpo_loss", policy_chosen_logps=policy_chosen_logps, policy_rejected_logps=policy_rejected_logps,
                 ref_chosen_logps=ref_chosen_logps, ref_rejected_logps=ref_rejected_logps)
    _check_positive("dpo_loss", "beta", beta)
    if not 0.0 <= label_smoothing < 0.5:
        raise ValueError(f"dpo_loss: label_smoothing is a share of flipped labels in [0, 0.5), got {label_smoothing}.")
    chosen_logratios = policy_chosen_logps - ref_chosen_logps
    rejected_logratios = policy_rejected_logps - ref_rejected_logps
    margin = beta * (chosen_logratios - rejected_logratios)
    losses = -(1 - label_smoothing) * F.logsigmoid(margin) - label_smoothing * F.logsigmoid(-margin)
    chosen_rewards = beta * chosen_logratios.detach()
    rejected_rewards = beta * rejected_logratios.detach()
    return losses.mean(), chosen_rewards, rejected_rewards


# ----------------------------------------------------------------------------- IPO


def ipo_loss(
    policy_chosen_logps: torch.Tensor,
    policy_rejected_logps: torch.Tensor,
    ref_chosen_logps: torch.Tensor,
    ref_rejected_logps: torch.Tensor,
    beta: float,
    chosen_lengths: torch.Tensor | None = None,
    rejected_lengths: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The IPO loss (Azar et al., 2023): regress the log-ratio gap onto 1/(2β).

    With Δ = log π_θ(y|x) − log π_ref(y|x) and h = Δ_w − Δ_l,

        L = ( h − 1/(2β) )²,

    averaged over the batch. β plays the part of the KL strength (the paper
    calls it τ): a larger β asks for a smaller gap.

    Why. DPO's loss −log σ(βh) only reaches zero as h → ∞. When the same pair
    always comes out the same way, and in a finite dataset most pairs are
    seen with a single label, DPO keeps widening the gap however strong β is:
    the KL term that was meant to hold the policy near the reference stops
    holding it. IPO derives a loss whose optimum is a *finite* gap, 1/(2β),
    so pushing a pair past it is penalised just like falling short of it.

    Per-token gaps. A sequence log-ratio grows with the number of tokens, so
    the same β would mean different things for short and long responses. If
    ``chosen_lengths`` and ``rejected_lengths`` are given, each Δ is divided
    by its response's length before the gap is taken,
    h = Δ_w/|y_w| − Δ_l/|y_l|. That is what TRL's ``DPOTrainer`` does for
    ``loss_type="ipo"`` (always); without lengths, this is the paper's formula.

    Args:
        policy_chosen_logps, policy_rejected_logps, ref_chosen_logps,
            ref_rejected_logps: sequence log-probabilities, shape ``(batch,)``,
            as for :func:`dpo_loss`.
        beta: the regularisation strength (τ in the paper), positive.
        chosen_lengths, rejected_lengths: optional numbers of response tokens,
            shape ``(batch,)``; give both or neither.

    Returns:
        ``(loss, chosen_rewards, rejected_rewards)``: the mean loss and the
        DPO-style implicit rewards β Δ (not divided by length, as TRL logs
        them), detached.
    """
    _check_batch("ipo_loss", policy_chosen_logps=policy_chosen_logps, policy_rejected_logps=policy_rejected_logps,
                 ref_chosen_logps=ref_chosen_logps, ref_rejected_logps=ref_rejected_logps)
    _check_positive("ipo_loss", "beta", beta)
    if (chosen_lengths is None) != (rejected_lengths is None):
        raise ValueError("ipo_loss: give both chosen_lengths and rejected_lengths, or neither.")
    chosen_logratios = policy_chosen_logps - ref_chosen_logps
    rejected_logratios = policy_rejected_logps - ref_rejected_logps
    chosen_score, rejected_score = chosen_logratios, rejected_logratios
    if chosen_lengths is not None:
        _check_batch("ipo_loss", policy_chosen_logps=policy_chosen_logps, chosen_lengths=chosen_lengths,
                     rejected_lengths=rejected_lengths)
        _check_lengths("ipo_loss", chosen_lengths=chosen_lengths, rejected_lengths=rejected_lengths)
        chosen_score = chosen_logratios / chosen_lengths
        rejected_score = rejected_logratios / rejected_lengths
    gap = chosen_score - rejected_score
    loss = ((gap - 1 / (2 * beta)) ** 2).mean()
    return loss, beta * chosen_logratios.detach(), beta * rejected_logratios.detach()


# ----------------------------------------------------------------------------- KTO


def kto_reference_point(policy_mismatched_logps: torch.Tensor, ref_mismatched_logps: torch.Tensor) -> torch.Tensor:
    """KTO's reference point z_ref: an estimate of KL(π_θ ‖ π_ref), clipped at 0, without gradient.

        z_ref = max(0, mean_j [log π_θ(y'_j|x_j) − log π_ref(y'_j|x_j)]).

    The KL is an expectation over the policy's own responses, which KTO does
    not sample. It uses the batch's responses instead, each paired with a
    *different* prompt of the batch (TRL shifts the responses by one place:
    prompt x_j gets response y_{j−1}), so that y'_j is a plausible but
    unrelated answer to x_j. The estimate is crude and can come out negative,
    which a KL cannot be, hence the clip; it carries no gradient because it
    only sets the level against which rewards count as gains or losses.

    Args:
        policy_mismatched_logps, ref_mismatched_logps: sequence log-probabilities
            of the mismatched pairs (x_j, y'_j) under π_θ and π_ref, shape ``(m,)``.

    Returns:
        z_ref, a detached scalar tensor.
    """
    _check_batch("kto_reference_point", policy_mismatched_logps=policy_mismatched_logps,
                 ref_mismatched_logps=ref_mismatched_logps)
    return (policy_mismatched_logps - ref_mismatched_logps).mean().clamp(min=0).detach()


def kto_loss(
    policy_desirable_logps: torch.Tensor,
    policy_undesirable_logps: torch.Tensor,
    ref_desirable_logps: torch.Tensor,
    ref_undesirable_logps: torch.Tensor,
    z_ref: torch.Tensor | float,
    beta: float,
    desirable_weight: float = 1.0,
    undesirable_weight: float = 1.0,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The KTO loss (Ethayarajh et al., 2024) on responses labelled good or bad, not pairs.

    With r = log π_θ(y|x) − log π_ref(y|x) (the implicit reward, in units of β),

        desirable y:    λ_D (1 − σ(β (r − z_ref)))
        undesirable y:  λ_U (1 − σ(β (z_ref − r)))

    and the loss is the mean over all the batch's responses, of both kinds.

    Why. Much feedback is a thumbs up or down on one response, with no second
    response to compare it with. KTO borrows prospect theory (Kahneman and
    Tversky): people judge an outcome as a gain or a loss relative to a
    reference point, and the value of a gain or loss levels off as it grows.
    Here the outcome is the implicit reward r, the reference point z_ref is
    how far the policy has moved from the reference on average
    (:func:`kto_reference_point`), and the levelling off is the sigmoid. A
    good response pays off only insofar as its reward beats z_ref, so the
    policy cannot win by raising every response at once; a bad one must fall
    below z_ref. Once a response is far on the right side, σ saturates and it
    stops contributing, much like conservative DPO's finite target.

    λ_D and λ_U weigh gains against losses. With unequal numbers of good and
    bad examples, the paper suggests keeping λ_D n_D / (λ_U n_U) between 1
    and 4/3.

    Args:
        policy_desirable_logps, ref_desirable_logps: sequence log-probabilities
            of the desirable responses under π_θ and π_ref, shape ``(n_D,)``.
        policy_undesirable_logps, ref_undesirable_logps: the same for the
            undesirable responses, shape ``(n_U,)``. n_D and n_U need not be
            equal (the data are unpaired); either may be 0, not both.
        z_ref: the reference point, e.g. from :func:`kto_reference_point`;
            treated as a constant (no gradient flows through it).
        beta: the KL strength β, positive.
        desirable_weight, undesirable_weight: λ_D and λ_U.

    Returns:
        ``(loss, desirable_rewards, undesirable_rewards)``: the mean loss and
        the implicit rewards β r of each response, detached.
    """
    _check_batch("kto_loss", policy_desirable_logps=policy_desirable_logps, ref_desirable_logps=ref_desirable_logps)
    _check_batch("kto_loss", policy_undesirable_logps=policy_undesirable_logps,
                 ref_undesirable_logps=ref_undesirable_logps)
    _check_positive("kto_loss", "beta", beta)
    n = policy_desirable_logps.numel() + policy_undesirable_logps.numel()
    if n == 0:
        raise ValueError("kto_loss: the batch has no responses, desirable or undesirable.")
    z = torch.as_tensor(z_ref, dtype=policy_desirable_logps.dtype, device=policy_desirable_logps.device).detach()
    desirable_logratios = policy_desirable_logps - ref_desirable_logps
    undesirable_logratios = policy_undesirable_logps - ref_undesirable_logps
    desirable_losses = desirable_weight * (1 - torch.sigmoid(beta * (desirable_logratios - z)))
    undesirable_losses = undesirable_weight * (1 - torch.sigmoid(beta * (z - undesirable_logratios)))
    loss = (desirable_losses.sum() + undesirable_losses.sum()) / n
    return loss, beta * desirable_logratios.detach(), beta * undesirable_logratios.detach()


# ----------------------------------------------------------------------------- ORPO


def orpo_loss(
    policy_chosen_logps: torch.Tensor,
    policy_rejected_logps: torch.Tensor,
    chosen_lengths: torch.Tensor,
    rejected_lengths: torch.Tensor,
    beta: float = 0.1,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The ORPO loss (Hong et al., 2024): SFT on the chosen response plus an odds-ratio penalty.

    With a = log π_θ(y|x) / |y|, the average log-probability of a response's
    tokens, write p = e^a (the geometric mean of its token probabilities) and
    its odds  odds(y) = p / (1 − p),  so  log odds(y) = a − log(1 − e^a). Then

        L_OR  = −log σ( log odds(y_w) − log odds(y_l) ),
        L_NLL = −Σ log π_θ(y_w|x) / Σ |y_w|       (over the batch's chosen responses),
        L     = L_NLL + β · mean(L_OR).

    Why. ORPO does instruction tuning and preference learning in one stage,
    with no reference model: the NLL term is ordinary SFT on the chosen
    responses, and the odds-ratio term tilts the model away from the rejected
    ones. Its gradient on a response carries a factor 1/(1 − p), so it pushes
    hardest on responses the model already finds likely: a likely rejected
    response is pushed down firmly, an unlikely one is mostly left alone.
    The penalty therefore fades once rejected text has become unlikely,
    instead of driving its probability towards zero against the SFT term,
    which raises the probability of similar chosen text.

    Average log-probabilities matter here. A sum over 100 tokens gives
    p ≈ e^-100, for which the odds equal p and the odds ratio collapses into
    a plain probability ratio. The per-token average keeps p in a range where
    odds and probability differ.

    Args:
        policy_chosen_logps, policy_rejected_logps: sequence log-probabilities
            (sums over response tokens) of the chosen and rejected responses,
            shape ``(batch,)``.
        chosen_lengths, rejected_lengths: numbers of response tokens, shape
            ``(batch,)``, positive.
        beta: the weight of the odds-ratio term (λ in the paper; TRL's
            ``ORPOConfig`` calls it ``beta`` and defaults to 0.1).

    Returns:
        ``(loss, chosen_rewards, rejected_rewards, nll_loss, log_odds_ratio)``:
        the loss; the rewards β·a of each response, as TRL logs them; the SFT
        term L_NLL; and the log odds ratio of each pair (positive when the
        chosen response has the higher odds). All but the loss are detached.

    TRL's ``ORPOTrainer`` computes its NLL over the prompt tokens as well as
    the chosen response's; this function counts the response only.
    """
    _check_batch("orpo_loss", policy_chosen_logps=policy_chosen_logps, policy_rejected_logps=policy_rejected_logps,
                 chosen_lengths=chosen_lengths, rejected_lengths=rejected_lengths)
    _check_lengths("orpo_loss", chosen_lengths=chosen_lengths, rejected_lengths=rejected_lengths)
    chosen_avg = policy_chosen_logps / chosen_lengths
    rejected_avg = policy_rejected_logps / rejected_lengths
    log_odds_ratio = (chosen_avg - _log1mexp(chosen_avg)) - (rejected_avg - _log1mexp(rejected_avg))
    odds_ratio_loss = -F.logsigmoid(log_odds_ratio).mean()
    nll_loss = -policy_chosen_logps.sum() / chosen_lengths.sum()
    loss = nll_loss + beta * odds_ratio_loss
    return (loss, beta * chosen_avg.detach(), beta * rejected_avg.detach(), nll_loss.detach(),
            log_odds_ratio.detach())


# ----------------------------------------------------------------------------- SimPO


def simpo_loss(
    policy_chosen_logps: torch.Tensor,
    policy_rejected_logps: torch.Tensor,
    chosen_lengths: torch.Tensor,
    rejected_lengths: torch.Tensor,
    beta: float,
    gamma: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The SimPO loss (Meng et al., 2024): average log-probability as the reward, with a target margin.

    The reward of a response is its average token log-probability, scaled:
    r(x, y) = β log π_θ(y|x) / |y|. The loss is Bradley–Terry with a margin γ,

        L = −log σ( β log π_θ(y_w|x)/|y_w| − β log π_θ(y_l|x)/|y_l| − γ ),

    averaged over the batch: :func:`rlhf_course.reward_modeling.bradley_terry_loss`
    with margin γ, applied to that reward.

    Why. DPO's implicit reward, a sum over tokens relative to π_ref, is not
    the score by which a model's candidate outputs are usually compared when
    it generates: that is the average log-likelihood per token (beam search,
    for instance, divides each candidate's summed log-probability by its
    length). So a pair can be ranked correctly by DPO's reward and the other
    way round by the model's own likelihood. SimPO makes the reward that
    average. This also removes the reference model (less memory, one forward
    pass fewer), and dividing by the length keeps the number of tokens from
    entering the reward merely through how many terms are summed (without it,
    the paper finds, the policy drifts towards long, repetitive answers).
    Without π_ref there is nothing to keep the policy close to where it started except early
    stopping and a small learning rate; the margin γ asks the winner to lead
    by a clear gap before a pair stops contributing.

    Args:
        policy_chosen_logps, policy_rejected_logps: sequence log-probabilities
            (sums over response tokens), shape ``(batch,)``.
        chosen_lengths, rejected_lengths: numbers of response tokens, shape
            ``(batch,)``, positive.
        beta: the reward scale β, positive; much larger than DPO's, since
            average log-probabilities are small numbers (the SimPO authors
            used 2 to 2.5, and report that 10 can work better).
        gamma: the target margin γ, in reward units; usually tied to β,
            γ ≈ 0.3 β to 0.5 β.

    Returns:
        ``(loss, chosen_rewards, rejected_rewards)``: the mean loss and the
        rewards β log π_θ(y|x)/|y| of each response, detached.
    """
    _check_batch("simpo_loss", policy_chosen_logps=policy_chosen_logps, policy_rejected_logps=policy_rejected_logps,
                 chosen_lengths=chosen_lengths, rejected_lengths=rejected_lengths)
    _check_lengths("simpo_loss", chosen_lengths=chosen_lengths, rejected_lengths=rejected_lengths)
    _check_positive("simpo_loss", "beta", beta)
    chosen_rewards = beta * policy_chosen_logps / chosen_lengths
    rejected_rewards = beta * policy_rejected_logps / rejected_lengths
    loss = -F.logsigmoid(chosen_rewards - rejected_rewards - gamma).mean()
    return loss, chosen_rewards.detach(), rejected_rewards.detach()
