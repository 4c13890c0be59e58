"""The toy-world prompts each training stage draws, for a profile and a seed.

Trainers take their prompts as an argument, so the same trainer trains on a hub
dataset; these functions are what the pipeline, the shared models and the labs
pass on the toy world. Each fixes which training prompts a stage sees and in
which order, so a stage run from a lab and from ``rlhf-course pipeline`` with the
same seed trains on the same prompts.
"""

from __future__ import annotations

from .prompts import Prompt, make_prompts


def rl_prompts(profile, seed: int = 0, steps: int | None = None) -> list[Prompt]:
    """Training prompts of a policy-gradient run (REINFORCE, RLOO, GRPO): ``prompts_per_step`` for each step.

    ``steps`` defaults to ``profile.rl.steps``; step ``s`` takes the prompts at
    ``s * prompts_per_step`` … ``(s + 1) * prompts_per_step − 1``.
    """
    steps = profile.rl.steps if steps is None else steps
    return make_prompts("train", steps * profile.rl.prompts_per_step, seed=seed)


def ppo_prompts(profile, seed: int = 0) -> list[Prompt]:
    """Training prompts of a PPO run: :func:`rl_prompts` for ``profile.ppo.steps`` (else ``profile.rl.steps``) steps."""
    return rl_prompts(profile, seed, profile.ppo.steps or profile.rl.steps)


def rejection_sampling_prompts(profile, seed: int = 0, rounds: int | None = None) -> list[list[Prompt]]:
    """Fresh training prompts for each round of rejection-sampling fine-tuning (``profile.rs``).

    ``rounds`` defaults to ``profile.rs.rounds``; round r (from 0) draws
    ``profile.rs.n_prompts`` prompts with its own seed, 1000 · seed + 100 + r.
    """
    rounds = profile.rs.rounds if rounds is None else rounds
    return [make_prompts("train", profile.rs.n_prompts, seed=seed * 1000 + 100 + r) for r in range(rounds)]


def online_dpo_prompts(profile, seed: int = 0, rounds: int | None = None) -> list[list[Prompt]]:
    """Fresh training prompts for each round of online DPO: ``profile.dpo.online_prompts`` per round.

    ``rounds`` defaults to ``profile.dpo.online_rounds``; the rounds are
    consecutive slices of one draw.
    """
    rounds = profile.dpo.online_rounds if rounds is None else rounds
    if rounds < 1:
        raise ValueError(f"online DPO needs at least one round; got rounds={rounds}.")
    n = profile.dpo.online_prompts
    prompts = make_prompts("train", rounds * n, seed=seed)
    return [prompts[r * n:(r + 1) * n] for r in range(rounds)]


def pair_prompts(rows: list[dict], n: int, seed: int = 0) -> list[Prompt]:
    """The prompt behind each toy-world preference row of a draw of ``n`` train-split pairs with ``seed``.

    ``preference_data.toy_pairs(profile, seed, n=n)`` draws its prompts as
    ``make_prompts("train", n, seed)``; a judge and the gold reward need the
    task itself, not only its text.
    """
    prompt_of = {p.id: p for p in make_prompts("train", n, seed=seed)}
    return [prompt_of[row["prompt_id"]] for row in rows]


def distill_prompts(profile, seed: int = 0) -> list[Prompt]:
    """Training prompts a teacher answers for distillation: the SFT set's size plus ``profile.distill.extra_prompts``.

    Drawn with their own seed, 1000 · seed + 300, so they are not the SFT demonstrations' prompts.
    """
    n = int(profile.sft.n_demonstrations * (1 + profile.distill.extra_prompts))
    return make_prompts("train", n, seed=seed * 1000 + 300)


RLVR_FAMILIES = ("arithmetic", "transform")  # the toy world's tasks with one checkable answer


def rlvr_prompts(profile, seed: int = 0) -> tuple[list[Prompt], list[Prompt]]:
    """Checkable training prompts of an RLVR run (one per slot of ``steps × prompts_per_step``) and held-out ones."""
    settings = profile.rlvr
    train = make_prompts("train", settings.steps * settings.prompts_per_step, seed=seed, families=RLVR_FAMILIES)
    return train, make_prompts("test", settings.n_test, seed=seed, families=RLVR_FAMILIES)
