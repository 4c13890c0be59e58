"""Instruction tuning: supervised fine-tuning on demonstrations, with TRL's SFTTrainer.

The data are prompt–completion pairs. The prompt is rendered with the model's
chat template (one user turn plus the assistant cue) and the loss is taken on
the completion only: TRL builds labels that are -100 over the prompt, which is
the completion mask the lab asks the learner to write.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

from datasets import Dataset
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from . import runs
from .models import device, lora_config, quiet_libraries
from .profiles import Profile
from .sampling import chat_prompt
from .toyworld import make_demonstrations, make_prompts


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


def completion_labels(prompt_ids: list[int], completion_ids: list[int]) -> tuple[list[int], list[int]]:
    """Input ids and labels for completion-only loss: prompt positions get -100.

    PyTorch's cross-entropy ignores the label -100, so the model is trained to
    produce the answer, not to reproduce the user's prompt.
    """
    return prompt_ids + completion_ids, [-100] * len(prompt_ids) + list(completion_ids)


def toy_demonstrations(profile: Profile, seed: int = 0, flawed_fraction: float | None = None) -> list[dict]:
    """Toy-world demonstrations for the profile's size (rows: prompt, completion, flawed, prompt_id)."""
    prompts = make_prompts("train", profile.sft.n_demonstrations, seed=seed)
    fraction = profile.sft.flawed_fraction if flawed_fraction is None else flawed_fraction
    return make_demonstrations(prompts, flawed_fraction=fraction, seed=seed)


def chat_rows(records: list[dict], source: str = "dataset") -> list[dict]:
    """Single-turn demonstrations from chat records (``messages``: role/content dicts).

    This is the schema of hub instruction datasets such as no_robots and
    UltraChat: the first user turn becomes the prompt and the assistant turn
    that follows it the completion. A record without such a pair raises an
    error naming its row.
    """
    rows = []
    for i, record in enumerate(records):
        messages = record.get("messages")
        if not isinstance(messages, list):
            raise ValueError(f"{source}, row {i}: field 'messages' should be a list of role/content dicts; "
                             f"got {type(messages).__name__}.")
        turns = [(m.get("role"), m.get("content")) for m in messages if m.get("role") != "system"]
        if len(turns) < 2 or turns[0][0] != "user" or turns[1][0] != "assistant" or not turns[1][1]:
            raise ValueError(f"{source}, row {i}: field 'messages' needs a user turn followed by a non-empty "
                             "assistant turn; drop or fix this row.")
        rows.append({"prompt": turns[0][1], "completion": turns[1][1], "flawed": None,
                     "prompt_id": str(record.get("prompt_id", i))})
    return rows


def load_demonstrations(profile: Profile, seed: int = 0) -> list[dict]:
    """The profile's SFT data: a hub instruction dataset if it names one, else the toy world."""
    if profile.sft.dataset is None:
        return toy_demonstrations(profile, seed)
    from datasets import load_dataset

    data = load_dataset(profile.sft.dataset, split="train").shuffle(seed=seed)
    data = data.select(range(min(profile.sft.n_demonstrations, len(data))))
    return chat_rows(list(data), source=profile.sft.dataset)


def to_sft_dataset(rows: list[dict], tokenizer: PreTrainedTokenizerBase) -> Dataset:
    """A TRL prompt–completion dataset with the chat template applied to each prompt."""
    return Dataset.from_list([{"prompt": chat_prompt(tokenizer, r["prompt"]), "completion": r["completion"]}
                              for r in rows])


def trainer_arguments(profile: Profile, stage, output_dir: str | Path, seed: int = 0,
                      progress: bool = True) -> dict:
    """Arguments every TRL trainer of the course shares, from a profile and its stage settings.

    ``stage`` is ``profile.sft``, ``profile.rm`` and so on: sizes, learning rate
    and checkpointing. Precision follows the profile on a GPU (fp16 on a T4,
    bf16 where supported) and is float32 on a CPU; nothing is sent to logging
    services.
    """
    on_gpu = device().type == "cuda"
    return dict(
        output_dir=str(output_dir), seed=seed, data_seed=seed,
        num_train_epochs=stage.epochs, per_device_train_batch_size=stage.batch_size,
        gradient_accumulation_steps=stage.grad_accum, learning_rate=stage.learning_rate,
        lr_scheduler_type="cosine", warmup_steps=0.05,
        max_length=profile.max_prompt_tokens + profile.max_new_tokens,
        bf16=on_gpu and profile.dtype == "bfloat16", fp16=on_gpu and profile.dtype == "float16",
        use_cpu=not on_gpu, logging_steps=5, report_to=[], disable_tqdm=not progress,
        save_strategy="steps" if stage.checkpoint_steps else "no", save_steps=stage.checkpoint_steps or 500,
        save_total_limit=2, dataloader_num_workers=0,
    )


def sft_config(profile: Profile, output_dir: str | Path, seed: int = 0, progress: bool = True):
    """TRL SFTConfig for a profile: the shared arguments plus completion-only loss."""
    from trl import SFTConfig

    with warnings.catch_warnings():  # TRL still passes a deprecated transformers argument
        warnings.simplefilter("ignore", FutureWarning)
        return SFTConfig(**trainer_arguments(profile, profile.sft, output_dir, seed, progress),
                         completion_only_loss=True, packing=False)


def last_checkpoint(output_dir: str | Path) -> str | None:
    """The newest ``checkpoint-*`` folder under ``output_dir``, if a run left one."""
    from transformers.trainer_utils import get_last_checkpoint

    return get_last_checkpoint(str(output_dir)) if Path(output_dir).is_dir() else None


def fit(trainer, tokenizer: PreTrainedTokenizerBase, output_dir: str | Path, lora: bool,
        progress: bool = True) -> tuple[PreTrainedModel, str | None]:
    """Run a TRL trainer the way every stage of the course does.

    Resumes from the last checkpoint under ``output_dir`` if an interrupted run
    left one, merges LoRA adapters back so the next stage gets a plain model,
    and saves the result under ``output_dir/final`` as safetensors (rank 0
    only). Returns the trained model and the checkpoint it resumed from.
    """
    if not progress:  # TRL prints every log dict when tqdm is off; keep quiet instead
        from transformers.trainer_callback import PrinterCallback
        trainer.remove_callback(PrinterCallback)
    resume = last_checkpoint(output_dir)
    trainer.train(resume_from_checkpoint=resume)
    trained = trainer.model.merge_and_unload() if lora else trainer.model
    trained.eval()
    if trainer.is_world_process_zero():
        trained.save_pretrained(Path(output_dir) / "final", safe_serialization=True)
        tokenizer.save_pretrained(Path(output_dir) / "final")
    return trained, resume


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




def sft_settings(profile: Profile, seed: int = 0) -> dict:
    """Everything that changes the SFT model of ``profile`` and ``seed``: the key of its shared cache."""
    from .models import TinySpec

    base = {"model": profile.model, **({"tiny": asdict(TinySpec())} if profile.model == "tiny" else {})}
    shape = {key: getattr(profile, key) for key in ("dtype", "lora", "lora_rank", "max_prompt_tokens",
                                                     "max_new_tokens")}
    return {**base, **shape, "seed": seed, "sft": runs.model_settings(profile.sft)}


def sft_checkpoint(profile: Profile, seed: int = 0, output_dir: str | Path | None = None,
                   progress: bool = True) -> Path:
    """The folder of an SFT model for ``profile`` and ``seed``: trained once, then reused.

    Every later stage (reward model, PPO, DPO, ...) starts from the SFT model.
    A lab that needs one calls this: the first call trains it with
    :func:`train_sft` in the shared cache (``rlhf_course.runs.shared_dir``,
    keyed by :func:`sft_settings`), later calls, from any lab or from
    ``rlhf-course pipeline``, find it there and return at once. With
    ``output_dir`` given, it trains there instead, and trains again when the
    settings saved there differ. The run's training log is saved beside the
    model (:func:`load_sft_record`).
    """
    from .models import load_model

    def train(folder: Path) -> dict:
        model, tokenizer = load_model(profile, progress=progress)
        result = train_sft(model, tokenizer, load_demonstrations(profile, seed), profile, output_dir=folder,
                           seed=seed, progress=progress)
        return {"log_history": result.log_history, "train_seconds": result.seconds,
                "world_size": result.world_size}

    return runs.cached("sft", sft_settings(profile, seed), train, seed, output_dir)[0]


def load_trained_sft(path: str | Path, profile: Profile) -> SFTResult:
    """An SFT model saved by :func:`sft_checkpoint`, with its training log: what :func:`train_sft` returned then."""
    record = runs.record_of(path, "rlhf_course.sft.sft_checkpoint")
    return SFTResult(load_policy(path, profile), record["log_history"], record["train_seconds"],
                     record.get("world_size", 1))


def load_policy(path: str | Path, profile: Profile) -> PreTrainedModel:
    """A saved policy (the SFT model, or any stage's ``final`` folder) on the profile's device and dtype."""
    import torch
    from transformers import AutoModelForCausalLM

    from .models import torch_dtype

    if not (Path(path) / "config.json").exists():
        raise FileNotFoundError(f"No saved model at {path}. Train the stage that writes it first "
                                "(for the SFT model: rlhf_course.sft.sft_checkpoint, or `rlhf-course pipeline`).")
    on_gpu = device().type == "cuda"
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch_dtype(profile) if on_gpu else torch.float32,
                                                 trust_remote_code=False)
    return model.to(device()).eval()
