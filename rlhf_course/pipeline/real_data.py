"""The pipeline on a real preference dataset (``--set rm.dataset=...``): its pairs, its prompts, and a measure without gold.

The reward model and the direct methods train on the dataset's pairs, the RL
stages optimise on its prompts, and every policy is measured on its held-out
split by the reward model and a judge (``evaluation.real_data``) as well as on
the toy world's test prompts by gold.
"""

from __future__ import annotations

import functools
import itertools
import time
from pathlib import Path
from typing import Callable

import torch

from rlhf_course.core.distributed import is_main_process
from rlhf_course.core.models import load_policy
from rlhf_course.core.sampling import generate
from rlhf_course.core.profiles import Profile
from rlhf_course.evaluation.real_data import judge_policy, pair_accuracy
from rlhf_course.preference_data.sources import (LoadedPreferences, dataset_prompts, held_out_split,
                                                 preference_dataset)
from rlhf_course.reward_modeling.evaluation import load_reward_function, reward_function
from rlhf_course.reward_modeling.train import reward_model_from, train_reward_model
from rlhf_course.toyworld import gold_rewards, training


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
