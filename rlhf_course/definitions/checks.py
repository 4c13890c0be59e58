"""Exercise check of the Definitions lab: the log-probability of a response from a model's logits.

The check calls the learner's function on small random batches whose answer is
computed here with plain loops over positions (an implementation independent
of the package's vectorised one), and names the likely mistake when it is wrong.
"""

from __future__ import annotations

from typing import Any, Callable

import torch

from rlhf_course.teaching.checking import ExerciseError, call_learner, exercise, expect_finite, expect_shape


def _case(seed: int, prompt_lengths: list[int], response_lengths: list[int], vocab: int = 7) -> tuple:
    """Random logits and token ids for rows of ``prompt + response`` tokens, right-padded, and the response mask."""
    generator = torch.Generator().manual_seed(seed)
    length = max(p + r for p, r in zip(prompt_lengths, response_lengths)) + 1  # at least one padding position
    logits = 3 * torch.randn(len(prompt_lengths), length, vocab, generator=generator)
    ids = torch.randint(0, vocab, (len(prompt_lengths), length), generator=generator)
    mask = torch.zeros(len(prompt_lengths), length, dtype=torch.long)
    for row, (p, r) in enumerate(zip(prompt_lengths, response_lengths)):
        mask[row, p:p + r] = 1
    return logits, ids, mask


def _by_loops(logits: torch.Tensor, ids: torch.Tensor, mask: torch.Tensor, shift: int = 1, log: bool = True,
              masked: bool = True) -> torch.Tensor:
    """The answer (and, with other arguments, typical wrong answers) one position at a time."""
    out = torch.zeros(len(ids), dtype=torch.float64)
    for b in range(len(ids)):
        for t in range(shift, ids.shape[1]):
            if masked and not mask[b, t]:
                continue
            logp = torch.log_softmax(logits[b, t - shift].double(), dim=-1)[ids[b, t]]
            out[b] += logp if log else logp.exp()
    return out


def _mistakes(got: torch.Tensor, logits: torch.Tensor, ids: torch.Tensor, mask: torch.Tensor) -> list[str]:
    """Hints for the typical mistakes that give ``got`` on this case."""
    n_tokens = mask.sum(-1).clamp(min=1).double()
    right = _by_loops(logits, ids, mask)
    guesses = [
        (_by_loops(logits, ids, mask, shift=0), "The logits at position t predict the token at t + 1, not the "
                                                "token at t: compare logits[:, :-1] with input_ids[:, 1:]."),
        (_by_loops(logits, ids, mask, masked=False), "You summed over the prompt and the padding too. Only the "
                                                     "response's tokens count: multiply by completion_mask."),
        (right / n_tokens, "You took the mean over the response's tokens; the chain rule gives the sum."),
        (_by_loops(logits, ids, mask, log=False), "You summed probabilities. The log-probability of a sequence is "
                                                  "the sum of the tokens' log-probabilities (log_softmax)."),
        (torch.stack([(logits[b, :-1].double().gather(-1, ids[b, 1:, None]).squeeze(-1) * mask[b, 1:]).sum()
                      for b in range(len(ids))]), "Those are raw logits. Normalise them first: log_softmax over the "
                                                  "vocabulary turns logits into log-probabilities."),
    ]
    return [hint for value, hint in guesses if got.shape == value.shape and torch.allclose(got.double(), value,
                                                                                          atol=1e-4)]


@exercise("sequence log-probability")
def check_sequence_logprob(fn: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], Any]) -> str:
    """Check ``fn(logits, input_ids, completion_mask) -> (batch,)`` log π(y | x), summed over the response's tokens.

    As in ``rlhf_course.definitions.sequence_logprob``: the logits at position
    t − 1 predict the token at t, the sum runs over the positions the mask
    marks, and the logits are normalised with a log-softmax first. Cases:
    rows with prompts and responses of different lengths, right padding, a
    response of one token, and large logits (a softmax computed by hand
    overflows).
    """
    cases = [("a batch of three rows", _case(0, [2, 3, 1], [3, 2, 4])),
             ("a response of a single token", _case(1, [4, 2], [1, 5])),
             ("one row, no padding needed", _case(2, [3], [4]))]
    big_logits, big_ids, big_mask = _case(3, [2, 2], [3, 3])
    cases.append(("logits in the hundreds", (100 * big_logits, big_ids, big_mask)))
    for label, (logits, ids, mask) in cases:
        got = call_learner(fn, logits.clone(), ids.clone(), mask.clone(), what="your sequence_logprob")
        expect_shape("your sequence log-probabilities", got, (len(ids),),
                     "Return one number per row: sum over the positions, not over the batch.")
        expect_finite("your sequence log-probabilities", got,
                      "exp(logits) overflows for large logits: use torch.log_softmax, which never does.")
        expected = _by_loops(logits, ids, mask)
        if not torch.allclose(got.detach().double(), expected, atol=1e-4, rtol=1e-5):
            hints = _mistakes(got.detach(), logits, ids, mask)
            hint = hints[0] if hints else ("Sum log_softmax(logits[:, t − 1])[input_ids[:, t]] over the positions t "
                                           "where completion_mask is 1.")
            raise ExerciseError(f"on {label}, your log-probabilities are "
                                f"{[round(v, 4) for v in got.detach().double().tolist()]}; expected "
                                f"{[round(v, 4) for v in expected.tolist()]}. {hint}")
    return (f"correct on {len(cases)} cases (shifted by one, summed over the response only, stable for logits in "
            "the hundreds)")
