"""Record a few steps of every trainer to JSON, to show that a change moved no number.

Run it before and after a change that must leave training exactly as it was (a
speed-up, a refactor, a new option that is off by default) and compare the two
files; they must be identical::

    python tests/trainer_histories.py before.json
    # ... make the change ...
    python tests/trainer_histories.py after.json
    cmp before.json after.json

Every trainer runs on ``tiny`` from the base model (nothing shared is trained
or read), a few steps each, against a made-up reward, on one thread: about two
CPU-minutes.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import tempfile
from pathlib import Path

import torch

from rlhf_course import toyworld
from rlhf_course.core.models import load_model, load_policy
from rlhf_course.core.profiles import Profile, get_profile
from rlhf_course.direct_alignment.online import online_dpo
from rlhf_course.instruction_tuning.train import train_sft
from rlhf_course.policy_gradients.train import train_grpo, train_policy_gradient, train_trl_rloo
from rlhf_course.ppo.train import train_ppo
from rlhf_course.rejection_sampling import train as rs
from rlhf_course.toyworld import training

SEED = 0
VARYING = ("seconds", "train_runtime", "train_samples_per_second", "train_steps_per_second", "step_time")


def small_profile() -> Profile:
    """``tiny`` cut to a few steps of every stage."""
    p = get_profile("tiny")
    return p.replace(rl=dataclasses.replace(p.rl, steps=3, prompts_per_step=4, k=2),
                     ppo=dataclasses.replace(p.ppo, steps=2),
                     rs=dataclasses.replace(p.rs, rounds=1, n_prompts=6, n=3, epochs=1.0),
                     dpo=dataclasses.replace(p.dpo, online_rounds=1, online_prompts=8, online_k=3, online_epochs=1.0))


def reward(prompts: list[str], responses: list[str]) -> torch.Tensor:
    """A made-up reward that any policy can move: distinct characters, minus half a point per word."""
    return torch.tensor([float(len(set(r))) - 0.5 * len(r.split()) for r in responses])


def steady(history: list[dict]) -> list[dict]:
    """A history without its timings, the only entries that may differ between two identical runs."""
    return [{k: (None if v is None else float(v)) for k, v in e.items() if k not in VARYING} for e in history]


def record(base: Path, tokenizer, p: Profile, tmp: Path) -> dict:
    """Each trainer's history (and best-of-n's pool, rejection sampling's rounds and weights)."""
    out = {}
    for method in ("rloo", "reinforce"):
        run = train_policy_gradient(load_policy(base, p), load_policy(base, p), tokenizer, reward, p, method=method,
                                    prompts=training.rl_prompts(p, SEED), gold_fn=toyworld.gold_rewards, seed=SEED,
                                    progress=False)
        out[method] = steady(run.history)
    run = train_ppo(load_policy(base, p), load_policy(base, p), base, tokenizer, reward, p,
                    prompts=training.rl_prompts(p, SEED, 2), gold_fn=toyworld.gold_rewards, seed=SEED, progress=False)
    out["ppo"] = steady(run.history)
    for name, trainer in (("grpo", train_grpo), ("trl_rloo", train_trl_rloo)):
        run = trainer(base, tokenizer, reward, p, prompts=training.rl_prompts(p, SEED), gold_fn=toyworld.gold_rewards,
                      output_dir=tmp / name, seed=SEED, progress=False)
        out[name] = steady(run.history)
    pool = rs.best_of_n(load_policy(base, p), tokenizer, reward, toyworld.make_prompts("test", 5, seed=SEED), 4, p,
                        gold_fn=toyworld.gold_rewards, seed=SEED)
    out["bon"] = {"proxy": pool.proxy.tolist(), "gold": pool.gold.tolist(), "chosen": pool.chosen.tolist(),
                  "candidates": pool.candidates}
    run = rs.rejection_sampling_finetune(load_policy(base, p), tokenizer, reward,
                                         training.rejection_sampling_prompts(p, SEED), p, train_sft,
                                         gold_fn=toyworld.gold_rewards, output_dir=tmp / "rs", seed=SEED,
                                         progress=False)
    out["rs_ft"] = run.rounds
    out["rs_ft_weight_sum"] = float(sum(w.detach().double().sum() for w in run.model.parameters()))
    run = online_dpo(base, tokenizer, reward, p, prompts=training.online_dpo_prompts(p, SEED),
                     output_dir=tmp / "online_dpo", seed=SEED, progress=False)
    out["online_dpo"] = steady(run.log_history)
    out["online_dpo_rounds"] = [{k: v for k, v in e.items() if k != "seconds"} for e in run.rounds]
    return out


def main(path: str) -> None:
    torch.set_num_threads(1)
    tmp = Path(tempfile.mkdtemp())
    model, tokenizer = load_model("tiny", progress=False)
    model.save_pretrained(tmp / "base")
    tokenizer.save_pretrained(tmp / "base")
    out = record(tmp / "base", tokenizer, small_profile(), tmp)
    Path(path).write_text(json.dumps(out, indent=1, default=float) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python tests/trainer_histories.py OUT.json")
    main(sys.argv[1])
