"""Outcome reward models (ORMs): a reward model for answers a checker can verify.

No pairs and no annotators: each response to an arithmetic or transform
prompt is labelled correct or not by the toy world's checker, and the model
learns P(correct) with binary cross-entropy.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

from datasets import Dataset
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from rlhf_course.core.models import quiet_libraries
from rlhf_course.core.profiles import Profile
from rlhf_course.core.sampling import chat_prompt
from rlhf_course.core.training import fit, trainer_arguments
from rlhf_course.reward_modeling.train import RewardModelResult, _with_head_lr, reward_model_from
from rlhf_course.toyworld import make_prompts


# ----------------------------------------------------------------------------- outcome reward models


def verifiable_examples(split: str, n: int, seed: int = 0) -> list[dict]:
    """Responses to verifiable prompts (arithmetic, transform) labelled by the checker.

    Each row is ``{"prompt", "response", "correct", "family"}`` with ``correct``
    1.0 when :func:`~rlhf_course.toyworld.verify` finds the exact answer. No
    annotator is involved: the label is the outcome, which is what an outcome
    reward model (ORM) learns to predict.
    """
    import random

    from rlhf_course.toyworld import sample_response, verify

    rng = random.Random(f"orm/{split}/{seed}")
    rows = []
    for prompt in make_prompts(split, n, seed=seed, families=("arithmetic", "transform")):
        response = sample_response(prompt, rng)
        rows.append({"prompt": prompt.text, "response": response, "correct": float(verify(prompt, response)),
                     "family": prompt.family})
    return rows


def outcome_reward_model_from(policy_path: str | Path, profile: Profile) -> PreTrainedModel:
    """Like :func:`reward_model_from`, but the head's output is a logit of P(correct), trained with BCE."""
    model = reward_model_from(policy_path, profile)
    model.config.problem_type = "multi_label_classification"  # one output + float label: BCE with logits
    return model


def _orm_dataset(rows: list[dict], tokenizer: PreTrainedTokenizerBase, max_length: int) -> Dataset:
    texts = [chat_prompt(tokenizer, r["prompt"]) + r["response"] + tokenizer.eos_token for r in rows]
    encoded = tokenizer(texts, add_special_tokens=False, truncation=True, max_length=max_length)
    return Dataset.from_dict({**encoded, "labels": [[r["correct"]] for r in rows]})


def train_outcome_reward_model(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    rows: list[dict],
    profile: Profile,
    *,
    epochs: float | None = None,
    output_dir: str | Path = "runs/orm",
    seed: int = 0,
    progress: bool = True,
) -> RewardModelResult:
    """Train an ORM on checker-labelled ``rows`` with the binary cross-entropy loss.

    There is no pair here: every response is scored alone, and the loss is
    ``-[c log σ(r) + (1 - c) log(1 - σ(r))]`` for the checker's label ``c``.
    A Hugging Face sequence-classification model computes exactly that when its
    ``problem_type`` is ``"multi_label_classification"``, so the plain
    ``transformers.Trainer`` trains it, with the reward model's settings
    (learning rates, batch size, epochs unless ``epochs`` is given, LoRA) from
    ``profile.rm``.
    """
    from peft import LoraConfig, get_peft_model
    from transformers import DataCollatorWithPadding, Trainer, TrainingArguments

    start = time.perf_counter()
    quiet_libraries()
    if profile.lora:
        model = get_peft_model(model, LoraConfig(
            r=profile.lora_rank, lora_alpha=2 * profile.lora_rank, target_modules="all-linear",
            task_type="SEQ_CLS", modules_to_save=["score"]))
    arguments = trainer_arguments(profile, dataclasses.replace(profile.rm, epochs=epochs or profile.rm.epochs), output_dir, seed, progress)
    arguments.pop("max_length")
    side, tokenizer.padding_side = tokenizer.padding_side, "right"
    trainer = _with_head_lr(Trainer)(
        model=model, args=TrainingArguments(**arguments), train_dataset=_orm_dataset(
            rows, tokenizer, profile.max_prompt_tokens + profile.max_new_tokens),
        data_collator=DataCollatorWithPadding(tokenizer), processing_class=tokenizer)
    trainer.head_lr_multiplier = profile.rm.head_lr_multiplier
    trained, _ = fit(trainer, tokenizer, output_dir, profile.lora, progress)
    tokenizer.padding_side = side
    return RewardModelResult(trained, trainer.state.log_history, time.perf_counter() - start)
