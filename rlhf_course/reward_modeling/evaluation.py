"""Scoring with a reward model, and measuring it against the truth.

A trained reward model becomes a reward function ``(prompts, responses) ->
rewards`` (:func:`reward_function`, :func:`load_reward_function`) for best-of-n
and the RL stages. :func:`evaluate_reward_model` measures it on held-out pairs:
accuracy against the gold reward and against the labels, and the spurious
correlations (length, a stock phrase) it may have learned; :func:`calibration_curve`
and :func:`auc` say how far its probabilities can be trusted.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from transformers import AutoModelForSequenceClassification, PreTrainedModel, PreTrainedTokenizerBase

from rlhf_course.core.models import device
from rlhf_course.core.profiles import Profile
from rlhf_course.core.sampling import chat_prompt
from rlhf_course.toyworld import words


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
                                "`rlhf-course pipeline`, or rlhf_course.reward_modeling.train_reward_model.")
    return reward_function(load_reward_model(path), tokenizer, profile.eval_batch_size)


def load_reward_model(path: str | Path) -> PreTrainedModel:
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

    For example DPO's implicit reward (``direct_alignment.implicit_reward_function``), so a
    policy can be judged as a reward model on the same pairs.
    """
    from rlhf_course.toyworld import STOCK_PHRASE

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


def auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve: P(a random correct response outscores a random wrong one), ties half."""
    scores, labels = np.asarray(scores, dtype=float), np.asarray(labels) > 0.5
    pos, neg = scores[labels], scores[~labels]
    if len(pos) == 0 or len(neg) == 0:
        raise ValueError("auc needs at least one correct and one wrong response.")
    wins = (pos[:, None] > neg[None, :]).mean() + 0.5 * (pos[:, None] == neg[None, :]).mean()
    return float(wins)
