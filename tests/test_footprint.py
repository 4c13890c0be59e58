"""Micro-batched policy-gradient steps and the footprint module's bookkeeping (CPU, seconds)."""

import torch
from transformers import LlamaConfig, LlamaForCausalLM

from rlhf_course.core.profiles import get_profile
from rlhf_course.core.rollout import micro_batches
from rlhf_course.core.sampling import pack, token_logprobs
from rlhf_course.policy_gradients import sequence_loss
from rlhf_course.tools.footprint import Measured, markdown_table, measure


def _tiny_batch():
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=50, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                         num_attention_heads=2, num_key_value_heads=2, pad_token_id=0))
    prompts = [[3, 4, 5], [6, 7], [8, 9, 10, 11], [12], [13, 14]]
    completions = [[20, 21], [22, 23, 24], [25], [26, 27, 28, 29], [30]]
    return model, pack(prompts, completions, pad_token_id=0)


def _gradient(model, batch, advantages, size):
    model.zero_grad()
    for rows, part in micro_batches(batch, size):
        share = (rows.stop - rows.start) / len(advantages)
        (share * sequence_loss(token_logprobs(model, part), advantages[rows], part["completion_mask"])).backward()
    return torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])


def test_micro_batches_cover_every_row_once():
    _, batch = _tiny_batch()
    parts = list(micro_batches(batch, 2))
    assert [(r.start, r.stop) for r, _ in parts] == [(0, 2), (2, 4), (4, 5)]
    assert torch.equal(torch.cat([p["input_ids"] for _, p in parts]), batch["input_ids"])
    assert len(list(micro_batches(batch, 0))) == 1  # 0: the whole batch at once


def test_accumulated_micro_batches_take_the_whole_batch_step():
    model, batch = _tiny_batch()
    advantages = torch.tensor([1.0, -0.5, 0.25, 2.0, -1.0])
    whole = _gradient(model, batch, advantages, 0)
    assert torch.allclose(_gradient(model, batch, advantages, 2), whole, atol=1e-6)


def test_colab_t4_micro_batches_its_rl_step():
    rl = get_profile("colab-t4").rl
    assert 0 < rl.micro_batch_size < rl.prompts_per_step * rl.k


def test_measure_records_a_failure_and_keeps_going():
    def broken():
        raise RuntimeError("CUDA out of memory (pretend)")

    row = measure("broken", broken)
    assert not row.ok and row.error.startswith("RuntimeError: CUDA out of memory")
    assert "traceback" in row.notes
    fine = measure("fine", lambda: Measured(steps=2, full_steps=10, step_seconds=0.0))
    assert fine.ok and fine.full_steps == 10 and fine.full_seconds is not None
    table = markdown_table([row, fine])
    assert "| broken |" in table and "| fine | 2/10 |" in table
