"""Reward modelling: train a scalar reward model on preference pairs with TRL's RewardTrainer.

The model is the SFT model with a new one-output head (:func:`reward_model_from`);
the loss is the Bradley–Terry loss (:mod:`rlhf_course.reward_modeling.loss`). The
head learns at a higher rate than the body (:func:`head_and_body_groups`).
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import torch
from transformers import AutoModelForSequenceClassification, PreTrainedModel, PreTrainedTokenizerBase

from rlhf_course.core.models import device, quiet_libraries
from rlhf_course.core.profiles import Profile
from rlhf_course.core.training import evaluating, fit, trainer_arguments, trl_config
from rlhf_course.preference_data.formats import to_reward_dataset


# ----------------------------------------------------------------------------- training


@dataclass
class RewardModelResult:
    """What ``train_reward_model`` returns: the model and how training went."""

    model: PreTrainedModel
    log_history: list[dict] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def losses(self) -> list[tuple[int, float]]:
        return [(e["step"], e["loss"]) for e in self.log_history if "loss" in e]


def reward_model_from(policy_path: str | Path, profile: Profile) -> PreTrainedModel:
    """A reward model initialised from a causal LM checkpoint (usually the SFT model).

    The transformer body is reused; the one-output ``score`` head is new.
    """
    quiet_libraries()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = AutoModelForSequenceClassification.from_pretrained(
            policy_path, num_labels=1, dtype=torch.float32, trust_remote_code=False)
    if model.config.pad_token_id is None:
        model.config.pad_token_id = model.config.eos_token_id
    return model.to(device())


def reward_config(profile: Profile, output_dir: str | Path, seed: int = 0, progress: bool = True):
    """TRL RewardConfig for a profile (the arguments every course trainer shares)."""
    from trl import RewardConfig

    return trl_config(RewardConfig, **trainer_arguments(profile, profile.rm, output_dir, seed, progress),
                      weight_decay=profile.rm.weight_decay)


def head_and_body_groups(model: torch.nn.Module, learning_rate: float, head_lr_multiplier: float) -> list[dict]:
    """Optimizer parameter groups: the reward head at ``learning_rate × head_lr_multiplier``, the rest at ``learning_rate``.

    The body arrives trained (it is the SFT model) and needs only small steps;
    the ``score`` head starts from random numbers and has everything to learn.
    With one learning rate for both, the head is the bottleneck of a short run:
    on the tiny profile a ten times faster head is worth several points of
    accuracy against gold.
    """
    head, body = [], []
    for name, parameter in model.named_parameters():
        if parameter.requires_grad:
            (head if "score" in name.split(".") else body).append(parameter)
    return [{"params": body, "lr": learning_rate},
            {"params": head, "lr": learning_rate * head_lr_multiplier}]


def _with_head_lr(trainer_class):
    """``trainer_class`` with one change: its optimizer gives the reward head its own learning rate.

    Used with TRL's ``RewardTrainer`` and with ``transformers.Trainer`` (for
    outcome reward models); set ``head_lr_multiplier`` on the instance.
    """

    class HeadLRTrainer(trainer_class):
        head_lr_multiplier: float = 1.0

        def create_optimizer(self, *args, **kwargs):
            if self.optimizer is None:
                groups = head_and_body_groups(self.model, self.args.learning_rate, self.head_lr_multiplier)
                self.optimizer = torch.optim.AdamW(groups, betas=(self.args.adam_beta1, self.args.adam_beta2),
                                                   eps=self.args.adam_epsilon, weight_decay=self.args.weight_decay)
            return self.optimizer

    HeadLRTrainer.__name__ = f"HeadLR{trainer_class.__name__}"
    return HeadLRTrainer


def reward_trainer(model, tokenizer, rows: list[dict], profile: Profile, output_dir: str | Path,
                   seed: int = 0, progress: bool = True):
    """A TRL ``RewardTrainer`` on ``rows`` (LoRA adapters when the profile asks for them).

    The only departure from TRL's defaults is the reward head's learning rate,
    ``profile.rm.head_lr_multiplier`` times the body's (see :func:`head_and_body_groups`).
    """
    from peft import LoraConfig
    from trl import RewardTrainer

    peft_config = None
    if profile.lora:
        peft_config = LoraConfig(r=profile.lora_rank, lora_alpha=2 * profile.lora_rank, target_modules="all-linear",
                                 task_type="SEQ_CLS", modules_to_save=["score"])
    trainer = _with_head_lr(RewardTrainer)(
        model=model, args=reward_config(profile, output_dir, seed, progress),
        train_dataset=to_reward_dataset(rows, tokenizer), processing_class=tokenizer, peft_config=peft_config)
    trainer.head_lr_multiplier = profile.rm.head_lr_multiplier
    return trainer


def train_reward_model(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    rows: list[dict],
    profile: Profile,
    *,
    output_dir: str | Path = "runs/rm",
    seed: int = 0,
    progress: bool = True,
) -> RewardModelResult:
    """Train a reward model on preference ``rows`` (prompt/chosen/rejected) with TRL.

    Saves the final model under ``output_dir/final`` and resumes from the last
    checkpoint when the profile writes checkpoints.
    """
    start = time.perf_counter()
    quiet_libraries()
    trainer = reward_trainer(model, tokenizer, rows, profile, output_dir, seed, progress)
    trained, _ = fit(trainer, tokenizer, output_dir, profile.lora, progress)
    return RewardModelResult(trained, trainer.state.log_history, time.perf_counter() - start)


def trl_loss_on_batch(model, tokenizer, rows: list[dict], profile: Profile) -> tuple[torch.Tensor, ...]:
    """TRL's own loss on one batch of ``rows``, with the rewards it was computed from.

    Returns ``(loss, chosen_rewards, rejected_rewards)``; the lab's check uses it
    to compare a from-scratch Bradley–Terry loss with ``RewardTrainer``'s.
    """
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        trainer = reward_trainer(model, tokenizer, rows, profile, tmp, progress=False)
        batch = trainer.data_collator([trainer.train_dataset[i] for i in range(len(rows))])
        batch = {k: v.to(model.device) for k, v in batch.items()}
        with evaluating(model):
            loss = trainer.compute_loss(trainer.model, dict(batch))
            rewards = trainer.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        chosen, rejected = torch.chunk(rewards.squeeze(-1), 2)
    return loss, chosen, rejected
