"""vLLM for rollouts, when it is installed and the profile asks for it (``profile.rl.use_vllm``).

Generation is most of an RL step's time on a GPU; vLLM (Kwon et al., 2023,
"Efficient Memory Management for Large Language Model Serving with
PagedAttention", https://github.com/vllm-project/vllm) samples many times faster
than ``model.generate``. Two routes use it:

- TRL's trainers (GRPO): :func:`trl_vllm_arguments` adds ``use_vllm`` and
  ``vllm_mode`` (``"colocate"``: vLLM shares the training GPUs; ``"server"``:
  a separate ``trl vllm-serve`` process) to the trainer's config;
- the course's own loops (REINFORCE, RLOO, PPO through ``core.rollout.rollout``,
  and online DPO): :func:`sample_rollouts` samples with a colocated vLLM ``LLM``
  that holds a copy of the policy's current weights, loaded before each batch.

Without vLLM (a CPU, a laptop, CI) both fall back to ``model.generate`` and say
so once, in one line. With ``use_vllm`` off, nothing here runs.
"""

from __future__ import annotations

import copy
import importlib.util
import tempfile
import warnings

from transformers import PreTrainedModel, PreTrainedTokenizerBase

from rlhf_course.core.profiles import Profile
from rlhf_course.core.sampling import Completions, sample_completions

VLLM_MODES = ("colocate", "server")
FALLBACK_NOTE = ("use_vllm is set but vLLM is not installed: generating with model.generate instead "
                 "(pip install vllm on a GPU machine to use it).")
_noted = False
_engines: dict[int, tuple[PreTrainedModel, object]] = {}  # id(policy) -> (policy, its vLLM LLM)


def vllm_available() -> bool:
    """Whether the ``vllm`` package can be imported here."""
    return importlib.util.find_spec("vllm") is not None


def note_fallback() -> None:
    """Warn once per process that generation falls back to ``model.generate``."""
    global _noted
    if not _noted:
        warnings.warn(FALLBACK_NOTE, stacklevel=3)
        _noted = True


def use_vllm(profile: Profile) -> bool:
    """True when the profile asks for vLLM and it is installed; notes the fallback when it asks but it is not."""
    if profile.rl.vllm_mode not in VLLM_MODES:
        raise ValueError(f"rl.vllm_mode must be one of {', '.join(VLLM_MODES)}; got {profile.rl.vllm_mode!r}.")
    if not profile.rl.use_vllm:
        return False
    if not vllm_available():
        note_fallback()
        return False
    return True


def trl_vllm_arguments(profile: Profile) -> dict:
    """The TRL config arguments for generation: ``use_vllm``/``vllm_mode`` when :func:`use_vllm`, else none."""
    return {"use_vllm": True, "vllm_mode": profile.rl.vllm_mode} if use_vllm(profile) else {}


def sample_rollouts(policy: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, prompts: list, profile: Profile,
                    *, n: int, temperature: float = 1.0, batch_size: int = 64, seed: int | None = None) -> Completions:
    """``n`` completions per prompt, by vLLM when :func:`use_vllm` says so, else by :func:`sample_completions`."""
    if not use_vllm(profile):
        return sample_completions(policy, tokenizer, prompts, n=n, max_new_tokens=profile.max_new_tokens,
                                  temperature=temperature, batch_size=batch_size, seed=seed)
    return vllm_completions(policy, tokenizer, prompts, n=n, max_new_tokens=profile.max_new_tokens,
                            temperature=temperature, seed=seed)


def _merged_weights(policy: PreTrainedModel):
    """The policy's weights as the plain model's names: LoRA adapters merged into a copy first."""
    model = copy.deepcopy(policy).merge_and_unload() if hasattr(policy, "merge_and_unload") else policy
    return model.state_dict().items()


def _engine(policy: PreTrainedModel, tokenizer: PreTrainedTokenizerBase):
    """A colocated vLLM ``LLM`` for ``policy`` (made once, from a saved copy), holding its current weights."""
    from vllm import LLM

    if id(policy) not in _engines or _engines[id(policy)][0] is not policy:
        folder = tempfile.mkdtemp(prefix="rlhf-course-vllm-")
        saved = copy.deepcopy(policy)
        saved = saved.merge_and_unload() if hasattr(saved, "merge_and_unload") else saved  # LoRA: a plain model
        saved.save_pretrained(folder, safe_serialization=True)
        tokenizer.save_pretrained(folder)
        del saved
        _engines[id(policy)] = (policy, LLM(model=folder, gpu_memory_utilization=0.3, enable_prefix_caching=True))
    llm = _engines[id(policy)][1]
    weights = list(_merged_weights(policy))
    llm.apply_model(lambda model: model.load_weights(weights))
    return llm


def vllm_completions(policy: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, prompts: list, *, n: int,
                     max_new_tokens: int, temperature: float = 1.0, seed: int | None = None) -> Completions:
    """Sample with vLLM; the same :class:`~rlhf_course.core.sampling.Completions` as ``sample_completions``.

    Prompts are formatted by the same chat template and given as token ids;
    a completion that stopped by itself ends with the EOS id, as in
    ``sample_completions``, so the RL loss trains on exactly the sampled ids.
    """
    from vllm import SamplingParams

    from rlhf_course.core.sampling import chat_prompt

    llm = _engine(policy, tokenizer)
    prompt_ids = [tokenizer(chat_prompt(tokenizer, p), add_special_tokens=False)["input_ids"] for p in prompts]
    params = SamplingParams(n=n, temperature=temperature, top_p=1.0, max_tokens=max_new_tokens, seed=seed)
    outputs = llm.generate([{"prompt_token_ids": ids} for ids in prompt_ids], params, use_tqdm=False)
    out = Completions([], [], [], [])
    for ids, output in zip(prompt_ids, outputs, strict=True):
        for sample in output.outputs:
            completion = list(sample.token_ids)
            finished = sample.finish_reason == "stop"
            if finished and (not completion or completion[-1] != tokenizer.eos_token_id):
                completion.append(tokenizer.eos_token_id)
            out.prompt_ids.append(list(ids))
            out.completion_ids.append(completion)
            out.finished.append(finished)
            out.texts.append(tokenizer.decode(completion, skip_special_tokens=True).strip())
    return out
