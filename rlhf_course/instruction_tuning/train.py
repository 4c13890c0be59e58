"""Instruction tuning: supervised fine-tuning on demonstrations, with TRL's SFTTrainer.

The data are prompt–completion pairs. The prompt is rendered with the model's
chat template (one user turn plus the assistant cue) and the loss is taken on
the completion only: TRL builds labels that are -100 over the prompt, which is
the completion mask the lab asks the learner to write.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from transformers import PreTrainedModel, PreTrainedTokenizerBase

from rlhf_course.core.models import quiet_libraries
from rlhf_course.core.profiles import Profile
from rlhf_course.core.training import fit, lora_config, trainer_arguments, trl_config
from rlhf_course.instruction_tuning.data import to_sft_dataset


@dataclass
class SFTResult:
    """What ``train_sft`` returns: the tuned model and how training went."""

    model: PreTrainedModel
    log_history: list[dict] = field(default_factory=list)
    seconds: float = 0.0
    world_size: int = 1  # data-parallel processes that trained together
    resumed_from: str | None = None  # the checkpoint an interrupted run continued from

    @property
    def losses(self) -> list[tuple[int, float]]:
        """(step, training loss) pairs, for a loss curve."""
        return [(e["step"], e["loss"]) for e in self.log_history if "loss" in e]


def sft_config(profile: Profile, output_dir: str | Path, seed: int = 0, progress: bool = True):
    """TRL SFTConfig for a profile: the shared arguments plus completion-only loss."""
    from trl import SFTConfig

    return trl_config(SFTConfig, **trainer_arguments(profile, profile.sft, output_dir, seed, progress),
                      completion_only_loss=True, packing=False)


def train_sft(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    rows: list[dict],
    profile: Profile,
    *,
    output_dir: str | Path = "runs/sft",
    seed: int = 0,
    progress: bool = True,
) -> SFTResult:
    """Fine-tune ``model`` on prompt–completion ``rows`` with TRL's SFTTrainer.

    With ``profile.lora`` the trainer adds LoRA adapters, which are merged back
    at the end so every later stage receives a plain model. The final model is
    saved under ``output_dir/final`` as safetensors.
    """
    from trl import SFTTrainer

    start = time.perf_counter()
    quiet_libraries()
    trainer = SFTTrainer(
        model=model, args=sft_config(profile, output_dir, seed, progress),
        train_dataset=to_sft_dataset(rows, tokenizer), processing_class=tokenizer,
        peft_config=lora_config(profile) if profile.lora else None,
    )
    tuned, resume = fit(trainer, tokenizer, output_dir, profile.lora, progress)
    return SFTResult(tuned, trainer.state.log_history, time.perf_counter() - start, trainer.args.world_size,
                     resume)
