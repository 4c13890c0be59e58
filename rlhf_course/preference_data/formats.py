"""Preference rows in the formats TRL's trainers read.

Rows are checked first with the course's one validator
(:func:`rlhf_course.preference_data.data.check_training_rows`): standard and
conversational rows are accepted, and a malformed row is an error naming the
row and the field. :func:`to_reward_dataset` gives paired data (the reward
model, DPO and its relatives); :func:`unpaired_dataset` gives KTO's.
"""


from __future__ import annotations

from datasets import Dataset
from transformers import PreTrainedTokenizerBase

from rlhf_course.core.sampling import chat_prompt
from rlhf_course.preference_data.data import check_training_rows, field_text


def to_reward_dataset(rows: list[dict], tokenizer: PreTrainedTokenizerBase) -> Dataset:
    """A TRL preference dataset: the chat template applied to each prompt, responses as text.

    The rows are checked first with the course's one validator
    (:func:`rlhf_course.preference_data.check_training_rows`), so a missing field, an
    empty or identical pair, or a mix of formats is an error naming the row
    and the field. Standard and conversational rows are both accepted; a
    conversational response becomes its text.
    """
    rows = check_training_rows(rows)
    return Dataset.from_list([{"prompt": chat_prompt(tokenizer, r["prompt"]), "chosen": field_text(r["chosen"]),
                               "rejected": field_text(r["rejected"])} for r in rows])


def unpaired_dataset(rows: list[dict], tokenizer):
    """KTO's unpaired data: each pair becomes a desirable row (its chosen) and an undesirable one (its rejected).

    KTO never sees which two responses were compared, only a thumbs-up or a
    thumbs-down per response; splitting pairs this way gives the two kinds in
    equal numbers, which is what KTO's default weights assume. The pairs are
    checked first with the course's one validator.
    """
    from datasets import Dataset

    from rlhf_course.preference_data.data import check_training_rows, field_text
    from rlhf_course.core.sampling import chat_prompt

    out = []
    for r in check_training_rows(rows):
        prompt = chat_prompt(tokenizer, r["prompt"])
        out += [{"prompt": prompt, "completion": field_text(r["chosen"]), "label": True},
                {"prompt": prompt, "completion": field_text(r["rejected"]), "label": False}]
    return Dataset.from_list(out)
