"""The pipeline's stages, one function each: SFT, the reward model, best-of-n, the RL methods and the direct methods.

Each stage trains with the function its chapter's lab calls, saves its model under
``<out>/<stage>/final`` and returns its entry of ``results.json`` (see :mod:`rlhf_course.pipeline`).
"""

from __future__ import annotations

import copy
import time
from pathlib import Path
from typing import Callable

import torch

from rlhf_course.core.distributed import is_main_process, world_size
from rlhf_course.core.evaluation import (Measurement, PolicySamples, compare_samples, measure_policy,
                                         sample_policy)
from rlhf_course.core.models import load_policy
from rlhf_course.core.profiles import Profile
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
from rlhf_course.toyworld import gold_rewards

from rlhf_course.pipeline.real_data import TOY_WORLD, real_pairs, real_rm_stage, training_prompts


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


def optional_reward(out: Path, tokenizer, profile: Profile):
    """The reward model's function when this run has one (to record the proxy reward), else None."""
    path = out / "rm" / "final"
    return load_reward_function(path, tokenizer, profile) if (path / "config.json").exists() else None


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


def stage_data(stage: str, profile: Profile) -> str:
    """What a stage without a ``data`` entry of its own trained on (RL stages record theirs, see training_prompts)."""
    if stage == "sft":
        return profile.sft.dataset or TOY_WORLD
    if stage == "bon" and profile.rm.dataset is not None:
        return f"{TOY_WORLD} test prompts, scored by the reward model trained on {profile.rm.dataset}"
    return TOY_WORLD
