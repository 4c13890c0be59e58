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

    Stages that train add their own fields (for example ``first_loss`` and
    ``final_loss``, the first and last logged training loss). The reward-model
    stage ``rm`` is not a policy; its entry holds ``rm_accuracy_gold`` (held-out
    pairs ordered as the gold reward orders them), ``rm_accuracy_labels``
    (agreement with the annotators' labels), ``label_accuracy_gold`` (how often
    those labels match gold), ``rm_length_corr`` (correlation of reward with
    response length), ``rm_phrase_effect`` and ``seconds``.
    Entries from earlier runs of other stages are kept, so running one stage
    again never loses the others.
``results.md``
    The same as a Markdown table (the README's results table is pasted from it).
``<stage>/final``
    The trained model of each stage, as safetensors.

Run it on two CPU ranks with ``torchrun --nproc_per_node 2 -m rlhf_course.tools.cli
pipeline ...``: training is data-parallel and rank 0 writes the results.
"""

from __future__ import annotations

import argparse
import copy
import datetime
import json
import time
from pathlib import Path
from typing import Callable

import torch

from rlhf_course import __version__
from rlhf_course.core.distributed import is_main_process, world_size
from rlhf_course.core.evaluation import (Measurement, PolicySamples, compare_samples, eval_prompts, measure_policy,
                                         sample_policy, win_rate)
from rlhf_course.core.models import load_model, load_policy
from rlhf_course.core.profiles import PROFILE_NAMES, Profile, apply_overrides, get_profile
from rlhf_course.direct_alignment.online import online_dpo
from rlhf_course.direct_alignment.train import train_dpo, train_ipo, train_kto, train_orpo, train_simpo
from rlhf_course.instruction_tuning.data import load_demonstrations
from rlhf_course.instruction_tuning.train import train_sft
from rlhf_course.policy_gradients.train import train_grpo, train_policy_gradient
from rlhf_course.ppo.train import train_ppo
from rlhf_course.preference_data.toy import toy_pairs, toy_preferences
from rlhf_course.rejection_sampling.selection import best_of_n_kl_bound, estimate_best_of_n_kl
from rlhf_course.rejection_sampling.train import best_of_n, rejection_sampling_finetune
from rlhf_course.reward_modeling.evaluation import evaluate_reward_model, load_reward_function
from rlhf_course.reward_modeling.train import reward_model_from, train_reward_model
from rlhf_course.shared_models import (load_trained_reward_model, load_trained_sft, reward_model_checkpoint,
                                       sft_checkpoint)
from rlhf_course.toyworld import gold_rewards, training


STAGES = ("base", "sft", "rm", "bon", "rs_ft", "reinforce", "rloo", "grpo", "ppo",
          "dpo", "ipo", "kto", "orpo", "simpo", "online_dpo")


# Run when --stages is not given: every stage built so far.
DEFAULT_STAGES = STAGES


RL_STAGES = ("bon", "rs_ft", "reinforce", "rloo", "grpo", "ppo")  # optimise against the reward model


DIRECT_STAGES = ("dpo", "ipo", "kto", "orpo", "simpo", "online_dpo")  # learn from preference pairs directly


POLICY_STAGES = ("base", "sft", *RL_STAGES, *DIRECT_STAGES)


DIRECT_TRAINERS = {"ipo": train_ipo, "kto": train_kto, "orpo": train_orpo, "simpo": train_simpo}  # dpo: its own recipe


RESULT_FIELDS = ("gold_reward", "gold_reward_stderr", "proxy_reward", "win_rate_vs_base", "win_rate_vs_sft",
                 "kl_to_ref", "seconds", "cpu_seconds")


RM_FIELDS = ("rm_accuracy_gold", "rm_accuracy_labels", "label_accuracy_gold", "rm_length_corr", "seconds",
             "cpu_seconds")


def parse_stages(text: str | list[str] | None) -> list[str]:
    """Stages to run, in pipeline order. ``base`` always runs: everything is compared with it."""
    asked = DEFAULT_STAGES if text is None else (text.split(",") if isinstance(text, str) else text)
    asked = [s.strip() for s in asked if s.strip()]
    unknown = [s for s in asked if s not in STAGES]
    if unknown:
        raise ValueError(f"Unknown stage {unknown[0]!r}; the stages are {', '.join(STAGES)}.")
    return [s for s in STAGES if s in asked or s == "base"]


def entry_of(stage: str, measured: Measurement) -> dict:
    """A stage's results entry from its :class:`~rlhf_course.core.evaluation.Measurement`.

    A policy against itself wins 0.5 by definition; against a policy this run
    has no samples of, the win rate is ``None``.
    """
    rates = {**measured.win_rates, stage: 0.5}
    entry = {"gold_reward": measured.gold_reward, "gold_reward_stderr": measured.gold_reward_stderr}
    entry.update({f"win_rate_vs_{name}": rates.get(name) for name in ("base", "sft")})
    if measured.proxy is not None:
        entry["proxy_reward"] = measured.proxy_reward
    return entry


def measure(stage: str, policy, reference, tokenizer, prompts, profile: Profile, seed: int,
            others: dict[str, PolicySamples], reward_fn=None) -> tuple[dict, PolicySamples]:
    """Gold reward, win rates against base and SFT, and KL of the ``stage``'s policy (and proxy reward if given)."""
    against = {name: others[name] for name in ("base", "sft") if name in others and name != stage}
    measured = measure_policy(policy, tokenizer, prompts, profile, seed=seed, reference=reference, against=against,
                              reward_fn=reward_fn)
    return {**entry_of(stage, measured), "kl_to_ref": measured.kl or 0.0}, measured.samples


def sft_stage(base, tokenizer, prompts, profile: Profile, seed: int, out: Path,
              samples: dict[str, PolicySamples], progress: bool) -> dict:
    """Instruction-tune ``base`` and measure it; adds the SFT samples to ``samples``.

    On one process the model comes from the shared cache (``sft_checkpoint``:
    trained there unless a lab or an earlier pipeline run already trained it
    with these settings) and ``<out>/sft`` links to it; on several processes
    the ranks train it together under ``<out>/sft``.
    """
    start = time.perf_counter()
    if world_size() == 1:
        result = load_trained_sft(link_stage(out, "sft", sft_checkpoint(profile, seed, progress=progress)), profile)
    else:
        result = train_sft(copy.deepcopy(base), tokenizer, load_demonstrations(profile, seed), profile,
                           output_dir=out / "sft", seed=seed, progress=progress)
    entry, samples["sft"] = measure("sft", result.model, base, tokenizer, prompts, profile, seed, samples)
    entry["train_world_size"] = result.world_size
    entry["first_loss"] = result.losses[0][1] if result.losses else None
    entry["final_loss"] = result.losses[-1][1] if result.losses else None
    return {**entry, "seconds": time.perf_counter() - start}


def link_stage(out: Path, stage: str, final: Path) -> Path:
    """Make ``<out>/<stage>`` a link to the shared folder that holds ``final``; returns ``<out>/<stage>/final``."""
    link = out / stage
    if link.is_symlink() or not link.exists():
        link.unlink(missing_ok=True)
        out.mkdir(parents=True, exist_ok=True)
        link.symlink_to(final.parent.resolve(), target_is_directory=True)
    elif link.resolve() != final.parent.resolve():
        raise FileExistsError(f"{link} holds a model this run did not make; move it away or choose another --out, "
                              f"then run again (the {stage} model is in {final.parent}).")
    return link / "final"


def rm_stage(tokenizer, profile: Profile, seed: int, out: Path, progress: bool) -> dict:
    """The reward model of the SFT model, measured against gold on test pairs.

    On one process it comes from the shared cache (``reward_model_checkpoint``)
    and ``<out>/rm`` links to it; on several, the ranks train it under ``<out>/rm``.
    """
    start = time.perf_counter()
    if world_size() == 1:
        model = load_trained_reward_model(
            link_stage(out, "rm", reward_model_checkpoint(profile, seed, progress=progress))).model
    else:
        sft_path = out / "sft" / "final"
        if not (sft_path / "model.safetensors").exists():
            raise FileNotFoundError(f"The rm stage starts from the SFT model, but {sft_path} does not exist. "
                                    "Run the sft stage first (--stages sft,rm).")
        model = train_reward_model(reward_model_from(sft_path, profile), tokenizer,
                                   toy_preferences(profile, "train", seed=seed), profile,
                                   output_dir=out / "rm", seed=seed, progress=progress).model
    report = evaluate_reward_model(model, tokenizer, toy_preferences(profile, "test", seed=seed),
                                   profile.eval_batch_size)
    return {**report.as_dict(), "seconds": time.perf_counter() - start}


def bon_stage(tokenizer, prompts, profile: Profile, seed: int, out: Path, samples: dict[str, PolicySamples]) -> dict:
    """Best-of-n from the SFT model, n = ``profile.rl.best_of_n``.

    A pool of 4n samples per test prompt gives the KL estimate. Its n-wide
    slices are independent best-of-n draws: the j-th copy of a prompt in
    ``prompts`` (see ``core.evaluation.eval_prompts``) gets the best of slice j.
    """
    start, n, repeats = time.perf_counter(), profile.rl.best_of_n, profile.eval_samples_per_prompt
    distinct = prompts[::repeats]  # the test prompts (which may repeat: the test split is small), once each
    if repeats > 4 or [p.id for p in prompts] != [p.id for p in distinct for _ in range(repeats)]:
        raise ValueError("bon measures up to 4 adjacent copies of each prompt (evaluation.eval_prompts) from its "
                         f"pool of 4n; got {len(prompts)} prompts for eval_samples_per_prompt={repeats}.")
    reward_fn = load_reward_function(out / "rm" / "final", tokenizer, profile)
    with torch.random.fork_rng():  # measuring must not move the random state later stages train from
        pool = best_of_n(load_policy(out / "sft" / "final", profile), tokenizer, reward_fn, distinct, 4 * n,
                         profile, gold_fn=gold_rewards, seed=seed)
    rows = torch.arange(len(distinct)).repeat_interleave(repeats)  # entry k of ``prompts`` answers distinct[rows[k]]
    slices = pool.proxy[:, :repeats * n].view(len(distinct), repeats, n)  # slice j: an independent best-of-n draw
    cols = (slices.argmax(dim=2) + n * torch.arange(repeats)).flatten()
    picked = PolicySamples(prompts, [pool.candidates_of(i)[c] for i, c in zip(rows.tolist(), cols.tolist())],
                           pool.gold[rows, cols].numpy())
    samples["bon"] = picked
    entry = entry_of("bon", compare_samples(picked, {name: samples[name] for name in ("base", "sft")
                                                     if name in samples}))
    candidates = [pool.candidates_of(i) for i in range(len(distinct))]
    kl_by_n = {m: estimate_best_of_n_kl(candidates, pool.proxy, m) for m in (2, 4, 8, 16, 32, 64) if m <= 4 * n}
    entry.update(proxy_reward=float(pool.proxy[rows, cols].mean()), n=n,
                 kl_to_ref=kl_by_n.get(n, estimate_best_of_n_kl(candidates, pool.proxy, n)),
                 kl_bound=best_of_n_kl_bound(n),
                 kl_excess_over_bound={m: kl - best_of_n_kl_bound(m) for m, kl in kl_by_n.items()})
    return {**entry, "seconds": time.perf_counter() - start}


def rl_stage(stage: str, tokenizer, prompts, profile: Profile, seed: int, out: Path,
             samples: dict[str, PolicySamples], progress: bool) -> dict:
    """Optimise the SFT policy against the reward model with ``stage``'s method, save it, and measure it."""
    start = time.perf_counter()
    sft_path, reward_fn = out / "sft" / "final", load_reward_function(out / "rm" / "final", tokenizer, profile)
    reference, extra = load_policy(sft_path, profile), {}
    if stage == "grpo":  # TRL saves it under grpo/final
        model = train_grpo(sft_path, tokenizer, reward_fn, profile, prompts=training.rl_prompts(profile, seed),
                           gold_fn=gold_rewards, output_dir=out / stage, seed=seed, progress=progress).model
    elif stage == "ppo":  # the critic starts from the reward model
        result = train_ppo(load_policy(sft_path, profile), reference, out / "rm" / "final", tokenizer, reward_fn,
                           profile, prompts=training.ppo_prompts(profile, seed), gold_fn=gold_rewards, seed=seed,
                           progress=progress, output_dir=out / stage)
        model, last = result.model, result.history[-10:]
        extra = {key: sum(h[key] for h in last) / len(last) for key in ("clip_fraction", "approx_kl")}
        if is_main_process():
            model.save_pretrained(out / stage / "final", safe_serialization=True)
            tokenizer.save_pretrained(out / stage / "final")
    else:
        if stage == "rs_ft":  # each round is saved under rs_ft/round<r>/final; the last one also as rs_ft/final
            model = rejection_sampling_finetune(load_policy(sft_path, profile), tokenizer, reward_fn,
                                                training.rejection_sampling_prompts(profile, seed), profile, train_sft,
                                                gold_fn=gold_rewards, output_dir=out / stage, seed=seed,
                                                progress=progress).model
        else:
            model = train_policy_gradient(load_policy(sft_path, profile), reference, tokenizer, reward_fn, profile,
                                          prompts=training.rl_prompts(profile, seed), gold_fn=gold_rewards,
                                          method=stage, seed=seed, progress=progress, output_dir=out / stage).model
        if is_main_process():
            model.save_pretrained(out / stage / "final", safe_serialization=True)
            tokenizer.save_pretrained(out / stage / "final")
    entry, samples[stage] = measure(stage, model, reference, tokenizer, prompts, profile, seed, samples, reward_fn)
    return {**entry, **extra, "seconds": time.perf_counter() - start}


def direct_stage(stage: str, tokenizer, prompts, profile: Profile, seed: int, out: Path,
                 samples: dict[str, PolicySamples], progress: bool) -> dict:
    """Train the SFT policy with a direct-alignment method (``rlhf_course.direct_alignment``), save it, and measure it.

    ``dpo`` learns from the reward model's own toy-world preference pairs
    (``profile.rm.n_pairs``), with ``profile.dpo.nll_weight`` times the SFT
    loss on the chosen responses added, so that DPO and the reward-model
    methods learn from the same labels; ``ipo``, ``kto``, ``orpo`` and
    ``simpo`` learn from ``profile.dpo.n_pairs`` pairs. ``online_dpo``
    continues from the ``dpo`` model for ``profile.dpo.online_rounds`` rounds
    on its own samples labelled by the reward model, with the SFT model as
    reference. The proxy reward is recorded whenever the reward model exists,
    so every stage can be read on the same axes.
    """
    start = time.perf_counter()
    sft_path, rm_path = out / "sft" / "final", out / "rm" / "final"
    reward_fn = load_reward_function(rm_path, tokenizer, profile) if (rm_path / "config.json").exists() else None
    if stage == "online_dpo":
        dpo_path = out / "dpo" / "final"
        if not (dpo_path / "model.safetensors").exists():
            raise FileNotFoundError(f"online_dpo continues from the dpo stage's model, but {dpo_path} does not exist. "
                                    "Run the dpo stage first (--stages sft,rm,dpo,online_dpo).")
        if reward_fn is None:
            raise FileNotFoundError(f"online_dpo labels its pairs with the reward model, but {rm_path} does not exist. "
                                    "Run the rm stage first (--stages sft,rm,dpo,online_dpo).")
        result = online_dpo(dpo_path, tokenizer, reward_fn, profile, prompts=training.online_dpo_prompts(profile, seed),
                            output_dir=out / stage, seed=seed, progress=progress, reference_path=sft_path)
    elif stage == "dpo":
        result = train_dpo(sft_path, tokenizer, toy_pairs(profile, seed, n=profile.rm.n_pairs), profile,
                           output_dir=out / stage, seed=seed, progress=progress, nll_weight=profile.dpo.nll_weight)
    else:
        result = DIRECT_TRAINERS[stage](sft_path, tokenizer, toy_pairs(profile, seed), profile,
                                        output_dir=out / stage, seed=seed, progress=progress)
    entry, samples[stage] = measure(stage, result.model, load_policy(sft_path, profile), tokenizer, prompts, profile,
                                    seed, samples, reward_fn)
    for key, name in (("rewards/accuracies", "final_reward_accuracy"), ("rewards/margins", "final_reward_margin")):
        curve = result.curve(key)  # KTO logs no accuracy: it has no pairs
        entry[name] = curve[-1][1] if curve else None
    return {**entry, "seconds": time.perf_counter() - start}


def sft_samples(out: Path, tokenizer, prompts, profile: Profile, seed: int) -> PolicySamples:
    """The saved SFT model's samples on the test prompts (when this run did not train it)."""
    path = out / "sft" / "final"
    if not (path / "model.safetensors").exists():
        raise FileNotFoundError(f"The RL stages start from the SFT model, but {path} does not exist. "
                                "Run the sft and rm stages first (--stages sft,rm,...).")
    return sample_policy(load_policy(path, profile), tokenizer, prompts, profile, seed=seed)


def cpu_timed(stage_fn: Callable[..., dict], *args) -> dict:
    """Run a stage function and add to its entry the CPU seconds it used (every thread of this process)."""
    start = time.process_time()
    entry = stage_fn(*args)
    return {**entry, "cpu_seconds": time.process_time() - start}


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
        results["stages"]["base"]["win_rate_vs_sft"] = win_rate(samples["base"].rewards, samples["sft"].rewards)
    if "rm" in stages:
        results["stages"]["rm"] = cpu_timed(rm_stage, tokenizer, profile, seed, out, progress)
    if any(stage in stages for stage in (*RL_STAGES, *DIRECT_STAGES)):
        samples.setdefault("sft", sft_samples(out, tokenizer, prompts, profile, seed))
    if "bon" in stages:
        results["stages"]["bon"] = cpu_timed(bon_stage, tokenizer, prompts, profile, seed, out, samples)
    for stage in [s for s in RL_STAGES if s in stages and s != "bon"]:
        results["stages"][stage] = cpu_timed(rl_stage, stage, tokenizer, prompts, profile, seed, out, samples, progress)
    for stage in [s for s in DIRECT_STAGES if s in stages]:
        results["stages"][stage] = cpu_timed(direct_stage, stage, tokenizer, prompts, profile, seed, out, samples,
                                             progress)

    if is_main_process():
        write_results(results, out)
    return results


def load_results(out_dir: str | Path) -> dict:
    """Read ``results.json``, with a clear error if it is not the pipeline's."""
    path = Path(out_dir) / "results.json"
    try:
        results = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not valid JSON ({err}). Move it aside or delete it, then run again.") from err
    if not isinstance(results.get("stages"), dict):
        raise ValueError(f"{path} has no 'stages' object; it was not written by `rlhf-course pipeline`. "
                         "Choose another --out folder.")
    return results


def write_results(results: dict, out_dir: str | Path) -> None:
    """Write ``results.json`` (atomically) and ``results.md``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    results["updated"] = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    tmp = out / "results.json.tmp"
    tmp.write_text(json.dumps(results, indent=2) + "\n")
    tmp.replace(out / "results.json")
    (out / "results.md").write_text(results_markdown(results))


def results_markdown(results: dict) -> str:
    """The results as Markdown tables: one row per policy, one per reward model."""
    def fmt(value) -> str:
        return "–" if value is None else f"{value:.2f}" if isinstance(value, float) else str(value)

    stages = results["stages"]
    lines = [f"Profile `{results['profile']}`, seed {results['seed']}, {results['world_size']} process(es).", "",
             "| stage | gold reward | ± s.e. | proxy reward | win rate vs base | win rate vs SFT | KL to ref | seconds "
             "| CPU seconds |", "|---|---|---|---|---|---|---|---|---|"]
    for name in [s for s in POLICY_STAGES if s in stages]:
        lines.append(f"| {name} | " + " | ".join(fmt(stages[name].get(k)) for k in RESULT_FIELDS) + " |")
    if "rm" in stages:
        lines += ["", "| reward model | accuracy vs gold | accuracy vs labels | labels vs gold | "
                  "corr. with length | seconds | CPU seconds |", "|---|---|---|---|---|---|---|",
                  "| rm | " + " | ".join(fmt(stages["rm"].get(k)) for k in RM_FIELDS) + " |"]
    return "\n".join(lines) + "\n"


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
