"""Judges: a model (or the gold reward) that says which of two completions is better.

TRL shipped judges until 2026 (``BasePairwiseJudge``, ``PairRMJudge``, the API
judges and ``WinRateCallback``) and then removed them; this module keeps their
interface so that a reader who knew them feels at home:

- a *pairwise* judge's ``judge(prompts, completions, shuffle_order=True)``
  returns, for each prompt, the index (0 or 1) of the preferred of its two
  completions, or ``-1`` when it cannot decide (a tie);
- a *rank* judge's ``judge`` returns, for each prompt, the completion indices
  from best to worst.

A pairwise judge here is built on one number, :meth:`PairwiseJudge.prob_first`:
the probability that the completion shown *first* is the better one. That is
what makes position bias measurable: :func:`position_consistency` shows every
pair in both orders and counts how often the verdict follows the completion
rather than the position, and :func:`swap_averaged` averages the two orders'
probabilities, the standard remedy (Zheng et al. 2023, "Judging LLM-as-a-judge").

Concrete judges: :class:`LogProbJudge` (a language model's log-probability of
"A" against "B" after a judge prompt), :class:`RewardJudge` (any reward
function: a reward model, or the toy world's gold reward via :func:`gold_judge`)
and :class:`RewardRankJudge`. :class:`WinRateCallback` logs a judge's win rate
and the completion length while a TRL trainer trains.

Prompts may be strings or toy-world ``Prompt`` objects; judges that need text
use :func:`prompt_text`, the gold judge needs the ``Prompt`` itself.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np
import torch

RewardFn = Callable[[list, list[str]], Sequence[float]]

JUDGE_TEMPLATE = ("Which response is better? {principle}\n"
                  "Question: {prompt}\nResponse A: {first}\nResponse B: {second}\n"
                  "Answer with A or B.")
DEFAULT_PRINCIPLE = "Prefer the response that is correct, well formed, polite and concise."


def prompt_text(prompt: Any) -> str:
    """The text of a prompt: a string as it is, a toy-world ``Prompt`` by its ``text``."""
    return prompt if isinstance(prompt, str) else prompt.text


def _check_pairs(prompts: Sequence, completions: Sequence[Sequence[str]]) -> None:
    for name, value in (("prompts", prompts), ("completions", completions)):
        if isinstance(value, str) or not hasattr(value, "__len__"):
            raise TypeError(f"A judge takes a list of {name}; got {type(value).__name__}. Pass one entry per prompt.")
    if len(prompts) != len(completions):
        raise ValueError(f"{len(prompts)} prompts but {len(completions)} completion lists; give one list per prompt.")
    for i, pair in enumerate(completions):
        if len(pair) != 2:
            raise ValueError(f"A pairwise judge compares two completions; prompt {i} has {len(pair)}. "
                             "Use a rank judge for more.")


# ============================================================================= pairwise


class PairwiseJudge:
    """A judge that compares two completions of each prompt.

    Subclasses implement :meth:`prob_first`; :meth:`judge` turns it into
    verdicts, showing each pair in a random order when ``shuffle_order`` is set
    (so that a judge biased towards one position is not also biased towards one
    completion).
    """

    tie_tolerance: float = 1e-9  # |p - 0.5| at or below this is a tie

    def prob_first(self, prompts: list, completions: list[list[str]]) -> list[float]:
        """For each prompt, the probability that ``completions[i][0]`` (shown first) is the better one."""
        raise NotImplementedError

    def judge(self, prompts: list, completions: list[list[str]], shuffle_order: bool = True,
              seed: int = 0) -> list[int]:
        """For each prompt, the index (0 or 1) of the preferred completion, or -1 for a tie."""
        _check_pairs(prompts, completions)
        rng = random.Random(seed)
        flips = [shuffle_order and rng.random() < 0.5 for _ in prompts]
        shown = [[b, a] if flip else [a, b] for (a, b), flip in zip(completions, flips)]
        verdicts = []
        for p, flip in zip(self.prob_first(list(prompts), shown), flips):
            v = verdict(p, self.tie_tolerance)
            verdicts.append(v if v < 0 or not flip else 1 - v)
        return verdicts


def verdict(prob_first: float, tolerance: float = 1e-9) -> int:
    """0 if the first completion wins, 1 if the second does, -1 for a tie (``prob_first`` ≈ 0.5)."""
    if not 0.0 <= prob_first <= 1.0:  # also catches NaN, which would otherwise read as "second wins"
        raise ValueError(f"A judge's probability that the first completion wins must lie in [0, 1]; got {prob_first}. "
                         "Check the judge's scores for NaN.")
    if abs(prob_first - 0.5) <= tolerance:
        return -1
    return 0 if prob_first > 0.5 else 1


class RewardJudge(PairwiseJudge):
    """A pairwise judge from a reward function: the completion with the higher reward wins.

    ``reward_fn(prompts, completions) -> rewards`` (a list or tensor), e.g. a
    reward model from ``reward_modeling.reward_function`` or the gold reward.
    The probability is Bradley–Terry's, ``sigmoid((r_first - r_second) / temperature)``;
    rewards within ``tie_margin`` of each other are a tie. A pointwise judge
    scores each completion alone, so it has no position bias by construction.
    """

    def __init__(self, reward_fn: RewardFn, temperature: float = 1.0, tie_margin: float = 0.0,
                 text_prompts: bool = False):
        if temperature <= 0:
            raise ValueError(f"temperature must be positive; got {temperature}.")
        self.reward_fn, self.temperature, self.tie_margin = reward_fn, temperature, tie_margin
        self.text_prompts = text_prompts  # pass prompt texts instead of the objects given

    def rewards(self, prompts: list, completions: list[str]) -> np.ndarray:
        """The reward of each completion of its prompt."""
        given = [prompt_text(p) for p in prompts] if self.text_prompts else list(prompts)
        values = self.reward_fn(given, list(completions))
        return np.asarray(values.detach().cpu() if isinstance(values, torch.Tensor) else values, dtype=float)

    def prob_first(self, prompts: list, completions: list[list[str]]) -> list[float]:
        _check_pairs(prompts, completions)
        both = self.rewards(list(prompts) * 2, [c[0] for c in completions] + [c[1] for c in completions])
        diff = both[: len(prompts)] - both[len(prompts):]
        return [0.5 if abs(d) <= self.tie_margin else 1.0 / (1.0 + math.exp(-d / self.temperature)) for d in diff]


def gold_judge(tie_margin: float = 0.0) -> RewardJudge:
    """The toy world's gold reward as a judge (prompts must be ``Prompt`` objects): the reference."""
    from rlhf_course.toyworld import gold_reward

    return RewardJudge(lambda prompts, completions: [gold_reward(p, c) for p, c in zip(prompts, completions)],
                       tie_margin=tie_margin)


class LogProbJudge(PairwiseJudge):
    """A language model as a judge: P(first is better) from its log-probabilities of "A" and "B".

    The model reads a judge prompt (``template``, with the principle, the
    question and both responses labelled A and B, in the model's chat format)
    and the judge compares log π("A") with log π("B") as the answer:
    ``prob_first = sigmoid(log π(A) - log π(B))``. This is how an instruct model
    such as SmolLM2 judges without generating; a model that has never learnt to
    judge is weak, and often prefers one letter whatever the responses say.
    """

    def __init__(self, model, tokenizer, principle: str = DEFAULT_PRINCIPLE, template: str = JUDGE_TEMPLATE,
                 labels: tuple[str, str] = ("A", "B"), batch_size: int = 32):
        self.model, self.tokenizer, self.principle, self.template = model, tokenizer, principle, template
        self.labels, self.batch_size = labels, batch_size

    def judge_prompt(self, prompt: Any, first: str, second: str) -> str:
        """The text the judge model reads for one pair."""
        return self.template.format(principle=self.principle, prompt=prompt_text(prompt), first=first,
                                    second=second)

    @torch.no_grad()
    def prob_first(self, prompts: list, completions: list[list[str]]) -> list[float]:
        from rlhf_course.core.sampling import chat_prompt, completion_logprobs

        _check_pairs(prompts, completions)
        texts = [self.judge_prompt(p, a, b) for p, (a, b) in zip(prompts, completions)]
        ids = [self.tokenizer(label, add_special_tokens=False)["input_ids"] for label in self.labels]
        if len(ids[0]) != 1 or len(ids[1]) != 1:  # a label of several tokens: score each continuation in full
            n = len(texts)
            logps = completion_logprobs(self.model, self.tokenizer, texts * 2,
                                        [self.labels[0]] * n + [self.labels[1]] * n,
                                        batch_size=self.batch_size, add_eos=False)
            return torch.sigmoid(logps[:n] - logps[n:]).tolist()
        # one forward pass per pair: the next-token logits after the judge prompt hold both letters
        was_training, side = self.model.training, self.tokenizer.padding_side
        self.model.eval()
        self.tokenizer.padding_side = "left"
        out = []
        for start in range(0, len(texts), self.batch_size):
            batch = self.tokenizer([chat_prompt(self.tokenizer, t) for t in texts[start:start + self.batch_size]],
                                   return_tensors="pt", padding=True, add_special_tokens=False).to(self.model.device)
            positions = (batch["attention_mask"].cumsum(-1) - 1).clamp(min=0)  # left padding must not shift positions
            logits = self.model(**batch, position_ids=positions).logits[:, -1].float()
            out.append(torch.sigmoid(logits[:, ids[0][0]] - logits[:, ids[1][0]]).cpu())
        self.model.train(was_training)
        self.tokenizer.padding_side = side
        return torch.cat(out).tolist()


# ============================================================================= position bias


@dataclass
class PositionReport:
    """How a pairwise judge behaves when the two completions swap places.

    consistency: share of pairs whose verdict names the same completion in both orders
        (a tie in either order counts as inconsistent);
    first_rate: share of all verdicts (both orders) that pick the completion shown first;
    flagged: consistency below the threshold given to :func:`position_consistency`.
    """

    consistency: float
    first_rate: float
    flagged: bool
    forward: list[int]
    swapped: list[int]


def _both_orders(judge: PairwiseJudge, prompts: list, completions: list[list[str]]) -> tuple[list[float], list[float]]:
    """prob_first with the pairs as given, and P(completion 0 wins) read from the swapped order."""
    _check_pairs(prompts, completions)
    forward = judge.prob_first(list(prompts), [list(c) for c in completions])
    swapped = judge.prob_first(list(prompts), [[b, a] for a, b in completions])
    return forward, [1.0 - p for p in swapped]


def position_consistency(judge: PairwiseJudge, prompts: list, completions: list[list[str]],
                         threshold: float = 0.8) -> PositionReport:
    """Judge every pair in both orders and measure how often the verdict survives the swap.

    A judge that always picks position A has consistency 0 and first rate 1; a
    pointwise judge (a reward model) has consistency 1 except on ties.
    """
    forward, swapped0 = _both_orders(judge, prompts, completions)
    tol = judge.tie_tolerance
    fwd = [verdict(p, tol) for p in forward]
    swp = [verdict(p, tol) for p in swapped0]  # in the original indexing
    same = [a == b and a >= 0 for a, b in zip(fwd, swp)]
    firsts = sum(v == 0 for v in fwd) + sum(v == 1 for v in swp)
    consistency = float(np.mean(same)) if same else float("nan")
    return PositionReport(consistency, firsts / (2 * len(fwd)) if fwd else float("nan"),
                          bool(consistency < threshold), fwd, swp)


def swap_averaged(judge: PairwiseJudge, prompts: list, completions: list[list[str]]) -> list[int]:
    """Verdicts from the two orders' probabilities averaged: ``(p(0 first) + 1 - p(1 first)) / 2``.

    A constant preference for one position cancels out; what is left is the
    judge's preference for the content. A judge that only ever says "A" gets a
    tie (-1) on every pair instead of a random verdict.
    """
    forward, swapped0 = _both_orders(judge, prompts, completions)
    return [verdict((f + s) / 2, judge.tie_tolerance) for f, s in zip(forward, swapped0)]


def agreement(verdicts: Sequence[int], reference: Sequence[int]) -> float:
    """Share of pairs where ``verdicts`` agree with ``reference``; a tie in ``verdicts`` counts half.

    Verdicts are 0 (first wins), 1 (second wins) or -1 (tie). Pairs the
    reference cannot decide (-1) are left out; NaN when it decides none.
    """
    if len(verdicts) != len(reference):
        raise ValueError(f"{len(verdicts)} verdicts against {len(reference)} references; they must pair up.")
    for name, values in (("verdicts", verdicts), ("reference", reference)):
        bad = [(i, v) for i, v in enumerate(values) if v not in (-1, 0, 1)]
        if bad:
            raise ValueError(f"{name}[{bad[0][0]}] is {bad[0][1]!r}; a verdict is 0 (first wins), 1 (second wins) "
                             "or -1 (tie).")
    scores = [0.5 if v < 0 else float(v == r) for v, r in zip(verdicts, reference) if r >= 0]
    return float(np.mean(scores)) if scores else float("nan")


# ============================================================================= ranking


class RankJudge:
    """A judge that orders any number of completions of each prompt, best first."""

    def judge(self, prompts: list, completions: list[list[str]], shuffle_order: bool = True,
              seed: int = 0) -> list[list[int]]:
        raise NotImplementedError


class RewardRankJudge(RankJudge):
    """Rank completions by a reward function (best first); ``shuffle_order`` breaks ties at random."""

    def __init__(self, reward_fn: RewardFn, text_prompts: bool = False):
        self.pointwise = RewardJudge(reward_fn, text_prompts=text_prompts)

    def judge(self, prompts: list, completions: list[list[str]], shuffle_order: bool = True,
              seed: int = 0) -> list[list[int]]:
        if len(prompts) != len(completions):
            raise ValueError(f"{len(prompts)} prompts but {len(completions)} completion lists.")
        rng = random.Random(seed)
        flat_prompts = [p for p, cs in zip(prompts, completions) for _ in cs]
        rewards = self.pointwise.rewards(flat_prompts, [c for cs in completions for c in cs])
        ranks, start = [], 0
        for cs in completions:
            order = list(range(len(cs)))
            if shuffle_order:
                rng.shuffle(order)
            values = rewards[start:start + len(cs)]
            ranks.append(sorted(order, key=lambda i: -values[i]))  # sorted is stable: ties keep the shown order
            start += len(cs)
        return ranks


# ============================================================================= during training


def win_rate_against(judge: PairwiseJudge, prompts: list, completions: list[str], references: list[str],
                     seed: int = 0) -> float:
    """Share of prompts where ``completions`` beat ``references`` by the judge (order shuffled; ties count half)."""
    verdicts = judge.judge(list(prompts), [[c, r] for c, r in zip(completions, references)], seed=seed)
    return float(np.mean([0.5 if v < 0 else float(v == 0) for v in verdicts]))


def _trainer_callback_base():
    from transformers import TrainerCallback

    return TrainerCallback


class WinRateCallback(_trainer_callback_base()):
    """A TRL/transformers callback: every ``every`` steps, the judge's win rate of the model against its start.

    At the start of training the callback samples the model on ``prompts``
    (the reference completions); every ``every`` optimizer steps and at the
    end it samples again and asks ``judge`` which is better, logging
    ``judge_win_rate`` and ``completion_length`` (mean words) into the trainer's
    ``log_history`` and into :attr:`history`. Sampling uses ``max_new_tokens``
    and temperature 1; ``prompts`` may be toy-world ``Prompt`` objects when the
    judge needs them (the gold judge).
    """

    def __init__(self, judge: PairwiseJudge, prompts: list, tokenizer, every: int = 10, max_new_tokens: int = 24,
                 batch_size: int = 64, seed: int = 0):
        if every < 1:
            raise ValueError(f"every must be a positive number of steps; got {every}.")
        self.judge, self.prompts, self.tokenizer, self.every = judge, list(prompts), tokenizer, every
        self.max_new_tokens, self.batch_size, self.seed = max_new_tokens, batch_size, seed
        self.references: list[str] = []
        self.history: list[dict] = []

    def _sample(self, model) -> list[str]:
        from rlhf_course.core.sampling import generate

        with torch.random.fork_rng():
            return generate(model, self.tokenizer, [prompt_text(p) for p in self.prompts],
                            max_new_tokens=self.max_new_tokens, batch_size=self.batch_size, seed=self.seed)

    def _measure(self, model, state) -> None:
        completions = self._sample(model)
        entry = {"step": state.global_step,
                 "judge_win_rate": win_rate_against(self.judge, self.prompts, completions, self.references, self.seed),
                 "completion_length": float(np.mean([len(c.split()) for c in completions]))}
        self.history.append(entry)
        state.log_history.append(dict(entry))

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        self.references = self._sample(model)
        self.history = []

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if state.global_step % self.every == 0:
            self._measure(model, state)

    def on_train_end(self, args, state, control, model=None, **kwargs):
        if not self.history or self.history[-1]["step"] != state.global_step:
            self._measure(model, state)
