"""The pipeline command: run the stages of RLHF in order and measure each one.

    rlhf-course pipeline --profile tiny --out runs/tiny [--stages base,sft] [--seed 0]

Every stage is trained with the same code a lab calls, then measured on the
same held-out test prompts with the gold reward. The output folder gets:

``results.json``
    ``{"profile", "seed", "world_size", "rlhf_course_version", "updated",
    "stages": {name: entry}}`` where every entry holds at least

    - ``gold_reward``, ``gold_reward_stderr``: mean gold reward of the stage's
      policy on the test prompts (``profile.eval_samples_per_prompt`` samples
      each, temperature 1) and its standard error (over per-prompt means);
    - ``win_rate_vs_base``, ``win_rate_vs_sft``: paired gold-reward win rate
      against the base and SFT policies on the same prompts, ties counted half
      (``null`` when that policy was not run);
    - ``kl_to_ref``: KL(policy‖reference) estimated on the policy's samples, in
      nats per response; the reference is the policy the stage started from
      (the base model for SFT; the SFT model for later stages);
    - ``seconds``, ``cpu_seconds``: wall and CPU time of the stage, training
      and measuring (a model found in the shared cache costs no training).

    Stages that optimise against the reward model (``bon``, ``rs_ft``,
    ``reinforce``, ``rloo``, ``grpo``, ``ppo``) also record ``proxy_reward``: the mean
    reward-model score of the same samples, to be read next to the gold reward
    (a proxy that rises while gold does not is being exploited). For ``bon``,
    ``kl_to_ref`` is the plug-in estimate of best-of-n's KL to the SFT policy
    (``rejection_sampling.estimate_best_of_n_kl``) and ``kl_bound`` the bound
    log n − (n−1)/n; ``kl_excess_over_bound`` maps n = 2 … 64 to the estimated
    KL minus the bound (at most 0: the bound holds). ``ppo`` adds ``clip_fraction``
    and ``approx_kl``, means over its last ten steps (see ``rlhf_course.ppo``).

    The direct-alignment stages (``dpo``, ``ipo``, ``kto``, ``orpo``, ``simpo``,
    ``online_dpo``) record the same fields (``proxy_reward`` when the reward
    model exists; ``online_dpo`` needs it to label its pairs) plus
    ``final_reward_accuracy`` and ``final_reward_margin``: over the last logged
    training steps, the share of pairs whose chosen response has the higher
    implicit reward (not logged by KTO, which has no pairs) and the mean margin.

    Every policy stage measured in a run that also measured SFT records
    ``judge_win_rate_vs_sft`` and ``lc_win_rate_vs_sft``: its win rate against
    SFT's samples under a judge that likes long answers, raw and
    length-controlled (``add_style_columns``; the Style chapter).

    The opt-in stages of the Advanced chapters (``--stages ...,rlaif,distill,rlvr``):
    ``rlaif`` is DPO on pairs an AI judge labelled from a constitution
    (``ai_label_agreement_gold``, ``ai_pairs``); ``distill`` is SFT of the base
    model on the filtered answers of a teacher stage (``teacher``,
    ``filter_kept_share``, ``filter_gold_first``, ``filter_gold_kept``); ``rlvr`` is
    RLOO against a verifier (``pass@k`` and ``sft_pass@k`` on held-out checkable prompts).

    Stages that train add their own fields (for example ``first_loss`` and
    ``final_loss``, the first and last logged training loss). The reward-model
    stage ``rm`` is not a policy; its entry holds ``rm_accuracy_gold`` (held-out
    pairs ordered as the gold reward orders them), ``rm_accuracy_labels``
    (agreement with the annotators' labels), ``label_accuracy_gold`` (how often
    those labels match gold), ``rm_length_corr`` (correlation of reward with
    response length), ``rm_phrase_effect`` and ``seconds``.
    Entries from earlier runs of other stages are kept, so running one stage
    again never loses the others.

    Every entry says which data its stage trained on, as ``data``: ``"toy world"``,
    or (when the profile names a preference dataset, ``--set rm.dataset=...``: a
    hub id or local files, see ``preference_data.preference_dataset``) for the
    ``rm`` stage and the offline direct methods a dict with the dataset, split,
    schema, rows used and skipped, and why. Then ``rm`` also records
    ``rm_accuracy_heldout`` and ``rm_margin_heldout`` on the dataset's held-out
    split (``eval_data`` says which), and every later policy stage records
    ``real_data_eval``: on the held-out prompts, the reward model's mean score,
    the win rate against the SFT policy under a ``RewardJudge`` and a few
    samples (``evaluation.real_data``). The gold measurements on the toy
    world's test prompts are recorded as always.
``results.md``
    The same as a Markdown table (the README's results table is pasted from it).
``<stage>/final``
    The trained model of each stage, as safetensors.

Run it on two CPU ranks with ``torchrun --nproc_per_node 2 -m rlhf_course.tools.cli
pipeline ...``: training is data-parallel and rank 0 writes the results.

The package, by part of the book: :mod:`~rlhf_course.pipeline.stages` (SFT,
the reward model, best-of-n, the RL and direct methods),
:mod:`~rlhf_course.pipeline.advanced` (the Advanced chapters' opt-in stages),
:mod:`~rlhf_course.pipeline.real_data` (a real preference dataset) and
:mod:`~rlhf_course.pipeline.results` (the output files); this module runs
them in order (:func:`run_pipeline`) and holds the command's arguments.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from rlhf_course import __version__
from rlhf_course.core.distributed import is_main_process, world_size
from rlhf_course.core.evaluation import PolicySamples, eval_prompts, win_rate
from rlhf_course.core.models import load_model
from rlhf_course.core.profiles import PROFILE_NAMES, Profile, apply_overrides, get_profile

from rlhf_course.pipeline.advanced import (add_style_columns, constitution_judge, distill_stage, rlaif_stage,
                                           rlvr_stage)
from rlhf_course.pipeline.real_data import (TOY_WORLD, RealDataEvaluation, real_pairs, real_rm_stage,
                                            training_prompts)
from rlhf_course.pipeline.results import load_results, real_data_lines, results_markdown, write_results
from rlhf_course.pipeline.stages import (ADVANCED_STAGES, DEFAULT_STAGES, DIRECT_STAGES, DIRECT_TRAINERS, POLICY_STAGES,
                                         RESULT_FIELDS, RL_STAGES, RM_FIELDS, STAGES, STYLE_FIELDS, bon_stage, cpu_timed,
                                         direct_stage, entry_of, link_stage, measure, optional_reward, parse_stages,
                                         rl_stage, rm_stage, sft_samples, sft_stage, stage_data, trained_stage)

__all__ = [
    "ADVANCED_STAGES", "DEFAULT_STAGES", "DIRECT_STAGES", "DIRECT_TRAINERS", "POLICY_STAGES", "RESULT_FIELDS",
    "RL_STAGES", "RM_FIELDS", "STAGES", "STYLE_FIELDS", "TOY_WORLD", "RealDataEvaluation", "add_arguments",
    "add_style_columns", "bon_stage", "constitution_judge", "cpu_timed", "direct_stage", "distill_stage", "entry_of",
    "link_stage", "load_results", "measure", "optional_reward", "parse_stages", "real_data_lines", "real_pairs",
    "real_rm_stage", "results_markdown", "rl_stage", "rlaif_stage", "rlvr_stage", "rm_stage", "run_from_args",
    "run_pipeline", "sft_samples", "sft_stage", "stage_data", "trained_stage", "training_prompts", "write_results",
]


def run_pipeline(
    profile: Profile | str = "tiny",
    out_dir: str | Path = "runs/tiny",
    stages: str | list[str] | None = None,
    seed: int = 0,
    progress: bool = True,
) -> dict:
    """Run the asked-for stages and write ``results.json`` and ``results.md``.

    Returns the results dictionary (see the module docstring for its schema).
    """
    profile = get_profile(profile)
    out = Path(out_dir)
    stages = parse_stages(stages)
    results = load_results(out) if (out / "results.json").exists() else {"stages": {}}
    results.update(profile=profile.name, seed=seed, world_size=world_size(), rlhf_course_version=__version__)
    prompts = eval_prompts(profile, seed)

    start, start_cpu = time.perf_counter(), time.process_time()
    base, tokenizer = load_model(profile, progress=progress)
    samples: dict[str, PolicySamples] = {}
    entry, samples["base"] = measure("base", base, None, tokenizer, prompts, profile, seed, samples)
    results["stages"]["base"] = {**entry, "seconds": time.perf_counter() - start,
                                 "cpu_seconds": time.process_time() - start_cpu}

    if "sft" in stages:
        results["stages"]["sft"] = cpu_timed(sft_stage, base, tokenizer, prompts, profile, seed, out, samples, progress)
    if "rm" in stages:
        results["stages"]["rm"] = cpu_timed(rm_stage, tokenizer, profile, seed, out, progress)
    if any(stage in stages for stage in (*RL_STAGES, *DIRECT_STAGES, *ADVANCED_STAGES)):
        samples.setdefault("sft", sft_samples(out, tokenizer, prompts, profile, seed))
    if "bon" in stages:
        results["stages"]["bon"] = cpu_timed(bon_stage, tokenizer, prompts, profile, seed, out, samples)
    for stage in [s for s in RL_STAGES if s in stages and s != "bon"]:
        results["stages"][stage] = cpu_timed(rl_stage, stage, tokenizer, prompts, profile, seed, out, samples, progress)
    for stage in [s for s in DIRECT_STAGES if s in stages]:
        results["stages"][stage] = cpu_timed(direct_stage, stage, tokenizer, prompts, profile, seed, out, samples,
                                             progress)
    if "rlaif" in stages:
        results["stages"]["rlaif"] = cpu_timed(rlaif_stage, tokenizer, prompts, profile, seed, out, samples, progress)
    if "distill" in stages:
        results["stages"]["distill"] = cpu_timed(distill_stage, base, tokenizer, prompts, profile, seed, out, samples,
                                                 progress)
    if "rlvr" in stages:
        results["stages"]["rlvr"] = cpu_timed(rlvr_stage, tokenizer, prompts, profile, seed, out, samples, progress)
    if "sft" in samples:  # base is measured on every run: compare it with SFT whenever SFT's samples are at hand
        results["stages"]["base"]["win_rate_vs_sft"] = win_rate(samples["base"].rewards, samples["sft"].rewards)
        add_style_columns(results["stages"], samples, seed)

    for stage in stages:
        results["stages"].get(stage, {}).setdefault("data", stage_data(stage, profile))
    measured_on_real = [s for s in stages if s in (*RL_STAGES, *DIRECT_STAGES) and s != "bon"]
    if profile.rm.dataset is not None and measured_on_real and is_main_process():
        held_out = RealDataEvaluation(out, tokenizer, profile, seed)
        for stage in measured_on_real:
            results["stages"][stage]["real_data_eval"] = held_out.evaluate(out / stage / "final")

    if is_main_process():
        write_results(results, out)
    return results


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``rlhf-course pipeline`` options."""
    parser.add_argument("--profile", default="tiny", choices=[*PROFILE_NAMES, "auto"])
    parser.add_argument("--out", required=True, help="folder for results.json, results.md and models")
    parser.add_argument("--stages", default=None, help=f"comma-separated, from {','.join(STAGES)} (default: {','.join(DEFAULT_STAGES)})")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a profile field, e.g. --set sft.epochs=1 (repeatable)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def run_from_args(args: argparse.Namespace) -> int:
    """Entry point of ``rlhf-course pipeline``."""
    profile = apply_overrides(get_profile(args.profile), args.overrides)
    results = run_pipeline(profile, args.out, args.stages, args.seed, progress=not args.quiet)
    if is_main_process():
        print(results_markdown(results))
    return 0
