"""Sampling and scoring: the two things every stage does with a policy.

``generate`` samples completions for a batch of prompts with a KV cache;
``completion_logprobs`` computes log π(y|x) of given completions, with the
padding and masking right, for DPO, PPO, KL estimates and evaluation. Both
take plain prompt texts and apply the model's chat template themselves, so
every stage formats prompts the same way.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from tqdm.auto import tqdm
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from rlhf_course.core.results import spending


def chat_prompt(tokenizer: PreTrainedTokenizerBase, text: str | list[dict]) -> str:
    """The prompt as the model sees it: one user turn (or the given messages) and the assistant's cue.

    A list is a conversational prompt (``{"role", "content"}`` messages, as in
    TRL's conversational format) and is rendered as it is.
    """
    messages = text if isinstance(text, list) else [{"role": "user", "content": text}]
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


def _batches(items: list, size: int):
    for start in range(0, len(items), size):
        yield items[start:start + size]


@dataclass
class Completions:
    """Sampled completions, as text and as the token ids that were sampled.

    Row ``i*n + j`` is completion ``j`` of prompt ``i``. ``completion_ids``
    end with the EOS token when the model stopped by itself (``finished``);
    a completion cut off at ``max_new_tokens`` has no EOS. RL stages train
    on exactly these ids, so re-tokenising the text can never change them.
    """

    texts: list[str]
    prompt_ids: list[list[int]]
    completion_ids: list[list[int]]
    finished: list[bool]


@torch.no_grad()
@spending("sampling")
def sample_completions(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompts: list[str],
    *,
    n: int = 1,
    max_new_tokens: int = 24,
    temperature: float = 1.0,
    top_p: float = 1.0,
    batch_size: int = 64,
    seed: int | None = None,
    progress: bool = False,
) -> Completions:
    """Sample ``n`` completions per prompt with a KV cache (see :class:`Completions`).

    Temperature 0 means greedy decoding. Texts have special tokens stripped.
    """
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0; got {temperature}.")
    if seed is not None:
        torch.manual_seed(seed)
    was_training = model.training
    model.eval()
    padding_side, tokenizer.padding_side = tokenizer.padding_side, "left"
    expanded = [chat_prompt(tokenizer, p) for p in prompts for _ in range(n)]
    sampling = dict(do_sample=True, temperature=temperature, top_p=top_p, top_k=0) if temperature > 0 \
        else dict(do_sample=False)
    out = Completions([], [], [], [])
    for batch in tqdm(list(_batches(expanded, batch_size)), desc="sampling", disable=not progress):
        enc = tokenizer(batch, return_tensors="pt", padding=True, add_special_tokens=False).to(model.device)
        tokens = model.generate(**enc, max_new_tokens=max_new_tokens, use_cache=True,
                                pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
                                **sampling)
        for row, mask, new in zip(enc["input_ids"], enc["attention_mask"], tokens[:, enc["input_ids"].shape[1]:]):
            ids = new.tolist()
            finished = tokenizer.eos_token_id in ids
            ids = ids[: ids.index(tokenizer.eos_token_id) + 1] if finished else ids
            out.prompt_ids.append(row[mask.bool()].tolist())
            out.completion_ids.append(ids)
            out.finished.append(finished)
            out.texts.append(tokenizer.decode(ids, skip_special_tokens=True).strip())
    tokenizer.padding_side = padding_side
    model.train(was_training)
    return out


def generate(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompts: list[str],
    *,
    n: int = 1,
    max_new_tokens: int = 24,
    temperature: float = 1.0,
    top_p: float = 1.0,
    batch_size: int = 64,
    seed: int | None = None,
    progress: bool = False,
) -> list[str]:
    """Sample ``n`` completions per prompt; returns ``len(prompts) * n`` texts.

    Completions of prompt ``i`` are at positions ``i*n … i*n+n-1``. Temperature
    0 means greedy decoding. Special tokens (EOS, padding) are stripped.
    """
    return sample_completions(model, tokenizer, prompts, n=n, max_new_tokens=max_new_tokens,
                              temperature=temperature, top_p=top_p, batch_size=batch_size, seed=seed,
                              progress=progress).texts


def pack(prompt_ids: list[list[int]], completion_ids: list[list[int]], pad_token_id: int) -> dict[str, torch.Tensor]:
    """Right-padded ``input_ids``, ``attention_mask`` and ``completion_mask`` of prompt + completion rows."""
    length = max(len(p) + len(c) for p, c in zip(prompt_ids, completion_ids, strict=True))
    ids = torch.full((len(prompt_ids), length), pad_token_id)
    attention = torch.zeros((len(prompt_ids), length), dtype=torch.long)
    completion_mask = torch.zeros((len(prompt_ids), length), dtype=torch.long)
    for i, (p, c) in enumerate(zip(prompt_ids, completion_ids)):
        ids[i, : len(p) + len(c)] = torch.tensor(p + c, dtype=torch.long)
        attention[i, : len(p) + len(c)] = 1
        completion_mask[i, len(p): len(p) + len(c)] = 1
    return {"input_ids": ids, "attention_mask": attention, "completion_mask": completion_mask}


def tokenize_pairs(
    tokenizer: PreTrainedTokenizerBase, prompts: list[str], completions: list[str], add_eos: bool = True
) -> dict[str, torch.Tensor]:
    """Right-padded ``input_ids``, ``attention_mask`` and ``completion_mask``.

    The prompt (with its chat template) and the completion (plus EOS) are
    tokenized separately and concatenated, so the completion mask is exact.
    """
    prompt_ids = [tokenizer(chat_prompt(tokenizer, p), add_special_tokens=False)["input_ids"] for p in prompts]
    completion_ids = [tokenizer(c, add_special_tokens=False)["input_ids"] + ([tokenizer.eos_token_id] if add_eos else [])
                      for c in completions]
    if len(prompt_ids) != len(completion_ids):
        raise ValueError(f"{len(prompt_ids)} prompts but {len(completion_ids)} completions; they must pair up.")
    return pack(prompt_ids, completion_ids, tokenizer.pad_token_id)


def token_logprobs(model: PreTrainedModel, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """log π(token_t | tokens_<t) for every position, 0 outside the completion.

    Shape ``(batch, length)``; position ``t`` scores token ``t`` (the first
    position is always 0 since nothing predicts it). Gradients flow, so this is
    also the building block of training losses.
    """
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    logps = torch.log_softmax(logits[:, :-1].float(), dim=-1)
    picked = logps.gather(-1, batch["input_ids"][:, 1:, None]).squeeze(-1)
    picked = torch.nn.functional.pad(picked, (1, 0))
    return picked * batch["completion_mask"]


@torch.no_grad()
def completion_logprobs(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompts: list[str],
    completions: list[str],
    *,
    batch_size: int = 64,
    add_eos: bool = True,
) -> torch.Tensor:
    """Sum of log π(y|x) over each completion's tokens (EOS included); shape ``(N,)``."""
    was_training = model.training
    model.eval()
    sums = []
    for start in range(0, len(prompts), batch_size):
        batch = tokenize_pairs(tokenizer, prompts[start:start + batch_size],
                               completions[start:start + batch_size], add_eos)
        batch = {k: v.to(model.device) for k, v in batch.items()}
        sums.append(token_logprobs(model, batch).sum(-1).cpu())
    model.train(was_training)
    return torch.cat(sums)
