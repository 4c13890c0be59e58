"""The TRL set-up every trainer of the course shares.

:func:`trainer_arguments` turns a profile and its stage settings into the
arguments of any TRL trainer (sizes, learning rate, precision, checkpoints);
:func:`fit` runs a trainer the way every stage does (resume from the last
checkpoint, merge LoRA adapters, save ``final``); :func:`lora_config` is the
adapters a profile asks for; :func:`trl_config` builds a TRL config without
TRL's deprecation noise; :func:`evaluating` lets a lab ask a trainer for its
loss on one batch without training.
"""

from __future__ import annotations

import time
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, TypeVar

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from rlhf_course.core.models import device
from rlhf_course.core.profiles import Profile

Config = TypeVar("Config")  # a TRL config class such as DPOConfig


def trainer_arguments(profile: Profile, stage, output_dir: str | Path, seed: int = 0,
                      progress: bool = True) -> dict:
    """Arguments every TRL trainer of the course shares, from a profile and its stage settings.

    ``stage`` is ``profile.sft``, ``profile.rm`` and so on: sizes, learning rate
    and checkpointing. Precision follows the profile on a GPU (fp16 on a T4,
    bf16 where supported) and is float32 on a CPU; nothing is sent to logging
    services. Gradient checkpointing (TRL's default: activations recomputed in
    the backward pass to save memory) is kept on a GPU and turned off on a CPU,
    where memory is not the limit and the recomputation costs about a quarter
    of every step for the same gradients.
    """
    on_gpu = device().type == "cuda"
    return dict(
        output_dir=str(output_dir), seed=seed, data_seed=seed,
        num_train_epochs=stage.epochs, per_device_train_batch_size=stage.batch_size,
        gradient_accumulation_steps=stage.grad_accum, learning_rate=stage.learning_rate,
        lr_scheduler_type="cosine", warmup_steps=0.05,
        max_length=profile.max_prompt_tokens + profile.max_new_tokens,
        bf16=on_gpu and profile.dtype == "bfloat16", fp16=on_gpu and profile.dtype == "float16",
        gradient_checkpointing=on_gpu,
        use_cpu=not on_gpu, logging_steps=5, report_to=[], disable_tqdm=not progress,
        save_strategy="steps" if stage.checkpoint_steps else "no", save_steps=stage.checkpoint_steps or 500,
        save_total_limit=2, dataloader_num_workers=0,
    )


def trl_config(config_cls: type[Config], **kwargs: Any) -> Config:
    """``config_cls(**kwargs)`` (a TRL config such as ``DPOConfig``), without the FutureWarning TRL triggers.

    TRL still passes transformers an argument that transformers has deprecated;
    the warning says nothing a learner can act on.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        return config_cls(**kwargs)


def last_checkpoint(output_dir: str | Path) -> str | None:
    """The newest complete ``checkpoint-<step>`` folder under ``output_dir``, if a run left one.

    transformers writes a checkpoint's ``trainer_state.json`` last, so a
    folder without a readable one is what a kill during the write left
    behind; it is skipped, and the run resumes from the checkpoint before.
    """
    import json
    import re

    if not Path(output_dir).is_dir():
        return None
    found = []
    for path in Path(output_dir).iterdir():
        match = re.fullmatch(r"checkpoint-(\d+)", path.name)
        try:
            if match and path.is_dir():
                json.loads((path / "trainer_state.json").read_text())
                found.append((int(match.group(1)), path))
        except (OSError, ValueError):  # missing or cut short: an incomplete checkpoint
            continue
    return str(max(found)[1]) if found else None


def _progress_callback():
    """A trainer callback that shows one progress bar and nothing else, and leaves nothing behind.

    transformers would print a table of every logged loss in a notebook (its
    ``NotebookProgressCallback``) and every log dict on a terminal. The course
    plots the log instead (``trainer.state.log_history``), so while training
    this shows one line, the step and the last loss: in Jupyter an HTML
    ``<progress>`` bar updated in place and removed at the end (the saved
    notebook keeps no log); elsewhere a tqdm bar on stderr, cleared at the end.
    """
    import html
    import sys

    from transformers import TrainerCallback

    from rlhf_course.core.runs import in_notebook

    class CourseProgress(TrainerCallback):
        def __init__(self) -> None:
            self.bar = self.display = None
            self.loss = ""
            self.shown = 0.0

        def on_train_begin(self, args, state, control, **kwargs):
            if not state.is_world_process_zero:
                return
            if in_notebook():
                from IPython.display import HTML, display

                self.display = display(HTML(""), display_id=True)
            else:
                from tqdm import tqdm

                self.bar = tqdm(total=state.max_steps, initial=state.global_step, desc="training", leave=False,
                                file=sys.stderr, dynamic_ncols=True)

        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs and "loss" in logs:
                self.loss = f"loss {logs['loss']:.4g}"
                if self.bar is not None:
                    self.bar.set_postfix_str(self.loss, refresh=False)

        def on_step_end(self, args, state, control, **kwargs):
            if self.bar is not None:
                self.bar.update(state.global_step - self.bar.n)
            elif self.display is not None and (time.monotonic() - self.shown > 0.5
                                               or state.global_step == state.max_steps):
                from IPython.display import HTML

                self.shown = time.monotonic()
                self.display.update(HTML(
                    f'<progress value="{state.global_step}" max="{state.max_steps}"></progress> '
                    f"<code>step {state.global_step}/{state.max_steps} {html.escape(self.loss)}</code>"))

        def on_train_end(self, args, state, control, **kwargs):
            if self.bar is not None:
                self.bar.close()
            if self.display is not None:
                from IPython.display import HTML

                self.display.update(HTML(""))
            self.bar = self.display = None

    return CourseProgress()


def fit(trainer, tokenizer: PreTrainedTokenizerBase, output_dir: str | Path, lora: bool,
        progress: bool = True) -> tuple[PreTrainedModel, str | None]:
    """Run a TRL trainer the way every stage of the course does.

    Resumes from the last checkpoint under ``output_dir`` if an interrupted run
    left one, merges LoRA adapters back so the next stage gets a plain model,
    and saves the result under ``output_dir/final`` as safetensors (rank 0
    only). Returns the trained model and the checkpoint it resumed from.

    transformers' own progress and log printers (a table of every logged loss
    in a notebook, every log dict on a terminal) are replaced by one progress
    bar that leaves nothing behind, or by nothing with ``progress=False``; the
    log is in ``trainer.state.log_history``, for a figure.
    """
    from transformers.trainer_callback import PrinterCallback, ProgressCallback
    from transformers.utils.notebook import NotebookProgressCallback

    for printer in (PrinterCallback, ProgressCallback, NotebookProgressCallback):
        trainer.remove_callback(printer)
    if progress:
        trainer.add_callback(_progress_callback())
    if lora and is_sharded(trainer):  # before training, not after it
        raise ValueError("LoRA adapters cannot be merged into weights sharded by DeepSpeed ZeRO or FSDP. Launch a "
                         "LoRA profile with configs/accelerate/ddp.yaml, or train every weight (--set lora=false).")
    resume = last_checkpoint(output_dir)
    if resume is not None and trainer.is_world_process_zero():  # one line, so the learner knows the run continued
        from rlhf_course.core.runs import display_path

        print(f"{type(trainer).__name__}: resuming from {display_path(resume)}; delete "
              f"{display_path(output_dir)} to train it again from the start.", flush=True)
    trainer.train(resume_from_checkpoint=resume)
    if is_sharded(trainer):
        return save_sharded(trainer, tokenizer, output_dir), resume
    trained = trainer.model.merge_and_unload() if lora else trainer.model
    trained.eval()
    if trainer.is_world_process_zero():
        trained.save_pretrained(Path(output_dir) / "final", safe_serialization=True)
        tokenizer.save_pretrained(Path(output_dir) / "final")
    return trained, resume


def is_sharded(trainer) -> bool:
    """True when the trainer runs under DeepSpeed or FSDP (configs/accelerate/zero*.yaml, fsdp2.yaml)."""
    return bool(getattr(trainer, "is_deepspeed_enabled", False) or getattr(trainer, "is_fsdp_enabled", False))


def save_sharded(trainer, tokenizer: PreTrainedTokenizerBase, output_dir: str | Path) -> PreTrainedModel:
    """Save ``final`` from a sharded trainer: every rank calls ``trainer.save_model``, which gathers the shards
    (ZeRO-3's 16-bit gather, FSDP's full state dict) and writes one safetensors model on rank 0.

    A model's own ``save_pretrained`` would write each rank's empty shard
    placeholders under ZeRO-3. (LoRA adapters cannot be merged into sharded
    weights: :func:`fit` refuses LoRA there and points to DDP.)
    """
    final = Path(output_dir) / "final"
    trainer.save_model(str(final))
    if trainer.is_world_process_zero():
        tokenizer.save_pretrained(final)
    trainer.model.eval()
    return trainer.model


def lora_config(profile: Profile):
    """PEFT LoRA settings for a profile: adapters on every linear layer."""
    from peft import LoraConfig

    return LoraConfig(r=profile.lora_rank, lora_alpha=2 * profile.lora_rank, lora_dropout=0.0,
                      target_modules="all-linear", task_type="CAUSAL_LM")


@contextmanager
def evaluating(model: torch.nn.Module) -> Iterator[None]:
    """Inside the block: ``model`` in eval mode (no dropout) and no gradient; its mode is restored after.

    For asking a trainer what loss it computes on one batch (the labs' checks
    compare a from-scratch loss with TRL's) without training or changing the model.
    """
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        model.train(was_training)
