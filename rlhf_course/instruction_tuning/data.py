"""Instruction-tuning data: demonstrations as prompt–completion rows, and the completion-only labels.

The toy world writes demonstrations of mixed quality; hub instruction datasets
(no_robots, UltraChat) arrive as chat records and become the same rows. The
loss is taken on the completion only: :func:`completion_labels` marks the
prompt's positions with -100, which is what TRL does for ``SFTTrainer``.
"""

from __future__ import annotations

from datasets import Dataset
from transformers import PreTrainedTokenizerBase

from rlhf_course.core.profiles import Profile
from rlhf_course.core.sampling import chat_prompt
from rlhf_course.toyworld import make_demonstrations, make_prompts


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
