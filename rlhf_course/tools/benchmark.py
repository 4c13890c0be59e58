"""Benchmarks: wall-clock figures the README reports, measured rather than asserted.

Timings depend on the machine, so tests never assert them; this module measures
them on demand and writes JSON that the README's tables are filled from:

    rlhf-course benchmark pretrain --out runs/benchmarks
    rlhf-course benchmark policy_gradients --out runs/benchmarks
    rlhf-course benchmark policy_gradients --seed 1 --out runs/benchmarks/seed1
    rlhf-course benchmark labs --out _build/benchmark      # every lab on tiny, one at a time
    rlhf-course benchmark rm_sizes --out _build/benchmark  # reward model accuracy against pairs and epochs
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import json
import os
import platform
import tempfile
import time
from pathlib import Path


def benchmark_pretraining(repeats: int = 1) -> dict:
    """Wall time of pretraining the tiny base model from scratch (tokenizer included)."""
    import torch

    from rlhf_course.core.models import TinySpec, pretrain_tiny

    spec = TinySpec()
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        pretrain_tiny(spec, seed=0, progress=False)
        seconds.append(time.perf_counter() - start)
    return {
        "benchmark": "pretrain_tiny",
        "seconds": min(seconds),
        "all_seconds": seconds,
        "steps": spec.steps,
        "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "machine": platform.processor() or platform.machine(),
    }


BENCHMARKS = {"pretrain": benchmark_pretraining}  # later stages add theirs here


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", choices=sorted(BENCHMARKS), help="what to measure")
    parser.add_argument("--out", default=None, help="folder for <name>.json (default: print only)")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0, help="seed of the SFT model, reward model and training")
    parser.add_argument("--pairs", default=None, help="rm_sizes: training pair counts, comma-separated (5000,10000)")


def run_from_args(args: argparse.Namespace) -> int:
    benchmark = BENCHMARKS[args.name]
    takes = inspect.signature(benchmark).parameters
    kwargs = {"seed": args.seed} if "seed" in takes else {}
    if "pairs" in takes and args.pairs:
        kwargs["pairs"] = tuple(int(n) for n in args.pairs.split(","))
    if "out" in takes and args.out:
        kwargs["out"] = Path(args.out) / args.name
    result = benchmark(repeats=args.repeats, **kwargs)
    text = json.dumps(result, indent=2)
    print({"labs": labs_markdown, "rm_sizes": rm_sizes_markdown}.get(args.name, lambda _: text)(result))
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile("w", dir=out, delete=False, suffix=".tmp") as tmp:
            tmp.write(text + "\n")
        Path(tmp.name).replace(out / f"{args.name}.json")
        if args.name == "labs":
            (out / "labs.md").write_text(labs_markdown(result))
    return 0


def time_to_target(history: list[dict], target: float, window: int = 5) -> tuple[int, float] | None:
    """First (step, seconds) at which the gold reward, averaged over the last ``window`` steps, reaches ``target``.

    The gold reward of each step's training samples is noisy; the moving
    average makes "reached" mean "reached and held". ``None`` if never reached.
    """
    golds = [h["gold_reward"] for h in history]
    for i in range(window - 1, len(history)):
        if sum(golds[i - window + 1:i + 1]) / window >= target:
            return history[i]["step"], history[i]["seconds"]
    return None


def benchmark_policy_gradients(repeats: int = 1, seed: int = 0, target: float = 3.3) -> dict:
    """Wall time for each policy-gradient method on ``tiny`` to bring the gold reward of its samples to ``target``.

    Every method starts from the same SFT model, optimises the same reward
    model on the same prompts with the same rollout sizes (``profile.rl``),
    and is timed from its first step; the SFT model's samples sit near 2.8,
    and the methods end near 3.4 to 3.6.
    The methods run one after the other in this process: the course's
    REINFORCE, RLOO and PPO, and TRL's ``RLOOTrainer`` and ``GRPOTrainer``.
    ``ppo_ratio`` is PPO's time to the target over the faster of the two TRL
    trainers' (below 1: PPO gets there first).
    """
    import torch
    from transformers import AutoTokenizer

    from rlhf_course.policy_gradients.train import train_grpo, train_policy_gradient, train_trl_rloo
    from rlhf_course.ppo.train import train_ppo
    from rlhf_course.core.profiles import get_profile
    from rlhf_course.reward_modeling.evaluation import load_reward_function
    from rlhf_course.shared_models import reward_model_checkpoint
    from rlhf_course.core.models import load_policy
    from rlhf_course.shared_models import sft_checkpoint
    from rlhf_course.toyworld import gold_rewards, training

    profile = get_profile("tiny")
    sft_path = sft_checkpoint(profile, seed, progress=False)
    tokenizer = AutoTokenizer.from_pretrained(sft_path)
    rm_path = reward_model_checkpoint(profile, seed, progress=False)
    reward_fn = load_reward_function(rm_path, tokenizer, profile)
    data = {"prompts": training.rl_prompts(profile, seed), "gold_fn": gold_rewards}
    methods = {
        "reinforce": lambda out: train_policy_gradient(load_policy(sft_path, profile), load_policy(sft_path, profile),
                                                       tokenizer, reward_fn, profile, method="reinforce", seed=seed,
                                                       progress=False, **data),
        "rloo": lambda out: train_policy_gradient(load_policy(sft_path, profile), load_policy(sft_path, profile),
                                                  tokenizer, reward_fn, profile, method="rloo", seed=seed,
                                                  progress=False, **data),
        "trl_rloo": lambda out: train_trl_rloo(sft_path, tokenizer, reward_fn, profile, output_dir=out, seed=seed,
                                               progress=False, **data),
        "grpo": lambda out: train_grpo(sft_path, tokenizer, reward_fn, profile, output_dir=out, seed=seed,
                                       progress=False, **data),
        "ppo": lambda out: train_ppo(load_policy(sft_path, profile), load_policy(sft_path, profile), rm_path,
                                     tokenizer, reward_fn, profile, prompts=training.ppo_prompts(profile, seed),
                                     gold_fn=gold_rewards, seed=seed, progress=False),
    }
    rows = {}
    for name, train in methods.items():
        runs = []
        for _ in range(repeats):
            with tempfile.TemporaryDirectory() as out:
                result = train(out)
            reached = time_to_target(result.history, target)
            runs.append({"steps_to_target": reached[0] if reached else None,
                         "seconds_to_target": reached[1] if reached else None,
                         "seconds_total": result.seconds, "steps": len(result.history),
                         # (step, gold reward of its samples, seconds since the start): other targets can be read off
                         "curve": [(h["step"], round(h["gold_reward"], 3), round(h["seconds"], 2))
                                   for h in result.history]})
        rows[name] = min(runs, key=lambda r: r["seconds_to_target"] or float("inf"))
    return {"benchmark": "policy_gradients", "profile": "tiny", "seed": seed, "target_gold_reward": target,
            "methods": rows, "ppo_ratio": ppo_ratio(rows),
            "ppo_settings": dataclasses.asdict(profile.ppo), "rl_settings": dataclasses.asdict(profile.rl),
            "torch_threads": torch.get_num_threads(), "cpu_count": os.cpu_count(),
            "machine": platform.processor() or platform.machine()}


def ppo_ratio(rows: dict[str, dict]) -> float | None:
    """PPO's seconds to the target over the faster of TRL's GRPO and RLOO; ``None`` if either side never got there."""
    ppo = rows.get("ppo", {}).get("seconds_to_target")
    trl = [rows[m]["seconds_to_target"] for m in ("grpo", "trl_rloo") if rows.get(m, {}).get("seconds_to_target")]
    return ppo / min(trl) if ppo and trl else None


BENCHMARKS["policy_gradients"] = benchmark_policy_gradients


def benchmark_labs(repeats: int = 1, seed: int = 0, out: str | Path | None = None,
                   labs: list[str | Path] | None = None) -> dict:
    """Execute every lab on ``tiny``, one at a time, and record what each one cost.

    Each lab runs in a fresh kernel (papermill), so the record its results
    cell writes (``rlhf_course.core.results.seconds_spent``) holds the kernel's
    wall and CPU seconds and the wall seconds it spent training shared models,
    evaluating and sampling. The labs share one cache of models
    (``rlhf_course.core.runs``, under ``out``): the first lab that needs the SFT
    model and the reward model trains them, and every later lab reads them.
    A lab's "own" seconds are its wall seconds less that shared training.
    ``labs`` picks labs by name (or notebook path); default: every lab.
    """
    from rlhf_course.tools.student import execute_notebook

    root = Path(__file__).resolve().parents[2] / "labs"
    out = Path(out or tempfile.mkdtemp(prefix="rlhf-course-labs-"))
    notebooks = ([Path(lab) if str(lab).endswith(".ipynb") else root / f"{lab}.ipynb" for lab in labs] if labs
                 else sorted(root.glob("*.ipynb")))
    env = {"RLHF_COURSE_RESULTS_DIR": str(out / "results"), "RLHF_COURSE_RUNS": str(out / "runs"),
           "RLHF_COURSE_PROFILE": "tiny"}
    rows = {}
    for notebook in notebooks:
        run = execute_notebook(notebook, out / "executed" / notebook.name, {"PROFILE": "tiny", "SEED": seed},
                               env=env, cwd=notebook.parent)
        record_path = out / "results" / f"{notebook.stem}.json"
        record = json.loads(record_path.read_text()) if run.ok and record_path.exists() else {}
        rows[notebook.stem] = {**lab_cost(run.seconds, record), "ok": run.ok, "error": run.error}
        print(f"{notebook.stem}: {rows[notebook.stem]['wall']:.0f} s", flush=True)
    return {"benchmark": "labs", "profile": "tiny", "seed": seed, "labs": rows,
            "torch_threads": int(os.environ.get("OMP_NUM_THREADS", "0")) or None, "cpu_count": os.cpu_count(),
            "machine": platform.processor() or platform.machine()}


def lab_cost(wall: float, record: dict) -> dict:
    """A row of the per-lab table: the execution's wall seconds and what the lab's results record says it spent.

    The record's own ``"wall"`` (the kernel's age) is dropped for the
    execution's, which includes starting the kernel; "own" is the wall time
    less the training of shared models.
    """
    spent = {key: value for key, value in record.get("seconds", {}).items() if key != "wall"}
    return {"ok": True, "error": None, **spent, "wall": round(wall, 1),
            "own": round(wall - spent.get("shared models", 0.0), 1)}


def labs_markdown(result: dict) -> str:
    """The per-lab table of :func:`benchmark_labs`, as Markdown."""
    lines = ["| lab | wall s | CPU s | shared models s | own s (wall − shared) | evaluation s | sampling s |",
             "|---|---|---|---|---|---|---|"]
    for lab, row in result["labs"].items():
        cells = [row.get(key) for key in ("wall", "cpu", "shared models", "own", "evaluation", "sampling")]
        shown = " | ".join("–" if v is None else f"{v:.0f}" for v in cells)
        lines.append(f"| {lab} | {shown} |" + ("" if row["ok"] else f" failed: {row['error']}"))
    return "\n".join(lines) + "\n"


BENCHMARKS["labs"] = benchmark_labs


def benchmark_reward_model_sizes(repeats: int = 1, seed: int = 0, out: str | Path | None = None,
                                 pairs: tuple[int, ...] = (5000, 10000, 20000), evals_per_epoch: int = 2,
                                 epochs: float | None = None) -> dict:
    """The reward model's gold accuracy on held-out pairs as it grows with training pairs and epochs, on ``tiny``.

    One run per pair count, with the profile's epochs (or ``epochs``), learning rate and batch
    size; the accuracy the pipeline's ``rm`` stage reports (``rm_accuracy_gold``
    on ``toy_preferences(profile, "test")``) is measured ``evals_per_epoch``
    times per epoch. Measuring does not change the training (no randomness is
    drawn) and each run starts from the random state that ``seed`` gives, as
    :func:`rlhf_course.shared_models.reward_model_checkpoint` does, so the last
    point of the profile's size is the shared reward model's accuracy. An earlier point
    is mid-schedule: the cosine learning rate has not decayed yet there, as it
    would have in a run trained for that many epochs only.
    ``out`` (a folder) receives the JSON after each pair count, so a stopped run keeps what it measured.
    """
    import torch
    from transformers import AutoTokenizer, TrainerCallback
    from transformers.trainer_callback import PrinterCallback

    from rlhf_course.core import runs
    from rlhf_course.core.profiles import get_profile
    from rlhf_course.preference_data.toy import toy_preferences
    from rlhf_course.reward_modeling.evaluation import evaluate_reward_model
    from rlhf_course.reward_modeling.train import reward_model_from, reward_trainer
    from rlhf_course.shared_models import sft_checkpoint

    profile = get_profile("tiny")
    sft_path = sft_checkpoint(profile, seed, progress=False)
    profile = profile.replace(rm=dataclasses.replace(profile.rm, epochs=epochs or profile.rm.epochs))
    tokenizer = AutoTokenizer.from_pretrained(sft_path)
    test = toy_preferences(profile, "test", seed=seed)
    result = {"benchmark": "rm_sizes", "profile": "tiny", "seed": seed, "rm_settings": dataclasses.asdict(profile.rm),
              "n_test_pairs": len(test), "runs": {}, "torch_threads": torch.get_num_threads(),
              "cpu_count": os.cpu_count(), "machine": platform.processor() or platform.machine()}

    class Measure(TrainerCallback):
        """Measures the model at planned steps; its CPU seconds are kept out of the training's."""

        def __init__(self, curve: list):
            self.curve, self.start, self.evaluating, self.at = curve, time.process_time(), 0.0, {}

        def on_train_begin(self, args, state, control, **kwargs):
            per_epoch = state.max_steps / args.num_train_epochs
            fractions = [i / evals_per_epoch for i in range(1, int(args.num_train_epochs * evals_per_epoch) + 1)]
            self.at = {min(state.max_steps, round(per_epoch * f)): f for f in fractions}

        def on_step_end(self, args, state, control, model=None, **kwargs):
            if state.global_step in self.at:
                began = time.process_time()
                accuracy = evaluate_reward_model(model, tokenizer, test, profile.eval_batch_size).accuracy_gold
                model.train()
                self.curve.append({"step": state.global_step, "epoch": self.at[state.global_step],
                                   "rm_accuracy_gold": round(accuracy, 4),
                                   "train_cpu_seconds": round(began - self.start - self.evaluating, 1)})
                self.evaluating += time.process_time() - began

    for n_pairs in pairs:
        curve: list[dict] = []
        with tempfile.TemporaryDirectory() as folder, runs.seeded(seed):  # as reward_model_checkpoint trains
            trainer = reward_trainer(reward_model_from(sft_path, profile), tokenizer,
                                     toy_preferences(profile, "train", n=n_pairs, seed=seed), profile, folder,
                                     seed, progress=False)
            trainer.add_callback(Measure(curve))
            trainer.remove_callback(PrinterCallback)
            trainer.train()
        result["runs"][str(n_pairs)] = curve
        print(f"{n_pairs} pairs: " + ", ".join(f"{p['epoch']:g} ep {p['rm_accuracy_gold']:.3f}" for p in curve),
              flush=True)
        if out:
            Path(out).mkdir(parents=True, exist_ok=True)
            (Path(out) / f"rm_sizes-seed{seed}.json").write_text(json.dumps(result, indent=1) + "\n")
            (Path(out) / f"rm_sizes-seed{seed}.md").write_text(rm_sizes_markdown(result))
    return result


def rm_sizes_markdown(result: dict) -> str:
    """The curves of :func:`benchmark_reward_model_sizes` as a Markdown table: pairs × epochs → gold accuracy."""
    epochs = sorted({p["epoch"] for curve in result["runs"].values() for p in curve})
    planned = result.get("rm_settings", {}).get("epochs")
    lines = [f"Reward model on `tiny`, seed {result['seed']}" + (f", runs of {planned:g} epochs" if planned else "")
             + f": gold accuracy on {result['n_test_pairs']} held-out pairs (training CPU seconds, evaluation "
             "excluded)", "",
             "| pairs | " + " | ".join(f"epoch {e:g}" for e in epochs) + " |", "|---" * (len(epochs) + 1) + "|"]
    for n_pairs, curve in result["runs"].items():
        by_epoch = {p["epoch"]: p for p in curve}
        cells = [f"{by_epoch[e]['rm_accuracy_gold']:.3f} ({by_epoch[e]['train_cpu_seconds']:.0f} s)"
                 if e in by_epoch else "–" for e in epochs]
        lines.append(f"| {int(n_pairs):,} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


BENCHMARKS["rm_sizes"] = benchmark_reward_model_sizes
