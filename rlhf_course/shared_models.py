"""The models every lab shares: trained once per settings, cached, and reused.

Every stage after instruction tuning starts from the SFT model, and several
labs need the reward model and a policy trained with REINFORCE or RLOO. This
module trains each of them the first time a lab (or ``rlhf-course pipeline``)
asks, in the shared cache of :mod:`rlhf_course.core.runs`, keyed by the
settings that change it, and finds it there afterwards, whatever order the
labs run in:

- :func:`sft_checkpoint` and :func:`load_trained_sft`: the SFT model and its training log;
- :func:`reward_model_checkpoint` and :func:`load_trained_reward_model`: the reward model;
- :func:`shared_policy`: the Policy Gradients lab's REINFORCE or RLOO policy;
- :func:`recorded_policy`: an RL run measured along the way (the Regularization lab's β = 0 run);
- :func:`small_reward_model`: reward models on fewer pairs (the Over-optimization lab's proxies).

It sits above the chapters, like the pipeline, because it chains their stages.
"""


from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

from rlhf_course.core import runs
from rlhf_course.core.models import load_policy
from rlhf_course.core.profiles import Profile, RLSettings
from rlhf_course.core.rollout import PolicyGradientResult
from rlhf_course.instruction_tuning.data import load_demonstrations
from rlhf_course.instruction_tuning.train import SFTResult, train_sft
from rlhf_course.over_optimization.record import RecordedRun
from rlhf_course.policy_gradients.train import train_policy_gradient
from rlhf_course.preference_data.toy import toy_preferences
from rlhf_course.reward_modeling.evaluation import load_reward_function, load_reward_model
from rlhf_course.reward_modeling.train import RewardModelResult, reward_model_from, train_reward_model
from rlhf_course.toyworld import gold_rewards, training


def sft_settings(profile: Profile, seed: int = 0) -> dict:
    """Everything that changes the SFT model of ``profile`` and ``seed``: the key of its shared cache."""
    from rlhf_course.core.models import TinySpec

    base = {"model": profile.model, **({"tiny": asdict(TinySpec())} if profile.model == "tiny" else {})}
    shape = {key: getattr(profile, key) for key in ("dtype", "lora", "lora_rank", "max_prompt_tokens",
                                                     "max_new_tokens")}
    return {**base, **shape, "seed": seed, "sft": runs.model_settings(profile.sft)}


def sft_checkpoint(profile: Profile, seed: int = 0, output_dir: str | Path | None = None,
                   progress: bool = True) -> Path:
    """The folder of an SFT model for ``profile`` and ``seed``: trained once, then reused.

    Every later stage (reward model, PPO, DPO, ...) starts from the SFT model.
    A lab that needs one calls this: the first call trains it with
    :func:`train_sft` in the shared cache (``rlhf_course.core.runs.shared_dir``,
    keyed by :func:`sft_settings`), later calls, from any lab or from
    ``rlhf-course pipeline``, find it there and return at once. With
    ``output_dir`` given, it trains there instead, and trains again when the
    settings saved there differ. The run's training log is saved beside the
    model (:func:`load_sft_record`).
    """
    from rlhf_course.core.models import load_model

    def train(folder: Path) -> dict:
        model, tokenizer = load_model(profile, progress=progress)
        result = train_sft(model, tokenizer, load_demonstrations(profile, seed), profile, output_dir=folder,
                           seed=seed, progress=progress)
        return {"log_history": result.log_history, "train_seconds": result.seconds,
                "world_size": result.world_size}

    return runs.cached("sft", sft_settings(profile, seed), train, seed, output_dir)[0]


def load_trained_sft(path: str | Path, profile: Profile) -> SFTResult:
    """An SFT model saved by :func:`sft_checkpoint`, with its training log: what :func:`train_sft` returned then."""
    record = runs.record_of(path, "rlhf_course.shared_models.sft_checkpoint")
    return SFTResult(load_policy(path, profile), record["log_history"], record["train_seconds"],
                     record.get("world_size", 1))


def reward_model_checkpoint(profile: Profile, seed: int = 0, output_dir: str | Path | None = None,
                            progress: bool = True) -> Path:
    """The folder of a reward model for ``profile`` and ``seed``: trained once on toy-world preferences, then reused.

    Like :func:`rlhf_course.shared_models.sft_checkpoint`, on which it builds: the
    reward model starts from that SFT model, is trained by
    :func:`train_reward_model` on ``toy_preferences(profile, "train", seed=seed)``,
    and is saved in the shared cache (``rlhf_course.core.runs``) with the log of its
    training, or under ``output_dir`` if given. The Reward Modeling lab trains
    it (or finds it), and every later lab and ``rlhf-course pipeline`` get the
    same reward model here; :func:`load_trained_reward_model` reads it back
    with its loss curve.
    """
    from transformers import AutoTokenizer

    sft_path = sft_checkpoint(profile, seed, progress=progress)

    def train(folder: Path) -> dict:
        result = train_reward_model(reward_model_from(sft_path, profile), AutoTokenizer.from_pretrained(sft_path),
                                    toy_preferences(profile, "train", seed=seed), profile, output_dir=folder,
                                    seed=seed, progress=progress)
        return {"log_history": result.log_history, "train_seconds": result.seconds}

    settings = {"sft": sft_settings(profile, seed), "rm": runs.model_settings(profile.rm)}
    return runs.cached("rm", settings, train, seed, output_dir)[0]


def load_trained_reward_model(path: str | Path) -> RewardModelResult:
    """A reward model saved by :func:`reward_model_checkpoint`, with its training log (losses, seconds).

    The same :class:`RewardModelResult` that :func:`train_reward_model`
    returned when the model was trained, whether that was a minute ago or in
    another lab.
    """
    record = runs.record_of(path, "rlhf_course.shared_models.reward_model_checkpoint")
    return RewardModelResult(load_reward_model(Path(path)), record["log_history"], record["train_seconds"])


def shared_policy(method: str, profile: Profile, seed: int = 0, progress: bool = True) -> PolicyGradientResult:
    """The course's REINFORCE or RLOO policy (``method``), trained once in the shared cache and then reused.

    It starts from the shared SFT model and optimises the shared reward model
    (``sft_checkpoint``, ``reward_model_checkpoint``) with ``profile.rl``: the
    run of the Policy Gradients lab, which the PPO and Direct Alignment labs
    show beside their own methods. Whichever lab asks first trains it (see
    ``rlhf_course.core.runs.cached``), so each lab shows the same policy whatever
    order the labs ran in. Returns the policy with its training history.
    """
    from transformers import AutoTokenizer

    sft_path = sft_checkpoint(profile, seed, progress=progress)
    rm_path = reward_model_checkpoint(profile, seed, progress=progress)
    tokenizer = AutoTokenizer.from_pretrained(sft_path)

    def train(folder: Path) -> dict:
        result = train_policy_gradient(load_policy(sft_path, profile), load_policy(sft_path, profile), tokenizer,
                                       load_reward_function(rm_path, tokenizer, profile), profile,
                                       prompts=training.rl_prompts(profile, seed), gold_fn=gold_rewards,
                                       method=method, seed=seed, progress=progress,
                                       output_dir=folder)  # a lab re-run after a disconnect resumes here
        result.model.save_pretrained(folder / "final", safe_serialization=True)
        tokenizer.save_pretrained(folder / "final")
        return {"history": result.history, "train_seconds": result.seconds}

    settings = {"method": method, "sft": sft_settings(profile, seed), "rm": runs.model_settings(profile.rm),
                "rl": runs.model_settings(profile.rl)}
    path, record = runs.cached(method, settings, train, seed)
    return PolicyGradientResult(load_policy(path, profile), record["history"], record["train_seconds"])


def recorded_policy(method: str, profile: Profile, seed: int = 0, rl: RLSettings | None = None, *,
                    eval_points: int = 9, eval_samples: int = 2, progress: bool = True) -> RecordedRun:
    """An RL run (``method``, with ``rl`` or ``profile.rl``) measured on held-out prompts along the way; cached.

    It starts from the shared SFT model and optimises the shared reward model
    like :func:`shared_policy`, and at ``eval_points`` steps from 0 to the last
    (:func:`rlhf_course.over_optimization.evaluation_steps`) records gold,
    proxy and KL on ``eval_samples`` answers to each of ``profile.n_eval_prompts``
    test prompts (:func:`rlhf_course.over_optimization.policy_recorder`). The
    measuring never changes the training, so the policy is the one the same
    :func:`train_policy_gradient` call gives without a record. The
    Regularization lab's β = 0 run is one: that lab and the Over-optimization
    lab get the same run here, trained by whichever asks first.
    """
    from transformers import AutoTokenizer

    from rlhf_course.over_optimization.record import evaluation_steps, policy_recorder
    from rlhf_course.toyworld import make_prompts

    rl = rl or profile.rl
    sft_path = sft_checkpoint(profile, seed, progress=progress)
    rm_path = reward_model_checkpoint(profile, seed, progress=progress)
    tokenizer = AutoTokenizer.from_pretrained(sft_path)
    steps = evaluation_steps(rl.steps, eval_points)

    def train(folder: Path) -> dict:
        reward_fn, reference = load_reward_function(rm_path, tokenizer, profile), load_policy(sft_path, profile)
        prompts = [p for p in make_prompts("test", profile.n_eval_prompts, seed=seed) for _ in range(eval_samples)]
        on_step, record = policy_recorder(reference, tokenizer, prompts, reward_fn, profile, steps, seed=seed)
        trained = profile.replace(rl=rl)
        result = train_policy_gradient(load_policy(sft_path, profile), reference, tokenizer, reward_fn, trained,
                                       prompts=training.rl_prompts(trained, seed), gold_fn=gold_rewards,
                                       method=method, seed=seed, progress=progress, on_step=on_step)
        result.model.save_pretrained(folder / "final", safe_serialization=True)
        tokenizer.save_pretrained(folder / "final")
        return {"history": result.history, "train_seconds": result.seconds, "record": record}

    settings = {"method": method, "sft": sft_settings(profile, seed), "rm": runs.model_settings(profile.rm),
                "rl": runs.model_settings(rl), "eval_steps": steps, "eval_samples": eval_samples,
                "n_eval_prompts": profile.n_eval_prompts}
    path, record = runs.cached(f"{method}-recorded", settings, train, seed)
    result = PolicyGradientResult(load_policy(path, profile), record["history"], record["train_seconds"])
    return RecordedRun(result, record["record"])


def small_reward_model(profile: Profile, seed: int = 0, n_pairs: int = 1000, *, offset: int = 0,
                       epochs: float = 1.0, progress: bool = True) -> Path:
    """A reward model on ``n_pairs`` toy-world pairs (rows ``offset`` to ``offset + n_pairs``), ``epochs`` passes; cached.

    Trained like :func:`reward_model_checkpoint`, from the same SFT model and on
    the same kind of annotator labels, but on fewer pairs: the proxies of a
    data sweep (several ``n_pairs``) or the members of an ensemble (one
    ``n_pairs``, disjoint ``offset``\\s). Returns the model's folder.
    """
    import dataclasses

    from transformers import AutoTokenizer

    if n_pairs < 1 or offset < 0:
        raise ValueError(f"n_pairs must be positive and offset non-negative; got {n_pairs} and {offset}.")
    sft_path = sft_checkpoint(profile, seed, progress=progress)
    small = profile.replace(rm=dataclasses.replace(profile.rm, epochs=epochs))

    def train(folder: Path) -> dict:
        rows = toy_preferences(profile, "train", n=offset + n_pairs, seed=seed)[offset:]
        result = train_reward_model(reward_model_from(sft_path, small), AutoTokenizer.from_pretrained(sft_path),
                                    rows, small, output_dir=folder, seed=seed, progress=progress)
        return {"log_history": result.log_history, "train_seconds": result.seconds}

    settings = {"sft": sft_settings(profile, seed), "rm": runs.model_settings(small.rm), "n_pairs": n_pairs,
                "offset": offset}
    return runs.cached("rm-small", settings, train, seed)[0]
