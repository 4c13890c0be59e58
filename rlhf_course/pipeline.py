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
"""

from __future__ import annotations

import argparse
import copy
import datetime
import functools
import itertools
import json
import time
from pathlib import Path
from typing import Callable

import torch

from rlhf_course import __version__
from rlhf_course.core.distributed import is_main_process, world_size
from rlhf_course.core.evaluation import (Measurement, PolicySamples, compare_samples, eval_prompts, measure_policy,
                                         sample_policy, win_rate)
from rlhf_course.core.judges import agreement
from rlhf_course.core.models import load_model, load_policy
from rlhf_course.core.sampling import generate
from rlhf_course.core.profiles import PROFILE_NAMES, Profile, apply_overrides, get_profile
from rlhf_course.constitutional_ai import (CONSTITUTION, ai_feedback, gold_verdicts, prompted_judge, reward_model_judge,
                                          seed_labels)
from rlhf_course.direct_alignment.online import online_dpo
from rlhf_course.direct_alignment.train import train_dpo, train_ipo, train_kto, train_orpo, train_simpo
from rlhf_course.instruction_tuning.data import load_demonstrations
from rlhf_course.instruction_tuning.train import train_sft
from rlhf_course.policy_gradients.train import train_grpo, train_policy_gradient
from rlhf_course.ppo.train import train_ppo
from rlhf_course.reasoning import measure as measure_reasoning, rlvr_profile, train_rlvr, verifier_reward
from rlhf_course.evaluation.real_data import judge_policy, pair_accuracy
from rlhf_course.preference_data.sources import (LoadedPreferences, dataset_prompts, held_out_split,
                                                 preference_dataset)
from rlhf_course.preference_data.toy import toy_pairs, toy_preferences
from rlhf_course.rejection_sampling.selection import best_of_n_kl_bound, estimate_best_of_n_kl
from rlhf_course.rejection_sampling.train import best_of_n, rejection_sampling_finetune
from rlhf_course.reward_modeling.evaluation import evaluate_reward_model, load_reward_function, reward_function
from rlhf_course.reward_modeling.train import reward_model_from, train_reward_model
from rlhf_course.shared_models import (load_trained_reward_model, load_trained_sft, reward_model_checkpoint,
                                       sft_checkpoint)
from rlhf_course.style.judges import length_loving_judge
from rlhf_course.style.leaderboard import style_leaderboard
from rlhf_course.synthetic_data import distill
from rlhf_course.toyworld import gold_rewards, training, verify


STAGES = ("base", "sft", "rm", "bon", "rs_ft", "reinforce", "rloo", "grpo", "ppo",
          "dpo", "ipo", "kto", "orpo", "simpo", "online_dpo", "rlaif", "distill", "rlvr")


# The stages of the Advanced chapters, run only when asked for (--stages ...,rlaif,distill,rlvr): RLAIF (Constitutional
# AI), distillation from a pipeline policy (Synthetic Data) and RL with verifiable rewards (Reasoning). Their labs
# train and assert the same methods; the pipeline measures them on the same axes as every other stage.
ADVANCED_STAGES = ("rlaif", "distill", "rlvr")


# Run when --stages is not given: every stage of the Optimization chapters.
DEFAULT_STAGES = tuple(s for s in STAGES if s not in ADVANCED_STAGES)


RL_STAGES = ("bon", "rs_ft", "reinforce", "rloo", "grpo", "ppo")  # optimise against the reward model


DIRECT_STAGES = ("dpo", "ipo", "kto", "orpo", "simpo", "online_dpo")  # learn from preference pairs directly


POLICY_STAGES = ("base", "sft", *RL_STAGES, *DIRECT_STAGES, *ADVANCED_STAGES)


DIRECT_TRAINERS = {"ipo": train_ipo, "kto": train_kto, "orpo": train_orpo, "simpo": train_simpo}  # dpo: its own recipe


RESULT_FIELDS = ("gold_reward", "gold_reward_stderr", "proxy_reward", "win_rate_vs_base", "win_rate_vs_sft",
                 "kl_to_ref", "seconds", "cpu_seconds")


# The Style chapter's columns: the win rate against SFT under a length-loving judge, raw and length-controlled.
STYLE_FIELDS = ("judge_win_rate_vs_sft", "lc_win_rate_vs_sft")


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


TOY_WORLD = "toy world"


def real_pairs(profile: Profile, seed: int, held_out: bool = False) -> LoadedPreferences | None:
    """The profile's preference dataset (``profile.rm.dataset``) as course rows; ``None`` on the toy world.

    The training split gives ``profile.rm.n_pairs`` random rows (fixed by
    ``seed``); the held-out split (``profile.rm.eval_split`` or the dataset's
    own test split) ``profile.rm.n_eval_pairs``. Bad records are skipped and
    reported (see :func:`~rlhf_course.preference_data.preference_dataset`).
    """
    rm = profile.rm
    if rm.dataset is None:
        return None
    if not held_out:
        return preference_dataset(rm.dataset, rm.split, n=rm.n_pairs, seed=seed)
    split = rm.eval_split or held_out_split(rm.dataset)
    if split is None:
        raise ValueError(f"{rm.dataset} has no held-out split to measure on; pass a folder with a test file "
                         "(e.g. train.jsonl and test.jsonl) or --set rm.eval_split=<split>.")
    return preference_dataset(rm.dataset, split, n=rm.n_eval_pairs, seed=seed)


def training_prompts(stage: str, profile: Profile, seed: int) -> tuple[list, Callable | None, str]:
    """The prompts ``stage`` (an RL stage or online DPO) trains on, its gold hook, and what the data was.

    On the toy world: the stage's toy-world prompts (``toyworld.training``)
    and ``gold_rewards``. With a preference dataset in the profile
    (``rm.dataset``) the policy is optimised on that dataset's own prompts,
    those the reward model was trained to judge: the distinct prompts of its
    training rows, shuffled with ``seed`` and repeated if the stage needs
    more, in the toy-world prompts' shape (one list, or one per round); a hub
    dataset has no gold, so there is no hook.
    """
    makers = {"ppo": training.ppo_prompts, "rs_ft": training.rejection_sampling_prompts,
              "online_dpo": training.online_dpo_prompts}
    toy = makers.get(stage, training.rl_prompts)(profile, seed)
    if profile.rm.dataset is None:
        return toy, gold_rewards, TOY_WORLD
    split, pool = _dataset_prompt_pool(profile.rm.dataset, profile.rm.split, profile.rm.n_pairs, seed)
    data = f"the prompts of {profile.rm.dataset} [{split}], scored by the reward model trained on it"
    cycle = itertools.cycle(pool)
    if toy and isinstance(toy[0], list):  # one list of prompts per round
        return [[next(cycle) for _ in round_] for round_ in toy], None, data
    return [next(cycle) for _ in toy], None, data


@functools.lru_cache(maxsize=4)
def _dataset_prompt_pool(dataset: str, split: str | None, n_pairs: int, seed: int) -> tuple[str, list]:
    """The split read and the distinct prompts of its rows (read once per pipeline run, not once per stage)."""
    loaded = preference_dataset(dataset, split, n=n_pairs, seed=seed)
    return loaded.split, dataset_prompts(loaded.rows, seed)


def real_rm_stage(tokenizer, profile: Profile, seed: int, out: Path, progress: bool) -> dict:
    """The reward model of the SFT model trained on the profile's dataset, measured on its held-out pairs."""
    start = time.perf_counter()
    sft_path = out / "sft" / "final"
    if not (sft_path / "model.safetensors").exists():
        raise FileNotFoundError(f"The rm stage starts from the SFT model, but {sft_path} does not exist. "
                                "Run the sft stage first (--stages sft,rm).")
    train, held_out = real_pairs(profile, seed), real_pairs(profile, seed, held_out=True)
    if (out / "rm").is_symlink():  # a toy-world run's link to the shared reward model: never train into the cache
        (out / "rm").unlink()
    if is_main_process():
        print(train.summary(), held_out.summary(), sep="\n")
    model = train_reward_model(reward_model_from(sft_path, profile), tokenizer, train.rows, profile,
                               output_dir=out / "rm", seed=seed, progress=progress).model
    accuracy = pair_accuracy(reward_function(model, tokenizer, profile.eval_batch_size), held_out.rows)
    return {**accuracy, "data": train.as_dict(), "eval_data": held_out.as_dict(),
            "seconds": time.perf_counter() - start}


def rm_stage(tokenizer, profile: Profile, seed: int, out: Path, progress: bool) -> dict:
    """The reward model of the SFT model, measured against gold on test pairs.

    On one process it comes from the shared cache (``reward_model_checkpoint``)
    and ``<out>/rm`` links to it; on several, the ranks train it under ``<out>/rm``.
    With a preference dataset in the profile, :func:`real_rm_stage` trains it on that.
    """
    if profile.rm.dataset is not None:
        return real_rm_stage(tokenizer, profile, seed, out, progress)
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
    return {**report.as_dict(), "data": TOY_WORLD, "seconds": time.perf_counter() - start}


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
                         profile, gold_fn=gold_rewards, seed=seed, output_dir=out / "bon")
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
    train_prompts, gold_fn, data = training_prompts(stage, profile, seed)
    if stage == "grpo":  # TRL saves it under grpo/final
        model = train_grpo(sft_path, tokenizer, reward_fn, profile, prompts=train_prompts, gold_fn=gold_fn,
                           output_dir=out / stage, seed=seed, progress=progress).model
    elif stage == "ppo":  # the critic starts from the reward model
        result = train_ppo(load_policy(sft_path, profile), reference, out / "rm" / "final", tokenizer, reward_fn,
                           profile, prompts=train_prompts, gold_fn=gold_fn, seed=seed, progress=progress,
                           output_dir=out / stage)
        model, last = result.model, result.history[-10:]
        extra = {key: sum(h[key] for h in last) / len(last) for key in ("clip_fraction", "approx_kl")}
        if is_main_process():
            model.save_pretrained(out / stage / "final", safe_serialization=True)
            tokenizer.save_pretrained(out / stage / "final")
    else:
        if stage == "rs_ft":  # each round is saved under rs_ft/round<r>/final; the last one also as rs_ft/final
            model = rejection_sampling_finetune(load_policy(sft_path, profile), tokenizer, reward_fn, train_prompts,
                                                profile, train_sft, gold_fn=gold_fn, output_dir=out / stage,
                                                seed=seed, progress=progress).model
        else:
            model = train_policy_gradient(load_policy(sft_path, profile), reference, tokenizer, reward_fn, profile,
                                          prompts=train_prompts, gold_fn=gold_fn, method=stage, seed=seed,
                                          progress=progress, output_dir=out / stage).model
        if is_main_process():
            model.save_pretrained(out / stage / "final", safe_serialization=True)
            tokenizer.save_pretrained(out / stage / "final")
    entry, samples[stage] = measure(stage, model, reference, tokenizer, prompts, profile, seed, samples, reward_fn)
    return {**entry, **extra, "data": data, "seconds": time.perf_counter() - start}


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
    reward_fn = optional_reward(out, tokenizer, profile)
    real = real_pairs(profile, seed) if stage != "online_dpo" else None  # online DPO makes its own pairs
    data = TOY_WORLD if real is None else real.as_dict()
    if stage == "online_dpo":
        dpo_path = out / "dpo" / "final"
        if not (dpo_path / "model.safetensors").exists():
            raise FileNotFoundError(f"online_dpo continues from the dpo stage's model, but {dpo_path} does not exist. "
                                    "Run the dpo stage first (--stages sft,rm,dpo,online_dpo).")
        if reward_fn is None:
            raise FileNotFoundError(f"online_dpo labels its pairs with the reward model, but {rm_path} does not exist. "
                                    "Run the rm stage first (--stages sft,rm,dpo,online_dpo).")
        online_prompts, _, data = training_prompts(stage, profile, seed)
        result = online_dpo(dpo_path, tokenizer, reward_fn, profile, prompts=online_prompts,
                            output_dir=out / stage, seed=seed, progress=progress, reference_path=sft_path)
    elif stage == "dpo":
        rows = toy_pairs(profile, seed, n=profile.rm.n_pairs) if real is None else real.rows
        result = train_dpo(sft_path, tokenizer, rows, profile,
                           output_dir=out / stage, seed=seed, progress=progress, nll_weight=profile.dpo.nll_weight)
    else:
        rows = toy_pairs(profile, seed) if real is None else real.rows[:profile.dpo.n_pairs]
        result = DIRECT_TRAINERS[stage](sft_path, tokenizer, rows, profile,
                                        output_dir=out / stage, seed=seed, progress=progress)
    entry, samples[stage] = measure(stage, result.model, load_policy(sft_path, profile), tokenizer, prompts, profile,
                                    seed, samples, reward_fn)
    for key, name in (("rewards/accuracies", "final_reward_accuracy"), ("rewards/margins", "final_reward_margin")):
        curve = result.curve(key)  # KTO logs no accuracy: it has no pairs
        entry[name] = curve[-1][1] if curve else None
    return {**entry, "data": data, "seconds": time.perf_counter() - start}


def trained_stage(out: Path, stage: str, needed_by: str, hint: str) -> Path:
    """``<out>/<stage>/final``, or a clear error naming the stage to run first."""
    path = out / stage / "final"
    if not (path / "config.json").exists():
        raise FileNotFoundError(f"The {needed_by} stage needs the {stage} stage's model, but {path} does not exist. "
                                f"Run it first ({hint}).")
    return path


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


def optional_reward(out: Path, tokenizer, profile: Profile):
    """The reward model's function when this run has one (to record the proxy reward), else None."""
    path = out / "rm" / "final"
    return load_reward_function(path, tokenizer, profile) if (path / "config.json").exists() else None


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


def stage_data(stage: str, profile: Profile) -> str:
    """What a stage without a ``data`` entry of its own trained on (RL stages record theirs, see training_prompts)."""
    if stage == "sft":
        return profile.sft.dataset or TOY_WORLD
    if stage == "bon" and profile.rm.dataset is not None:
        return f"{TOY_WORLD} test prompts, scored by the reward model trained on {profile.rm.dataset}"
    return TOY_WORLD


class RealDataEvaluation:
    """The held-out prompts of the profile's preference dataset, the reward model, and the SFT policy's answers.

    :meth:`evaluate` measures a saved policy against the SFT policy there
    (:func:`~rlhf_course.evaluation.real_data.judge_policy`): no gold, the reward
    model and a judge over it.
    """

    def __init__(self, out: Path, tokenizer, profile: Profile, seed: int) -> None:
        rows = real_pairs(profile, seed, held_out=True).rows[:profile.n_eval_prompts]
        self.prompts, self.tokenizer, self.profile, self.seed = [r["prompt"] for r in rows], tokenizer, profile, seed
        self.reward_fn = load_reward_function(out / "rm" / "final", tokenizer, profile)
        with torch.random.fork_rng():  # measuring must not move the random state later stages train from
            self.reference = generate(load_policy(out / "sft" / "final", profile), tokenizer, self.prompts,
                                      max_new_tokens=profile.max_new_tokens, batch_size=profile.eval_batch_size,
                                      seed=seed + 1)  # another draw than the policies' (seed), as from another run

    def evaluate(self, path: Path) -> dict:
        """The saved policy at ``path`` on the held-out prompts: reward-model score, win rate vs SFT, samples."""
        return judge_policy(load_policy(path, self.profile), self.tokenizer, self.prompts, self.reward_fn,
                            self.profile, self.reference, seed=self.seed)


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
    """The results as Markdown tables: one row per policy, one per reward model, and the Advanced stages' own measures."""
    def fmt(value) -> str:
        return "–" if value is None else f"{value:.2f}" if isinstance(value, float) else str(value)

    stages = results["stages"]
    lines = [f"Profile `{results['profile']}`, seed {results['seed']}, {results['world_size']} process(es).", "",
             "| stage | gold reward | ± s.e. | proxy reward | win rate vs base | win rate vs SFT | KL to ref | seconds "
             "| CPU seconds | judge win rate vs SFT | length-controlled |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for name in [s for s in POLICY_STAGES if s in stages]:
        lines.append(f"| {name} | " + " | ".join(fmt(stages[name].get(k)) for k in (*RESULT_FIELDS, *STYLE_FIELDS))
                     + " |")
    extras = {"rlaif": ("ai_label_agreement_gold", "ai_pairs"), "distill": ("teacher", "filter_kept_share"),
              "rlvr": ("sft_pass@1", "pass@1")}
    if any(name in stages for name in extras):
        lines += ["", "| stage | measure | value |", "|---|---|---|"]
        lines += [f"| {name} | {key} | {fmt(stages[name].get(key))} |" for name, keys in extras.items()
                  if name in stages for key in keys]
    if "rm" in stages:
        lines += ["", "| reward model | accuracy vs gold | accuracy vs labels | labels vs gold | "
                  "corr. with length | seconds | CPU seconds |", "|---|---|---|---|---|---|---|",
                  "| rm | " + " | ".join(fmt(stages["rm"].get(k)) for k in RM_FIELDS) + " |"]
    return "\n".join(lines + real_data_lines(stages, fmt)) + "\n"


def real_data_lines(stages: dict, fmt: Callable) -> list[str]:
    """Markdown lines for the stages trained on a real dataset: the data, held-out accuracy, judge win rates."""
    real = {name: entry["data"] for name, entry in stages.items() if isinstance(entry.get("data"), dict)}
    if not real:
        return []
    lines = ["", "Trained on real data (no gold there; the toy world's gold measurements are above):", ""]
    for name, data in real.items():
        lines.append(f"- {name}: {data['source']} [{data['split']}], {data['rows_used']} rows used, "
                     f"{data['rows_skipped']} skipped")
    if "rm_accuracy_heldout" in stages.get("rm", {}):
        lines.append(f"- rm accuracy on held-out pairs: {fmt(stages['rm']['rm_accuracy_heldout'])} "
                     f"({stages['rm']['heldout_pairs']} pairs)")
    lines += [f"- {name} on held-out prompts: reward-model score {fmt(entry['real_data_eval']['rm_score'])}, "
              f"win rate vs SFT {fmt(entry['real_data_eval']['win_rate_vs_reference'])} "
              f"({entry['real_data_eval']['judge']})" for name, entry in stages.items() if "real_data_eval" in entry]
    return lines


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
