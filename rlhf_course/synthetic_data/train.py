"""Distillation, and generations of self-training: a model fine-tuned on its own unfiltered samples, again and again.

:func:`distill` fine-tunes a student on a teacher's answers after a filter
(the verifier, then best-of-k by a reward model; see ``filtering.py``): the
recipe of most open instruction datasets written by a stronger model.

Generation 0 is trained on real data (the demonstrations). Generation t is
trained, from the same starting model, on answers that generation t − 1
sampled for the training prompts, with nothing filtered out (Shumailov et
al., 2024). Two ways to build generation t's data:

- **replace**: only generation t − 1's answers; the real data are gone after
  generation 0;
- **accumulate**: the real data and every generation's answers so far, of
  which a fixed number of rows is drawn, so that every generation trains for
  the same number of steps (Gerstgrasser et al., 2024, keep all the data;
  Kazdan et al., 2024, study this fixed-size variant).

The fine-tuning is the instruction-tuning stage, passed in as ``finetune``
(``rlhf_course.instruction_tuning.train_sft``): this module only decides what
each generation trains on.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from transformers import PreTrainedModel, PreTrainedTokenizerBase

from rlhf_course.core.profiles import Profile
from rlhf_course.core.sampling import generate

from .filtering import FilteredAnswers, filtered_answers

MODES = ("replace", "accumulate")


def generation_rows(real: list[dict], own: list[list[dict]], mode: str, size: int, seed: int = 0) -> list[dict]:
    """The training rows of the next generation, from the real rows and each earlier generation's own rows.

    ``own[t]`` holds the rows generation t sampled. ``replace`` keeps only the
    last generation's rows; ``accumulate`` draws ``size`` rows without
    replacement from the real rows and all generations' rows pooled, so that
    the real share shrinks as 1 / (generations + 1) but never reaches zero.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}; got {mode!r}.")
    if not own:
        raise ValueError("own is empty: generation 1 needs the samples of generation 0.")
    if mode == "replace":
        return list(own[-1])
    pool = list(real) + [row for rows in own for row in rows]
    return random.Random(f"accumulate/{seed}/{len(own)}").sample(pool, min(size, len(pool)))


def distill(teacher: PreTrainedModel, student: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, prompts: list,
            n_rows: int, reward_fn: Callable, finetune: Callable[..., Any], profile: Profile, *, k: int = 4,
            verifier: Callable | None = None, gold_fn: Callable | None = None,
            output_dir: str | Path = "runs/distill", seed: int = 0, progress: bool = True) -> tuple[Any, FilteredAnswers]:
    """Fine-tune ``student`` with ``finetune`` on up to ``n_rows`` of ``teacher``'s filtered answers to ``prompts``.

    ``k`` answers per prompt; the ``verifier`` drops wrong ones on prompts that
    have an exact answer, and ``reward_fn`` keeps the best of the rest
    (:func:`~rlhf_course.synthetic_data.filtering.filtered_answers`). Draw more
    prompts than ``n_rows``: prompts whose answers all fail are dropped.
    Returns ``finetune``'s result and the answers (with ``gold_fn``'s scores
    when given, to measure the filter). The teacher's answers are saved under
    ``output_dir/teacher_samples`` as they are drawn, and the fine-tuning
    checkpoints in ``output_dir``, so an interrupted run resumes both.
    """
    answers = filtered_answers(teacher, tokenizer, prompts, k, reward_fn, profile, verifier=verifier, gold_fn=gold_fn,
                               seed=seed, output_dir=Path(output_dir) / "teacher_samples")
    rows = answers.rows[:n_rows]
    if not rows:
        raise ValueError(f"The filter kept none of the teacher's {k} answers to any of {len(prompts)} prompts; "
                         "check the verifier, or draw more prompts or answers.")
    return finetune(student, tokenizer, rows, profile, output_dir=output_dir, seed=seed, progress=progress), answers


@dataclass
class SelfTrainingResult:
    """The last generation's model, and per generation its data and what ``measure`` returned."""

    model: PreTrainedModel
    history: list[dict] = field(default_factory=list)
    seconds: float = 0.0


def self_training(
    model: PreTrainedModel,
    fresh: Callable[[], PreTrainedModel] | None,
    tokenizer: PreTrainedTokenizerBase,
    real: list[dict],
    prompts: list[str],
    finetune: Callable[..., Any],
    profile: Profile,
    *,
    mode: str = "replace",
    generations: int = 3,
    output_dir: str | Path = "runs/self_training",
    seed: int = 0,
    measure: Callable[[PreTrainedModel], dict] | None = None,
    temperature: float = 1.0,
    progress: bool = True,
) -> SelfTrainingResult:
    """``generations`` rounds of: sample one answer per prompt from ``model``, train ``fresh()`` on the new data.

    ``model`` is generation 0 (trained on ``real``). ``fresh()`` returns the
    starting point of every generation (the base model: each generation
    starts over, as in the model-collapse papers); with ``fresh=None`` each
    generation continues from the previous one instead, which costs less. ``finetune(model,
    tokenizer, rows, profile, output_dir=..., seed=..., progress=...)`` is the
    SFT stage and returns an object with ``.model``. ``measure(model)``, if
    given, is called on every generation, 0 included, and its dict is stored
    in ``history``. Answers are sampled at ``temperature`` with nothing
    filtered out.
    """
    start, own = time.perf_counter(), []
    history = [{"generation": 0, "rows": len(real), "real_share": 1.0, **(measure(model) if measure else {})}]
    for g in range(1, generations + 1):
        answers = generate(model, tokenizer, prompts, max_new_tokens=profile.max_new_tokens, temperature=temperature,
                           batch_size=profile.eval_batch_size, seed=seed * 1000 + g)
        own.append([{"prompt": p, "completion": a, "real": False} for p, a in zip(prompts, answers)])
        rows = generation_rows([dict(r, real=True) for r in real], own, mode, len(prompts), seed)
        model = finetune(fresh() if fresh else model, tokenizer, rows, profile, output_dir=Path(output_dir) / f"gen{g}",
                         seed=seed * 1000 + g, progress=progress).model
        real_share = sum(r["real"] for r in rows) / len(rows)
        history.append({"generation": g, "rows": len(rows), "real_share": real_share,
                        **(measure(model) if measure else {})})
    return SelfTrainingResult(model, history, time.perf_counter() - start)
