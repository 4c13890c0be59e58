"""Direct alignment stages: DPO, IPO, KTO, ORPO and SimPO with TRL's trainers.

Each stage fine-tunes a saved policy (usually the SFT model) on preference rows,
saves its result under ``output_dir/final`` like every other stage of the
course, and returns the trainer's log history, which holds the implicit-reward
curves (``rewards/chosen``, ``rewards/margins``, ``rewards/accuracies``,
``logps/chosen``, ...) for a lab to plot. The losses themselves, from scratch,
are in :mod:`rlhf_course.direct_alignment.loss`.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field

import torch

from rlhf_course.core.models import load_policy, quiet_libraries
from rlhf_course.core.training import fit, lora_config, trainer_arguments, trl_config
from rlhf_course.preference_data.formats import to_reward_dataset, unpaired_dataset


# ============================================================================= training with TRL
#
# The losses above are for reading and for the lab's exercises. The stages below
# train with TRL's trainers, which compute the same losses: ``DPOTrainer`` (any
# of its loss types: "sigmoid" is DPO, "ipo" is IPO), ``KTOTrainer``, and the
# experimental ``ORPOTrainer`` and ``CPOTrainer`` (SimPO is CPO with
# ``loss_type="simpo"`` and no extra NLL term). Each stage starts from a saved
# policy (usually the SFT model), saves its result under ``output_dir/final``
# like every other stage of the course, and returns the trainer's log history,
# which holds the implicit-reward curves (``rewards/chosen``, ``rewards/margins``,
# ``rewards/accuracies``, ``logps/chosen``, ...) for a lab to plot.
@dataclass
class DirectAlignmentResult:
    """What a direct-alignment stage returns: the trained policy and how training went."""
    model: object  # a transformers PreTrainedModel
    log_history: list[dict] = field(default_factory=list)
    seconds: float = 0.0
    method: str = "dpo"
    rounds: list[dict] = field(default_factory=list)  # online DPO: one summary per round
    resumed_from: str | None = None  # the checkpoint an interrupted run continued from (see core.training.fit)

    @property
    def losses(self) -> list[tuple[int, float]]:
        """(step, training loss) pairs, for a loss curve."""
        return [(e["step"], e["loss"]) for e in self.log_history if "loss" in e]

    def curve(self, key: str) -> list[tuple[int, float]]:
        """(step, value) of one logged quantity, e.g. ``"rewards/margins"`` or ``"logps/chosen"``."""
        return [(e["step"], e[key]) for e in self.log_history if key in e]


def preference_dataset(rows: list[dict], tokenizer):
    """A TRL preference dataset (prompt/chosen/rejected, the chat template applied), after checking the rows.

    The check is the course's one validator (see ``preference_data.to_reward_dataset``):
    standard and conversational rows are accepted, and a malformed row is an
    error naming the row and the field.
    """

    return to_reward_dataset(rows, tokenizer)


def direct_arguments(profile, output_dir, seed: int = 0, progress: bool = True, epochs: float | None = None) -> dict:
    """Trainer arguments of every direct-alignment stage, from ``profile.dpo`` (see ``trainer_arguments``)."""

    args = trainer_arguments(profile, profile.dpo, output_dir, seed, progress)
    if epochs is not None:
        args["num_train_epochs"] = epochs
    return args


def _policy_and_reference(policy_path, profile, reference_path=None, need_reference: bool = True):
    """The policy to train and, if needed, the frozen reference, each loaded from a saved model.

    The reference is always passed to TRL explicitly: left out, TRL would
    rebuild it from ``config._name_or_path``, which is empty for a model the
    course built from a config (the tiny profile) and, after online rounds,
    would name the wrong model. ``reference_path`` defaults to ``policy_path``.
    """

    policy = load_policy(policy_path, profile)
    policy.train()
    if not need_reference:
        return policy, None
    reference = load_policy(reference_path or policy_path, profile)
    for p in reference.parameters():
        p.requires_grad_(False)
    return policy, reference


def _train(trainer, tokenizer, output_dir, profile, progress, start, method) -> DirectAlignmentResult:
    trained, resumed = fit(trainer, tokenizer, output_dir, profile.lora, progress)
    return DirectAlignmentResult(trained, trainer.state.log_history, time.perf_counter() - start, method,
                                 resumed_from=resumed)


def train_dpo(
    policy_path,
    tokenizer,
    rows: list[dict],
    profile,
    *,
    loss_type: str = "sigmoid",
    output_dir="runs/dpo",
    seed: int = 0,
    progress: bool = True,
    beta: float | None = None,
    reference_path=None,
    epochs: float | None = None,
    learning_rate: float | None = None,
    nll_weight: float | None = None,
) -> DirectAlignmentResult:
    """DPO (or any of ``DPOTrainer``'s loss types: ``"ipo"``, ``"hinge"``, ...) on preference ``rows``.

    The policy starts from the model saved at ``policy_path``; the reference is
    the model saved at ``reference_path`` (default: the same, i.e. the SFT
    model), loaded separately and passed to TRL. ``beta`` defaults to
    ``profile.dpo.beta`` (``profile.dpo.ipo_beta`` for IPO). A positive
    ``nll_weight`` adds that many times the SFT loss on the chosen responses
    (TRL's ``"sft"`` loss type; RPO's recipe), which keeps the likelihood of
    the good responses from falling. With ``profile.lora`` the adapters are
    merged back at the end.
    """
    from trl import DPOConfig, DPOTrainer

    start = time.perf_counter()
    quiet_libraries()
    torch.manual_seed(seed)
    if beta is None:
        beta = profile.dpo.ipo_beta if loss_type == "ipo" else profile.dpo.beta
    dataset = preference_dataset(rows, tokenizer)
    policy, reference = _policy_and_reference(policy_path, profile, reference_path)
    arguments = direct_arguments(profile, output_dir, seed, progress, epochs)
    if learning_rate is not None:
        arguments["learning_rate"] = learning_rate
    losses = {"loss_type": [loss_type], "beta": beta}
    if nll_weight:
        losses.update(loss_type=[loss_type, "sft"], loss_weights=[1.0, nll_weight])
    config = trl_config(DPOConfig, **{**arguments, **losses})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer = DPOTrainer(model=policy, ref_model=reference, args=config, train_dataset=dataset,
                             processing_class=tokenizer, peft_config=lora_config(profile) if profile.lora else None)
        return _train(trainer, tokenizer, output_dir, profile, progress, start, "ipo" if loss_type == "ipo" else
                      "dpo" if loss_type == "sigmoid" else f"dpo-{loss_type}")


def train_ipo(policy_path, tokenizer, rows: list[dict], profile, *, output_dir="runs/ipo", seed: int = 0,
              progress: bool = True, beta: float | None = None) -> DirectAlignmentResult:
    """IPO: :func:`train_dpo` with ``loss_type="ipo"`` and β = ``profile.dpo.ipo_beta``."""
    return train_dpo(policy_path, tokenizer, rows, profile, loss_type="ipo", output_dir=output_dir, seed=seed,
                     progress=progress, beta=beta)


def train_kto(policy_path, tokenizer, rows: list[dict], profile, *, output_dir="runs/kto", seed: int = 0,
              progress: bool = True, beta: float | None = None) -> DirectAlignmentResult:
    """KTO with TRL's ``KTOTrainer``: each pair split into a desirable and an undesirable response.

    The reference (for the log-ratios and KTO's reference point) is the model at
    ``policy_path``, loaded a second time and passed explicitly.
    """
    from trl import KTOConfig, KTOTrainer

    start = time.perf_counter()
    quiet_libraries()
    torch.manual_seed(seed)
    dataset = unpaired_dataset(rows, tokenizer)
    policy, reference = _policy_and_reference(policy_path, profile)
    config = trl_config(KTOConfig, **direct_arguments(profile, output_dir, seed, progress),
                     beta=profile.dpo.kto_beta if beta is None else beta)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer = KTOTrainer(model=policy, ref_model=reference, args=config, train_dataset=dataset,
                             processing_class=tokenizer, peft_config=lora_config(profile) if profile.lora else None)
        return _train(trainer, tokenizer, output_dir, profile, progress, start, "kto")


def _reference_free(trainer_cls, config_cls, method, policy_path, tokenizer, rows, profile, output_dir, seed,
                    progress, extra: dict) -> DirectAlignmentResult:
    """ORPO and SimPO: one trainable model, no reference at all."""
    start = time.perf_counter()
    quiet_libraries()
    torch.manual_seed(seed)
    dataset = preference_dataset(rows, tokenizer)
    policy, _ = _policy_and_reference(policy_path, profile, need_reference=False)
    # remove_unused_columns=False: what these trainers need and would set themselves, logging a warning each time
    config = trl_config(config_cls, **direct_arguments(profile, output_dir, seed, progress),
                        **{"remove_unused_columns": False, **extra})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer = trainer_cls(model=policy, args=config, train_dataset=dataset, processing_class=tokenizer,
                              peft_config=lora_config(profile) if profile.lora else None)
        return _train(trainer, tokenizer, output_dir, profile, progress, start, method)


def train_orpo(policy_path, tokenizer, rows: list[dict], profile, *, output_dir="runs/orpo", seed: int = 0,
               progress: bool = True, beta: float | None = None) -> DirectAlignmentResult:
    """ORPO with TRL's experimental ``ORPOTrainer``: SFT on the chosen response plus β × the odds-ratio term.

    No reference model. ORPO is meant to replace SFT; here it starts from the
    SFT model, as the other methods do, so the comparison is like for like.
    """
    with warnings.catch_warnings():  # TRL warns, on import, that its experimental API may change
        warnings.simplefilter("ignore")
        from trl.experimental.orpo import ORPOConfig, ORPOTrainer

    return _reference_free(ORPOTrainer, ORPOConfig, "orpo", policy_path, tokenizer, rows, profile, output_dir, seed,
                           progress, {"beta": profile.dpo.orpo_beta if beta is None else beta})


def train_simpo(policy_path, tokenizer, rows: list[dict], profile, *, output_dir="runs/simpo", seed: int = 0,
                progress: bool = True, beta: float | None = None, gamma: float | None = None) -> DirectAlignmentResult:
    """SimPO with TRL's experimental ``CPOTrainer`` (``loss_type="simpo"``, ``cpo_alpha=0``: no NLL term).

    No reference model: the reward is β × the average per-token log-probability,
    and the chosen response must lead by ``gamma`` (β = ``profile.dpo.simpo_beta``,
    γ = ``profile.dpo.simpo_gamma`` by default).
    """
    with warnings.catch_warnings():  # TRL warns, on import, that its experimental API may change
        warnings.simplefilter("ignore")
        from trl.experimental.cpo import CPOConfig, CPOTrainer

    settings = profile.dpo
    return _reference_free(CPOTrainer, CPOConfig, "simpo", policy_path, tokenizer, rows, profile, output_dir, seed,
                           progress, {"loss_type": "simpo", "cpo_alpha": 0.0,
                                      "beta": settings.simpo_beta if beta is None else beta,
                                      "simpo_gamma": settings.simpo_gamma if gamma is None else gamma})
