"""The Advanced chapters' opt-in stages: RLAIF (Constitutional AI), distillation (Synthetic Data), RLVR (Reasoning),
and the length-controlled win rates of the Style chapter for every stage.
"""

from __future__ import annotations

import copy
import time
from pathlib import Path

from rlhf_course.core.distributed import is_main_process
from rlhf_course.core.evaluation import (PolicySamples)
from rlhf_course.core.judges import agreement
from rlhf_course.core.models import load_policy
from rlhf_course.core.profiles import Profile
from rlhf_course.constitutional_ai import (CONSTITUTION, ai_feedback, gold_verdicts, prompted_judge, reward_model_judge,
                                          seed_labels)
from rlhf_course.direct_alignment.train import train_dpo
from rlhf_course.instruction_tuning.train import train_sft
from rlhf_course.reasoning import measure as measure_reasoning, rlvr_profile, train_rlvr, verifier_reward
from rlhf_course.preference_data.toy import toy_pairs
from rlhf_course.reward_modeling.evaluation import load_reward_function, reward_function
from rlhf_course.reward_modeling.train import reward_model_from, train_reward_model
from rlhf_course.style.judges import length_loving_judge
from rlhf_course.style.leaderboard import style_leaderboard
from rlhf_course.synthetic_data import distill
from rlhf_course.toyworld import gold_rewards, training, verify

from rlhf_course.pipeline.stages import measure, optional_reward, trained_stage


def constitution_judge(sft_path: Path, tokenizer, profile: Profile, output_dir: Path, seed: int, progress: bool):
    """The Constitutional AI chapter's AI judge: on ``tiny``, a reward model trained from the SFT model on
    ``profile.rlaif.n_seed_per_principle`` seed labels per principle; elsewhere the SFT model prompted with them."""
    if profile.model != "tiny":
        return prompted_judge(load_policy(sft_path, profile), tokenizer)
    seeds = seed_labels(CONSTITUTION, profile.rlaif.n_seed_per_principle, seed=seed)
    result = train_reward_model(reward_model_from(sft_path, profile), tokenizer, seeds, profile,
                                output_dir=output_dir, seed=seed, progress=progress)
    return reward_model_judge(reward_function(result.model, tokenizer, profile.eval_batch_size))


def rlaif_stage(tokenizer, prompts, profile: Profile, seed: int, out: Path, samples: dict[str, PolicySamples],
                progress: bool) -> dict:
    """DPO from the SFT model on pairs an AI judge labelled by reading a constitution (RLAIF).

    The pairs are the annotators' (``profile.rlaif.n_pairs`` of them), relabelled
    by the judge, ties dropped. The entry adds ``ai_label_agreement_gold`` (the
    judge's labels against gold's verdicts; a tie counts half),
    ``annotator_label_agreement_gold`` and ``ai_pairs`` (pairs DPO trained on).
    """
    start, sft_path = time.perf_counter(), trained_stage(out, "sft", "rlaif", "--stages sft,rlaif")
    judge = constitution_judge(sft_path, tokenizer, profile, out / "rlaif" / "judge", seed, progress)
    rows = toy_pairs(profile, seed, n=profile.rlaif.n_pairs)
    pair_prompts = training.pair_prompts(rows, profile.rlaif.n_pairs, seed)
    ai_rows, verdicts = ai_feedback(judge, rows, pair_prompts, seed=seed)
    gold = gold_verdicts(pair_prompts, [[row["chosen"], row["rejected"]] for row in rows])
    result = train_dpo(sft_path, tokenizer, ai_rows, profile, output_dir=out / "rlaif", seed=seed, progress=progress)
    entry, samples["rlaif"] = measure("rlaif", result.model, load_policy(sft_path, profile), tokenizer, prompts,
                                      profile, seed, samples, optional_reward(out, tokenizer, profile))
    return {**entry, "ai_label_agreement_gold": agreement(verdicts, gold),
            "annotator_label_agreement_gold": agreement([0] * len(rows), gold), "ai_pairs": len(ai_rows),
            "seconds": time.perf_counter() - start}


def distill_stage(base, tokenizer, prompts, profile: Profile, seed: int, out: Path,
                  samples: dict[str, PolicySamples], progress: bool) -> dict:
    """SFT of the base model on a teacher's filtered answers (the Synthetic Data chapter's distillation).

    The teacher is the policy of the stage ``profile.distill.teacher`` (RLOO by
    default); it answers fresh training prompts ``profile.distill.k`` times
    each, the verifier drops wrong answers to checkable prompts and the reward
    model keeps the best. The student trains on as many rows as the SFT model
    did, so ``win_rate_vs_sft`` compares the two sources of data. The entry
    adds the filter's kept share and the gold of the first and of the kept answers.
    """
    start, settings = time.perf_counter(), profile.distill
    teacher = trained_stage(out, settings.teacher, "distill", f"--stages sft,rm,{settings.teacher},distill, "
                            "or another teacher with --set distill.teacher=STAGE")
    reward_fn = load_reward_function(trained_stage(out, "rm", "distill", "--stages sft,rm,..."), tokenizer, profile)
    result, answers = distill(load_policy(teacher, profile), copy.deepcopy(base), tokenizer,
                              training.distill_prompts(profile, seed), profile.sft.n_demonstrations, reward_fn,
                              train_sft, profile, k=settings.k, verifier=verify, gold_fn=gold_rewards,
                              output_dir=out / "distill", seed=seed, progress=progress)
    entry, samples["distill"] = measure("distill", result.model, base, tokenizer, prompts, profile, seed, samples,
                                        reward_fn)
    summary = answers.summary()
    return {**entry, "teacher": settings.teacher, "distill_rows": min(len(answers.rows), profile.sft.n_demonstrations),
            "filter_kept_share": summary["kept_share"], "filter_gold_first": summary["gold_first"],
            "filter_gold_kept": summary["gold_kept"], "seconds": time.perf_counter() - start}


def rlvr_stage(tokenizer, prompts, profile: Profile, seed: int, out: Path, samples: dict[str, PolicySamples],
               progress: bool) -> dict:
    """RLOO from the SFT model against a verifier's gated reward, no KL penalty (the Reasoning chapter's RLVR).

    Trains on checkable prompts (arithmetic and transform); the entry adds
    pass@k on held-out checkable prompts (``profile.rlvr.n_samples`` samples
    each, the unbiased estimator of Chen et al. 2021) for the SFT model
    (``sft_pass@k``) and the trained one (``pass@k``), k = 1, 2, 4, ….
    """
    start, settings = time.perf_counter(), profile.rlvr
    sft_path = trained_stage(out, "sft", "rlvr", "--stages sft,rlvr")
    train, test = training.rlvr_prompts(profile, seed)
    rl_profile = rlvr_profile(profile, steps=settings.steps, prompts_per_step=settings.prompts_per_step, k=settings.k)
    reference = load_policy(sft_path, profile)
    model = train_rlvr(load_policy(sft_path, profile), reference, tokenizer, train, verifier_reward(train, "gated"),
                       rl_profile, gold_fn=gold_rewards, seed=seed, progress=progress,
                       output_dir=out / "rlvr").model  # checkpoints every rl.checkpoint_steps, resumes from them
    if is_main_process():
        model.save_pretrained(out / "rlvr" / "final", safe_serialization=True)
        tokenizer.save_pretrained(out / "rlvr" / "final")
    ks = tuple(2 ** j for j in range(settings.n_samples.bit_length()) if 2 ** j <= settings.n_samples)
    passes = {}
    for name, policy in (("sft_", reference), ("", model)):
        measured = measure_reasoning(policy, tokenizer, test, settings.n_samples, profile, ks=ks, seed=seed + 7)
        passes.update({f"{name}pass@{k}": measured[f"pass@{k}"] for k in ks})
    entry, samples["rlvr"] = measure("rlvr", model, reference, tokenizer, prompts, profile, seed, samples,
                                     optional_reward(out, tokenizer, profile))
    return {**entry, **passes, "seconds": time.perf_counter() - start}


def add_style_columns(stages: dict, samples: dict[str, PolicySamples], seed: int) -> None:
    """Add :data:`STYLE_FIELDS` to every policy stage measured in this run (the Style chapter).

    Each stage's samples are judged against the SFT model's by a judge that
    likes long answers (``style.judges.length_loving_judge``); one joint
    regression on the length difference gives each stage's length-controlled
    win rate (Dubois et al. 2024). Read beside ``win_rate_vs_sft`` (gold): a
    raw judge win rate far above both is bought with length.
    """
    others = {name: s.responses for name, s in samples.items() if name != "sft"}
    sft = samples["sft"]
    table, _ = style_leaderboard(length_loving_judge(seed), sft.prompts, others, sft.responses)
    for name in table.index:
        stages[name].update(judge_win_rate_vs_sft=float(table.loc[name, "raw"]),
                            lc_win_rate_vs_sft=float(table.loc[name, "controlled"]))
    stages["sft"].update(judge_win_rate_vs_sft=0.5, lc_win_rate_vs_sft=0.5)
