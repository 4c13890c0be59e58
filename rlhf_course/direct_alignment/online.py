"""Online (iterative) DPO: sample from the current policy, label with a reward model, train with DPO, repeat.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from rlhf_course.core.checkpoints import finished_round, record_round, round_key
from rlhf_course.core.distributed import is_main_process
from rlhf_course.core.models import load_policy
from rlhf_course.core.rollout import check_rounds, prompt_text
from rlhf_course.core.vllm_generation import sample_rollouts
from rlhf_course.core.runs import model_settings
from rlhf_course.direct_alignment.train import DirectAlignmentResult, train_dpo
from rlhf_course.preference_data.data import same_response


# ----------------------------------------------------------------------------- online (iterative) DPO


def on_policy_pairs(policy, tokenizer, prompts, reward_fn, profile, *, k: int | None = None,
                    seed: int = 0) -> list[dict]:
    """Preference pairs from the policy's own samples, labelled by a reward function.

    ``prompts`` are strings or toy-world ``Prompt``s. Samples ``k`` responses
    per prompt (``profile.dpo.online_k``), scores them
    with ``reward_fn`` (the learned reward model: online DPO never sees the gold
    reward), and pairs the best with the worst. A prompt gives no pair when its
    best and worst score the same, or when one of them is empty or both are the
    same text but for surrounding whitespace (the validator's rules, see
    :func:`rlhf_course.preference_data.same_response`). Rows carry the two rewards, for
    inspection, and a toy-world prompt's id and family.
    """

    k = k or profile.dpo.online_k
    if k < 2:
        raise ValueError(f"online DPO needs at least 2 samples per prompt to make a pair; got k={k}.")
    texts = [prompt_text(p) for p in prompts]
    samples = sample_rollouts(policy, tokenizer, texts, profile, n=k, batch_size=profile.eval_batch_size,
                              seed=seed)  # model.generate unless profile.rl.use_vllm (then vLLM, when installed)
    rewards = reward_fn([t for t in texts for _ in range(k)], samples.texts).float().view(len(prompts), k)
    rows = []
    for i, prompt in enumerate(prompts):
        best, worst = int(rewards[i].argmax()), int(rewards[i].argmin())
        chosen, rejected = samples.texts[i * k + best], samples.texts[i * k + worst]
        if (rewards[i, best] <= rewards[i, worst] or same_response(chosen, rejected)
                or not chosen.strip() or not rejected.strip()):
            continue
        about = {} if isinstance(prompt, (str, list)) else {"prompt_id": prompt.id, "family": prompt.family}
        rows.append({"prompt": texts[i], "chosen": chosen, "rejected": rejected, **about,
                     "chosen_reward": float(rewards[i, best]), "rejected_reward": float(rewards[i, worst])})
    return rows


def online_dpo(
    policy_path,
    tokenizer,
    reward_fn,
    profile,
    *,
    prompts: Sequence[Sequence[Any]],
    output_dir="runs/online_dpo",
    seed: int = 0,
    progress: bool = True,
    beta: float | None = None,
    reference_path=None,
) -> DirectAlignmentResult:
    """Iterative DPO: rounds of sample from the current policy, label with a reward model, train with DPO.

    ``prompts`` holds one list of fresh training prompts per round (on the toy
    world, ``rlhf_course.toyworld.training.online_dpo_prompts``). Round r makes
    best-versus-worst pairs on its prompts among ``profile.dpo.online_k`` samples of the
    current policy (:func:`on_policy_pairs`), and runs :func:`train_dpo` from
    the current policy for ``profile.dpo.online_epochs`` at
    ``profile.dpo.online_learning_rate`` and β = ``profile.dpo.online_beta``
    (``beta`` overrides it), with ``profile.dpo.online_nll_weight`` times the
    SFT loss on the chosen (best) responses added. The model of round r is
    saved under ``output_dir/round<r>/final``; the last is the result, also
    saved as ``output_dir/final``.

    The rounds start from the model at ``policy_path``: the SFT model, or a
    model already trained with offline DPO (the pipeline's ``online_dpo``
    continues from its ``dpo`` stage). The reference is the model at
    ``reference_path`` (default ``policy_path``; pass the SFT model when
    starting from a DPO model) and stays the same in every round, so β keeps
    bounding the distance from the SFT model, as the KL penalty of RLHF does.
    (The other choice in the literature, resetting the reference to the
    previous round's policy, lets the policy drift further with every round.)

    Started again with the same ``output_dir``, a round that an earlier run
    finished on the same pairs with the same settings is not trained again
    (its model and log are read back from ``round<r>``), and an interrupted
    round resumes from its last checkpoint (every ``profile.dpo.checkpoint_steps``
    steps). A round's pairs are sampled with the round's own seed from the
    previous round's saved model, so they are the same on a restart.
    """
    from pathlib import Path

    start = time.perf_counter()
    settings = profile.dpo
    check_rounds(prompts, "online DPO")
    current, history, summaries, model = Path(policy_path), [], [], None
    for r, batch in enumerate(prompts, start=1):
        policy = load_policy(current, profile)
        rows = on_policy_pairs(policy, tokenizer, batch, reward_fn, profile, seed=seed * 1000 + r)
        del policy
        if not rows:
            raise RuntimeError(f"online DPO round {r}: every prompt's samples scored the same, so there are no "
                               "pairs to learn from; sample more responses per prompt (profile.dpo.online_k).")
        out = Path(output_dir) / f"round{r}"
        round_beta, reference = settings.online_beta if beta is None else beta, reference_path or policy_path
        key = round_key(rows, model_settings(settings), profile.lora, seed + r, round_beta, str(reference))
        done = finished_round(out, key)
        if done is not None:  # an earlier run trained this round on these very pairs: take its model
            history += done["log_history"]
            summaries.append(done["summary"])
            current, model = out / "final", None
            if is_main_process():
                print(f"online DPO: round {r} was finished in {out}; taking its model.", flush=True)
            continue
        result = train_dpo(current, tokenizer, rows, profile, output_dir=out, seed=seed + r, progress=progress,
                           beta=round_beta, reference_path=reference,
                           epochs=settings.online_epochs, learning_rate=settings.online_learning_rate,
                           nll_weight=settings.online_nll_weight)
        history += [{**e, "round": r} for e in result.log_history]
        gap = [row["chosen_reward"] - row["rejected_reward"] for row in rows]
        summaries.append({"round": r, "pairs": len(rows), "mean_reward_gap": sum(gap) / len(gap),
                          "seconds": result.seconds})
        current, model = out / "final", result.model
        if is_main_process():
            record_round(out, key, {"log_history": history[-len(result.log_history):] if result.log_history else [],
                                    "summary": summaries[-1]})
    if model is None:  # the last round was finished by an earlier run
        model = load_policy(current, profile)
    if is_main_process():  # the last round is the result, saved where every stage keeps its own
        model.save_pretrained(Path(output_dir) / "final", safe_serialization=True)
        tokenizer.save_pretrained(Path(output_dir) / "final")
    return DirectAlignmentResult(model, history, time.perf_counter() - start, "online_dpo", summaries)
