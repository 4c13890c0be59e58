"""The probability of a response, from the chain rule, and a check of it against the sampler.

A causal language model gives the distribution of each token given the ones
before it, so the probability of a whole response is the product of its
tokens' probabilities (the chain rule), and its log-probability the sum

    log π(y | x) = Σ_t log π(y_t | x, y_<t),

over the response's tokens only (the prompt is given, not generated), the
end-of-turn token included when the response has one. :func:`sequence_logprob`
computes it from a model's logits; :func:`frequency_check` samples many
responses to a few prompts and compares how often each response comes up with
the probability the formula gives it.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import pandas as pd
import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from rlhf_course.core.profiles import Profile
from rlhf_course.core.sampling import pack, sample_completions


def sequence_logprob(logits: torch.Tensor, input_ids: torch.Tensor, completion_mask: torch.Tensor) -> torch.Tensor:
    """log π(y | x) of each row: the log-probabilities of the response's tokens, summed.

    ``logits`` ``(batch, length, vocab)`` are a causal model's outputs on
    ``input_ids`` ``(batch, length)``, prompt and response together;
    ``completion_mask`` ``(batch, length)`` is 1 on the response's tokens (its
    end-of-turn token included) and 0 on the prompt and the padding. The token
    at position t is predicted by the logits at position t − 1, so the logits
    are shifted by one against the tokens; the first token, which nothing
    predicts, is never part of a response. Returns a ``(batch,)`` tensor in
    nats (natural logarithms).
    """
    logps = torch.log_softmax(logits[:, :-1].float(), dim=-1)
    picked = logps.gather(-1, input_ids[:, 1:, None]).squeeze(-1)
    return (picked * completion_mask[:, 1:]).sum(-1)


@torch.no_grad()
def logprobs_of(model: PreTrainedModel, prompt_ids: list[list[int]], completion_ids: list[list[int]], pad_id: int,
                logprob_fn: Callable[..., torch.Tensor] = sequence_logprob, batch_size: int = 64) -> torch.Tensor:
    """``logprob_fn`` (:func:`sequence_logprob` or the learner's) on token-id pairs, in batches, as a ``(N,)`` tensor."""
    was_training = model.training
    model.eval()
    out = []
    for start in range(0, len(prompt_ids), batch_size):
        batch = pack(prompt_ids[start:start + batch_size], completion_ids[start:start + batch_size], pad_id)
        batch = {k: v.to(model.device) for k, v in batch.items()}
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        out.append(torch.as_tensor(logprob_fn(logits, batch["input_ids"], batch["completion_mask"])).float().cpu())
    model.train(was_training)
    return torch.cat(out)


@dataclass
class FrequencyCheck:
    """What :func:`frequency_check` measured.

    ``table`` has one row per response picked: its prompt and text, its
    probability from the chain rule, how often it came up in the half of the
    samples it was picked from (``picked_share``) and in the other, fresh
    half (``fresh_share``), and ``z``, the fresh share's distance from the
    probability in binomial standard errors. ``testable`` marks the rows
    whose expected count in the fresh half is at least 5, where ``z`` is
    close to a standard normal (a response of probability 0.0005 seen once
    in 500 samples would give z = 2, and mean nothing). ``samples`` has one
    row per sample: its prompt, number of tokens and log-probability.
    """

    table: pd.DataFrame
    samples: pd.DataFrame

    @property
    def mean_abs_z(self) -> float:
        """Mean |z| of the testable rows: about 0.8 (that of a standard normal) when the probabilities are right."""
        return float(self.table.loc[self.table["testable"], "z"].abs().mean())

    @property
    def picked_excess(self) -> float:
        """How much more often the picked responses came up in the half they were picked from than they should."""
        return float((self.table["picked_share"] - self.table["probability"]).mean())


def frequency_check(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, prompts: Sequence[Any], n: int,
                    profile: Profile, *, top: int = 8, seed: int = 0,
                    logprob_fn: Callable[..., torch.Tensor] = sequence_logprob) -> FrequencyCheck:
    """Sample ``n`` responses to each prompt and compare each frequent response's share with its probability.

    The samples of each prompt are split in two halves. The ``top`` responses
    that come up most often in the first half are picked there, and their
    shares are compared in the second half, which played no part in picking
    them: picked and measured on the same samples, the most frequent responses
    look more probable than they are (the winner's curse; ``picked_share``
    shows it). Responses are compared as token ids, not texts, so that two
    tokenizations of one text are never confused. Sampling is at temperature 1
    with no top-k or top-p, the distribution the formula describes.
    """
    texts = [p if isinstance(p, str) else p.text for p in prompts]
    drawn = sample_completions(model, tokenizer, texts, n=n, max_new_tokens=profile.max_new_tokens, temperature=1.0,
                               batch_size=max(profile.eval_batch_size, n), seed=seed)
    logps = logprobs_of(model, drawn.prompt_ids, drawn.completion_ids, tokenizer.pad_token_id, logprob_fn,
                        profile.eval_batch_size)
    rows, half = [], n // 2
    for i, text in enumerate(texts):
        ids = [tuple(c) for c in drawn.completion_ids[i * n:(i + 1) * n]]
        first, second = Counter(ids[:half]), Counter(ids[half:])
        for response, count in first.most_common(top):
            p = math.exp(float(logps[i * n + ids.index(response)]))
            fresh = second[response] / (n - half)
            rows.append({"prompt": text, "response": tokenizer.decode(list(response), skip_special_tokens=True).strip(),
                         "tokens": len(response), "probability": p, "picked_share": count / half,
                         "fresh_share": fresh, "z": (fresh - p) / math.sqrt(max(p * (1 - p), 1e-12) / (n - half)),
                         "testable": p * (n - half) >= 5})
    samples = pd.DataFrame({"prompt": [t for t in texts for _ in range(n)],
                            "tokens": [len(c) for c in drawn.completion_ids], "logprob": logps.numpy()})
    return FrequencyCheck(pd.DataFrame(rows), samples)
