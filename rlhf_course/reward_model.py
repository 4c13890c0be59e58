"""Reward modelling: a scalar head on a language model, trained on preferences.

A reward model reads a prompt and a response and returns one number. It is a
sequence-classification model with a single output: the language model's
hidden state at the last token goes through a linear head. Trained with the
Bradley–Terry loss on (chosen, rejected) pairs, the difference of two rewards
becomes the log-odds that people prefer one response to the other.

Training uses TRL's ``RewardTrainer``; the loss also exists here from scratch,
and a test shows the two agree. Because the toy world knows the gold reward,
the reward model can be measured against the truth, not only against the
annotators' noisy labels.
"""

from __future__ import annotations

import dataclasses
import math
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from datasets import Dataset
from transformers import AutoModelForSequenceClassification, PreTrainedModel, PreTrainedTokenizerBase

from . import runs
from .data import check_training_rows, field_text
from .models import device, quiet_libraries
from .profiles import Profile
from .sampling import chat_prompt
from .sft import fit, trainer_arguments
from .toyworld import Annotator, default_annotators, make_preferences, make_prompts, words

# ----------------------------------------------------------------------------- the loss


def bradley_terry_loss(
    chosen_rewards: torch.Tensor, rejected_rewards: torch.Tensor, margin: torch.Tensor | float | None = None
) -> torch.Tensor:
    """Mean of −log σ(r_chosen − r_rejected − margin) over the batch.

    This is the negative log-likelihood of the labels under the Bradley–Terry
    model. ``margin`` (Llama 2's variant) asks the reward gap to exceed a
    per-pair margin before the loss lets go. ``logsigmoid`` keeps it finite
    for large gaps, where ``log(sigmoid(x))`` would underflow to −inf.
    """
    gap = chosen_rewards - rejected_rewards
    if margin is not None:
        gap = gap - margin
    return -F.logsigmoid(gap).mean()


# ----------------------------------------------------------------------------- data


def toy_preferences(
    profile: Profile, split: str = "train", n: int | None = None, seed: int = 0,
    annotators: list[Annotator] | None = None,
) -> list[dict]:
    """Toy-world preference pairs labelled by the simulated annotators (TRL standard format + metadata)."""
    n = n or (profile.rm.n_pairs if split == "train" else profile.rm.n_eval_pairs)
    annotators = annotators or default_annotators(profile.rm.annotator_temperature)
    return make_preferences(make_prompts(split, n, seed=seed), annotators, seed=seed)


def to_reward_dataset(rows: list[dict], tokenizer: PreTrainedTokenizerBase) -> Dataset:
    """A TRL preference dataset: the chat template applied to each prompt, responses as text.

    The rows are checked first with the course's one validator
    (:func:`rlhf_course.data.check_training_rows`), so a missing field, an
    empty or identical pair, or a mix of formats is an error naming the row
    and the field. Standard and conversational rows are both accepted; a
    conversational response becomes its text.
    """
    rows = check_training_rows(rows)
    return Dataset.from_list([{"prompt": chat_prompt(tokenizer, r["prompt"]), "chosen": field_text(r["chosen"]),
                               "rejected": field_text(r["rejected"])} for r in rows])


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

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        return RewardConfig(**trainer_arguments(profile, profile.rm, output_dir, seed, progress),
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
        model.eval()
        with torch.no_grad():
            loss = trainer.compute_loss(trainer.model, dict(batch))
            rewards = trainer.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        chosen, rejected = torch.chunk(rewards.squeeze(-1), 2)
    return loss, chosen, rejected


# ----------------------------------------------------------------------------- scoring and measuring


@torch.no_grad()
def score(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, prompts: list[str], responses: list[str],
    batch_size: int = 64,
) -> torch.Tensor:
    """Rewards of ``responses`` to ``prompts``, formatted exactly as in training; shape ``(N,)``."""
    model.eval()
    side, tokenizer.padding_side = tokenizer.padding_side, "right"
    texts = [chat_prompt(tokenizer, p) + r + tokenizer.eos_token for p, r in zip(prompts, responses, strict=True)]
    out = []
    for start in range(0, len(texts), batch_size):
        enc = tokenizer(texts[start:start + batch_size], return_tensors="pt", padding=True,
                        add_special_tokens=False).to(model.device)
        out.append(model(**enc).logits.squeeze(-1).float().cpu())
    tokenizer.padding_side = side
    return torch.cat(out)


def load_reward_function(path: str | Path, tokenizer: PreTrainedTokenizerBase, profile: Profile):
    """The reward model saved at ``path`` (e.g. ``runs/tiny-seed0/rm/final``) as a reward function."""
    if not (Path(path) / "config.json").exists():
        raise FileNotFoundError(f"No reward model at {path}. Train one first: the rm stage of "
                                "`rlhf-course pipeline`, or rlhf_course.reward_model.train_reward_model.")
    return reward_function(_load_saved_reward_model(path), tokenizer, profile.eval_batch_size)


def _load_saved_reward_model(path: str | Path) -> PreTrainedModel:
    """A saved reward model in float32 on the course's device, ready to score."""
    model = AutoModelForSequenceClassification.from_pretrained(path, dtype=torch.float32, trust_remote_code=False)
    return model.to(device()).eval()


def reward_function(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, batch_size: int = 256):
    """The reward model as a function ``(prompts, responses) -> rewards`` for RL stages and best-of-n."""

    def reward_fn(prompts: list[str], responses: list[str]) -> torch.Tensor:
        return score(model, tokenizer, prompts, responses, batch_size)

    return reward_fn


@dataclass
class RewardModelReport:
    """How a reward model does on held-out pairs, against the truth and the labels."""

    accuracy_gold: float          # agrees with the gold reward's ordering (pairs with equal gold excluded)
    accuracy_labels: float        # agrees with the annotators' labels
    label_accuracy_gold: float    # how often the annotators' labels themselves agree with gold
    length_corr: float            # correlation of reward with response length (words)
    phrase_effect: float          # mean reward with the stock phrase minus without
    chosen_rewards: np.ndarray
    rejected_rewards: np.ndarray
    gold_margins: np.ndarray

    def as_dict(self) -> dict[str, float]:
        return {"rm_accuracy_gold": self.accuracy_gold, "rm_accuracy_labels": self.accuracy_labels,
                "label_accuracy_gold": self.label_accuracy_gold, "rm_length_corr": self.length_corr,
                "rm_phrase_effect": self.phrase_effect}


def evaluate_reward_model(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, rows: list[dict], batch_size: int = 64
) -> RewardModelReport:
    """Accuracy against gold and labels, and the spurious correlations, on held-out ``rows``."""
    return evaluate_rewards(reward_function(model, tokenizer, batch_size), rows)


def evaluate_rewards(reward_fn, rows: list[dict]) -> RewardModelReport:
    """:func:`evaluate_reward_model` for any reward function ``(prompts, responses) -> rewards``.

    For example DPO's implicit reward (``dpo.implicit_reward_function``), so a
    policy can be judged as a reward model on the same pairs.
    """
    from .toyworld import STOCK_PHRASE

    prompts = [r["prompt"] for r in rows]
    chosen = reward_fn(prompts, [r["chosen"] for r in rows]).numpy()
    rejected = reward_fn(prompts, [r["rejected"] for r in rows]).numpy()
    margins = np.array([r["gold_margin"] for r in rows])
    decided = margins != 0
    agree = (chosen > rejected) == (margins > 0)
    responses = [r["chosen"] for r in rows] + [r["rejected"] for r in rows]
    rewards = np.concatenate([chosen, rejected])
    lengths = np.array([len(words(t)) for t in responses], dtype=float)
    phrase = np.array([STOCK_PHRASE in t for t in responses])
    return RewardModelReport(
        accuracy_gold=float(agree[decided].mean()),
        accuracy_labels=float((chosen > rejected).mean()),
        label_accuracy_gold=float((margins[decided] > 0).mean()),
        length_corr=float(np.corrcoef(rewards, lengths)[0, 1]),
        phrase_effect=float(rewards[phrase].mean() - rewards[~phrase].mean()) if phrase.any() and (~phrase).any()
        else math.nan,
        chosen_rewards=chosen, rejected_rewards=rejected, gold_margins=margins,
    )


def calibration_curve(report: RewardModelReport, bins: int = 10) -> list[dict]:
    """Predicted P(chosen ≻ rejected) against how often gold agrees, per probability bin.

    The model's probability is σ(r_chosen − r_rejected); the observed frequency
    is the share of pairs in the bin whose gold reward orders them the same
    way. A calibrated model lies on the diagonal.
    """
    decided = report.gold_margins != 0
    p = 1 / (1 + np.exp(-(report.chosen_rewards - report.rejected_rewards)[decided]))
    truth = (report.gold_margins[decided] > 0).astype(float)
    edges = np.linspace(0, 1, bins + 1)
    rows = []
    for lo, hi in zip(edges[:-1], edges[1:]):
        inside = (p >= lo) & ((p < hi) | (hi == 1.0))
        if inside.any():
            rows.append({"predicted": float(p[inside].mean()), "observed": float(truth[inside].mean()),
                         "pairs": int(inside.sum())})
    return rows


# ----------------------------------------------------------------------------- outcome reward models


def verifiable_examples(split: str, n: int, seed: int = 0) -> list[dict]:
    """Responses to verifiable prompts (arithmetic, transform) labelled by the checker.

    Each row is ``{"prompt", "response", "correct", "family"}`` with ``correct``
    1.0 when :func:`~rlhf_course.toyworld.verify` finds the exact answer. No
    annotator is involved: the label is the outcome, which is what an outcome
    reward model (ORM) learns to predict.
    """
    import random

    from .toyworld import sample_response, verify

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


def auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve: P(a random correct response outscores a random wrong one), ties half."""
    scores, labels = np.asarray(scores, dtype=float), np.asarray(labels) > 0.5
    pos, neg = scores[labels], scores[~labels]
    if len(pos) == 0 or len(neg) == 0:
        raise ValueError("auc needs at least one correct and one wrong response.")
    wins = (pos[:, None] > neg[None, :]).mean() + 0.5 * (pos[:, None] == neg[None, :]).mean()
    return float(wins)


def reward_model_checkpoint(profile: Profile, seed: int = 0, output_dir: str | Path | None = None,
                            progress: bool = True) -> Path:
    """The folder of a reward model for ``profile`` and ``seed``: trained once on toy-world preferences, then reused.

    Like :func:`rlhf_course.sft.sft_checkpoint`, on which it builds: the
    reward model starts from that SFT model, is trained by
    :func:`train_reward_model` on ``toy_preferences(profile, "train", seed=seed)``,
    and is saved in the shared cache (``rlhf_course.runs``) with the log of its
    training, or under ``output_dir`` if given. The Reward Modeling lab trains
    it (or finds it), and every later lab and ``rlhf-course pipeline`` get the
    same reward model here; :func:`load_trained_reward_model` reads it back
    with its loss curve.
    """
    from transformers import AutoTokenizer

    from .sft import sft_checkpoint, sft_settings

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
    record = runs.record_of(path, "rlhf_course.reward_model.reward_model_checkpoint")
    return RewardModelResult(_load_saved_reward_model(Path(path)), record["log_history"], record["train_seconds"])
