"""Prompt synthesis: a chat model writes the user's turn (Magpie), and what its prompts are worth.

An aligned chat model has read many conversations that open with a user's
request. Give it only the opening of a user turn, the chat template up to the
place where the user's text begins (the *pre-query template*), and it samples
a request of the kind it was trained on (Xu et al., 2024, "Magpie"). No seed
prompts, no instructions to imitate: the template alone. Whether those
prompts are any good is the question: do they ask for a task at all, are they
new, do they repeat one another, and do they leak into a test set.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from rlhf_course.core.results import spending

_MARK = "\u2063QUERY\u2063"  # a string no chat template contains, to find where the user's text begins


def pre_query_template(tokenizer: PreTrainedTokenizerBase) -> str:
    """The chat template rendered up to where the user's text begins.

    ``<|user|>`` for the tiny model, ``<|im_start|>user\\n`` for SmolLM2 (with
    its default system turn before it, if the template adds one).
    """
    rendered = tokenizer.apply_chat_template([{"role": "user", "content": _MARK}], tokenize=False)
    if _MARK not in rendered:
        raise ValueError("The tokenizer's chat template does not show the user's text; it cannot give a "
                         "pre-query template.")
    return rendered[: rendered.index(_MARK)]


def _cut_at_special(text: str, specials: list[str]) -> str:
    """``text`` up to the first special token (the end of the user's turn), stripped."""
    cut = min([text.index(s) for s in specials if s and s in text] + [len(text)])
    return text[:cut].strip()


@torch.no_grad()
@spending("sampling")
def synthesize_prompts(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    n: int,
    *,
    max_new_tokens: int = 24,
    temperature: float = 1.0,
    batch_size: int = 200,
    seed: int = 0,
) -> list[str]:
    """``n`` user prompts sampled from ``model`` after the pre-query template (Magpie).

    The model continues the template; the user's turn ends at the first
    special token it writes (the assistant's cue or an end of turn), or after
    ``max_new_tokens``. Empty texts are kept (as ``""``): they count against
    the model when the prompts are assessed.
    """
    if n < 1:
        raise ValueError(f"n must be a positive number of prompts; got {n}.")
    torch.manual_seed(seed)
    was_training = model.training
    model.eval()
    template = pre_query_template(tokenizer)
    specials = list(tokenizer.all_special_tokens)
    out: list[str] = []
    while len(out) < n:
        size = min(batch_size, n - len(out))
        enc = tokenizer([template] * size, return_tensors="pt", add_special_tokens=False).to(model.device)
        tokens = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=temperature > 0,
                                temperature=temperature if temperature > 0 else None, top_k=0,
                                pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id)
        new = tokens[:, enc["input_ids"].shape[1]:]
        out += [_cut_at_special(tokenizer.decode(row, skip_special_tokens=False), specials) for row in new]
    model.train(was_training)
    return out


@dataclass
class PromptReport:
    """What a batch of synthetic prompts is worth: counts of each kind, and the tasks found."""

    texts: list[str]
    tasks: list  # the toy-world Prompt each text asks for, or None
    splits: list[str | None]  # the split of each task ("train", "validation", "test"), None if no task

    @property
    def n(self) -> int:
        return len(self.texts)

    def share(self, kind: str) -> float:
        """Share of the prompts that are ``valid`` tasks, ``new`` tasks (not in the train split), ``test`` tasks
        (in the held-out test split: contamination) or ``distinct`` texts."""
        if kind == "distinct":
            return len(set(self.texts)) / self.n
        counts = {"valid": sum(t is not None for t in self.tasks),
                  "new": sum(s in ("validation", "test") for s in self.splits),
                  "test": sum(s == "test" for s in self.splits)}
        if kind not in counts:
            raise ValueError(f"Unknown kind {kind!r}; use valid, new, test or distinct.")
        return counts[kind] / self.n

    def kept(self, exclude_split: str = "test") -> list:
        """The valid tasks, less those of ``exclude_split`` (decontamination against the test set)."""
        return [t for t, s in zip(self.tasks, self.splits) if t is not None and s != exclude_split]


def assess_prompts(texts: list[str]) -> PromptReport:
    """Parse each synthetic prompt to a toy-world task and find its split (see :class:`PromptReport`)."""
    from rlhf_course.toyworld.prompts import parse_prompt, split_of

    tasks = [parse_prompt(t) for t in texts]
    splits = [split_of()[t.id] if t is not None else None for t in tasks]
    return PromptReport(list(texts), tasks, splits)
