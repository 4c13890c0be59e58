"""The Definitions lab: the sequence log-probability, its exercise check, and the frequency check against sampling."""

from __future__ import annotations

import math

import pytest
import torch

from rlhf_course.definitions import checks, frequency_check, sequence_logprob
from rlhf_course.teaching.checking import ExerciseError


def test_sequence_logprob_is_the_chain_rule_by_hand():
    """Two rows over a 3-token vocabulary, the probabilities written out by hand."""
    logits = torch.log(torch.tensor([[[0.2, 0.3, 0.5], [0.6, 0.2, 0.2], [0.1, 0.1, 0.8], [1 / 3, 1 / 3, 1 / 3]],
                                     [[0.5, 0.25, 0.25], [0.1, 0.7, 0.2], [0.3, 0.3, 0.4], [0.9, 0.05, 0.05]]]))
    ids = torch.tensor([[2, 0, 2, 1], [0, 1, 1, 0]])
    mask = torch.tensor([[0, 1, 1, 0], [0, 0, 1, 1]])  # row 0: tokens 1-2 (then padding); row 1: tokens 2-3
    # the token at t is read from the distribution at t - 1: row 0 takes 0.2 (id 0 at 0) and 0.2 (id 2 at 1)
    expected = torch.tensor([math.log(0.2 * 0.2), math.log(0.7 * 0.3)])
    assert torch.allclose(sequence_logprob(logits, ids, mask), expected, atol=1e-6)


def test_sequence_logprob_matches_the_trainers_token_logprobs_on_a_model(tiny_policy):
    from rlhf_course.core.models import load_policy
    from rlhf_course.core.sampling import pack, sample_completions, token_logprobs

    path, tokenizer = tiny_policy
    model = load_policy(path, "tiny").eval()
    drawn = sample_completions(model, tokenizer, ["Say yes.", "Name a colour."], n=3, max_new_tokens=8, seed=0)
    batch = pack(drawn.prompt_ids, drawn.completion_ids, tokenizer.pad_token_id)
    with torch.no_grad():
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        assert torch.allclose(sequence_logprob(logits, batch["input_ids"], batch["completion_mask"]),
                              token_logprobs(model, batch).sum(-1), atol=1e-5)


@pytest.mark.parametrize("wrong, fragment", [
    (lambda l, i, m: (torch.log_softmax(l, -1).gather(-1, i[..., None]).squeeze(-1) * m).sum(-1), "predict the token"),
    (lambda l, i, m: sequence_logprob(l, i, m) / m.sum(-1), "mean"),
    (lambda l, i, m: sequence_logprob(l, i, torch.ones_like(m)), "completion_mask"),
    (lambda l, i, m: (l[:, :-1].gather(-1, i[:, 1:, None]).squeeze(-1) * m[:, 1:]).sum(-1), "raw logits"),
    (lambda l, i, m: sequence_logprob(l, i, m).sum(), "one number per row"),
    (lambda l, i, m: (torch.log(l[:, :-1].exp() / l[:, :-1].exp().sum(-1, keepdim=True))
                      .gather(-1, i[:, 1:, None]).squeeze(-1) * m[:, 1:]).sum(-1), "log_softmax"),
])
def test_the_check_names_each_typical_mistake(wrong, fragment):
    with pytest.raises(ExerciseError) as info:
        checks.check_sequence_logprob(wrong)
    assert fragment in str(info.value)


def test_the_check_passes_the_right_answer_and_says_not_implemented_for_the_stub(capsys):
    checks.check_sequence_logprob(sequence_logprob)
    assert capsys.readouterr().out.startswith("✓ sequence log-probability")

    def stub(logits, input_ids, completion_mask):
        raise NotImplementedError

    with pytest.raises(ExerciseError, match="not implemented"):
        checks.check_sequence_logprob(stub)


def test_frequency_check_finds_the_sampler_agrees_and_a_wrong_formula_does_not(tiny_policy):
    """On the tiny base model the fresh shares agree with exp(log pi); leaving out the end token breaks them."""
    from rlhf_course.core.models import load_policy
    from rlhf_course.core.profiles import apply_overrides, get_profile

    path, tokenizer = tiny_policy
    profile = apply_overrides(get_profile("tiny"), ["max_new_tokens=3"])  # short answers: many repeats
    model = load_policy(path, profile).eval()
    prompts = ["Say yes.", "Give me 2 tools."]
    right = frequency_check(model, tokenizer, prompts, 800, profile, top=5, seed=0)
    assert right.table["testable"].sum() >= 4
    assert right.mean_abs_z < 2.0
    assert set(right.samples["prompt"]) == set(prompts) and len(right.samples) == 1600

    def without_last_token(logits, input_ids, mask):  # the end-of-turn (or the third) token left out
        last = mask * (mask.cumsum(-1) == mask.sum(-1, keepdim=True))
        return sequence_logprob(logits, input_ids, mask - last)

    wrong = frequency_check(model, tokenizer, prompts, 800, profile, top=5, seed=0, logprob_fn=without_last_token)
    assert (wrong.table["probability"] > right.table["probability"]).all()
    assert wrong.mean_abs_z > right.mean_abs_z + 1.0
