"""Profiles: one code path, four sizes.

A profile is plain data that says how big everything is: which model, how many
prompts, how many steps, which precision. Every stage function takes a profile
and never branches on its name, so the ``tiny`` run in CI executes exactly the
algorithm that the ``colab-t4`` run executes on a GPU, only smaller.

    >>> from rlhf_course.core.profiles import get_profile
    >>> get_profile("tiny").model
    'tiny'
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field

PROFILE_NAMES = ("tiny", "smol", "colab-t4", "multi-gpu")

SMOL_MODEL_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"


@dataclass(frozen=True)
class SFTSettings:
    """Instruction tuning (supervised fine-tuning) sizes."""

    n_demonstrations: int = 2000
    epochs: float = 4.0
    learning_rate: float = 1e-3
    batch_size: int = 32
    grad_accum: int = 1
    # half the demonstrations flawed: an SFT model with clear room to improve (at 0.3, 40% of its answers already
    # scored the gold maximum, and a perfect policy could win only about 0.8 against it, ties counting half)
    flawed_fraction: float = 0.5
    dataset: str | None = None  # a hub instruction dataset; None means the toy world
    checkpoint_steps: int = 0  # save (and resume from) a checkpoint this often; 0: only the final model


@dataclass(frozen=True)
class RMSettings:
    """Reward-model sizes: preference pairs, training, and held-out evaluation."""

    n_pairs: int = 20000
    epochs: float = 3.0
    learning_rate: float = 5e-4
    head_lr_multiplier: float = 10.0  # the new reward head learns this many times faster than the body
    weight_decay: float = 0.0  # AdamW's decoupled weight decay
    batch_size: int = 32
    grad_accum: int = 1
    n_eval_pairs: int = 2000
    annotator_temperature: float = 0.25
    # a preference dataset: a hub id (HuggingFaceH4/ultrafeedback_binarized, Anthropic/hh-rlhf, stanfordnlp/SHP) or a
    # local file or folder in one of their schemas; None means the toy world. The pipeline's rm stage and the dpo
    # family train on it (preference_data.preference_dataset) and are measured on its held-out split.
    dataset: str | None = None
    split: str | None = None  # the training split; None: the dataset's own (train_prefs, train)
    eval_split: str | None = None  # the held-out split; None: the dataset's own (test_prefs, test)
    checkpoint_steps: int = 0


@dataclass(frozen=True)
class RLSettings:
    """Policy-gradient sizes (REINFORCE, RLOO, GRPO, PPO): rollouts, steps and the KL penalty."""

    steps: int = 100
    prompts_per_step: int = 32
    k: int = 4  # responses sampled per prompt (the group of RLOO and GRPO)
    learning_rate: float = 1e-4
    beta: float = 0.2  # KL penalty to the reference (the SFT model), subtracted from the reward
    grpo_beta: float = 0.5  # GRPO's KL term in the loss, next to unit-scale advantages: other units than beta
    best_of_n: int = 16  # n of the best-of-n stage
    micro_batch_size: int = 0  # rows per forward/backward pass of a step (gradients accumulate); 0: all at once
    # generate rollouts with vLLM when it is installed (TRL's use_vllm for GRPO; core.rollout for the course's
    # REINFORCE, RLOO, PPO and online DPO); without vLLM the stages fall back to model.generate with a note
    use_vllm: bool = False
    vllm_mode: str = "colocate"  # TRL's vllm_mode: "colocate" (same GPUs) or "server" (`trl vllm-serve`)
    # save (and resume from) a checkpoint this often: REINFORCE, RLOO, PPO and TRL's GRPO/RLOO; 0: none
    checkpoint_steps: int = 0


@dataclass(frozen=True)
class PPOSettings:
    """PPO's own knobs; rollout sizes, steps and the KL coefficient β come from :class:`RLSettings`.

    Defaults follow Huang et al. (2024), "The N+ Implementation Details of RLHF
    with PPO": γ = 1, λ = 0.95, ε = ε_V = 0.2, value coefficient 0.1, 4 epochs.
    """

    epochs: int = 4  # passes over each rollout batch
    minibatches: int = 4  # gradient steps per pass (the batch is split into this many minibatches)
    learning_rate: float = 1e-4  # one optimiser for the policy and the critic
    clip: float = 0.2  # ε of the clipped surrogate: ratios are clipped to [1 − ε, 1 + ε]
    value_clip: float = 0.2  # ε_V of the clipped value loss, in units of reward
    vf_coef: float = 0.1  # c_V: loss = −L^CLIP + c_V · L^V
    gamma: float = 1.0  # discount of GAE
    lam: float = 0.95  # λ of GAE
    max_approx_kl: float = 0.05  # stop a batch's epochs once KL(π_old ‖ π_θ) per token exceeds this; 0: never
    missing_eos_penalty: float = 2.0  # subtracted from the score of a response cut off before its EOS
    kl_estimator: str = "k1"  # per-token KL in the reward: "k1" (the objective's gradient) or "k3" (to compare)
    steps: int | None = None  # rollout batches; None: profile.rl.steps
    beta: float | None = None  # KL coefficient of the per-token penalty; None: profile.rl.beta


@dataclass(frozen=True)
class RSSettings:
    """Rejection-sampling fine-tuning: rounds of sample n, keep the best k, SFT on them."""

    rounds: int = 2
    n_prompts: int = 1000  # fresh training prompts per round
    n: int = 8  # candidates sampled per prompt
    keep_k: int = 1  # kept per prompt
    epochs: float = 2.0
    learning_rate: float = 3e-4
    checkpoint_steps: int = 0  # within a round's fine-tuning; finished rounds are always kept and skipped on resume


@dataclass(frozen=True)
class DPOSettings:
    """Direct alignment (DPO, IPO, KTO, ORPO, SimPO) and online DPO: pairs, training, and each loss's β.

    The β of each method is in that method's own units: DPO's multiplies a
    log-ratio gap, IPO's is the inverse of its target margin, ORPO's weighs the
    odds-ratio term against the SFT loss, SimPO's multiplies an average
    per-token log-probability.
    """

    n_pairs: int = 4000  # offline preference pairs (the annotators' toy-world labels)
    epochs: float = 1.0  # one pass over more pairs beats several over fewer (less overfitting to the labels)
    learning_rate: float = 2e-4
    batch_size: int = 32
    grad_accum: int = 1
    beta: float = 0.5  # DPO (sigmoid loss)
    ipo_beta: float = 1.0  # TRL's IPO averages log-ratios per token: the target gap 1/(2β) is per token
    kto_beta: float = 0.5
    orpo_beta: float = 2.0  # TRL ORPO also trains on the prompt tokens; a small beta leaves the SFT term in charge
    simpo_beta: float = 2.0
    simpo_gamma: float = 0.5
    online_rounds: int = 2  # online DPO: rounds of sample, label with the reward model, train
    online_prompts: int = 500  # fresh training prompts per round
    online_k: int = 8  # responses sampled per prompt; the best and the worst by reward make the pair
    online_epochs: float = 2.0
    online_learning_rate: float = 2e-4
    online_beta: float = 1.0  # DPO's beta in online rounds (tiny, both seeds: 0.3 and 2.0 win less than 0.6 or 1.0)
    online_nll_weight: float = 0.0  # adds this times the SFT loss on each round's chosen (best) responses
    # The pipeline's dpo stage runs DPO as practitioners do: on the reward model's own pairs (profile.rm.n_pairs),
    # with nll_weight times the SFT loss on the chosen responses added (RPO; Llama 3 trains DPO so). The labs and
    # train_dpo's default keep the paper's loss.
    nll_weight: float = 0.0
    checkpoint_steps: int = 0


@dataclass(frozen=True)
class RLAIFSettings:
    """The Constitutional AI chapter's stage: pairs labelled by an AI judge that reads a constitution, then DPO."""

    n_pairs: int = 2000  # pairs the AI judge labels (ties are dropped) and DPO trains on
    n_seed_per_principle: int = 150  # tiny: seed labels per principle that its small AI judge learns from


@dataclass(frozen=True)
class DistillSettings:
    """The Synthetic Data chapter's stage: SFT of the base model on a teacher's filtered answers."""

    teacher: str = "rloo"  # the pipeline stage whose policy writes the answers
    k: int = 4  # answers per prompt; the verifier, then the reward model, keep one
    extra_prompts: float = 0.5  # draw this share more prompts than rows needed, for the prompts the filter drops


@dataclass(frozen=True)
class RLVRSettings:
    """The Reasoning chapter's stage: RLOO against a verifier's reward on checkable prompts, no KL penalty."""

    steps: int = 30
    prompts_per_step: int = 16
    k: int = 8  # samples per prompt: RLOO's group
    n_test: int = 80  # held-out checkable prompts
    n_samples: int = 16  # samples per held-out prompt, for pass@k with k up to this


@dataclass(frozen=True)
class Profile:
    """Everything that changes between a laptop CPU and a cluster.

    Attributes:
        name: one of :data:`PROFILE_NAMES`.
        model: ``"tiny"`` (built from config, pretrained on the toy world) or a
            hub model id.
        dtype: precision for training and sampling: ``float32``, ``float16`` or
            ``bfloat16``.
        lora: train LoRA adapters (PEFT) instead of every weight.
        lora_rank: rank of the LoRA adapters when ``lora`` is on.
        max_prompt_tokens: prompts longer than this are rejected by the data
            validator and truncated by the trainers.
        max_new_tokens: the longest completion a policy may sample.
        n_eval_prompts: held-out prompts used to measure a policy.
        eval_samples_per_prompt: answers sampled per held-out prompt when a
            policy is measured (see ``core.evaluation.eval_prompts``); more answers,
            less noise in a win rate.
        eval_batch_size: prompts per generation batch.
        seed: the default seed; labs and the pipeline may override it.
        sft: sizes of the instruction-tuning stage.
        rm: sizes of the reward-model stage.
        rl: sizes of the policy-gradient stages.
        ppo: PPO's settings on top of ``rl`` (epochs, clipping, GAE, the critic).
        rs: sizes of rejection-sampling fine-tuning.
        dpo: sizes of direct alignment (DPO and its family) and online DPO.
        rlaif, distill, rlvr: sizes of the pipeline's opt-in stages of the
            Constitutional AI, Synthetic Data and Reasoning chapters.
        description: one line for ``rlhf-course doctor`` and the README.
    """

    name: str
    model: str
    dtype: str = "float32"
    lora: bool = False
    lora_rank: int = 16
    max_prompt_tokens: int = 64
    max_new_tokens: int = 24
    n_eval_prompts: int = 200
    eval_samples_per_prompt: int = 1
    eval_batch_size: int = 100
    seed: int = 0
    sft: SFTSettings = field(default_factory=SFTSettings)
    rm: RMSettings = field(default_factory=RMSettings)
    rl: RLSettings = field(default_factory=RLSettings)
    ppo: PPOSettings = field(default_factory=PPOSettings)
    rs: RSSettings = field(default_factory=RSSettings)
    dpo: DPOSettings = field(default_factory=DPOSettings)
    rlaif: RLAIFSettings = field(default_factory=RLAIFSettings)
    distill: DistillSettings = field(default_factory=DistillSettings)
    rlvr: RLVRSettings = field(default_factory=RLVRSettings)
    description: str = ""

    def replace(self, **changes) -> "Profile":
        """A copy with some fields changed, e.g. ``profile.replace(seed=1)``."""
        return dataclasses.replace(self, **changes)


PROFILES: dict[str, Profile] = {
    "tiny": Profile(
        name="tiny",
        model="tiny",
        # PPO, measured on seeds 0 and 1: 60 steps at beta 0.3, 2 epochs of 2 minibatches, win 0.63 and 0.60
        # against SFT; 100 steps or a smaller beta spend more KL on the reward model's blind spots, no more gold
        ppo=PPOSettings(epochs=2, minibatches=2, steps=60, beta=0.3),
        # DPO, win rate against SFT on seeds 0 / 1: 0.61 / 0.63 on 4,000 pairs, 0.63 / 0.64 with the NLL term,
        # 0.65 / 0.66 on the reward model's 20,000 pairs, 0.68 / 0.69 on those with the NLL term (the dpo stage).
        # Online DPO from SFT stayed at 0.58-0.65 (rounds, prompts, k, pairs per prompt, NLL); two rounds from the
        # dpo stage's model win 0.65 / 0.63 without the NLL term and 0.69 / 0.68 with it (the online_dpo stage).
        dpo=DPOSettings(nll_weight=0.5, online_nll_weight=0.5),
        # four answers per test prompt: win rates to about ±0.015 instead of ±0.03, for seconds of sampling
        eval_samples_per_prompt=4,
        description="a ~1M-parameter Llama-style model pretrained on the toy world; any CPU, offline, minutes a lab",
    ),
    "smol": Profile(
        name="smol",
        model=SMOL_MODEL_ID,
        lora=True,
        max_prompt_tokens=128,
        max_new_tokens=32,
        n_eval_prompts=100,
        eval_batch_size=25,
        sft=SFTSettings(n_demonstrations=400, epochs=1.0, learning_rate=5e-4, batch_size=8, grad_accum=2),
        rm=RMSettings(n_pairs=800, epochs=1.0, learning_rate=5e-4, batch_size=8, grad_accum=2, n_eval_pairs=200),
        rl=RLSettings(steps=20, prompts_per_step=8, k=4, learning_rate=2e-5, beta=0.1, best_of_n=8),
        ppo=PPOSettings(epochs=2, minibatches=2, learning_rate=2e-5),
        rs=RSSettings(rounds=2, n_prompts=100, n=4, epochs=1.0, learning_rate=1e-4),
        dpo=DPOSettings(n_pairs=400, epochs=1.0, learning_rate=5e-5, batch_size=8, grad_accum=2, beta=0.1,
                        ipo_beta=0.5, kto_beta=0.1, orpo_beta=0.1, online_beta=0.1, online_rounds=2,
                        online_prompts=100, online_k=4, online_epochs=1.0, online_learning_rate=5e-5),
        description="SmolLM2-135M-Instruct with LoRA on the toy world; CPU or GPU, minutes, no download needed",
    ),
    "colab-t4": Profile(
        name="colab-t4",
        model="Qwen/Qwen2.5-0.5B-Instruct",
        dtype="float16",
        lora=True,
        max_prompt_tokens=256,
        max_new_tokens=64,
        n_eval_prompts=200,
        eval_batch_size=50,
        sft=SFTSettings(
            n_demonstrations=2000, epochs=1.0, learning_rate=2e-4, batch_size=8, grad_accum=4,
            dataset="HuggingFaceH4/no_robots", checkpoint_steps=20,
        ),
        rm=RMSettings(n_pairs=3000, epochs=1.0, learning_rate=1e-4, batch_size=8, grad_accum=4,
                      n_eval_pairs=400, dataset="Anthropic/hh-rlhf", checkpoint_steps=20),
        rl=RLSettings(steps=60, prompts_per_step=16, k=4, learning_rate=1e-5, beta=0.1, micro_batch_size=8,
                      checkpoint_steps=10),
        # minibatches of 8 responses: the size that fits a T4 in the from-scratch RLOO (see rl.micro_batch_size)
        ppo=PPOSettings(epochs=2, minibatches=8, learning_rate=1e-5),
        rs=RSSettings(rounds=2, n_prompts=400, n=8, epochs=1.0, learning_rate=5e-5, checkpoint_steps=20),
        dpo=DPOSettings(n_pairs=3000, epochs=1.0, learning_rate=2e-5, batch_size=4, grad_accum=8, beta=0.1,
                        ipo_beta=0.5, kto_beta=0.1, orpo_beta=0.1, online_beta=0.1, online_rounds=2,
                        online_prompts=400, online_k=4, online_epochs=1.0, online_learning_rate=2e-5,
                        checkpoint_steps=20),
        description="a 0.5B instruct model with LoRA, real hub datasets; one free Colab T4, fp16, <= 20 min a lab",
    ),
    "multi-gpu": Profile(
        name="multi-gpu",
        model="meta-llama/Llama-3.2-1B-Instruct",
        dtype="bfloat16",
        lora=False,
        max_prompt_tokens=512,
        max_new_tokens=256,
        n_eval_prompts=500,
        eval_batch_size=64,
        sft=SFTSettings(
            n_demonstrations=20000, epochs=1.0, learning_rate=1e-5, batch_size=8, grad_accum=4,
            dataset="HuggingFaceH4/no_robots", checkpoint_steps=100,
        ),
        rm=RMSettings(n_pairs=60000, epochs=1.0, learning_rate=5e-6, batch_size=8, grad_accum=4,
                      n_eval_pairs=1000, dataset="HuggingFaceH4/ultrafeedback_binarized", checkpoint_steps=100),
        rl=RLSettings(steps=500, prompts_per_step=64, k=8, learning_rate=1e-6, beta=0.05, checkpoint_steps=50),
        ppo=PPOSettings(epochs=4, minibatches=8, learning_rate=1e-6, max_approx_kl=0.02),
        rs=RSSettings(rounds=3, n_prompts=5000, n=16, epochs=1.0, learning_rate=5e-6, checkpoint_steps=100),
        dpo=DPOSettings(n_pairs=60000, epochs=1.0, learning_rate=5e-7, batch_size=4, grad_accum=8, beta=0.1,
                        ipo_beta=0.5, kto_beta=0.1, orpo_beta=0.1, online_beta=0.1, online_rounds=3,
                        online_prompts=5000, online_k=8, online_epochs=1.0, online_learning_rate=5e-7,
                        checkpoint_steps=100),
        description="1B-8B models on N GPUs via `accelerate launch` (DDP, ZeRO-3, FSDP2); a recipe, not a CI job",
    ),
}


def get_profile(name: str | Profile = "auto", **overrides) -> Profile:
    """Return the profile called ``name`` (or the one ``auto`` picks).

    ``overrides`` replace top-level fields, e.g. ``get_profile("tiny", seed=1)``.
    The environment variable ``RLHF_COURSE_PROFILE`` fills in ``auto`` when set,
    which is how the notebook tests run every lab on ``tiny``.
    """
    if isinstance(name, Profile):
        profile = name
    else:
        key = str(name).strip().lower()
        if key == "auto":
            key = os.environ.get("RLHF_COURSE_PROFILE") or auto_profile_name()[0]
        if key not in PROFILES:
            raise ValueError(
                f"Unknown profile {name!r}. Choose one of {', '.join(PROFILE_NAMES)} or 'auto'."
            )
        profile = PROFILES[key]
    return profile.replace(**overrides) if overrides else profile


def auto_profile_name() -> tuple[str, str]:
    """Pick a profile from the hardware found, and say why.

    Returns ``(name, reason)``. Several GPUs suggest ``multi-gpu``; one GPU with
    at least 12 GB suggests ``colab-t4``; otherwise ``tiny``, the profile that
    runs anywhere. ``smol`` is never picked automatically because it is slower
    than ``tiny`` on a CPU; ask for it by name.
    """
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency
        return "tiny", "torch is not installed, so no accelerator can be used"
    if torch.cuda.is_available():
        count = torch.cuda.device_count()
        memory_gb = torch.cuda.get_device_properties(0).total_memory / 2**30
        if count > 1:
            return "multi-gpu", f"{count} CUDA GPUs found"
        if memory_gb >= 12:
            return "colab-t4", f"one CUDA GPU with {memory_gb:.0f} GB found"
        return "tiny", f"one CUDA GPU with only {memory_gb:.0f} GB found (colab-t4 needs >= 12 GB)"
    return "tiny", "no CUDA GPU found; tiny runs every lab on a CPU in minutes"


def apply_overrides(profile: Profile, assignments: list[str] | tuple[str, ...]) -> Profile:
    """Change fields from ``"key=value"`` strings, e.g. ``["sft.epochs=1", "n_eval_prompts=50"]``.

    This is how the command line scales a stage up or down without editing
    code. Values are converted to the type of the field they replace.
    """
    for assignment in assignments:
        key, sep, raw = assignment.partition("=")
        if not sep:
            raise ValueError(f"Override {assignment!r} is not of the form key=value (e.g. sft.epochs=1).")
        *parents, leaf = key.strip().split(".")
        owners = [profile]
        for name in parents:
            if not hasattr(owners[-1], name):
                raise ValueError(f"Override {assignment!r}: profile has no section {name!r}.")
            owners.append(getattr(owners[-1], name))
        target = owners[-1]
        if not dataclasses.is_dataclass(target) or leaf not in {f.name for f in dataclasses.fields(target)}:
            names = ", ".join(f.name for f in dataclasses.fields(target)) if dataclasses.is_dataclass(target) else ""
            raise ValueError(f"Override {assignment!r}: unknown field {leaf!r}. Fields here: {names}.")
        value = _convert(raw.strip(), getattr(target, leaf), assignment)
        new = dataclasses.replace(target, **{leaf: value})
        for owner, name in zip(reversed(owners[:-1]), reversed(parents)):
            new = dataclasses.replace(owner, **{name: new})
        profile = new
    return profile


def cap_sizes(profile: Profile, caps: dict[str, int | float]) -> tuple[Profile, list[str]]:
    """Lower sizes to at most a cap, e.g. ``{"rm.n_pairs": 6000}``; sizes already below a cap are kept.

    This is how a short run (the five-minute lab) shrinks one profile without a
    branch for any other: a cap only binds where the profile is bigger.
    Returns the capped profile and the ``"key=value"`` overrides that were
    applied (see :func:`apply_overrides`), so the change can be shown.
    """
    changes = []
    for key, cap in caps.items():
        current: object = profile
        for name in key.split("."):
            if not hasattr(current, name):
                raise ValueError(f"Cap {key!r}: the profile has no field {name!r} there (e.g. use 'rm.n_pairs').")
            current = getattr(current, name)
        if not isinstance(current, (int, float)) or isinstance(current, bool):
            raise ValueError(f"Cap {key!r}: only numeric sizes can be capped, and this one is {current!r}.")
        if current > cap:
            changes.append(f"{key}={cap}")
    return apply_overrides(profile, changes), changes


def _convert(raw: str, current: object, assignment: str) -> object:
    """Parse ``raw`` to the type of ``current`` (bool, int, float, str or None)."""
    try:
        if isinstance(current, bool):
            if raw.lower() not in ("true", "false", "1", "0"):
                raise ValueError
            return raw.lower() in ("true", "1")
        if isinstance(current, int):
            return int(raw)
        if isinstance(current, float):
            return float(raw)
    except ValueError:
        raise ValueError(f"Override {assignment!r}: {raw!r} is not a valid {type(current).__name__}.") from None
    if raw.lower() == "none":
        return None
    if current is None:  # an optional number left unset (e.g. ppo.steps): a number if it reads as one
        for number in (int, float):
            try:
                return number(raw)
            except ValueError:
                pass
    return raw
